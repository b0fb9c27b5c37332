"""`migrate steps` and `migrate status`: the runbook and its journal."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from migrate.cli.base import cli, console, to_json

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
    from migrate.runbook.steps import mark

    entry = mark(step, done, ctx.obj.get("project"))
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
