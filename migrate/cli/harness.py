"""`migrate journey`, `demo`, `verify instances`, `stores`, `cluster`: the demo's world."""

from __future__ import annotations

import sys
from typing import Any

import click

from migrate.cli.base import _summary, cli, console, err_console, to_json, verify

# --- journey ---------------------------------------------------------------------------------


@cli.command()
@click.argument("urls", nargs=-1, required=True)
@click.option("--user", default="alice", show_default=True, help="The demo user to log in as.")
@click.option("--password", help="Their password (default: the demo password).")
@click.option("--file-mib", default=12, show_default=True, help="Size of the chunked upload.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def journey(
    ctx: click.Context, urls: tuple[str, ...], user: str, password: str | None, file_mib: int,
    as_json: bool,
) -> None:
    """Run the shop's user journey, each request to the next instance in turn.

    Shows, step by step, which instance served what; exits 1 when a step fails.

    Example:

        migrate journey http://127.0.0.1:8001 http://127.0.0.1:8002
    """
    from rich.table import Table

    from migrate.harness.journey import Journey, StepResult, preflight

    preflight(list(urls))
    trip = Journey(list(urls), user=user, password=password, file_size=file_mib * 1024 * 1024)

    def show(step: StepResult) -> None:
        if not as_json:
            mark = "[green]✓[/]" if step.ok else "[red]✗[/]"
            retry = f" [yellow](skipped {step.retries} down)[/]" if step.retries else ""
            console.print(
                f"{mark} {step.number:>2} {step.name:<24} [cyan]{step.instance or '-':<14}[/]"
                f" {step.status or '-'}  {step.detail}{retry}",
                highlight=False,
            )

    result = trip.run(on_step=show)
    if as_json:
        click.echo(to_json(result.to_dict()))
    else:
        table = Table(show_header=True, box=None)
        table.add_column("instance")
        table.add_column("steps served", justify="right")
        served: dict[str, int] = {}
        for step in result.steps:
            served[step.instance or "-"] = served.get(step.instance or "-", 0) + 1
        for name, count in sorted(served.items()):
            table.add_row(name, str(count))
        console.print(table)
        if result.ok:
            console.print(f"[bold green]journey passed[/]: {len(result.steps)} steps "
                          f"in {result.seconds:.1f} s")
        else:
            failed = result.failed
            console.print(f"[bold red]journey failed[/] at step {failed.number} "
                          f"({failed.name}) on {failed.instance}: {failed.detail}", highlight=False)
    if not result.ok:
        ctx.exit(1)


# --- demo ------------------------------------------------------------------------------------


@cli.command()
@click.option("--users", type=click.IntRange(1, 100), default=10, show_default=True,
              help="Simulated users shopping through the migration.")
