"""`migrate db`: the schema step, on the app's own alembic environment."""

from __future__ import annotations

from typing import Any

import click

from migrate.cli.base import cli, console, to_json

# --- db --------------------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """The app's own alembic migrations, run on the database the before-app left.

    The environment is --script-location DIR or --alembic-ini FILE, else `script_location`
    (or `alembic_ini`) and `baseline` under [tool.migrate] in ./pyproject.toml.

    Example:

        migrate db upgrade --database-url postgresql+psycopg://127.0.0.1/shop
    """


def _db_options(command):
    options = [
        click.option("--database-url", envvar="DATABASE_URL", metavar="URL",
                     help="The app's database (default: $DATABASE_URL); its env.py gets it as "
                     "sqlalchemy.url."),
        click.option("--alembic-ini", metavar="FILE",
                     help="The app's alembic.ini (default: [tool.migrate] alembic_ini)."),
        click.option("--script-location", metavar="DIR",
                     help="The app's alembic script folder, instead of an ini (default: "
                     "[tool.migrate] script_location)."),
        click.option("--baseline", metavar="REV",
                     help="Stamp a database that has tables but no alembic_version (made by "
                     "create_all) at REV first (default: [tool.migrate] baseline)."),
        click.option("-x", "x_args", multiple=True, metavar="KEY=VALUE",
                     help="Passed to env.py as alembic -x does (repeatable)."),
        click.option("--prefix", default="", metavar="PREFIX",
                     help="The key prefix the files were exported under (s3://BUCKET/PREFIX): "
                     "-x prefix=PREFIX for migrate's path->key ops."),
        click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _config(options: dict[str, Any]):
    from migrate.runbook.db import DbConfig

    return DbConfig.from_project(
        options["database_url"], script_location=options["script_location"],
        alembic_ini=options["alembic_ini"], baseline=options["baseline"],
        x=options["x_args"], prefix=options["prefix"] or None)


def _rows(rows: dict[str, int]) -> str:
    return ", ".join(f"{n:,} {label} rows" for label, n in rows.items())


@db.command("upgrade")
@_db_options
@click.option("--revision", default="head", show_default=True,
              help="Upgrade to this revision: the expand first in a rolling cut-over (both "
              "apps run on it), the head (contract) once every instance is rolled.")
@click.option("--dry-run", is_flag=True, help="Show where the database is and what would run.")
def db_upgrade_command(as_json: bool, revision: str, dry_run: bool, **options: Any) -> None:
    """Upgrade the before-app's database with the app's alembic history.

    A database with tables but no alembic_version is stamped at the baseline first. For a
    rolling cut-over run it twice: `--revision EXPAND` before the first after-instance starts
    (revisions written with migrate.runbook.ops add the key columns, filled with the object
    keys export-files gave the files, and triggers that keep them in step with the before-app's
    writes), then the head (contract: the path columns go) once every instance is rolled and
    verified. Use the same --prefix both times. Undo with `migrate db downgrade`.

    Examples:

        migrate db upgrade --revision 0002 --prefix shop --database-url sqlite:///instance/shop.db

        migrate db upgrade --prefix shop --script-location migrations --baseline 0001
    """
    from migrate.runbook.db import upgrade
    from migrate.runbook.journal import SUMMARY_KEY

    result = upgrade(_config(options), revision, dry_run=dry_run)
    if not dry_run:  # the runbook shows which revision the expand or contract left
        click.get_current_context().meta[SUMMARY_KEY] = {
            "at revision": result.after, "schema": _schema(result.state),
            **{f"{k} rows": n for k, n in result.rows.items()}}
    if as_json:
        click.echo(to_json(result))
        return
    rows = f"; {_rows(result.rows)}" if result.rows else ""
    if dry_run:
        first = f" (after stamping {result.baseline})" if result.stamped else ""
        steps = ", ".join(result.revisions) or "nothing"
        console.print(f"dry run: {result.database} is at {result.before or 'no revision'}: "
                      f"{result.state}; upgrading to {result.target}{first} would run "
                      f"{steps}{rows}", highlight=False)
        return
    stamp = f" (stamped {result.baseline} first)" if result.stamped else ""
    console.print(f"[bold green]database upgraded[/]: {result.database} "
                  f"{result.before or 'none'} → {result.after}{stamp}: {result.state}{rows} "
                  f"({result.seconds:.1f} s)", highlight=False)


@db.command("downgrade")
@_db_options
@click.option("--revision", required=True,
              help="Downgrade to this revision (an id, base, or -1 for one step).")
@click.option("--dry-run", is_flag=True, help="Show what would be undone; change nothing.")
def db_downgrade_command(as_json: bool, revision: str, dry_run: bool, **options: Any) -> None:
    """Undo `db upgrade` down to --revision; keys go back to local paths (same --prefix).

    Example:

        migrate db downgrade --revision 0001 --prefix shop --database-url sqlite:///shop.db
    """
    from migrate.runbook.db import downgrade

    result = downgrade(_config(options), revision, dry_run=dry_run)
    if as_json:
        click.echo(to_json(result))
        return
    if dry_run:
        console.print(f"dry run: {result.database} is at {result.before}: {result.state}; "
                      f"downgrading to {result.target or 'base'} would undo "
                      f"{', '.join(result.revisions) or 'nothing'}", highlight=False)
        return
    console.print(f"[bold green]database downgraded[/]: {result.database} {result.before} → "
                  f"{result.after or 'base'}: {result.state} ({result.seconds:.1f} s)",
                  highlight=False)


@db.command("status")
@_db_options
def db_status_command(as_json: bool, **options: Any) -> None:
    """Where the database is: its revision, the head, what `db upgrade` would run.

    Example:

        migrate db status --database-url sqlite:///instance/shop.db --json
    """
    from migrate.runbook.db import status

    result = status(_config(options))
    if as_json:
        click.echo(to_json(result))
        return
    console.print(f"{result.database}: at {result.current or 'no revision'} of "
                  f"{result.script_location} (head {result.head}): {result.state}",
                  highlight=False)
    if result.unversioned:
        fix = (f"db upgrade stamps it at the baseline {result.baseline} first" if
               result.baseline else "pass --baseline REV (the revision of that schema)")
        console.print(f"{result.tables} tables but no alembic_version: {fix}", highlight=False)
    pending = ", ".join(result.pending) or "nothing (up to date)"
    rows = f"; {_rows(result.rows)}" if result.rows else ""
    console.print(f"pending: {pending}{rows}", highlight=False)


def _schema(state: str) -> str:
    """One word for the runbook: what the apps may run on now (the journal keeps it)."""
    if state.startswith("expanded"):
        return "expanded"  # before- and after-app both work
    return "contracted" if "contracted" in state else "unchanged"
