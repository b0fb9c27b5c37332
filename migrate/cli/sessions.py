"""`migrate export-sessions` and `verify sessions`."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from migrate.cli.base import cli, console, err_console, record_summary, to_json, verify

# --- sessions --------------------------------------------------------------------------------


def _session_options(command):
    """The options export-sessions and verify sessions share (they must map keys alike)."""
    from migrate.sessions import DEFAULT_LIFETIME, DEFAULT_PREFIX, LEGACY_PREFIX

    options = [
        click.option("--from", "sources", multiple=True, required=True, metavar="SOURCE",
                     help="A bridge URL (http://HOST:PORT), a FileSystemCache directory or an "
                     "NDJSON dump; repeat for several instances."),
        click.option("--redis", "redis_url", required=True, envvar="MIGRATE_REDIS_URL",
                     metavar="URL", help="The after-app's Redis (redis+cluster:// for a cluster, "
                     "redis+sentinel://HOST:26379,HOST2:26379/SERVICE for Sentinel)."),
        click.option("--redis-cluster", is_flag=True, help="--redis is a Redis Cluster node."),
        click.option("--token", envvar="MIGRATE_BRIDGE_TOKEN",
                     help="The bridge's bearer token (default: $MIGRATE_BRIDGE_TOKEN)."),
        click.option("--key-prefix", default=DEFAULT_PREFIX, show_default=True,
                     help="The after-app's SESSION_KEY_PREFIX."),
        click.option("--legacy-prefix", default=LEGACY_PREFIX, show_default=True,
                     help="Key prefix for filesystem sessions, keyed by file digest."),
        click.option("--serializer", type=click.Choice(["msgpack", "json"]), default="msgpack",
                     show_default=True, help="The after-app's SESSION_SERIALIZATION_FORMAT."),
        click.option("--lifetime", type=int, default=DEFAULT_LIFETIME, show_default=True,
                     help="TTL in seconds for sessions stored without an expiry."),
        click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _print_failures(rows: list[tuple[str, str, str]], limit: int = 20) -> None:
    for session, source, reason in rows[:limit]:
        console.print(f"  [red]✗[/] session {session} from {source}: {reason}", highlight=False)
    if len(rows) > limit:
        console.print(f"  … and {len(rows) - limit} more (--json lists them all)")


@cli.command("export-sessions")
@_session_options
@click.option("--on-conflict", type=click.Choice(["skip", "overwrite"]), default="skip",
              show_default=True,
              help="A key already in Redis: keep it (the new app wrote it) or replace it.")
@click.option("--batch", type=click.IntRange(1, 100_000), default=1000, show_default=True,
              help="Sessions per pipelined round trip.")
@click.option("--jobs", type=click.IntRange(1, 64), default=None,
              help="Processes for dump and directory sources (decoding is CPU-bound); "
              "default: one per CPU, at most 4, for inputs over 16 MiB or 10,000 files.")
@click.option("--dry-run", is_flag=True, help="Read and convert everything, write nothing.")
@click.option("--wait-replicas", type=click.IntRange(0, 64), default=0, metavar="N",
              help="After each batch, WAIT until N replicas have it (a Sentinel set or a "
              "replicated Redis): a finished export is on N replicas as well.")
@click.option("--wait-timeout", type=click.IntRange(1, 600_000), default=1000,
              show_default=True, metavar="MS", help="How long --wait-replicas waits per batch.")
@click.pass_context
def export_sessions_command(
    ctx: click.Context, sources: tuple[str, ...], redis_url: str, redis_cluster: bool,
    token: str | None, key_prefix: str, legacy_prefix: str, serializer: str, lifetime: int,
    as_json: bool, on_conflict: str, batch: int, jobs: int | None, dry_run: bool,
    wait_replicas: int, wait_timeout: int,
) -> None:
    """Move live and on-disk sessions into Redis so no user is logged out.

    Writes exactly what Flask-Session 0.8 reads (key prefix + sid, msgpack, TTL = remaining
    lifetime). Idempotent: keys already in Redis are skipped, so a re-run writes nothing new.
    Sessions that cannot be read or converted are listed with the reason (exit 1); contents and
    full session ids are never shown.

    Example:

    \b
        migrate export-sessions --from http://127.0.0.1:8001 \\
            --from http://127.0.0.1:8002 --redis redis://127.0.0.1:6379/0
        migrate export-sessions --from /srv/app/flask_session --redis redis://redis:6379/0
        migrate export-sessions --from dump.ndjson --wait-replicas 1 \\
            --redis 'redis+sentinel://:PASSWORD@s1:26379,s2:26379,s3:26379/shop/0'
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from migrate import redisurl
    from migrate.sessions import Options, export_sessions

    # Carried in the URL: every export process opens its target from the URL alone.
    redis_url = redisurl.with_wait(redis_url, wait_replicas, wait_timeout)
    options = Options(key_prefix=key_prefix, legacy_prefix=legacy_prefix, serializer=serializer,
                      lifetime=lifetime, on_conflict=on_conflict, batch=batch)
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,} sessions"),
        TimeElapsedColumn(), console=err_console, transient=True, disable=as_json,
    )
    tasks: dict[str, Any] = {}

    def on_progress(label: str, done: int, total: int | None) -> None:
        if label not in tasks:
            tasks[label] = progress.add_task(label, total=total)
        progress.update(tasks[label], completed=done)

    with progress:
        result = export_sessions(list(sources), redis_url, token=token, cluster=redis_cluster,
                                 options=options, dry_run=dry_run, on_progress=on_progress,
                                 jobs=jobs)
    record_summary(sessions_read=result.read, written=result.written, skipped=result.skipped,
             failed=result.failed, api_tokens_written=result.tokens_written,
             hashes_written=result.hashes_written)
    if as_json:
        data = dataclasses.asdict(result)
        data.update(ok=result.ok, rate=round(result.rate, 1))
        click.echo(to_json(data))
    else:
        _render_export(result, dry_run)
    if not result.ok:
        ctx.exit(1)


