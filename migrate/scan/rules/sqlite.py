"""SQLite databases on this host's disk (database URLs and ``sqlite3.connect``)."""

from __future__ import annotations

import ast
import re

from migrate.scan.model import Rule
from migrate.scan.project import Candidate
from migrate.scan.rules.base import CONFIG_CONTEXTS, WalkerBase
from migrate.scan.rules.syntax import short

RULES = (
    Rule("sqlite-local", "error", "SQLite database on this host's disk",
         "each instance reads and writes its own file (or fights over the lock on a "
         "shared disk)",
         "point DATABASE_URL at a shared database server (PostgreSQL) and copy the data "
         "over once; `migrate steps` lists the copy",
         CONFIG_CONTEXTS.format(what="database (in-memory SQLite or a scratch file)")),
)

SQLITE_URL = re.compile(r"sqlite(\+\w+)?://")
SQLITE_CONNECT = frozenset({"sqlite3.connect", "sqlite3.dbapi2.connect"})
ENGINE_CALLS = ("create_engine", "create_async_engine", "connect", "Database", "SQLAlchemy",
                "get", "getenv", "setdefault", "pop")
"""Calls whose URL argument is a database the app uses (or a setting's default): an
in-memory URL given to any other call is a placeholder or a scratch database."""


def is_memory_url(text: str) -> bool:
    """``sqlite://``, ``sqlite:///:memory:`` and the like."""
    return text.rstrip("/").endswith(":") or ":memory:" in text


class SqliteRules(WalkerBase):
    """Finds SQLite URLs in strings, sums and f-strings (each judged once), and connects."""

    def _sqlite(self, node: ast.Constant, whole: ast.AST) -> None:
        self.consumed.add(id(node))
        text = node.value
        if not SQLITE_URL.match(text):
            return
        memory = is_memory_url(text)
        call = self.call_now
        if memory and whole is node and call is not None and node in call[0].args \
                and not call[1].endswith(ENGINE_CALLS):
            return  # from_project("sqlite://"): a placeholder handed to an ordinary call
        instance = "instance" in short(whole, 400)
        if memory and whole is node:
            what = "an in-memory SQLite database, one per process"
        elif instance:
            what = "a SQLite file in the instance folder, on this host's disk"
        else:
            what = "a SQLite file on this host's disk"
        shown = f"{text!r}" if whole is node else f"{text!r} + …"
        self.add_in_context(Candidate("sqlite-local", node.lineno, node.col_offset,
                                      f"database URL {shown} is {what}"))

    def _constant(self, node: ast.Constant) -> None:
        value = node.value
        if isinstance(value, str) and value.startswith("sqlite") and id(node) not in \
                self.consumed:
            self._sqlite(node, node)

    def _binop(self, node: ast.BinOp) -> None:
        left = node.left
        while isinstance(left, ast.BinOp):
            left = left.left
        if isinstance(left, ast.Constant) and isinstance(left.value, str) \
                and left.value.startswith("sqlite") and id(left) not in self.consumed:
            self._sqlite(left, node)
        self.generic(node)

    def _joinedstr(self, node: ast.JoinedStr) -> None:
        first = node.values[0] if node.values else None
        if isinstance(first, ast.Constant) and isinstance(first.value, str) \
                and first.value.startswith("sqlite") and id(first) not in self.consumed:
            self._sqlite(first, node)
        self.generic(node)

    def _sqlite_connect(self, node: ast.Call) -> None:
        arg = node.args[0] if node.args else None
        if not (isinstance(arg, ast.Constant) and arg.value == ":memory:"):
            self.add_in_context(self.candidate("sqlite-local", node,
                                               "sqlite3.connect() opens a database file on "
                                               "this host's disk"))

    def _scheme_test(self, node: ast.Call, meth: str, recv: ast.AST) -> None:
        """``url.startswith("sqlite://")`` tests a URL's scheme: the string is not a URL."""
        for arg in ast.walk(node.args[0]) if node.args else ():
            self.consumed.add(id(arg))
