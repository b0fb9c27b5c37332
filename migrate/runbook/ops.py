"""Alembic operations that turn a column of local file paths into object keys, for your own
revision files (an expand/contract pair, so the before- and after-app can share the database
during a rolling cut-over)::

    # versions/0002_expand.py                    # versions/0003_contract.py
    from migrate.runbook.ops import (            from migrate.runbook.ops import (
        expand_path_to_key,                          contract_path_to_key,
        undo_expand_path_to_key)                     undo_contract_path_to_key)

    def upgrade():                               def upgrade():
        expand_path_to_key(                          contract_path_to_key(
            "documents", "file_path", "file_key")        "documents", "file_path", "file_key")

    def downgrade():                             def downgrade():
        undo_expand_path_to_key(                     undo_contract_path_to_key(
            "documents", "file_path", "file_key")        "documents", "file_path", "file_key")

The key of a path is ``migrate.keys.object_key(path, prefix)``: the very name ``migrate
export-files`` gives the file's object, so a row points at what the export uploaded. ``prefix``
is the export's (``s3://BUCKET/PREFIX``); ``None`` reads it from ``-x prefix=...`` (``migrate db
upgrade --prefix P`` passes it so), default the bucket's root. Expand and contract must use the
same prefix: the contract refuses another.

While expanded, triggers copy every write of the path column into the key column as
``prefix || path`` (what ``object_key`` gives for the POSIX relative paths an app stores):

- PostgreSQL: one ``BEFORE INSERT OR UPDATE OF path`` trigger; the prefix is its argument.
- SQLite: ``AFTER INSERT`` and ``AFTER UPDATE OF path`` triggers that update the row (by ``pk``).
- MySQL / MariaDB: ``BEFORE INSERT`` and ``BEFORE UPDATE`` triggers (``SET NEW.key = ...``, on
  update only when the path changed); the prefix is a ``_utf8mb4 X'..'`` literal, so no
  ``sql_mode`` changes its meaning. Creating triggers needs the ``TRIGGER`` privilege, and with
  binary logging on, ``SUPER`` or ``log_bin_trust_function_creators=1``. MySQL commits each DDL
  statement, so the triggers are created before the backfill, which only fills a key still
  NULL for the path it read: a write racing the backfill is the trigger's.
Other dialects: the ops refuse (stop the before-app during the migration and write your own).

The backfill runs in Python (``object_key`` normalises Unicode to NFC, which SQL cannot), in
pages, and needs a live connection: ``alembic upgrade --sql`` (offline) is refused. Every value
is converted once before any DDL, so a bad one (an absolute path, ``..``, a key outside the
prefix) stops the op with its row named and nothing changed; SQLite and MySQL keep DDL that ran
before a failure, so each op also skips what a previous partial run already did. Tables are
those of the connection's default schema. On SQLite a change of nullability copies the table
(alembic batch mode), dropping other triggers on it; the ops do that before installing theirs.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.engine import Connection

from migrate.keys import object_key, relative_path

PAGE = 1000  # rows read and written per round trip of a backfill


@dataclass(frozen=True)
class KeyMove:
    """One column of local paths and the column that holds their object keys."""

    table: str
    path_column: str
    key_column: str
    pk: str = "id"

    @property
    def trigger(self) -> str:
        """The name of the sync trigger(s): readable, within PostgreSQL's 63 bytes."""
        name = f"migrate_{self.table}_{self.path_column}_to_{self.key_column}"
        if len(name) > 48 or not re.fullmatch(r"\w+", name, re.ASCII):
            digest = hashlib.sha1(name.encode()).hexdigest()[:12]
            name = f"migrate_{re.sub(r'[^A-Za-z0-9_]', '_', self.table)[:20]}_{digest}"
        return name.lower()  # PostgreSQL folds the unquoted name: look it up as it is stored


# --- the four operations -----------------------------------------------------------------------


