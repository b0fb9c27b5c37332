"""`migrate verify instances`: the journey across instances, and the kill test."""

from __future__ import annotations

from typing import Any

import click

from migrate.cli.base import (
    console,
    err_console,
    interrupt_on_sigterm,
    record_summary,
    to_json,
    verify,
)


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
    from migrate.harness.instances import verify_instances, verify_started

    _check_options(urls, start_app, kill_one)

    def narrate(text: str) -> None:
        if not as_json:
            err_console.print(f"▸ {text}", highlight=False, markup=False)

    def on_step(step: Any) -> None:
        narrate(f"{'ok' if step.ok else 'FAILED'} step {step.number} {step.name} "
                f"on {step.instance or '-'}")

    file_size = file_mib * 1024 * 1024
    if start_app:
        interrupt_on_sigterm()  # Ctrl-C or SIGTERM: the library's `with` blocks stop it all
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
    record_summary(steps_passed=sum(st.ok for st in result.journey.steps),
             instances=len(result.instances))
    if as_json:
        click.echo(to_json(result.to_dict()))
    else:
        _render(result)
    if not result.ok:
        ctx.exit(1)


def _check_options(urls: tuple[str, ...], start_app: str | None, kill_one: bool) -> None:
    """URLs or --start, and --kill-one only on instances migrate started itself."""
    from migrate.errors import UsageError

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


def _render(result: Any) -> None:
    """Every step with the instance that served it, the kill, and the verdict."""
    from rich.markup import escape
    from rich.table import Table

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
