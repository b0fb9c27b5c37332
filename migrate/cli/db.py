"""`migrate db`: the schema step, on the app's own alembic environment."""

from __future__ import annotations

import click

from migrate.cli.base import cli, console, to_json

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