def expand_path_to_key(table: str, path_column: str, key_column: str, *,
                       prefix: str | None = None, length: int = 512,
                       nullable_path: bool = False, pk: str = "id") -> int:
    """Add ``key_column`` beside ``path_column``, fill it with each path's object key and
    install the triggers that keep it in step with a before-app still writing paths.

    ``nullable_path=True`` also drops NOT NULL from the path column (the after-app inserts rows
    with a key only). ``length`` is the key column's VARCHAR length. Returns the number of rows
    given a key.
    """
    move, bind = KeyMove(table, path_column, key_column, pk), _online("expand_path_to_key")
    prefix = _prefix(prefix)
    check_all(move, path_column, lambda path: object_key(path, prefix))
    with op.batch_alter_table(table) as batch:
        if key_column not in _columns(bind, table):  # a rerun after a partial failure
            batch.add_column(sa.Column(key_column, sa.String(length), nullable=True))
        if nullable_path:
            batch.alter_column(path_column, existing_type=_type_of(bind, table, path_column),
                               nullable=True)
    # Triggers first (batch mode may copy the table, dropping triggers), then the backfill.
    drop_triggers(move)
    create_triggers(move, prefix)
    return backfill(move, prefix)


def undo_expand_path_to_key(table: str, path_column: str, key_column: str, *,
                            prefix: str | None = None, length: int = 512,
                            nullable_path: bool = False, pk: str = "id") -> int:
    """Downgrade of ``expand_path_to_key`` (same arguments): write back into the path column
    what the after-app changed (``relative_path(key, prefix)``), drop the triggers and the key
    column. Returns the number of paths written back."""
    move, bind = KeyMove(table, path_column, key_column, pk), _online("undo_expand_path_to_key")
    prefix = _prefix(prefix)
    changed = 0
    if key_column in _columns(bind, table):
        check_all(move, key_column, lambda key: relative_path(key, prefix))
        # The key is the latest truth (the triggers copied every before-app write into it).
        # Writing a path while the triggers stand is harmless: prefix || path is that key.
        changed = rewrite(move, key_column, path_column, lambda key: relative_path(key, prefix),
                          only=lambda key, path: path is None or _stale(path, key, prefix))
    drop_triggers(move)
    with op.batch_alter_table(table) as batch:
        if key_column in _columns(bind, table):
            batch.drop_column(key_column)
        if nullable_path:
            batch.alter_column(path_column, existing_type=_type_of(bind, table, path_column),
                               nullable=False)
    return changed


def contract_path_to_key(table: str, path_column: str, key_column: str, *,
                         prefix: str | None = None, length: int = 512,
                         nullable_key: bool = True, pk: str = "id") -> int:
    """Once no before-app is left: check the prefix is the expand's, give the rows still
    without a key one, drop the triggers and the path column; ``nullable_key=False`` makes the
    key NOT NULL. Returns the number of stragglers filled."""
    move, bind = KeyMove(table, path_column, key_column, pk), _online("contract_path_to_key")
    prefix = _prefix(prefix)
    filled = 0
    if path_column in _columns(bind, table):  # else a rerun after a partial failure
        check_prefix(move, prefix)
        check_all(move, path_column, lambda path: object_key(path, prefix))
        filled = backfill(move, prefix)
    drop_triggers(move)
    with op.batch_alter_table(table) as batch:
        if path_column in _columns(bind, table):
            batch.drop_column(path_column)
        if not nullable_key:
            batch.alter_column(key_column, existing_type=_type_of(bind, table, key_column),
                               nullable=False)
    return filled


def undo_contract_path_to_key(table: str, path_column: str, key_column: str, *,
                              prefix: str | None = None, length: int = 512,
                              nullable_key: bool = True, pk: str = "id") -> int:
    """Downgrade of ``contract_path_to_key`` (same arguments): bring the path column back
    (nullable, VARCHAR ``length``), filled with ``relative_path(key, prefix)``, and the
    triggers with it."""
    move, bind = KeyMove(table, path_column, key_column, pk), _online("undo_contract_path_to_key")
    prefix = _prefix(prefix)
    check_all(move, key_column, lambda key: relative_path(key, prefix))
    with op.batch_alter_table(table) as batch:
        if path_column not in _columns(bind, table):
            batch.add_column(sa.Column(path_column, sa.String(length), nullable=True))
        if not nullable_key:
            batch.alter_column(key_column, existing_type=_type_of(bind, table, key_column),
                               nullable=True)
    drop_triggers(move)
    changed = rewrite(move, key_column, path_column, lambda key: relative_path(key, prefix))
    # After the paths are back, or the update trigger would rewrite every key.
    create_triggers(move, prefix)
    return changed


