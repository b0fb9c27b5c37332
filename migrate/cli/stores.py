"""`migrate stores up` and `migrate cluster up`: embedded real stores, N instances of a shop."""

from __future__ import annotations

import sys
from typing import Any

import click

from migrate.cli.base import (
    cli,
    console,
    err_console,
    interrupt_on_sigterm,
    to_json,
    wait_for_ctrl_c,
)


def _store_options(command):
    """The options that choose the stores: embedded ones, or the user's URLs."""
    options = [
        click.option("--run-dir", type=click.Path(file_okay=False), metavar="DIR",
                     help="Keep the servers' files here (default: a temporary folder, removed "
                          "on exit)."),
        click.option("--redis", "redis_url", metavar="URL",
                     help="Use this Redis instead of an embedded redis-server."),
        click.option("--s3", "s3_url", metavar="URL",
                     help="Use this S3 endpoint (keys from AWS_ACCESS_KEY_ID and "
                          "AWS_SECRET_ACCESS_KEY) instead of an embedded rclone serve s3."),
        click.option("--bucket", default="shop", show_default=True, help="The shop's bucket."),
        click.option("--database-url", envvar="DATABASE_URL", metavar="URL",
                     help="The shop's database (default: $DATABASE_URL, else SQLite in the run "
                          "dir)."),
        click.option("--json", "as_json", is_flag=True, help="Print what runs as JSON."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _start_stores(run_dir: str | None, redis_url: str | None, s3_url: str | None, bucket: str,
                  database_url: str | None):
    from pathlib import Path

    from migrate.harness.stores import start_stores

    return start_stores(Path(run_dir) if run_dir else None, redis_url=redis_url,
                        s3_endpoint_url=s3_url, s3_bucket=bucket, database_url=database_url)


def _write_env_file(path: Any, env: dict[str, str]) -> None:
    """``export NAME=value`` lines, readable by the owner only (the file holds secrets)."""
    import os
    import shlex

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)  # an existing file keeps its mode otherwise
        for name, value in env.items():
            handle.write(f"export {name}={shlex.quote(value)}\n")


def _show_stores(store_set: Any, env_file: Any) -> None:
    from rich.table import Table

    from migrate import redact

    servers = {"REDIS_URL": ("embedded redis-server", store_set.redis),
               "S3_ENDPOINT_URL": ("embedded rclone serve s3", store_set.s3)}
    table = Table(box=None, show_header=True)
    for column in ("variable", "value", "server"):
        table.add_column(column, no_wrap=True)
    for name, value in store_set.stores.masked().items():
        detail = ""
        if name in servers:
            what, server = servers[name]
            detail = f"{what}, pid {server.pid}" if server is not None else "yours"
        table.add_row(name, redact.url(value), detail)
    console.print(table)
    console.print(f"the full environment, secrets included, is in {env_file} (mode 0600): "
                  f"`source {env_file}`", highlight=False)


@cli.group("stores")
def stores_group() -> None:
    """Embedded real stores for the shop: redis-server and an S3 endpoint (rclone serve s3).

    Example:

        migrate stores up --run-dir ./run
    """


@stores_group.command("up")
@_store_options
def stores_up_command(run_dir: str | None, redis_url: str | None, s3_url: str | None,
                      bucket: str, database_url: str | None, as_json: bool) -> None:
    """Start Redis and S3 on 127.0.0.1 (or check yours answer) and keep them up until Ctrl-C.

    Prints the variable names and masked URLs; the full environment both shops read, secrets
    included, goes to RUN_DIR/stores.env (mode 0600). Ctrl-C stops every server by its pid;
    a temporary run dir is removed.

    Example:

        migrate stores up --run-dir ./run    # then, in another shell: source ./run/stores.env
    """
    interrupt_on_sigterm()
    try:
        with _start_stores(run_dir, redis_url, s3_url, bucket, database_url) as store_set:
            env_file = store_set.run_dir / "stores.env"
            _write_env_file(env_file, store_set.stores.app_env())
            if as_json:
                pids = [s.pid for s in (store_set.redis, store_set.s3) if s is not None]
                click.echo(to_json({"run_dir": str(store_set.run_dir), "env_file": str(env_file),
                                    "env": store_set.stores.masked(), "pids": pids}))
            else:
                _show_stores(store_set, env_file)
                console.print("[bold green]stores up[/]; Ctrl-C stops them", highlight=False)
            sys.stdout.flush()
            wait_for_ctrl_c()
    except KeyboardInterrupt:
        pass  # interrupted while starting: the `with` has already stopped what started
    if not as_json:
        err_console.print("stores stopped", highlight=False)


@cli.group("cluster")
def cluster_group() -> None:
    """N gunicorn instances of either shop on 127.0.0.1, optionally behind HAProxy.

    Example:

        migrate cluster up stateless --instances 2 --haproxy
    """


@cluster_group.command("up")
@click.argument("app", type=click.Choice(["stateful", "stateless"]))
@click.option("--instances", "-n", type=click.IntRange(1, 32), default=2, show_default=True,
              help="How many instances (one gunicorn worker each).")
@click.option("--haproxy", "use_haproxy", is_flag=True,
              help="Put a real HAProxy with health checks in front (needs haproxy on PATH).")
@_store_options
def cluster_up_command(app: str, instances: int, use_haproxy: bool, run_dir: str | None,
                       redis_url: str | None, s3_url: str | None, bucket: str,
                       database_url: str | None, as_json: bool) -> None:
    """Start the stores and N instances of a shop; keep them up until Ctrl-C.

    Each instance is its own gunicorn process with one worker (as on N hosts) and its own
    instance folder; the stateless shop also gets its RQ worker. Ctrl-C stops everything by
    pid; a temporary run dir is removed, so nothing is left running or on disk.

    Example:

        migrate cluster up stateful --instances 2    # then: migrate journey URL1 URL2
    """
    import secrets

    from migrate.harness.cluster import Cluster

    if use_haproxy:
        from migrate.errors import UsageError
        from migrate.harness.cluster import haproxy_available

        if not haproxy_available():  # before anything starts
            raise UsageError("haproxy is not installed: `apt-get install haproxy` "
                             "(or leave --haproxy out; the journey client balances itself)")
    interrupt_on_sigterm()
    try:
        with _start_stores(run_dir, redis_url, s3_url, bucket, database_url) as store_set:
            # One SECRET_KEY for all instances: a cookie signed by one is valid on the others.
            # One key, made once here and handed to every instance this run starts.
            key = secrets.token_hex(32)  # migrate: ignore[secret-key-per-process]
            env = {**store_set.stores.app_env(), "SECRET_KEY": key}
            env_file = store_set.run_dir / "stores.env"
            _write_env_file(env_file, env)
            if not as_json:
                console.print(f"starting {instances} {app} instance(s)…", highlight=False)
            with Cluster(app, instances, env, store_set.run_dir / app,
                         haproxy=use_haproxy) as running:
                infos = [running.instance(i) for i in range(instances)]
                if as_json:
                    click.echo(to_json({
                        "app": app, "instances": infos, "proxy_url": running.proxy_url,
                        "worker_pid": running.worker.pid if running.worker else None,
                        "run_dir": str(store_set.run_dir), "env_file": str(env_file),
                        "stores": store_set.stores.masked()}))
                else:
                    _show_cluster(app, running, store_set, env_file)
                sys.stdout.flush()
                wait_for_ctrl_c()
    except KeyboardInterrupt:
        pass
    if not as_json:
        err_console.print("cluster and stores stopped", highlight=False)


def _show_cluster(app: str, running: Any, store_set: Any, env_file: Any) -> None:
    """Each process with its URL, pid and log; then the stores and how to try the shop."""
    from rich.table import Table

    table = Table(box=None, show_header=True)
    for column in ("instance", "url", "pid", "log"):
        table.add_column(column, no_wrap=True)
    for info in (running.instance(i) for i in range(len(running))):
        table.add_row(info.name, info.url, str(info.pid), info.log)
    if running.worker is not None:
        table.add_row("rq worker", "-", str(running.worker.pid),
                      str(running.run_dir / "worker.log"))
    if running.proxy_url:
        table.add_row("haproxy", running.proxy_url, str(running.haproxy.pid),
                      str(running.run_dir / "haproxy.log"))
    console.print(table)
    _show_stores(store_set, env_file)
    urls = " ".join(running.urls)
    console.print(f"[bold green]{app} shop up[/]: try `migrate journey {urls}`; "
                  "Ctrl-C stops everything", highlight=False)
