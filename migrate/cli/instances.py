"""`migrate verify instances`: the journey across instances, and the kill test."""

from __future__ import annotations

from pathlib import Path
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
              help="With --start or --app: how many instances.")
@click.option("--kill-one", is_flag=True,
              help="With --start: SIGKILL one instance at the chunked upload; the journey "
                   "must still pass. With --app: one instance mid-suite.")
@click.option("--app", "app_spec", metavar="SPEC",
              help="Run YOUR app's own tests on 1 and on N instances of it instead of the "
                   "journey: the app as gunicorn takes it, e.g. 'myapp:create_app()'.")
@click.option("--tests", "tests", multiple=True, metavar="PATH",
              help="With --app: the tests to run (repeatable; default: tests).")
@click.option("--app-env", multiple=True, metavar="KEY=VALUE",
              help="With --app: configuration for every instance (repeatable); {redis} {s3} "
                   "{bucket} {database_url} {instance} {instance_dir} name the shared stores.")
@click.option("--app-dir", type=click.Path(file_okay=False, path_type=Path),
              help="With --app: the folder the app is imported from (default: here).")
@click.option("--app-prepare", multiple=True, metavar="COMMAND",
              help="With --app: run once before the instances start, e.g. a schema upgrade.")
@click.option("--app-worker", multiple=True, metavar="COMMAND",
              help="With --app: a side process beside the instances, e.g. 'rq worker'.")
@click.option("--client-fixture", multiple=True, metavar="NAME",
              help="With --app: the suite's test-client fixture (e.g. client); it becomes the "
                   "instance client. Not needed when conftest aliases it to instance_client.")
@click.option("--pytest-args", default="", metavar="ARGS",
              help="With --app: more pytest arguments, e.g. \"-k 'not slow'\".")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def verify_instances_command(
    ctx: click.Context, urls: tuple[str, ...], user: str, password: str | None, file_mib: int,
    start_app: str | None, instances: int, kill_one: bool, app_spec: str | None,
    as_json: bool, **app_options: Any,
) -> None:
    """Run the journey across instances, each request to the next; exit 1 when a step fails.

    Shows every step with the instance that served it (X-Instance). The kill test needs to
    kill an instance, which migrate only does to processes it started: --kill-one goes with
    --start, which starts embedded Redis, S3 and N instances, SIGKILLs one at the chunked
    upload, and checks the journey still passes on the others.

    With --app, the proof is your own test suite instead: its tests (written against Flask's
    test client) run through the parity plugin on 1 instance and on N, side by side; the table
    shows which pass on one and fail on N, and the instance each of their last requests hit.

    Example:

        migrate verify instances http://127.0.0.1:8001 http://127.0.0.1:8002

        migrate verify instances --start stateless --instances 2 --kill-one

        migrate verify instances --app 'myapp:create_app()' --tests tests --client-fixture client
    """
    from migrate.harness.instances import verify_instances, verify_started

    if app_spec:
        _check_app_options(urls, start_app)
        _verify_app(ctx, app_spec, instances, kill_one, as_json, **app_options)
        return
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


def _check_app_options(urls: tuple[str, ...], start_app: str | None) -> None:
    from migrate.errors import UsageError

    if urls or start_app:
        raise UsageError("--app runs your app's own tests on instances migrate starts: leave "
                         "out the URLs and --start (they run the shop's journey)")


def _verify_app(ctx: click.Context, app_spec: str, instances: int, kill_one: bool,
                as_json: bool, *, tests: tuple[str, ...], app_env: tuple[str, ...],
                app_dir: Path | None, app_prepare: tuple[str, ...],
                app_worker: tuple[str, ...], client_fixture: tuple[str, ...],
                pytest_args: str) -> None:
    """Your suite on 1 and on N instances; exit 1 when a test does not pass on both."""
    import shlex

    from migrate.errors import UsageError
    from migrate.parity import ParitySettings, parse_env, verify_app

    try:
        extra = shlex.split(pytest_args)
    except ValueError as exc:
        raise UsageError(f"--pytest-args {pytest_args!r}: {exc}") from None
    settings = ParitySettings(app=app_spec, instances=instances, app_env=parse_env(app_env),
                              app_dir=(app_dir or Path.cwd()).resolve(),
                              prepare=list(app_prepare), workers=list(app_worker),
                              kill_one=kill_one).check()
    if instances < 2:
        raise UsageError("--instances 1 is the control run already: give 2 or more")

    def narrate(text: str) -> None:
        if not as_json:
            err_console.print(f"▸ {text}", highlight=False, markup=False)

    interrupt_on_sigterm()
    try:
        result = verify_app(settings, list(tests) or ["tests"],
                            client_fixtures=list(client_fixture), pytest_args=extra,
                            narrate=narrate)
    except KeyboardInterrupt:
        err_console.print("stopped: both test runs and their instances have been stopped",
                          highlight=False)
        ctx.exit(130)
    record_summary(tests=len(result.outcomes), traps=len(result.traps),
                   instances=result.instances)
    if as_json:
        click.echo(to_json(result.to_dict()))
    else:
        _render_app(result)
    if not result.ok:
        ctx.exit(1)


MARKS = {"passed": "[green]passed[/]", "skipped": "[dim]skipped[/]"}


def _render_app(result: Any) -> None:
    """Each test on 1 and on N instances, the last requests of those that fail, the verdict."""
    from rich.markup import escape
    from rich.table import Table

    n = result.instances
    files = {o.nodeid.split("::")[0] for o in result.outcomes}
    table = Table(title=f"{escape(result.app)}: {' '.join(map(escape, result.tests))} on 1 "
                        f"and on {n} instances")
    table.add_column("test" if len(files) != 1 else f"test in {escape(files.pop())}")
    table.add_column("1 instance")
    table.add_column(f"{n} instances")
    table.add_column(f"on {n}: the failure, the last requests and who answered")
    single = len(table.columns[0].header) > 4
    for o in result.outcomes:
        where = ""
        if o.many not in MARKS:
            lines = ([o.message[:100]] if o.message else []) + o.requests[-2:]
            where = "\n".join(escape(line) for line in lines)
        name = escape(o.nodeid.split("::", 1)[1] if single else o.nodeid)
        table.add_row(f"[bold red]{name}[/]" if o.trap else name,
                      MARKS.get(o.one, f"[red]{o.one}[/]"),
                      MARKS.get(o.many, f"[red]{o.many}[/]"), where)
    console.print(table)
    for run in result.runs:
        if run.error:
            console.print(f"[red]the {run.instances}-instance run stopped[/]: "
                          f"{escape(run.error)}", highlight=False)
    for kill in result.kills:
        console.print(f"SIGKILLed {escape(kill['instance'])} (pid {kill['pid']}) in "
                      f"{escape(kill['test'])} after {escape(kill['after_request'])}",
                      highlight=False)
    if not result.outcomes and not any(r.error for r in result.runs):
        console.print("[red]no test used the client[/]: alias your client fixture to "
                      "instance_client in conftest, or pass --client-fixture client",
                      highlight=False)
    traps = len(result.traps)
    times = ", ".join(f"{r.instances}: {r.seconds:.0f} s" for r in result.runs)
    if result.ok:
        console.print(f"[bold green]parity holds[/]: {len(result.outcomes)} tests pass on 1 "
                      f"and on {n} instances ({times})", highlight=False)
    else:
        console.print(f"[bold red]parity broken[/]: {traps} test(s) pass on 1 instance and "
                      f"fail on {n} ({times}); instance logs kept in "
                      f"{escape(result.run_dir or '-')}", highlight=False)


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