# --- the prefix --------------------------------------------------------------------------------


def prefix_argument() -> str:
    """The export prefix given with ``-x prefix=...`` (default: the bucket's root)."""
    return context.get_x_argument(as_dictionary=True).get("prefix", "")


def key_prefix(prefix: str) -> str:
    """What ``object_key`` puts before a relative path: ``"shop/"`` for ``"/shop/"``, or ``""``."""
    prefix = unicodedata.normalize("NFC", prefix).strip("/")
    return prefix + "/" if prefix else ""


def check_prefix(move: KeyMove, prefix: str) -> None:
    """Refuse a prefix other than the one the expand ran with: rows would mix two prefixes."""
    installed = installed_prefix(move)
    if installed is not None and installed != key_prefix(prefix):
        ran = installed.rstrip("/")
        raise ValueError(f"the expand of {move.table}.{move.path_column} ran with prefix "
                         f"{ran!r} but this run has {prefix.strip('/')!r}; pass --prefix "
                         f"{ran!r} (alembic: -x prefix={ran})")


def _prefix(prefix: str | None) -> str:
    return prefix_argument() if prefix is None else prefix


# --- rows ----------------------------------------------------------------------------------------


def backfill(move: KeyMove, prefix: str) -> int:
    """Give every row with a path and no key ``object_key(path, prefix)``; returns the count.

    Each update also requires the path it read to be unchanged and the key still NULL, so a
    before-app write racing the backfill (where DDL does not lock the table) keeps the key its
    trigger gave it.
    """
    bind = op.get_bind()
    t = _table(move, move.path_column, move.key_column)
    path, key = t.c[move.path_column], t.c[move.key_column]
    update = (t.update()
              .where(t.c[move.pk] == sa.bindparam("_pk"), key.is_(None),
                     path == sa.bindparam("_path"))
              .values({move.key_column: sa.bindparam("_key")}))
    count = 0

    def to_key(value: str) -> str:
        return object_key(value, prefix)

    for page in _pages(bind, move, path, sa.and_(path.is_not(None), key.is_(None))):
        params = [{"_pk": row_id, "_path": value, "_key": _convert(move, row_id, value, to_key)}
                  for row_id, value, _ in page]
        bind.execute(update, params)
        count += len(params)
    return count


def check_all(move: KeyMove, column: str, convert: Callable[[str], str]) -> None:
    """Convert every value of ``column`` without writing: a bad one fails here, before any DDL
    (which SQLite and MySQL would keep while the migration's other changes roll back)."""
    bind = op.get_bind()
    t = _table(move, column)
    for page in _pages(bind, move, t.c[column], t.c[column].is_not(None)):
        for row_id, value, _ in page:
            _convert(move, row_id, value, convert)


def rewrite(move: KeyMove, source: str, target: str, convert: Callable[[str], str],
            only: Callable[[str, str | None], bool] | None = None) -> int:
    """Set ``target = convert(source)`` on the rows with a ``source`` value, in Python.

    ``only(source, target)`` picks the rows to change (default: every one). Returns the count.
    """
    bind = op.get_bind()
    t = _table(move, source, target)
    update = (t.update().where(t.c[move.pk] == sa.bindparam("_pk"))
              .values({target: sa.bindparam("_value")}))
    count = 0
    for page in _pages(bind, move, t.c[source], t.c[source].is_not(None), t.c[target]):
        params = [{"_pk": row_id, "_value": _convert(move, row_id, value, convert)}
                  for row_id, value, current in page if only is None or only(value, current)]
        if params:
            bind.execute(update, params)
            count += len(params)
    return count


def _table(move: KeyMove, *columns: str) -> sa.TableClause:
    return sa.table(move.table, sa.column(move.pk), *(sa.column(c) for c in columns))


