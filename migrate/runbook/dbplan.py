"""What an alembic history does with migrate's ops, read from its revision files (nothing runs):
which path -> key moves it expands and contracts, and at which revisions. ``migrate db`` uses it
to say what a revision means for the apps (expanded: both run; contracted: after-app only) and
to count the rows each move concerns. Calls are found by name with literal table and column
names, as ``expand_path_to_key("documents", "file_path", "file_key")``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_OPS = {"expand_path_to_key": "expand", "contract_path_to_key": "contract"}
_ARGS = ("table", "path_column", "key_column")


@dataclass
class PlannedMove:
    """One path column becoming a key column, and the revisions that expand and contract it."""

    table: str
    path_column: str
    key_column: str
    expand: str | None = None
    contract: str | None = None

    @property
    def label(self) -> str:
        """What the rows hold, for people: "avatar" (avatar_path), "file" (files.path)."""
        stem = (self.path_column.removesuffix("path").rstrip("_")
                or self.key_column.removesuffix("key").rstrip("_"))
        return stem or self.table.removesuffix("s")


@dataclass
class KeyMoves:
    """Every move in a history, in the order its revisions make them."""

    moves: list[PlannedMove] = field(default_factory=list)

    def describe(self, applied: set[str | None]) -> str:
        """The state of the moves once the ``applied`` revisions ran ("" when none started)."""
        def done(revision: str | None) -> bool:
            return revision is not None and revision in applied

        expanded = [m for m in self.moves if done(m.expand) and not done(m.contract)]
        contracted = [m for m in self.moves if done(m.contract)]
        parts = []
        if expanded:
            pairs = ", ".join(f"{m.table}.{m.path_column} -> {m.key_column}" for m in expanded)
            parts.append(f"expanded: paths and object keys side by side, kept in step by "
                         f"triggers ({pairs}); the before- and after-app both work")
        if contracted:
            keys = ", ".join(f"{m.table}.{m.key_column}" for m in contracted)
            parts.append(f"contracted: object keys only ({keys}); the after-app's schema")
        return "; ".join(parts)

    def labels(self) -> list[tuple[str, PlannedMove]]:
        """(label, move) with labels unique: a repeated one becomes ``table.key_column``."""
        names = [m.label for m in self.moves]
        return [(name if names.count(name) == 1 else f"{m.table}.{m.key_column}", m)
                for name, m in zip(names, self.moves, strict=True)]

    def count(self, conn: Any, tables: set[str]) -> dict[str, int]:
        """Per move: the rows with a key (where the key column exists) or else a path."""
        import sqlalchemy as sa

        counts: dict[str, int] = {}
        for name, m in self.labels():
            if m.table not in tables:
                continue
            columns = {c["name"] for c in sa.inspect(conn).get_columns(m.table)}
            column = next((c for c in (m.key_column, m.path_column) if c in columns), None)
            if column is not None:
                query = (sa.select(sa.func.count()).select_from(sa.table(m.table))
                         .where(sa.column(column).is_not(None)))
                counts[name] = int(conn.execute(query).scalar() or 0)
        return counts


def find_moves(script: Any) -> KeyMoves:
    """The moves in ``script`` (an alembic ScriptDirectory), base first."""
    found: dict[tuple[str, str, str], PlannedMove] = {}
    for revision in reversed(list(script.walk_revisions())):
        path = Path(revision.path)
        if path.suffix != ".py":
            continue  # a sourceless (.pyc) history: nothing to read
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError, UnicodeDecodeError):
            continue  # alembic reports a broken revision file itself
        calls = sorted((n for n in ast.walk(tree) if isinstance(n, ast.Call)),
                       key=lambda n: (n.lineno, n.col_offset))
        for call in calls:
            kind, names = _op_call(call)
            if kind is None or names is None:
                continue
            move = found.setdefault(names, PlannedMove(*names))
            setattr(move, kind, revision.revision)
    return KeyMoves(list(found.values()))


def _op_call(call: ast.Call) -> tuple[str | None, tuple[str, str, str] | None]:
    func = call.func
    name = func.id if isinstance(func, ast.Name) else (
        func.attr if isinstance(func, ast.Attribute) else None)
    kind = _OPS.get(name or "")
    if kind is None:
        return None, None
    values: dict[str, Any] = dict(zip(_ARGS, call.args, strict=False))
    values.update((k.arg, k.value) for k in call.keywords if k.arg in _ARGS)
    literal = [v.value for a in _ARGS if isinstance(v := values.get(a), ast.Constant)
               and isinstance(v.value, str)]
    return (kind, (literal[0], literal[1], literal[2])) if len(literal) == 3 else (kind, None)
