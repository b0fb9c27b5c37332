"""Flask-Limiter counting in this process's memory (``memory://``, its default)."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from migrate.scan.model import Rule
from migrate.scan.project import Candidate, ModuleCheck, ModuleSummary, Project, Resolved
from migrate.scan.rules.base import CONFIG_CONTEXTS, WalkerBase
from migrate.scan.rules.syntax import context_in, short, value_strings

RULES = (
    Rule("limiter-memory", "error", "Rate limit counted in this process (Flask-Limiter "
                                    "memory://)",
         "each instance counts on its own: N instances allow N times the limit, and a "
         "restart forgets every count",
         "give the limiter storage_uri from REDIS_URL (Limiter(..., storage_uri="
         "os.environ['REDIS_URL']) or RATELIMIT_STORAGE_URI), one count for every instance; "
         "nothing to move (counts start afresh)",
         "A Limiter made with no storage_uri is reported unless RATELIMIT_STORAGE_URI (or "
         "RATELIMIT_STORAGE_URL) is set somewhere in the project to something else than "
         "memory:// (Flask-Limiter then reads it from the app's config); a storage_uri that is "
         "not a literal (an environment variable, a setting) is trusted, unless its default is "
         "memory://. " + CONFIG_CONTEXTS.format(what="limiter on memory://")),
)
LIMITER_MEMORY = RULES[0]
SETTINGS = ("RATELIMIT_STORAGE_URI", "RATELIMIT_STORAGE_URL")


def is_limiter(qual: str) -> bool:
    """Flask-Limiter's ``Limiter`` class, however it is imported."""
    return qual.startswith("flask_limiter") and qual.endswith(".Limiter")


def _memory(value: ast.AST) -> bool:
    return any(text.strip().lower().startswith("memory://") for text in value_strings(value))


class LimiterRules(WalkerBase):
    """Reads ``Limiter(...)`` calls and the RATELIMIT_STORAGE_* settings."""

    def _limiter(self, node: ast.Call) -> None:
        storage = next((kw.value for kw in node.keywords if kw.arg == "storage_uri"), None)
        if storage is None:
            if any(kw.arg is None for kw in node.keywords):
                return  # Limiter(**options): cannot tell
            context = context_in(self.contexts) if self.contexts else ""
            if context != "testing":
                self.s.limiters.append((node.lineno, node.col_offset, self.scope, context))
        elif _memory(storage):
            self.add_in_context(self.candidate(
                LIMITER_MEMORY.id, storage,
                f"Limiter(storage_uri={short(storage)}) counts requests in this process"))

    def _storage_uri(self, value: ast.AST, line: int, col: int) -> None:
        """``{"storage_uri": "memory://"}`` (options passed as ``Limiter(**options)``),
        ``storage_uri = "memory://"`` then ``Limiter(storage_uri=storage_uri)``."""
        if _memory(value):
            self.add_in_context(Candidate(
                LIMITER_MEMORY.id, line, col,
                f"the limiter's storage_uri {short(value)} counts requests in this process"))

    def _ratelimit_storage(self, value: ast.AST, line: int, col: int) -> None:
        """RATELIMIT_STORAGE_URI set: reported here when memory://; either way the Limiters
        made without storage_uri read it (a testing configuration's says nothing of them)."""
        if _memory(value):
            self.add_in_context(Candidate(
                LIMITER_MEMORY.id, line, col,
                f"RATELIMIT_STORAGE_URI {short(value)} counts requests in this process"))
        if (context_in(self.contexts) if self.contexts else "") != "testing":
            self.s.ratelimit_storage = True


def limiter_storage(project: Project) -> ModuleCheck:
    """A Limiter made without storage_uri uses memory:// unless the config names a storage
    (a config naming memory:// is reported where it does)."""
    configured = any(s.ratelimit_storage for s in project.summaries)

    def check(summary: ModuleSummary) -> Iterator[Resolved]:
        if configured:
            return
        for line, col, _scope, context in summary.limiters:
            severity, extra = LIMITER_MEMORY.severity, ""
            if context == "development":
                severity, extra = "note", " (in a development configuration: a note)"
            yield Resolved(summary.path, LIMITER_MEMORY.id, severity, line, col,
                           "Limiter(...) has no storage_uri and nothing sets "
                           "RATELIMIT_STORAGE_URI: Flask-Limiter counts in memory://"
                           f"{extra}: {LIMITER_MEMORY.why}")

    return check