def _pages(bind: Connection, move: KeyMove, column: Any, where: Any,
           other: Any = None) -> Iterator[list[tuple[Any, Any, Any]]]:
    """(pk, column, other) of the rows matching ``where``, a page at a time, in pk order."""
    t = column.table
    pk = t.c[move.pk]
    last = None
    while True:
        query = sa.select(pk, column, other if other is not None else sa.null()).where(where)
        if last is not None:
            query = query.where(pk > last)
        page = [tuple(r) for r in bind.execute(query.order_by(pk).limit(PAGE)).all()]
        if not page:
            return
        yield page
        last = page[-1][0]


def _convert(move: KeyMove, row_id: Any, value: str, convert: Callable[[str], str]) -> str:
    try:
        return convert(value)
    except ValueError as exc:
        raise ValueError(f"{move.table} row {move.pk}={row_id!r}: {exc}") from None


def _stale(path: str, key: str, prefix: str) -> bool:
    """True when ``path`` does not give ``key``: the after-app wrote the key since."""
    try:
        return object_key(path, prefix) != key
    except ValueError:
        return True


# --- triggers ------------------------------------------------------------------------------------


def trigger_ddl(dialect: str, move: KeyMove, prefix: str,
                quote: Callable[[str], str] | None = None) -> list[str]:
    """The statements that install ``move``'s sync triggers on ``dialect``."""
    q = quote or (lambda name: '"' + name.replace('"', '""') + '"')
    table, path, key, pk, name = (q(move.table), q(move.path_column), q(move.key_column),
                                  q(move.pk), move.trigger)
    literal = sql_literal(dialect, key_prefix(prefix))
    if dialect == "postgresql":
        # The prefix is the trigger's argument (TG_ARGV[0]), so the function body is fixed
        # text and no prefix can break out of its dollar quoting.
        return [f"""
CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $migrate$
BEGIN
    IF TG_OP = 'UPDATE' OR NEW.{key} IS NULL THEN
        NEW.{key} := TG_ARGV[0] || NEW.{path};
    END IF;
    RETURN NEW;
END
$migrate$""", f"CREATE TRIGGER {name} BEFORE INSERT OR UPDATE OF {path} ON {table} "
              f"FOR EACH ROW EXECUTE PROCEDURE {name}({literal})"]
    if dialect == "sqlite":
        # SQLite triggers cannot assign NEW: they update the row just written. The inner
        # UPDATE names only the key column, so it never fires the UPDATE OF trigger again.
        set_key = f"UPDATE {table} SET {key} = {literal} || NEW.{path} WHERE {pk} = NEW.{pk};"
        return [f"CREATE TRIGGER {name}_insert AFTER INSERT ON {table} "
                f"WHEN NEW.{path} IS NOT NULL AND NEW.{key} IS NULL BEGIN {set_key} END",
                f"CREATE TRIGGER {name}_update AFTER UPDATE OF {path} ON {table} "
                f"BEGIN {set_key} END"]
    if dialect in ("mysql", "mariadb"):
        # No UPDATE OF in MySQL: an update sets the key when the path changed (<=>: NULL-safe).
        return [f"CREATE TRIGGER {name}_insert BEFORE INSERT ON {table} FOR EACH ROW "
                f"SET NEW.{key} = IF(NEW.{key} IS NULL AND NEW.{path} IS NOT NULL, "
                f"CONCAT({literal}, NEW.{path}), NEW.{key})",
                f"CREATE TRIGGER {name}_update BEFORE UPDATE ON {table} FOR EACH ROW "
                f"SET NEW.{key} = IF(NEW.{path} <=> OLD.{path}, NEW.{key}, "
                f"CONCAT({literal}, NEW.{path}))"]
    raise NotImplementedError(f"no sync triggers for the {dialect} dialect: use PostgreSQL, "
                              "SQLite or MySQL/MariaDB, or stop the before-app during the "
                              "migration")


def sql_literal(dialect: str, value: str) -> str:
    """``value`` as a SQL string literal, safe whatever it holds (quotes, backslashes, $$)."""
    if "\x00" in value:
        raise ValueError("the prefix contains a NUL character")
    if dialect in ("mysql", "mariadb"):
        # Hex: the same bytes whatever sql_mode (NO_BACKSLASH_ESCAPES, ANSI_QUOTES) says.
        return "_utf8mb4 X'" + value.encode().hex().upper() + "'"
    quoted = value.replace("'", "''")
    if dialect == "postgresql":
        # E'' reads backslashes the same whatever standard_conforming_strings says.
        return "E'" + quoted.replace("\\", "\\\\") + "'"
    return "'" + quoted + "'"


