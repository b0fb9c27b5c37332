"""``migrate db upgrade``: run the after-app's alembic history on the before-app's database.

A database the before-app made has its tables but no ``alembic_version``: it is stamped at
revision 0001 (the before schema) and then upgraded. The move from local paths to object keys
is an expand/contract pair, so both apps can share the database during a rolling cut-over:

- 0002 (expand, ``--revision 0002``): adds ``users.avatar_key`` and ``files.key`` beside the
  old columns, fills them with ``migrate.keys.object_key(path, prefix)`` (the function
  ``export-files`` names objects with) and installs triggers that copy every later write of an
  old column into the new one; before-instances keep working unchanged.
- 0003 (contract, the head): once every instance runs the after-app, drops the old columns.

With no revision both run at once (an offline migration is one command). ``downgrade``
reverses either.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import inspect, text
from sqlalchemy.exc import ArgumentError, OperationalError, ProgrammingError

from migrate import redact
from migrate.errors import ConnectionFailure, UsageError

EXPAND, CONTRACT = "0002", "0003"
# What each revision means for the apps that may run on it.
STATES = {
    None: "no alembic revision (the before-app's own tables, or empty)",
    "0001": "the before schema (local paths only)",
    EXPAND: "expanded: paths and keys side by side, kept in step by triggers "
            "(before- and after-app both work)",
    CONTRACT: "contracted: the after schema (object keys only)",
}


@dataclass
class DbUpgradeResult:
    """Where the database was, where it is now, and how many stored paths became keys."""

    database: str  # the URL with its password hidden
    before: str | None  # revision before (None: no alembic table)
    after: str | None  # the revision the database is at now (a dry run: still ``before``)
    stamped: bool  # the before-app's tables were stamped at 0001 first (or would be)
    avatars: int  # users rows with a stored avatar path/key
    files: int  # files rows
    dry_run: bool = False
    seconds: float = 0.0
    target: str | None = None  # the revision asked for, resolved ("head" -> 0003)
    state: str = ""  # what the database's revision means (STATES)


def _inspect(url: str) -> tuple[set[str], str | None, int, int]:
    """(tables, current revision, avatar rows, file rows); one clear error when unreachable."""
    from sample_stateless_app.db import make_engine

    try:
        engine = make_engine(url)
    except (ArgumentError, ImportError) as exc:
        raise UsageError(f"--database-url {redact.url(url)!r} is not a database URL ({exc}): use "
                         "e.g. sqlite:///shop.db or postgresql+psycopg://host/db") from None
    try:
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            revision = None
            if "alembic_version" in tables:
                revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            avatars = files = 0
            if "users" in tables:
                # Count the keys where they exist (0002 on), else the paths that become keys.
                columns = {c["name"] for c in inspect(conn).get_columns("users")}
                column = "avatar_key" if "avatar_key" in columns else "avatar_path"
                avatars = conn.execute(
                    text(f"SELECT COUNT(*) FROM users WHERE {column} IS NOT NULL")).scalar() or 0
            if "files" in tables:
                files = conn.execute(text("SELECT COUNT(*) FROM files")).scalar() or 0
            return tables, revision, int(avatars), int(files)
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise ConnectionFailure(f"cannot open the database {redact.url(url)}: {reason}; check "
                                "--database-url") from None
    except ProgrammingError as exc:
        raise ConnectionFailure(f"cannot read the database {redact.url(url)}: "
                                f"{str(exc.orig).strip().splitlines()[0]}") from None
    finally:
        engine.dispose()


def resolve(revision: str) -> str | None:
    """``revision`` as a revision id ("head" -> "0003", "base" -> None); unknown: UsageError."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    from sample_stateless_app.migrations import alembic_config

    if revision == "base":
        return None
    try:
        found = ScriptDirectory.from_config(alembic_config("")).get_revision(revision)
    except CommandError as exc:
        raise UsageError(f"unknown revision {revision!r} ({exc}); use {EXPAND} (expand), "
                         f"{CONTRACT} or head (contract)") from None
    if found is None:
        raise UsageError(f"unknown revision {revision!r}: use {EXPAND} (expand), {CONTRACT} or "
                         "head (contract)")
    return str(found.revision)


def _order(revision: str | None) -> int:
    return 0 if revision is None else int(revision)


def upgrade(database_url: str | None, *, revision: str = "head", prefix: str = "",
            dry_run: bool = False) -> DbUpgradeResult:
    """Stamp 0001 where the before-app's tables exist without alembic, then upgrade.

    ``revision="0002"`` is the expand a rolling cut-over runs first; the default (head) also
    contracts. ``prefix`` must be the one the files were exported under (``s3://bucket/PREFIX``)
    and the same for both steps.
    """
    from alembic.util import CommandError

    from sample_stateless_app.migrations import upgrade_database

    if not database_url:
        raise UsageError("no database given: pass --database-url or set DATABASE_URL")
    started = time.monotonic()
    target = resolve(revision)
    tables, before, avatars, files = _inspect(database_url)
    if _order(before) > _order(target):
        raise UsageError(f"{redact.url(database_url)} is at {before}, past {target}: nothing to "
                         f"upgrade (to go back, use `migrate db downgrade --revision {target}`)")
    stamped = "users" in tables and "alembic_version" not in tables
    result = DbUpgradeResult(redact.url(database_url), before, before, stamped, avatars, files,
                             dry_run=dry_run, target=target, state=STATES.get(before, ""))
    if not dry_run:
        try:
            upgrade_database(database_url, revision, prefix=prefix)
        except (ValueError, CommandError) as exc:  # a bad stored path, a prefix mismatch
            raise UsageError(f"cannot upgrade {redact.url(database_url)}: {exc}") from None
        result.after = _inspect(database_url)[1]
        result.state = STATES.get(result.after, "")
    result.seconds = time.monotonic() - started
    return result


def downgrade(database_url: str | None, *, revision: str = "0001",
              prefix: str = "") -> DbUpgradeResult:
    """Undo to ``revision``: 0002 brings the path columns back beside the keys (and the
    triggers), 0001 removes the keys; every path comes from ``relative_path(key, prefix)``."""
    from alembic.util import CommandError

    from sample_stateless_app.migrations import downgrade_database

    if not database_url:
        raise UsageError("no database given: pass --database-url or set DATABASE_URL")
    started = time.monotonic()
    target = resolve(revision)
    _, before, avatars, files = _inspect(database_url)
    if before is None:
        raise UsageError(f"{redact.url(database_url)} has no alembic revision: nothing to "
                         "downgrade")
    try:
        downgrade_database(database_url, revision, prefix=prefix)
    except ValueError as exc:  # a key outside the prefix cannot become a local path
        raise UsageError(f"cannot downgrade: {exc}; pass the --prefix used for upgrade") from None
    except CommandError as exc:
        raise UsageError(f"cannot downgrade {redact.url(database_url)}: {exc}") from None
    after = _inspect(database_url)[1]
    return DbUpgradeResult(redact.url(database_url), before, after, False, avatars, files,
                           seconds=time.monotonic() - started, target=target,
                           state=STATES.get(after, ""))