@verify.command("sessions")
@_session_options
@click.option("--tolerance", type=float, default=60.0, show_default=True,
              help="Seconds a TTL may differ from the session's remaining lifetime.")
@click.pass_context
def verify_sessions_command(
    ctx: click.Context, sources: tuple[str, ...], redis_url: str, redis_cluster: bool,
    token: str | None, key_prefix: str, legacy_prefix: str, serializer: str, lifetime: int,
    as_json: bool, tolerance: float,
) -> None:
    """Check every source session is in Redis with equal data and TTL; exit 1 on a difference.

    Example:

        migrate verify sessions --from http://127.0.0.1:8001 --redis redis://127.0.0.1:6379/0
    """
    from migrate.sessions import Options, verify_sessions

    options = Options(key_prefix=key_prefix, legacy_prefix=legacy_prefix, serializer=serializer,
                      lifetime=lifetime)
    result = verify_sessions(list(sources), redis_url, token=token, cluster=redis_cluster,
                             options=options, tolerance=tolerance)
    record_summary(checked=result.checked, matching=result.matching,
             differences=len(result.differences))
    if as_json:
        data = dataclasses.asdict(result)
        data["ok"] = result.ok
        click.echo(to_json(data))
    else:
        _print_failures([(d.session, d.source, d.problem) for d in result.differences])
        extra = f", {result.promoted} already promoted" if result.promoted else ""
        extra += f", {result.expired} expired" if result.expired else ""
        if result.ok:
            console.print(f"[bold green]sessions verified[/]: {result.matching:,} of "
                          f"{result.checked:,} match in {result.redis}{extra}", highlight=False)
        else:
            console.print(f"[bold red]{len(result.differences):,} sessions differ[/] "
                          f"({result.matching:,} match{extra})", highlight=False)
    if not result.ok:
        ctx.exit(1)


def _render_export(result: Any, dry_run: bool) -> None:
    """The counts table, what was converted or kept, the failures and the verdict."""
    from rich.table import Table

    table = Table(title="dry run: nothing written" if dry_run else None, box=None)
    for column in ("read", "written", "skipped", "expired", "failed", "converted",
                   "seconds", "per second"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_row(*(f"{n:,}" for n in (result.read, result.written, result.skipped,
                                       result.expired, result.failed, result.converted)),
                  f"{result.seconds:.2f}", f"{result.rate:,.0f}")
    console.print(table)
    if result.legacy:
        console.print(f"{result.legacy:,} filesystem sessions were written under their file "
                      "digest: the after-app's RedisSessionInterface "
                      "(migrate.sessions.interface) moves each to its sid on the user's next "
                      "request",
                      highlight=False)
    if result.converted_kinds:
        kinds = ", ".join(f"{k} × {n}" for k, n in sorted(result.converted_kinds.items()))
        console.print(f"converted as Flask-Session reads them: {kinds}", highlight=False)
    if result.duplicates:
        console.print(f"{result.duplicates} sessions came from two sources: "
                      "the later-expiring copy was kept")
    if result.tokens_read:
        console.print(f"API tokens (hashed): {result.tokens_written:,} written, "
                      f"{result.tokens_skipped:,} already in Redis, {result.tokens_failed:,} "
                      f"failed, of {result.tokens_read:,} read", highlight=False)
    if result.hashes_read:
        console.print(f"per-user hashes (e.g. API carts): {result.hashes_written:,} added to, "
                      f"{result.hashes_skipped:,} already in Redis, {result.hashes_failed:,} "
                      f"failed, of {result.hashes_read:,} read", highlight=False)
    _print_failures([(f.session, f.source, f.reason) for f in result.failures])
    verb = "would write" if dry_run else "wrote"
    console.print(f"{'[bold green]' if result.ok else '[bold red]'}{verb} "
                  f"{result.written:,} sessions[/] to {result.redis}", highlight=False)
