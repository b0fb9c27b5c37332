"""`migrate export-files` and `verify files`.

What came from the data (file names, keys, reasons, an S3 server's messages) is printed as
``Text``, never parsed as markup, and through ``_shown``: control characters, terminal escapes
and bidi overrides appear as ``\\xNN`` / ``\\uNNNN``, and a name that is not UTF-8 with its
bytes escaped, so a name can neither restyle the terminal nor forge a line of the report.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import click
from rich.text import Text

from migrate.cli.base import cli, console, err_console, record_summary, to_json, verify

# C0 and C1 controls, DEL, and the invisible marks that reorder or break a line on screen.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029"
                     r"\u202a-\u202e\u2066-\u2069]")


def _shown(value: object) -> str:
    """Text from the data, safe to print: every unsafe character as a visible escape."""
    text = str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a name that is not UTF-8 (surrogate escapes): its bytes
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return _UNSAFE.sub(_escape_char, text)


def _escape_char(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _line(*parts: str | tuple[str, str]) -> Text:
    """One line: plain strings are data (shown safely), (text, style) pairs are ours."""
    return Text.assemble(*(p if isinstance(p, tuple) else _shown(p) for p in parts))


_MARKS = {"failed": ("✗", "red"), "carried": ("✓", "green"), "already-carried": ("✓", "green"),
          "planned": ("·", "")}

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
    record_summary(files=result.files, uploaded=result.uploaded, skipped=result.skipped,
             failed=result.failed, uploads_carried=len(result.uploads))
    if as_json:
        data = dataclasses.asdict(result)
        data.update(ok=result.ok, files_per_second=round(result.rate, 1),
                    mb_per_second=round(result.mb_per_s, 1))
        click.echo(to_json(data))
    else:
        _render_export(result, target, dry_run)
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
    from migrate.files import verify_files

    progress = _file_progress(as_json, "checked")
    task = progress.add_task("verify", total=None, files="0")

    def on_progress(files: int, total: int, _done: int, _total: int) -> None:
        progress.update(task, completed=files, total=total, files=f"{files:,}")

    with progress:
        result = verify_files(list(sources), target, endpoint_url=endpoint_url, deep=deep,
                              jobs=jobs, redis_url=redis_url, on_progress=on_progress)
    record_summary(checked=result.checked, matching=result.matching, missing=len(result.missing),
             different=len(result.different))
    if as_json:
        data = dataclasses.asdict(result)
        data["ok"] = result.ok
        click.echo(to_json(data))
    else:
        _render_verify(result, target, deep)
    if not result.ok:
        ctx.exit(1)


def _render_verify(result: Any, target: str, deep: bool) -> None:
    """Each file missing or different (50 at most), then the verdict."""
    rows = [("missing", d) for d in result.missing] + [("different", d)
                                                       for d in result.different]
    for kind, diff in rows[:50]:
        console.print(_line("  ", ("✗", "red"), f" {kind}: ", diff.key, " (", diff.path, "): ",
                            diff.problem), highlight=False)
    if len(rows) > 50:
        console.print(f"  … and {len(rows) - 50} more (--json lists them all)")
    how = "downloaded and hashed" if deep else "size, sha256 metadata and MD5"
    if result.ok:
        console.print(_line(("files verified", "bold green"),
                            f": {result.matching:,} of {result.checked:,} match in ", target,
                            f" ({how}, {result.seconds:.1f} s)"), highlight=False)
    else:
        console.print(_line((f"{len(result.missing):,} missing, {len(result.different):,} "
                             "different", "bold red"),
                            f" of {result.checked:,} ({result.matching:,} match)"),
                      highlight=False)


def _render_export(result: Any, target: str, dry_run: bool) -> None:
    """The plan or problems, carried uploads, the counts table and the verdict."""
    from rich.table import Table

    for rec in result.plan:
        console.print(_line("  would upload ", rec.path, " → ", rec.key,
                            f" ({_byte_size(rec.size)})"), highlight=False)
    for rec in result.problems[:20]:
        mark = ("!", "yellow") if rec.status != "failed" else ("✗", "red")
        console.print(_line("  ", mark, " ", rec.path, ": ", rec.reason), highlight=False)
    if len(result.problems) > 20:
        console.print(f"  … and {len(result.problems) - 20} more (--json or --manifest "
                      "lists them all)")
    for up in result.uploads:
        console.print(_line("  ", _MARKS.get(up.status, _MARKS["failed"]), " upload ",
                            up.upload_id, " (", up.filename, f", {up.chunks} chunks, "
                            f"{_byte_size(up.size)}): {up.status}",
                            ": " + up.reason if up.reason else ""), highlight=False)
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
        console.print(_line(f"dry run: {result.planned:,} files ({_byte_size(planned_bytes)}) "
                            "would be uploaded to ", target, " at ", result.endpoint,
                            "; nothing written"), highlight=False)
    else:
        console.print(f"sent {_byte_size(result.uploaded_bytes)} in {result.seconds:.2f} s: "
                      f"{result.rate:,.0f} files/s, {result.mb_per_s:,.1f} MiB/s",
                      highlight=False)
        verdict = (("export complete", "bold green") if result.ok
                   else ("export incomplete", "bold red"))
        console.print(_line(verdict, ": ", target, " at ", result.endpoint,
                            *(("; manifest ", result.manifest) if result.manifest else ())),
                      highlight=False)
