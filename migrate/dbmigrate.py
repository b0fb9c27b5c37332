"""``migrate db upgrade``: run the after-app's alembic history on the before-app's database.

A database the before-app made has its tables but no ``alembic_version``: it is stamped at
revision 0001 (the before schema) and then upgraded; revision 0002 renames
``users.avatar_path`` -> ``avatar_key`` and ``files.path`` -> ``key`` and rewrites every value
with ``migrate.keys.object_key(path, prefix)`` — the function ``export-files`` names objects
with, so each row points at the object its file became. ``downgrade`` reverses it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, ProgrammingError

from .errors import ConnectionFailure, UsageError


@dataclass
class DbUpgradeResult:
    """Where the database was, where it is now, and how many stored paths became keys."""

    database: str  # the URL with its password hidden
    before: str | None  # revision before (None: no alembic table)
    after: str | None
    stamped: bool  # the before-app's tables were stamped at 0001 first
    avatars: int  # users rows with a stored avatar path/key
    files: int  # files rows
    dry_run: bool = False
    seconds: float = 0.0


def redact(url: str) -> str:
    """The URL with its password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def _inspect(url: str) -> tuple[set[str], str | None, int, int]:
    """(tables, current revision, avatar rows, file rows); one clear error when unreachable."""
    from sample_stateless_app.db import make_engine

    try:
        engine = make_engine(url)
    except (ArgumentError, ImportError) as exc:
        raise UsageError(f"--database-url {redact(url)!r} is not a database URL ({exc}): use "
                         "e.g. sqlite:///shop.db or postgresql+psycopg://host/db") from None
    try:
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            revision = None
            if "alembic_version" in tables:
                revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            avatars = files = 0
            if "users" in tables:
                column = "avatar_key" if revision and revision >= "0002" else "avatar_path"
                avatars = conn.execute(
                    text(f"SELECT COUNT(*) FROM users WHERE {column} IS NOT NULL")).scalar() or 0
            if "files" in tables:
                files = conn.execute(text("SELECT COUNT(*) FROM files")).scalar() or 0
            return tables, revision, int(avatars), int(files)
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise ConnectionFailure(f"cannot open the database {redact(url)}: {reason}; check "
                                "--database-url") from None
    except ProgrammingError as exc:
        raise ConnectionFailure(f"cannot read the database {redact(url)}: "
                                f"{str(exc.orig).strip().splitlines()[0]}") from None
    finally:
        engine.dispose()


def upgrade(database_url: str | None, *, revision: str = "head", prefix: str = "",
            dry_run: bool = False) -> DbUpgradeResult:
    """Stamp 0001 where the before-app's tables exist without alembic, then upgrade.

    ``prefix`` must be the one the files were exported under (``s3://bucket/PREFIX``).
    """
    from sample_stateless_app.migrations import upgrade_database

    if not database_url:
        raise UsageError("no database given: pass --database-url or set DATABASE_URL")
    started = time.monotonic()
    tables, before, avatars, files = _inspect(database_url)
    stamped = "users" in tables and "alembic_version" not in tables
    result = DbUpgradeResult(redact(database_url), before, before, stamped, avatars, files,
                             dry_run=dry_run)
    if not dry_run:
        upgrade_database(database_url, revision, prefix=prefix)
        result.after = _inspect(database_url)[1]
    result.seconds = time.monotonic() - started
    return result


def downgrade(database_url: str | None, *, revision: str = "0001",
              prefix: str = "") -> DbUpgradeResult:
    """Undo to ``revision`` (0001: keys back to local paths, columns renamed back)."""
    from sample_stateless_app.migrations import downgrade_database

    if not database_url:
        raise UsageError("no database given: pass --database-url or set DATABASE_URL")
    started = time.monotonic()
    _, before, avatars, files = _inspect(database_url)
    if before is None:
        raise UsageError(f"{redact(database_url)} has no alembic revision: nothing to downgrade")
    try:
        downgrade_database(database_url, revision, prefix=prefix)
    except ValueError as exc:  # a key outside the prefix cannot become a local path
        raise UsageError(f"cannot downgrade: {exc}; pass the --prefix used for upgrade") from None
    after = _inspect(database_url)[1]
    return DbUpgradeResult(redact(database_url), before, after, False, avatars, files,
                           seconds=time.monotonic() - started)
