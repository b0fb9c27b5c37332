"""The command line: a thin click layer over the library.

Each command parses options, calls one library function, and renders the dataclass it returns.
Expected failures (``MigrateError``) are caught once, in ``main``, and printed as one line.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

import click
from rich.console import Console

from migrate.errors import MigrateError

# soft_wrap: a line is one line (greppable), however narrow the terminal.
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


class MigrateGroup(click.Group):
    """A group that turns MigrateError into one line and an exit code (``--debug`` re-raises)."""

    def invoke(self, ctx: click.Context) -> Any:
        argv = [*getattr(ctx, "_protected_args", []), *ctx.args]  # for the journal, below
        outcome: list[Any] = [1, None]  # exit code, error line
        try:
            result = super().invoke(ctx)
            outcome[0] = 0
            return result
        except MigrateError as exc:
            outcome[:] = [exc.exit_code, str(exc)]
            if ctx.obj and ctx.obj.get("debug"):
                raise
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
            sys.exit(exc.exit_code)
        except click.exceptions.Exit as exc:
            outcome[0] = exc.exit_code
            raise
        except click.UsageError:
            outcome[0] = None  # a mistyped command is not a failed step: not journaled
            raise
        finally:  # journal runbook commands; a journal failure must never break the command
            try:
                from migrate.runbook.journal import record_command
                record_command(self, argv, outcome[0], outcome[1], ctx.meta)
            except Exception as exc:
                err_console.print(f"warning: journal not written: {exc}", highlight=False,
                                  markup=False)


def to_json(result: Any) -> str:
    """Render a result dataclass (or list of them) as stable JSON."""

    def default(obj: Any) -> Any:
        if dataclasses.is_dataclass(obj):
            return dataclasses.asdict(obj)
        return str(obj)

    if dataclasses.is_dataclass(result):
        result = dataclasses.asdict(result)
    return json.dumps(result, indent=2, sort_keys=True, default=default)


def _summary(**counts: Any) -> None:
    """Counts for the runbook journal (`migrate steps` shows what each step did)."""
    from migrate.runbook.journal import SUMMARY_KEY

    click.get_current_context().meta[SUMMARY_KEY] = {
        k.replace("_", " "): v for k, v in counts.items()}


@click.group(cls=MigrateGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show the full traceback of an error.")
@click.version_option(package_name="migrate")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Take a stateful Flask app to a stateless one, step by step.

    Example:

        migrate journey http://127.0.0.1:8001 http://127.0.0.1:8002
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


# --- commands are registered below, one section per concern ---------------------------------


@cli.group()
def verify() -> None:
    """Check that migrated state is complete: sessions, files, instances.

    Example:

        migrate verify sessions --from dump.ndjson --redis redis://127.0.0.1:6379/0
    """


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


# --- sessions --------------------------------------------------------------------------------


def _session_options(command):
    """The options export-sessions and verify sessions share (they must map keys alike)."""
    from migrate.sessions import DEFAULT_LIFETIME, DEFAULT_PREFIX, LEGACY_PREFIX

    options = [
        click.option("--from", "sources", multiple=True, required=True, metavar="SOURCE",
                     help="A bridge URL (http://HOST:PORT), a FileSystemCache directory or an "
                     "NDJSON dump; repeat for several instances."),
        click.option("--redis", "redis_url", required=True, envvar="MIGRATE_REDIS_URL",
                     metavar="URL", help="The after-app's Redis (redis+cluster:// for a cluster)."),
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
@click.pass_context
def export_sessions_command(
    ctx: click.Context, sources: tuple[str, ...], redis_url: str, redis_cluster: bool,
    token: str | None, key_prefix: str, legacy_prefix: str, serializer: str, lifetime: int,
    as_json: bool, on_conflict: str, batch: int, jobs: int | None, dry_run: bool,
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
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from migrate.sessions import Options, export_sessions

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
    _summary(sessions_read=result.read, written=result.written, skipped=result.skipped,
             failed=result.failed)
    if as_json:
        data = dataclasses.asdict(result)
        data.update(ok=result.ok, rate=round(result.rate, 1))
        click.echo(to_json(data))
    else:
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
                          "(migrate.sessions) moves each to its sid on the user's next request",
                          highlight=False)
        if result.converted_kinds:
            kinds = ", ".join(f"{k} × {n}" for k, n in sorted(result.converted_kinds.items()))
            console.print(f"converted as Flask-Session reads them: {kinds}", highlight=False)
        if result.duplicates:
            console.print(f"{result.duplicates} sessions came from two sources: "
                          "the later-expiring copy was kept")
        _print_failures([(f.session, f.source, f.reason) for f in result.failures])
        verb = "would write" if dry_run else "wrote"
        console.print(f"{'[bold green]' if result.ok else '[bold red]'}{verb} "
                      f"{result.written:,} sessions[/] to {result.redis}", highlight=False)
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
    _summary(checked=result.checked, matching=result.matching,
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


# --- files -----------------------------------------------------------------------------------


def _byte_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _file_progress(as_json: bool, unit: str):
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TransferSpeedColumn,
    )

    columns = [TextColumn("{task.description}"), BarColumn(),
               TextColumn("{task.fields[files]} " + unit)]
    if unit == "files":
        columns += [DownloadColumn(binary_units=True), TransferSpeedColumn()]
    columns.append(TimeElapsedColumn())
    return Progress(*columns, console=err_console, transient=True, disable=as_json)


@cli.command("export-files")
@click.argument("sources", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--to", "target", required=True, metavar="s3://BUCKET[/PREFIX]",
              help="Where the objects go; keys are the relative paths under the prefix.")
@click.option("--endpoint-url", envvar="AWS_ENDPOINT_URL_S3", metavar="URL",
              help="An S3-compatible endpoint (MinIO, Ceph, R2, rclone); default: AWS.")
@click.option("--jobs", type=click.IntRange(1, 128), default=16, show_default=True,
              help="Concurrent transfers.")
@click.option("--multipart-threshold", type=click.IntRange(5, 5120), default=64,
              show_default=True, metavar="MIB", help="Files this size or larger go multipart.")
@click.option("--manifest", type=click.Path(dir_okay=False), metavar="FILE",
              help="Write one NDJSON line per file: path, key, size, sha256, status.")
@click.option("--state-file", type=click.Path(dir_okay=False), metavar="FILE",
              help="Where completed objects are remembered for fast re-runs "
              "(default: ~/.cache/migrate/export-files/).")
@click.option("--redis", "redis_url", envvar="MIGRATE_REDIS_URL", metavar="URL",
              help="The after-app's Redis: chunked uploads in progress are carried over.")
@click.option("--create-bucket", is_flag=True, help="Create the bucket if it does not exist.")
@click.option("--dry-run", is_flag=True, help="Print the plan; upload nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def export_files_command(
    ctx: click.Context, sources: tuple[str, ...], target: str, endpoint_url: str | None,
    jobs: int, multipart_threshold: int, manifest: str | None, state_file: str | None,
    redis_url: str | None, create_bucket: bool, dry_run: bool, as_json: bool,
) -> None:
    """Copy local upload folders into object storage, resumably; the source is never changed.

    Each file becomes the object PREFIX/<relative path> (POSIX, Unicode NFC), with its
    Content-Type, sha256 and mtime; every upload is checked by the server (Content-MD5).
    Objects already there with the same size and checksum are skipped, so a re-run (or a run
    after a crash) uploads only what is missing. Chunked uploads still in progress become S3
    multipart uploads with their state in --redis, so the client finishes on any after-instance.
    Credentials come from the usual AWS environment or config and are never shown.

    Example:

        migrate export-files instance-1/uploads instance-2/uploads --to s3://shop
        --endpoint-url http://127.0.0.1:9000 --redis redis://127.0.0.1:6379/0
    """
    from rich.markup import escape
    from rich.table import Table

    from migrate.files import MIB, export_files

    progress = _file_progress(as_json, "files")
    task = progress.add_task("dry run" if dry_run else "export", total=None, files="0")

    def on_progress(files: int, files_total: int, done: int, total: int) -> None:
        progress.update(task, completed=done, total=total or None,
                        files=f"{files:,}/{files_total:,}")

    with progress:
        result = export_files(list(sources), target, endpoint_url=endpoint_url, jobs=jobs,
                              threshold=multipart_threshold * MIB, manifest=manifest,
                              state_file=state_file, dry_run=dry_run,
                              create_bucket=create_bucket, redis_url=redis_url,
                              on_progress=on_progress)
    _summary(files=result.files, uploaded=result.uploaded, skipped=result.skipped,
             failed=result.failed, uploads_carried=len(result.uploads))
    if as_json:
        data = dataclasses.asdict(result)
        data.update(ok=result.ok, files_per_second=round(result.rate, 1),
                    mb_per_second=round(result.mb_per_s, 1))
        click.echo(to_json(data))
    else:
        for rec in result.plan:
            console.print(f"  would upload {rec.path} → {rec.key} ({_byte_size(rec.size)})",
                          highlight=False, markup=False)
        for rec in result.problems[:20]:
            mark = "[yellow]![/]" if rec.status != "failed" else "[red]✗[/]"
            console.print(f"  {mark} {escape(rec.path)}: {escape(rec.reason)}", highlight=False)
        if len(result.problems) > 20:
            console.print(f"  … and {len(result.problems) - 20} more (--json or --manifest "
                          "lists them all)")
        for up in result.uploads:
            mark = {"carried": "[green]✓[/]", "already-carried": "[green]✓[/]",
                    "planned": "·"}.get(up.status, "[red]✗[/]")
            console.print(f"  {mark} upload {up.upload_id} ({escape(up.filename)}, "
                          f"{up.chunks} chunks, "
                          f"{_byte_size(up.size)}): {up.status}"
                          f"{': ' + escape(up.reason) if up.reason else ''}", highlight=False)
        table = Table(title="dry run: nothing uploaded" if dry_run else None, box=None)
        for column in ("files", "to upload" if dry_run else "uploaded", "skipped",
                       "failed", "excluded"):
            table.add_column(column, justify="right", no_wrap=True)
        table.add_row(f"{result.files:,}", f"{result.planned if dry_run else result.uploaded:,}",
                      f"{result.skipped + result.duplicates:,}", f"{result.failed:,}",
                      f"{result.excluded:,}")
        console.print(table)
        if dry_run:
            planned_bytes = sum(rec.size for rec in result.plan)
            console.print(f"dry run: {result.planned:,} files ({_byte_size(planned_bytes)}) "
                          f"would be uploaded to {target} at {result.endpoint}; nothing written",
                          highlight=False)
        else:
            console.print(f"sent {_byte_size(result.uploaded_bytes)} in {result.seconds:.2f} s: "
                          f"{result.rate:,.0f} files/s, {result.mb_per_s:,.1f} MiB/s",
                          highlight=False)
            verdict = ("[bold green]export complete[/]" if result.ok
                       else "[bold red]export incomplete[/]")
            console.print(f"{verdict}: {target} at {result.endpoint}"
                          + (f"; manifest {result.manifest}" if result.manifest else ""),
                          highlight=False)
    if not result.ok:
        ctx.exit(1)


@verify.command("files")
@click.argument("sources", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--to", "target", required=True, metavar="s3://BUCKET[/PREFIX]",
              help="Where export-files put them.")
@click.option("--endpoint-url", envvar="AWS_ENDPOINT_URL_S3", metavar="URL",
              help="An S3-compatible endpoint; default: AWS.")
@click.option("--deep", is_flag=True, help="Download every object and hash it.")
@click.option("--redis", "redis_url", envvar="MIGRATE_REDIS_URL", metavar="URL",
              help="Also check chunked uploads in progress were carried into this Redis.")
@click.option("--jobs", type=click.IntRange(1, 128), default=16, show_default=True,
              help="Concurrent checks.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def verify_files_command(
    ctx: click.Context, sources: tuple[str, ...], target: str, endpoint_url: str | None,
    deep: bool, redis_url: str | None, jobs: int, as_json: bool,
) -> None:
    """Check every local file is in the bucket with equal size and sha256; exit 1 if not.

    The sha256 is read from the object's metadata (and the ETag compared with the MD5);
    --deep downloads each object and hashes the bytes.

    Example:

        migrate verify files instance-1/uploads --to s3://shop --endpoint-url
        http://127.0.0.1:9000
    """
    from rich.markup import escape

    from migrate.files import verify_files

    progress = _file_progress(as_json, "checked")
    task = progress.add_task("verify", total=None, files="0")

    def on_progress(files: int, total: int, _done: int, _total: int) -> None:
        progress.update(task, completed=files, total=total, files=f"{files:,}")

    with progress:
        result = verify_files(list(sources), target, endpoint_url=endpoint_url, deep=deep,
                              jobs=jobs, redis_url=redis_url, on_progress=on_progress)
    _summary(checked=result.checked, matching=result.matching, missing=len(result.missing),
             different=len(result.different))
    if as_json:
        data = dataclasses.asdict(result)
        data["ok"] = result.ok
        click.echo(to_json(data))
    else:
        rows = [("missing", d) for d in result.missing] + [("different", d)
                                                           for d in result.different]
        for kind, diff in rows[:50]:
            console.print(f"  [red]✗[/] {kind}: {escape(diff.key)} ({escape(diff.path)}): "
                          f"{escape(diff.problem)}",
                          highlight=False)
        if len(rows) > 50:
            console.print(f"  … and {len(rows) - 50} more (--json lists them all)")
        how = "downloaded and hashed" if deep else "size, sha256 metadata and MD5"
        if result.ok:
            console.print(f"[bold green]files verified[/]: {result.matching:,} of "
                          f"{result.checked:,} match in {target} ({how}, "
                          f"{result.seconds:.1f} s)", highlight=False)
        else:
            console.print(f"[bold red]{len(result.missing):,} missing, "
                          f"{len(result.different):,} different[/] of {result.checked:,} "
                          f"({result.matching:,} match)", highlight=False)
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


# --- db --------------------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """The after-app's database migrations (alembic), run on the existing database.

    Example:

        migrate db upgrade --database-url postgresql+psycopg://127.0.0.1/shop
    """


def _db_options(command):
    options = [
        click.option("--database-url", envvar="DATABASE_URL", metavar="URL",
                     help="The shop's database (default: $DATABASE_URL)."),
        click.option("--prefix", default="", metavar="PREFIX",
                     help="The key prefix the files were exported under (s3://BUCKET/PREFIX)."),
        click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@db.command("upgrade")
@_db_options
@click.option("--revision", default="head", show_default=True,
              help="Upgrade to this revision: 0002 expands (both apps can run on it), head "
              "also contracts (old path columns dropped).")
@click.option("--dry-run", is_flag=True, help="Show where the database is; change nothing.")
def db_upgrade_command(database_url: str | None, prefix: str, as_json: bool, revision: str,
                       dry_run: bool) -> None:
    """Upgrade the before-app's database to the after-app's schema; local paths become keys.

    A database without alembic is stamped at 0001 (the before schema) first. For a rolling
    cut-over run it twice: `--revision 0002` (expand) before the first after-instance starts
    (adds users.avatar_key and files.key, filled with the object keys export-files gave those
    files, and triggers that keep them in step with the before-app's writes), then the default
    head (contract: drops the path columns) once every instance is rolled and verified. Use the
    same --prefix both times. Undo with `migrate db downgrade`.

    Examples:

        migrate db upgrade --revision 0002 --database-url sqlite:///instance/shop.db

        migrate db upgrade --database-url sqlite:///instance/shop.db
    """
    from migrate.runbook.db import upgrade
    from migrate.runbook.journal import SUMMARY_KEY

    result = upgrade(database_url, revision=revision, prefix=prefix, dry_run=dry_run)
    if not dry_run:  # the runbook shows which revision the expand or contract left
        click.get_current_context().meta[SUMMARY_KEY] = {
            "at revision": result.after, "avatar rows": result.avatars, "file rows": result.files}
    if as_json:
        click.echo(to_json(result))
        return
    stamp = " (stamped 0001: the before-app's schema)" if result.stamped else ""
    if dry_run:
        first = " (after stamping 0001)" if result.stamped else ""
        console.print(f"dry run: {result.database} is at {result.before or 'no revision'}: "
                      f"{result.state}; upgrading to {result.target}{first} would give "
                      f"{result.avatars} avatar and {result.files} file rows object keys",
                      highlight=False)
        return
    console.print(f"[bold green]database upgraded[/]: {result.database} "
                  f"{result.before or 'none'} → {result.after}{stamp}: {result.state}; "
                  f"{result.avatars} avatar and {result.files} file rows point at object keys "
                  f"({result.seconds:.1f} s)", highlight=False)


@db.command("downgrade")
@_db_options
@click.option("--revision", default="0001", show_default=True,
              help="Downgrade to this revision: 0002 brings the path columns back beside the "
              "keys, 0001 is the before schema.")
def db_downgrade_command(database_url: str | None, prefix: str, as_json: bool,
                         revision: str) -> None:
    """Undo `db upgrade`: object keys back to local paths (use the upgrade's --prefix).

    Example:

        migrate db downgrade --database-url sqlite:///instance/shop.db --revision 0001
    """
    from migrate.runbook.db import downgrade

    result = downgrade(database_url, revision=revision, prefix=prefix)
    if as_json:
        click.echo(to_json(result))
        return
    console.print(f"[bold green]database downgraded[/]: {result.database} {result.before} → "
                  f"{result.after}: {result.state}", highlight=False)


# --- scan and diff: the state-trap audit -----------------------------------------------------


@cli.command()
@click.argument("path", type=click.Path(exists=True))
@click.option("--format", "fmt", type=click.Choice(["text", "json", "sarif"]), default="text",
              show_default=True, help="text for people, json for scripts, sarif for code "
              "scanning (GitHub).")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--fail-on", type=click.Choice(["error", "warning", "note", "never"]),
              default="error", show_default=True,
              help="Exit 1 when a finding is at this level or more severe.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True),
              help="Write the report to FILE (the summary still goes to the terminal).")
@click.option("--include-tests", is_flag=True, help="Scan test files and folders too.")
@click.option("--exclude", multiple=True, metavar="GLOB",
              help="Skip files whose relative path or name matches GLOB; repeatable.")
@click.option("--jobs", type=click.IntRange(1, 64), default=None,
              help="Processes to parse with (default: one per CPU, at most 4, for big trees).")
@click.pass_context
def scan(ctx: click.Context, path: str, fmt: str, as_json: bool, fail_on: str,
         output: str | None, include_tests: bool, exclude: tuple[str, ...],
         jobs: int | None) -> None:
    """Audit a Flask codebase for state that breaks on two instances (nothing is run).

    Finds module-level state changed in requests, local file writes and serving, per-instance
    sessions, per-process or development SECRET_KEYs, process-local caches, background threads
    and SQLite on local disk; each finding says what breaks and names the fix. Silence one
    finding with a `# migrate: ignore[RULE]` comment on its line. Exit 1 when a finding
    reaches --fail-on, 2 on a usage error.

    Example:

        migrate scan sample_stateful_app --format sarif -o migrate.sarif
    """
    from pathlib import Path

    from migrate.scan import scan_path
    from migrate.scan.report import json_report, sarif_report, text_report

    fmt = "json" if as_json else fmt
    result = scan_path(path, include_tests=include_tests, exclude=exclude, jobs=jobs)
    counts = result.counts
    _summary(files=result.files, errors=counts.get("error", 0),
             warnings=counts.get("warning", 0), notes=counts.get("note", 0))
    if fmt == "text":
        if output:
            with open(output, "w", encoding="utf-8") as handle:
                Console(file=handle, soft_wrap=True, no_color=True, width=120).print(
                    text_report(result), highlight=False)
        else:
            console.print(text_report(result), highlight=False)
    else:
        report = json_report(result) if fmt == "json" else sarif_report(result)
        if output:
            Path(output).write_text(report + "\n", encoding="utf-8")
        else:
            click.echo(report)
    if output:
        counts = ", ".join(f"{n} {s}" for s, n in result.counts.items() if n) or "none"
        err_console.print(f"{len(result.findings)} findings ({counts}) in {result.files} files "
                          f"written to {output}", highlight=False)
    if result.fails(fail_on):
        ctx.exit(1)


@cli.command()
@click.argument("before", required=False, type=click.Path(exists=True, file_okay=False))
@click.argument("after", required=False, type=click.Path(exists=True, file_okay=False))
@click.option("--html", "html_file", type=click.Path(dir_okay=False, writable=True),
              help="Also write the annotated diff as one self-contained HTML page.")
@click.option("--context", type=click.IntRange(0, 50), default=3, show_default=True,
              help="Unchanged lines shown around each change.")
@click.option("--json", "as_json", is_flag=True, help="Print the hunks and annotations as JSON.")
def diff(before: str | None, after: str | None, html_file: str | None, context: int,
         as_json: bool) -> None:
    """Side-by-side diff of two trees, each hunk annotated with the state traps it removes.

    BEFORE and AFTER default to the two sample shops (stateful, stateless).

    Example:

        migrate diff sample_stateful_app sample_stateless_app --html diff.html
    """
    from pathlib import Path

    from migrate.scan.diff import diff_trees, render_html, render_rich

    if (before is None) != (after is None):
        raise click.UsageError("give both BEFORE and AFTER, or neither (the sample shops)")
    result = diff_trees(before, after, context=context)
    if html_file:
        Path(html_file).write_text(render_html(result), encoding="utf-8")
    if as_json:
        click.echo(to_json(result))
    else:
        console.print(render_rich(result), highlight=False, soft_wrap=False)
        if html_file:
            console.print(f"annotated diff written to {html_file}", highlight=False)


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


# --- switch-config and the runbook (steps, status) -------------------------------------------


@cli.command("switch-config")
@click.argument("env_file", type=click.Path(dir_okay=False))
@click.option("--to", "target", type=click.Choice(["stateless"]), default="stateless",
              show_default=True, help="The configuration to switch to.")
@click.option("--redis", "redis_url", metavar="URL", help="The shared Redis (REDIS_URL).")
@click.option("--s3", "s3_url", metavar="URL",
              help="An S3 endpoint http(s)://HOST:PORT (S3_ENDPOINT_URL) or s3://BUCKET.")
@click.option("--bucket", metavar="NAME", help="The bucket (S3_BUCKET).")
@click.option("--database-url", metavar="URL", help="The shared database (kept when set).")
@click.option("--secret-key-from-env", is_flag=True,
              help="SECRET_KEY comes from the environment, not the file.")
@click.option("--dry-run", is_flag=True, help="Probe the stores, print the diff, write nothing.")
@click.option("--rollback", is_flag=True, help="Restore the most recent backup.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def switch_config_command(
    ctx: click.Context, env_file: str, target: str, redis_url: str | None, s3_url: str | None,
    bucket: str | None, database_url: str | None, secret_key_from_env: bool, dry_run: bool,
    rollback: bool, as_json: bool,
) -> None:
    """Rewrite a .env file for the stateless app, after probing every store for real.

    Sets SESSION_TYPE=redis, REDIS_URL, S3_ENDPOINT_URL, S3_BUCKET and DATABASE_URL, comments
    out before-only keys with a `# migrate: was ...` line, keeps comments and order. Writes
    nothing unless Redis, S3 and the database each answer a round trip (exit 2, one line per
    failure). Keeps a timestamped backup beside the file; secrets are masked in all output.

    Example:

    \b
        migrate switch-config .env --to stateless --redis redis://10.0.0.5:6379/0 \\
            --s3 http://10.0.0.6:9000 --bucket shop --dry-run
        migrate switch-config .env --rollback
    """
    from rich.markup import escape

    from migrate.runbook.journal import ERROR_KEY, SUMMARY_KEY
    from migrate.runbook.switch import ProbesFailed, switch_config
    from migrate.runbook.switch import rollback as rollback_config

    if rollback:
        restored = rollback_config(env_file)
        ctx.meta[SUMMARY_KEY] = {"rolled back": 1}
        if as_json:
            click.echo(to_json(restored))
        else:
            console.print(f"[bold green]restored[/] {restored.path} from {restored.backup} "
                          f"({restored.backups_left} older backups left)", highlight=False)
        return
    try:
        result = switch_config(env_file, target, redis_url=redis_url, s3_url=s3_url,
                               bucket=bucket, database_url=database_url,
                               secret_key_from_env=secret_key_from_env, dry_run=dry_run)
    except ProbesFailed as exc:
        ctx.meta[ERROR_KEY] = str(exc)
        if as_json:
            click.echo(to_json(exc.result))
        for line in exc.lines:
            err_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False)
        err_console.print(f"nothing was written to {env_file}", highlight=False)
        ctx.exit(2)
    ctx.meta[SUMMARY_KEY] = {"keys changed": len(result.changed),
                             "keys commented out": len(result.removed),
                             "stores probed": len(result.probes)}
    if as_json:
        data = dataclasses.asdict(result)
        data["ok"] = result.ok
        click.echo(to_json(data))
        return
    for probe in result.probes:
        console.print(f"[green]✓[/] {probe.target:<9} {probe.url}: {probe.detail} "
                      f"({probe.seconds * 1000:.0f} ms)", highlight=False, markup=True)
    if result.diff:
        from rich.syntax import Syntax

        console.print(Syntax(result.diff, "diff", theme="ansi_dark", background_color="default"))
    if dry_run:
        console.print(f"dry run: {len(result.changed) + len(result.removed)} changes, nothing "
                      f"written to {env_file}", highlight=False)
    elif result.written:
        console.print(f"[bold green]switched[/] {env_file} to {target}: set "
                      f"{', '.join(result.changed) or 'nothing'}; commented out "
                      f"{', '.join(result.removed) or 'nothing'}; backup {result.backup} "
                      f"(undo: migrate switch-config {env_file} --rollback)", highlight=False)
    else:
        console.print(f"{env_file} is already configured for {target}: nothing written",
                      highlight=False)


_STATE_STYLE = {"done": "green", "failed": "bold red", "pending": "yellow", "skipped": "dim"}


def _project_option(command):
    command = click.option("--json", "as_json", is_flag=True,
                           help="Print the runbook as JSON.")(command)
    return click.option("--project", type=click.Path(file_okay=False), envvar="MIGRATE_PROJECT",
                        help="The migrated project's folder (default: $MIGRATE_PROJECT or the "
                        "current directory).")(command)


def _runbook_json(book: Any) -> str:
    data = dataclasses.asdict(book)
    data["done"] = book.done
    return to_json(data)


@cli.group("steps", invoke_without_command=True)
@_project_option
@click.pass_context
def steps_group(ctx: click.Context, project: str | None, as_json: bool) -> None:
    """The migration runbook: every step, why it exists, its state and the next command.

    Starts the journal in PROJECT/.migrate/ (runbook commands are recorded from then on). Mark
    the manual steps (bridge-on, roll-instances, bridge-off) with `migrate steps done STEP`.

    Example:

    \b
        migrate steps --project /srv/shop
        migrate steps done bridge-on
    """
    import os

    from rich.markup import escape

    from migrate.runbook import journal
    from migrate.runbook import steps as runbook

    ctx.obj["project"] = project
    if ctx.invoked_subcommand is not None:
        return
    journal.start(project)
    book = runbook.build(project)
    if as_json:
        click.echo(_runbook_json(book))
        return
    console.print(f"[bold]Migration runbook[/] for {book.project} "
                  f"({book.done}/{len(book.steps)} done; journal {book.journal})",
                  highlight=False)
    if os.path.realpath(book.project) != os.path.realpath(os.getcwd()):
        # The hook journals into $MIGRATE_PROJECT or the cwd: say how to reach this one.
        console.print(f"record commands here: run them in {book.project} or set "
                      f"MIGRATE_PROJECT={book.project}", highlight=False, markup=False)
    for s in book.steps:
        style = _STATE_STYLE[s.state]
        console.print(f"\n[bold]{s.number:>2}. {s.title}[/] [{style}]{s.state}[/]",
                      highlight=False)
        console.print(f"    {s.why}", highlight=False, markup=False)
        if s.did:
            console.print(f"    did: {s.did}", highlight=False, markup=False)
        if s.error:
            console.print(f"    [red]failed:[/] {escape(s.error)}", highlight=False)
        if s.state in ("pending", "failed"):
            verb = "retry" if s.state == "failed" else "run"
            console.print(f"    {verb}: [cyan]{escape(s.command)}[/]", highlight=False)
    if book.next_command:
        console.print(f"\n[bold]next:[/] {escape(book.next_command)}", highlight=False)
    else:
        console.print("\n[bold green]every step is done[/]", highlight=False)


def _mark_step(ctx: click.Context, step: str, done: bool) -> None:
    from migrate.runbook import journal

    entry = journal.mark(step, done, ctx.obj.get("project"))
    console.print(f"{step}: {'done' if done else 'pending again'} ({entry.time})",
                  highlight=False)


@steps_group.command("done")
@click.argument("step")
@click.pass_context
def steps_done_command(ctx: click.Context, step: str) -> None:
    """Mark a step done by hand (the manual steps: bridge-on, roll-instances, bridge-off).

    Example:

        migrate steps done roll-instances
    """
    _mark_step(ctx, step, True)


@steps_group.command("reset")
@click.argument("step")
@click.pass_context
def steps_reset_command(ctx: click.Context, step: str) -> None:
    """Set a step back to pending (its journal lines are kept).

    Example:

        migrate steps reset switch-config
    """
    _mark_step(ctx, step, False)


@cli.command("status")
@_project_option
def status_command(project: str | None, as_json: bool) -> None:
    """A compact table of the runbook's step states and the next command to run.

    Example:

        migrate status --project /srv/shop
    """
    from rich.markup import escape
    from rich.table import Table

    from migrate.runbook import steps as runbook

    book = runbook.build(project)
    if as_json:
        click.echo(_runbook_json(book))
        return
    table = Table(box=None)
    for column in ("#", "step", "state", "did / error"):
        table.add_column(column, no_wrap=column != "did / error")
    for s in book.steps:
        style = _STATE_STYLE[s.state]
        table.add_row(str(s.number), s.name, f"[{style}]{s.state}[/]",
                      f"[red]{escape(s.error)}[/]" if s.error else escape(s.did))
    console.print(table)
    if book.next_command:
        verb = "retry" if book.next_step and any(
            s.name == book.next_step and s.state == "failed" for s in book.steps) else "next"
        console.print(f"[bold]{verb}:[/] {escape(book.next_command)}", highlight=False)
    else:
        console.print("[bold green]every step is done[/]", highlight=False)
