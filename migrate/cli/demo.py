"""`migrate journey` and `migrate demo`: the shop's story, told on real servers."""

from __future__ import annotations

from typing import Any

import click

from migrate.cli.base import (
    cli,
    console,
    err_console,
    interrupt_on_sigterm,
    to_json,
)


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
        _render_journey(result)
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

    interrupt_on_sigterm()
    try:
        result = run_demo(narrate, users=users,
                          keep_running=wait_for_browser if keep_running else None)
    except KeyboardInterrupt:
        err_console.print("stopped: every process the demo started has been stopped")
        ctx.exit(130)
    if as_json:
        click.echo(to_json(result))
    else:
        _render_demo(result)
    if not result.ok:
        ctx.exit(1)


def _render_demo(result: Any) -> None:
    """The journeys table, then the migration's closing table (what the users lost)."""
    from rich.table import Table

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
                ("cart items lost", cut.lost_cart_items), ("files lost", cut.lost_files),
                ("API clients logged out", cut.api_logouts),
                ("order events missed", cut.events_missed), ("items oversold", cut.oversold)]
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


def _render_journey(result: Any) -> None:
    """Which instance served how many steps, and the verdict."""
    from rich.table import Table

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