def create_triggers(move: KeyMove, prefix: str) -> None:
    """Install ``move``'s sync triggers (see the module's docstring, per dialect)."""
    bind = op.get_bind()
    for statement in trigger_ddl(bind.dialect.name, move, prefix,
                                 bind.dialect.identifier_preparer.quote):
        _execute(bind, statement)


def drop_triggers(move: KeyMove) -> None:
    """Remove what ``create_triggers`` installed (absent ones are fine)."""
    bind = op.get_bind()
    for statement in drop_ddl(bind.dialect.name, move, bind.dialect.identifier_preparer.quote):
        _execute(bind, statement)


def drop_ddl(dialect: str, move: KeyMove, quote: Callable[[str], str]) -> list[str]:
    """The statements that remove ``move``'s sync triggers on ``dialect``."""
    name = move.trigger
    if dialect == "postgresql":
        return [f"DROP TRIGGER IF EXISTS {name} ON {quote(move.table)}",
                f"DROP FUNCTION IF EXISTS {name}()"]
    if dialect in ("sqlite", "mysql", "mariadb"):
        return [f"DROP TRIGGER IF EXISTS {name}_{event}" for event in ("insert", "update")]
    return []


def installed_prefix(move: KeyMove) -> str | None:
    """The key prefix ``move``'s triggers prepend (None: no trigger found)."""
    bind = op.get_bind()
    dialect = bind.dialect.name
    if dialect == "postgresql":
        args = bind.execute(sa.text("SELECT tgargs FROM pg_trigger WHERE tgname = :n AND "
                                    "tgrelid = to_regclass(:t)"),
                            {"n": move.trigger,
                             "t": bind.dialect.identifier_preparer.quote(move.table)}).scalar()
        # tgargs is each argument followed by a NUL byte.
        return None if args is None else bytes(args).split(b"\x00")[0].decode()
    if dialect == "sqlite":
        sql = bind.execute(sa.text("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND "
                                   "name = :n"), {"n": f"{move.trigger}_update"}).scalar()
        return parse_prefix(dialect, sql)
    if dialect in ("mysql", "mariadb"):
        sql = bind.execute(sa.text("SELECT ACTION_STATEMENT FROM information_schema.TRIGGERS "
                                   "WHERE TRIGGER_SCHEMA = DATABASE() AND TRIGGER_NAME = :n"),
                           {"n": f"{move.trigger}_update"}).scalar()
        return parse_prefix(dialect, sql)
    return None


def parse_prefix(dialect: str, statement: str | None) -> str | None:
    """The prefix literal in a SQLite or MySQL trigger statement ``trigger_ddl`` wrote."""
    if dialect in ("mysql", "mariadb"):
        found = re.search(r"X'([0-9A-Fa-f]*)'", statement or "")
        return bytes.fromhex(found.group(1)).decode() if found else None
    found = re.search(r"= '((?:[^']|'')*)' \|\|", statement or "")
    return found.group(1).replace("''", "'") if found else None


def _execute(bind: Connection, sql: str) -> None:
    """Run DDL as written: no bind-parameter parsing, so ``:`` or ``%`` in a literal stay."""
    bind.exec_driver_sql(sql, execution_options={"no_parameters": True})


def _online(operation: str) -> Connection:
    if context.is_offline_mode():
        raise ValueError(f"{operation} reads and rewrites rows in Python: it needs a database "
                         "connection, not offline SQL (--sql)")
    return op.get_bind()


def _columns(bind: Connection, table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(bind).get_columns(table)}


def _type_of(bind: Connection, table: str, column: str) -> Any:
    """The column's type as the database has it (MySQL needs it to change nullability)."""
    for found in sa.inspect(bind).get_columns(table):
        if found["name"] == column:
            return found["type"]
    raise ValueError(f"{table} has no column {column!r}")
