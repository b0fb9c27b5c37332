"""`migrate scan` and `migrate diff`: the state-trap audit."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import click
from rich.console import Console

from migrate.cli.base import cli, console, err_console, record_summary, to_json
from migrate.errors import UsageError

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
    from migrate.scan import scan_path
    from migrate.scan.report import json_report, sarif_report, text_report

    fmt = "json" if as_json else fmt
    result = scan_path(path, include_tests=include_tests, exclude=exclude, jobs=jobs)
    counts = result.counts
    record_summary(files=result.files, errors=counts.get("error", 0),
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


def sample_shops() -> tuple[Path, Path]:
    """The two demo shops (before, after), wherever they are installed; nothing is imported."""
    out = []
    for name in ("sample_stateful_app", "sample_stateless_app"):
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise UsageError(f"{name} is not installed: give BEFORE and AFTER folders")
        out.append(Path(list(spec.submodule_search_locations)[0]))
    return out[0], out[1]


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
    from migrate.scan.diff import diff_trees, render_html, render_rich

    if before is not None and after is not None:
        result = diff_trees(before, after, context=context)
    elif before is None and after is None:
        result = diff_trees(*sample_shops(), context=context)
    else:
        raise click.UsageError("give both BEFORE and AFTER, or neither (the sample shops)")
    if html_file:
        Path(html_file).write_text(render_html(result), encoding="utf-8")
    if as_json:
        click.echo(to_json(result))
    else:
        console.print(render_rich(result), highlight=False, soft_wrap=False)
        if html_file:
            console.print(f"annotated diff written to {html_file}", highlight=False)
