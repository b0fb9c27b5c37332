"""What the expand (0002) and contract (0003) revisions share: the column moves, the Python
backfill, and the triggers that copy the before-app's writes into the new columns.

During a rolling cut-over both apps run on one database: before-instances write
``users.avatar_path`` and insert ``files.path``, after-instances read ``avatar_key`` and
``files.key``. The triggers make every write to an old column land in the new one as
``prefix || path``, which is what ``migrate.keys.object_key`` gives for the POSIX relative paths
the before-app stores, so the after-app finds what a before-instance just wrote.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.engine import Connection

from migrate.keys import object_key


@dataclass(frozen=True)
class Move:
    """One old column (a local path) and the new one that holds its object key."""

    table: str
    old: str
    new: str

    @property
    def trigger(self) -> str:
        return f"migrate_{self.table}_{self.old}_to_{self.new}"


MOVES = (Move("users", "avatar_path", "avatar_key"), Move("files", "path", "key"))


def prefix_arg() -> str:
    """The export prefix passed with ``-x prefix=...`` (default: the bucket's root)."""
    return context.get_x_argument(as_dictionary=True).get("prefix", "")


def key_prefix(prefix: str) -> str:
    """What ``object_key`` puts before a relative path: ``"shop/"`` for ``"/shop/"``, or ``""``."""
    prefix = unicodedata.normalize("NFC", prefix).strip("/")
    return prefix + "/" if prefix else ""


def sql_literal(dialect: str, value: str) -> str:
    """``value`` as a SQL string literal, safe whatever it holds (quotes, backslashes, $$)."""
    if "\x00" in value:
        raise ValueError("the prefix contains a NUL character")
    quoted = value.replace("'", "''")
    if dialect == "postgresql":
        # E'' reads backslashes the same whatever standard_conforming_strings says.
        return "E'" + quoted.replace("\\", "\\\\") + "'"
    return "'" + quoted + "'"


def execute(conn: Connection, sql: str) -> None:
    """Run DDL as written: no bind-parameter parsing, so ``:`` or ``%`` in a literal stay."""
    conn.exec_driver_sql(sql, execution_options={"no_parameters": True})


def rewrite(move: Move, source: str, target: str, convert: Callable[[str], str],
            only: Callable[[str, str | None], bool] | None = None) -> int:
    """Set ``target = convert(source)`` row by row in Python (the one mapping, NFC included).

    ``only(source, target)`` picks the rows to change (default: those whose target is NULL).
    """
    conn = op.get_bind()
    t = sa.table(move.table, sa.column("id"), sa.column(source), sa.column(target))
    rows = conn.execute(sa.select(t.c.id, t.c[source], t.c[target])
                        .where(t.c[source].is_not(None))).all()
    changed = 0
    for row_id, value, current in rows:
        if only(value, current) if only else current is None:
            conn.execute(t.update().where(t.c.id == row_id).values({target: convert(value)}))
            changed += 1
    return changed


def backfill(prefix: str) -> None:
    """Fill every new column still NULL from its old column with ``object_key``."""
    for move in MOVES:
        rewrite(move, move.old, move.new, lambda path: object_key(path, prefix))


def create_triggers(prefix: str) -> None:
    """Install, per move, the trigger copying inserts and updates of the old column across."""
    conn = op.get_bind()
    dialect = conn.dialect.name
    literal = sql_literal(dialect, key_prefix(prefix))
    for m in MOVES:
        if dialect == "postgresql":
            # The prefix is the trigger's argument (TG_ARGV[0]), so the function body is fixed
            # text and no prefix can break out of its dollar quoting.
            execute(conn, f"""
CREATE OR REPLACE FUNCTION {m.trigger}() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    IF TG_OP = 'UPDATE' OR NEW."{m.new}" IS NULL THEN
        NEW."{m.new}" := TG_ARGV[0] || NEW."{m.old}";
    END IF;
    RETURN NEW;
END
$body$""")
            execute(conn, f'CREATE TRIGGER {m.trigger} BEFORE INSERT OR UPDATE OF "{m.old}" '
                          f'ON "{m.table}" FOR EACH ROW EXECUTE PROCEDURE {m.trigger}({literal})')
        elif dialect == "sqlite":
            # SQLite triggers cannot assign NEW: they update the row just written. The inner
            # UPDATE names only the new column, so it never fires the UPDATE OF trigger again.
            set_new = (f'UPDATE "{m.table}" SET "{m.new}" = {literal} || NEW."{m.old}" '
                       f'WHERE rowid = NEW.rowid;')
            execute(conn, f'CREATE TRIGGER {m.trigger}_insert AFTER INSERT ON "{m.table}" '
                          f'WHEN NEW."{m.old}" IS NOT NULL AND NEW."{m.new}" IS NULL '
                          f'BEGIN {set_new} END')
            execute(conn, f'CREATE TRIGGER {m.trigger}_update AFTER UPDATE OF "{m.old}" '
                          f'ON "{m.table}" BEGIN {set_new} END')
        else:
            raise NotImplementedError(f"no triggers for the {dialect} dialect: use SQLite or "
                                      "PostgreSQL, or stop the before-app during the upgrade")


def drop_triggers() -> None:
    """Remove what ``create_triggers`` installed (absent ones are fine)."""
    conn = op.get_bind()
    for m in MOVES:
        if conn.dialect.name == "postgresql":
            execute(conn, f'DROP TRIGGER IF EXISTS {m.trigger} ON "{m.table}"')
            execute(conn, f"DROP FUNCTION IF EXISTS {m.trigger}()")
        elif conn.dialect.name == "sqlite":
            for event in ("insert", "update"):
                execute(conn, f"DROP TRIGGER IF EXISTS {m.trigger}_{event}")


def installed_prefix() -> str | None:
    """The key prefix the expand's triggers prepend (None: no trigger found)."""
    conn = op.get_bind()
    m = MOVES[0]
    if conn.dialect.name == "postgresql":
        args = conn.execute(sa.text("SELECT tgargs FROM pg_trigger WHERE tgname = :n"),
                            {"n": m.trigger}).scalar()
        # tgargs is each argument followed by a NUL byte.
        return None if args is None else bytes(args).split(b"\x00")[0].decode()
    if conn.dialect.name == "sqlite":
        sql = conn.execute(sa.text("SELECT sql FROM sqlite_master WHERE type = 'trigger' "
                                   "AND name = :n"), {"n": f"{m.trigger}_update"}).scalar()
        found = re.search(r"= '((?:[^']|'')*)' \|\|", sql or "")
        return found.group(1).replace("''", "'") if found else None
    return None


def check_prefix(prefix: str) -> None:
    """Refuse a prefix other than the one the expand ran with: rows would mix two prefixes."""
    installed = installed_prefix()
    if installed is not None and installed != key_prefix(prefix):
        ran = installed.rstrip("/")
        raise ValueError(f"the expand (0002) ran with prefix {ran!r} but this run has "
                         f"{prefix.strip('/')!r}; pass --prefix {ran!r} (-x prefix={ran})")