@click.option("--keep-running", is_flag=True, help="Leave the after-shop up for a browser.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def demo(ctx: click.Context, users: int, keep_running: bool, as_json: bool) -> None:
    """The whole story: the before-shop failing on two instances, then migrated live.

    Users keep shopping while the bridge mirrors sessions, sessions and files are exported,
    the schema is expanded, the configuration switched and the instances rolled to the
    after-shop one at a time; one instance is then SIGKILLed. The closing table counts what
    the users lost (it must be nothing). Starts embedded Redis and S3 and real gunicorn
    instances on 127.0.0.1; everything is stopped and removed at the end (or on Ctrl-C).

    Example:

        migrate demo --users 20 --keep-running
    """
    import signal

    from rich.table import Table

    from migrate.harness.demo import run_demo

    def narrate(text: str) -> None:
        if not as_json:
            console.print(f"[bold]▸[/] {text}", highlight=False)

    def wait_for_browser(cluster) -> None:
        for i in range(len(cluster)):
            info = cluster.instance(i)
            console.print(f"  {info.name}: [link={info.url}]{info.url}[/]")
        console.print("The after-shop is up (alice / wonderland). Press Ctrl-C to stop it.")
        signal.pause()

    _interrupt_on_sigterm()
    try:
        result = run_demo(narrate, users=users,
                          keep_running=wait_for_browser if keep_running else None)
    except KeyboardInterrupt:
        err_console.print("stopped: every process the demo started has been stopped")
        ctx.exit(130)
    if as_json:
        click.echo(to_json(result))
    else:
        table = Table(title="journeys")
        for column in ("journey", "result", "where it stopped", "as expected"):
            table.add_column(column)
        for case in result.cases:
            failed = case.result.failed
            where = (f"step {failed.number} {failed.name} on {failed.instance}: {failed.detail}"
                     if failed else f"all {len(case.result.steps)} steps")
            table.add_row(
                case.title,
                "[green]passed[/]" if case.result.ok else "[red]failed[/]",
                where,
                "yes" if case.as_expected else "[red]NO[/]",
            )
        console.print(table)
        cut = result.cutover
        if cut is not None:
            closing = Table(title=f"the migration, {cut.users} users shopping throughout")
            closing.add_column("")
            closing.add_column("count", justify="right")
            lost = [("failed requests", cut.failed_requests), ("logouts", cut.logouts),
                    ("cart items lost", cut.lost_cart_items), ("files lost", cut.lost_files)]
            for label, value in [("requests served", cut.requests),
                                 ("sessions migrated", cut.sessions_exported),
                                 ("files migrated", cut.files_exported),
                                 ("chunked uploads carried", cut.uploads_carried)]:
                closing.add_row(label, str(value))
            for label, value in lost:
                closing.add_row(label, f"[green]{value}[/]" if value == 0 else f"[red]{value}[/]")
            closing.add_row("cut-over seconds", f"{cut.cutover_seconds:.1f}")
            console.print(closing)
            for problem in cut.problems:
                console.print(f"  [red]problem:[/] {problem}", highlight=False)
        console.print(f"{result.seconds:.0f} s")
    if not result.ok:
        ctx.exit(1)




@verify.command("instances")
@click.argument("urls", nargs=-1)
@click.option("--user", default="alice", show_default=True, help="The demo user to log in as.")
@click.option("--password", help="Their password (default: the demo password).")
@click.option("--file-mib", type=click.IntRange(1, 1024), default=12, show_default=True,
              help="Size of the chunked upload (5 MiB chunks).")
@click.option("--start", "start_app", type=click.Choice(["stateless", "stateful"]),
              help="Start embedded stores and N instances of this shop instead of URLs "
                   "(stopped at the end).")
@click.option("--instances", "-n", type=click.IntRange(1, 32), default=2, show_default=True,
              help="With --start: how many instances.")
@click.option("--kill-one", is_flag=True,
              help="With --start: SIGKILL one instance at the chunked upload; the journey "
                   "must still pass.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def verify_instances_command(
    ctx: click.Context, urls: tuple[str, ...], user: str, password: str | None, file_mib: int,
    start_app: str | None, instances: int, kill_one: bool, as_json: bool,
) -> None:
    """Run the journey across instances, each request to the next; exit 1 when a step fails.

    Shows every step with the instance that served it (X-Instance). The kill test needs to
    kill an instance, which migrate only does to processes it started: --kill-one goes with
    --start, which starts embedded Redis, S3 and N instances, SIGKILLs one at the chunked
    upload, and checks the journey still passes on the others.

    Example:

        migrate verify instances http://127.0.0.1:8001 http://127.0.0.1:8002

        migrate verify instances --start stateless --instances 2 --kill-one
    """
    from rich.markup import escape
    from rich.table import Table

    from migrate.errors import UsageError
    from migrate.harness.instances import verify_instances, verify_started

    if kill_one and not start_app:
        raise UsageError(
            "--kill-one SIGKILLs an instance, and migrate only kills processes it started: "
            "use `migrate verify instances --start stateless --instances 2 --kill-one`, or kill "
            "one of your instances yourself while `migrate verify instances URL ...` runs")
    if start_app and urls:
        raise UsageError("give instance URLs or --start, not both: --start runs its own "
                         "instances")
    if not start_app and not urls:
        raise UsageError("no instance URL given: pass URLs, e.g. http://127.0.0.1:8001, or "
                         "--start stateless to let migrate start instances")

    def narrate(text: str) -> None:
        if not as_json:
            err_console.print(f"▸ {text}", highlight=False, markup=False)

    def on_step(step: Any) -> None:
        narrate(f"{'ok' if step.ok else 'FAILED'} step {step.number} {step.name} "
                f"on {step.instance or '-'}")

    file_size = file_mib * 1024 * 1024
    if start_app:
        _interrupt_on_sigterm()  # Ctrl-C or SIGTERM: the library's `with` blocks stop it all
        try:
            result = verify_started(start_app, instances, kill_one=kill_one, user=user,
                                    password=password, file_size=file_size, on_step=on_step,
                                    narrate=narrate)
        except KeyboardInterrupt:
            err_console.print("stopped: every process verify started has been stopped",
                              highlight=False)
            ctx.exit(130)
    else:
        result = verify_instances(list(urls), user=user, password=password,
                                  file_size=file_size, on_step=on_step)
    _summary(steps_passed=sum(st.ok for st in result.journey.steps),
             instances=len(result.instances))
    if as_json:
        click.echo(to_json(result.to_dict()))
    else:
        table = Table(title=f"journey over {', '.join(result.urls)}", show_lines=False)
        table.add_column("#", justify="right")
        table.add_column("step")
        table.add_column("instance")
        table.add_column("status", justify="right")
        table.add_column("detail")
        kill = result.kill
        for step in result.journey.steps:
            if kill is not None and step.number == kill.before_step:
                table.add_row("", f"[bold yellow]SIGKILL {escape(kill.instance)}[/]", "", "",
                              f"pid {kill.pid}, mid-upload")
            mark = "[green]✓[/]" if step.ok else "[red]✗[/]"
            retry = (f" [yellow](skipped {step.retries} refused)[/]" if step.retries else "")
            table.add_row(str(step.number), f"{mark} {escape(step.name)}",
                          escape(step.instance or "-"), str(step.status or "-"),
                          escape(step.detail) + retry)
        console.print(table)
        journey_result = result.journey
        served = ", ".join(result.instances) or "none"
        if kill is not None:
            where = "refuses connections" if kill.dead_after else "[red]still answers[/]"
            console.print(f"killed {escape(kill.instance)} (pid {kill.pid}) before step "
                          f"{kill.before_step} ({escape(kill.step_name)}); it {where}; "
                          f"{kill.retries_after} refused request(s) went to another instance",
                          highlight=False)
        if result.ok:
            console.print(f"[bold green]journey passed[/]: {len(journey_result.steps)} steps "
                          f"in {journey_result.seconds:.1f} s, served by {served}"
                          + ("; nothing lost after the kill" if kill else ""), highlight=False)
        elif journey_result.failed is not None:
            failed = journey_result.failed
            console.print(f"[bold red]journey failed[/] at step {failed.number} "
                          f"({escape(failed.name)}) on {escape(failed.instance or '-')}: "
                          f"{escape(failed.detail)}", highlight=False)
        else:
            console.print("[bold red]kill test failed[/]: the killed instance still answers",
                          highlight=False)
    if not result.ok:
        ctx.exit(1)




# --- stores and cluster: embedded real stores, N instances of a shop -------------------------


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


def _interrupt_on_sigterm() -> None:
    """SIGINT, SIGTERM and SIGHUP stop us like Ctrl-C: the `with` blocks stop every server."""
    import signal

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a shell starts background jobs with SIGINT ignored, and Python keeps that.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)


def _wait_for_ctrl_c() -> None:
    import time

    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


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
    _interrupt_on_sigterm()
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
            _wait_for_ctrl_c()
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

    from rich.table import Table

    from migrate.harness.cluster import Cluster

    if use_haproxy:
        from migrate.errors import UsageError
        from migrate.harness.cluster import haproxy_available

        if not haproxy_available():  # before anything starts
            raise UsageError("haproxy is not installed: `apt-get install haproxy` "
                             "(or leave --haproxy out; the journey client balances itself)")
    _interrupt_on_sigterm()
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
                    table = Table(box=None, show_header=True)
                    for column in ("instance", "url", "pid", "log"):
                        table.add_column(column, no_wrap=True)
                    for info in infos:
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
                sys.stdout.flush()
                _wait_for_ctrl_c()
    except KeyboardInterrupt:
        pass
    if not as_json:
        err_console.print("cluster and stores stopped", highlight=False)
