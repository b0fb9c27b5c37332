"""The root group, the error edge, and what every command module shares.

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
from rich.text import Text

from migrate.errors import MigrateError

# soft_wrap: a line is one line (greppable), however narrow the terminal.
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)
_ARGV_KEY = "migrate.argv"


class MigrateGroup(click.Group):
    """A group that turns MigrateError into one line and an exit code (``--debug`` re-raises)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[_ARGV_KEY] = list(args)  # the command line as typed, for the journal
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        outcome = _Outcome()
        try:
            result = super().invoke(ctx)
            outcome.exit_code = 0
            return result
        except MigrateError as exc:
            outcome.exit_code, outcome.error = exc.exit_code, str(exc)
            if ctx.obj and ctx.obj.get("debug"):
                raise
            # The message is text, never markup: "[tool.migrate]" or a path must print as is.
            err_console.print(Text.assemble(("error:", "bold red"), " ", str(exc)),
                              highlight=False)
            sys.exit(exc.exit_code)
        except click.exceptions.Exit as exc:
            outcome.exit_code = exc.exit_code
            raise
        except click.UsageError:
            outcome.exit_code = None  # a mistyped command is not a failed step: not journaled
            raise
        finally:  # journal runbook commands; a journal failure must never break the command
            try:
                from migrate.runbook.journal import record_command
                record_command(self, ctx.meta.get(_ARGV_KEY, []), outcome.exit_code,
                               outcome.error, ctx.meta)
            except Exception as exc:
                err_console.print(f"warning: journal not written: {exc}", highlight=False,
                                  markup=False)


@dataclasses.dataclass
class _Outcome:
    """How a command ended, for the journal: its exit code (None: not a step) and error line."""

    exit_code: int | None = 1
    error: str | None = None


def to_json(result: Any) -> str:
    """Render a result dataclass (or list of them) as stable JSON."""

    def default(obj: Any) -> Any:
        if dataclasses.is_dataclass(obj):
            return dataclasses.asdict(obj)
        return str(obj)

    if dataclasses.is_dataclass(result):
        result = dataclasses.asdict(result)
    return json.dumps(result, indent=2, sort_keys=True, default=default)


def record_summary(**counts: Any) -> None:
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




@cli.group()
def verify() -> None:
    """Check that migrated state is complete: sessions, files, instances.

    Example:

        migrate verify sessions --from dump.ndjson --redis redis://127.0.0.1:6379/0
    """


def interrupt_on_sigterm() -> None:
    """SIGINT, SIGTERM and SIGHUP stop us like Ctrl-C: the `with` blocks stop every server."""
    import signal

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a shell starts background jobs with SIGINT ignored, and Python keeps that.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)


def wait_for_ctrl_c() -> None:
    """Block until Ctrl-C (or a signal interrupt_on_sigterm turned into one)."""
    import time

    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
