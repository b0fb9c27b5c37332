"""The root group, the error edge, and what every command module shares.

Each command parses options, calls one library function, and renders the dataclass it returns.
Expected failures (``MigrateError``) are caught once, in ``main``, and printed as one line.
"""

from __future__ import annotations

import dataclasses
import importlib
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


# Command name -> (module under migrate.cli that registers it, its short help). A command's
# module is imported only when that command runs: `migrate scan` does not pay for the
# exporters' imports. The short help lets `--help` list every command without importing any;
# tests/test_cli_lazy.py checks this table against the commands the modules register.
COMMANDS: dict[str, tuple[str, str]] = {
    "cluster": ("stores", "N gunicorn instances of either shop on 127.0.0.1, optionally behind "
                          "HAProxy."),
    "db": ("db", "The app's own alembic migrations, run on the database the before-app left."),
    "demo": ("demo", "The whole story: the before-shop failing on two instances, then migrated "
                     "live."),
    "deploy": ("deploy", "Render the files that deploy a stateless app on many hosts."),
    "diff": ("scan", "Side-by-side diff of two trees, each hunk annotated with the state traps "
                     "it removes."),
    "export-files": ("files", "Copy local upload folders into object storage, resumably; the "
                              "source is never changed."),
    "export-sessions": ("sessions", "Move live and on-disk sessions into Redis so no user is "
                                    "logged out."),
    "journey": ("demo", "Run the shop's user journey, each request to the next instance in "
                        "turn."),
    "scan": ("scan", "Audit a Flask codebase for state that breaks on two instances (nothing is "
                     "run)."),
    "status": ("runbook", "A compact table of the runbook's step states and the next command to "
                          "run."),
    "steps": ("runbook", "The migration runbook: every step, why it exists, its state and the "
                         "next command."),
    "stores": ("stores", "Embedded real stores for the shop: redis-server and an S3 endpoint "
                         "(rclone serve s3)."),
    "switch-config": ("switch", "Rewrite a .env file for the stateless app, after probing every "
                                "store for real."),
}
VERIFY_COMMANDS: dict[str, tuple[str, str]] = {
    "files": ("files", "Check every local file is in the bucket with equal size and sha256; "
                       "exit 1 if not."),
    "instances": ("instances", "Run the journey across instances, each request to the next; "
                               "exit 1 when a step fails."),
    "sessions": ("sessions", "Check every source session is in Redis with equal data and TTL; "
                             "exit 1 on a difference."),
}


class LazyGroup(click.Group):
    """A group whose commands live in modules imported on first use (click's lazy-group pattern)."""

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(self.lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            # Importing the module runs its decorators, which register the command on us.
            importlib.import_module(f"migrate.cli.{self.lazy[cmd_name][0]}")
        return self.commands.get(cmd_name)

    def load_all(self) -> None:
        """Import every command's module (for tools that walk ``.commands``)."""
        for name in self.lazy:
            self.get_command(click.Context(self), name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List every command, taking an unloaded one's short help from the table."""
        names = [n for n in self.list_commands(ctx)
                 if n not in self.commands or not self.commands[n].hidden]
        if not names:
            return
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = []
        for name in names:
            cmd: click.Command | None = self.commands.get(name)
            if cmd is None:  # shortened exactly as click shortens a loaded command's help
                cmd = click.Command(name, help=self.lazy[name][1])
            short = cmd.get_short_help_str(limit)
            rows.append((name, short))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


class MigrateGroup(LazyGroup):
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


@click.group(cls=MigrateGroup, lazy=COMMANDS,
             context_settings={"help_option_names": ["-h", "--help"]})
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


@cli.group(cls=LazyGroup, lazy=VERIFY_COMMANDS)
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
