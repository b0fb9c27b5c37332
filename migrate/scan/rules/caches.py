"""Caches kept in one process or on one host, and memoised functions that read request data."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from migrate.scan.model import Rule
from migrate.scan.project import Candidate, ModuleCheck, ModuleSummary, Project, Resolved
from migrate.scan.rules.base import CONFIG_CONTEXTS, WalkerBase
from migrate.scan.rules.syntax import value_strings

RULES = (
    Rule("process-cache", "warning", "Cache kept in this process or on this host",
         "each instance caches on its own: users see different or stale data per instance",
         "CACHE_TYPE='RedisCache' with CACHE_REDIS_URL, one cache for every instance; "
         "nothing to move (a cache refills)",
         CONFIG_CONTEXTS.format(what="cache (SimpleCache, FileSystemCache)")),
    Rule("function-cache", "warning", "Memoised function that reads request, session or "
                                      "database data",
         "the memo lives in one process: it serves stale rows after a write on another "
         "instance (or another user's data)",
         "drop the memo, or cache in Redis with a TTL (flask-caching RedisCache, "
         "@cache.memoize); nothing to move"),
)
FUNCTION_CACHE = RULES[1]

CACHE_DECORATORS = frozenset({"functools.lru_cache", "functools.cache", "lru_cache", "cache",
                              "cachetools.cached", "cachetools.func.ttl_cache",
                              "cachetools.func.lru_cache"})
LOCAL_CACHE_TYPES = frozenset({"simple", "simplecache", "filesystem", "filesystemcache"})
LOCAL_CACHE_CLASSES = ("SimpleCache", "FileSystemCache")
REQUEST_NAMES = frozenset({"request", "session", "g", "current_user"})
"""A function that loads one of these names reads per-request data."""
DB_ATTRS = frozenset({"query", "execute", "scalars", "scalar", "fetchone", "fetchall",
                      "fetchmany", "filter_by", "get_db", "get_or_404", "first_or_404"})
"""A function that uses one of these attributes reads the database."""


def is_local_cache_class(qual: str) -> bool:
    """True for cachelib's, Flask-Caching's or werkzeug's SimpleCache / FileSystemCache."""
    return qual.rpartition(".")[2] in LOCAL_CACHE_CLASSES \
        and qual.startswith(("cachelib", "flask_caching", "werkzeug"))


class CacheRules(WalkerBase):
    """Judges CACHE_TYPE and cache objects built in the module."""

    def _cache_type(self, value: ast.AST, line: int, col: int) -> None:
        for text in value_strings(value):
            if text.rpartition(".")[2].lower() in LOCAL_CACHE_TYPES:
                self.add_in_context(Candidate("process-cache", line, col,
                                              f"CACHE_TYPE {text!r} caches in this process "
                                              "or on this host's disk"))
                return

    def _cache_class(self, node: ast.Call, qual: str) -> None:
        if id(node) not in self.consumed:  # a session store is judged as one (sessions)
            self.add_in_context(self.candidate(
                "process-cache", node,
                f"{qual.rpartition('.')[2]}() keeps cached data in this process"
                if "Simple" in qual else "FileSystemCache() keeps cached data on this "
                "host's disk"))


def cached_functions(project: Project) -> ModuleCheck:
    """``@lru_cache`` and the like on a function that reads request, session or database data
    (itself or through the project functions it calls)."""

    def check(summary: ModuleSummary) -> Iterator[Resolved]:
        for name, info in summary.functions.items():
            if info.cached is not None and project.reads_request((summary.module, name), set()):
                line, col, deco = info.cached
                yield Resolved(summary.path, FUNCTION_CACHE.id, FUNCTION_CACHE.severity, line,
                               col, f"@{deco} on `{name}`, which reads request, session or "
                               f"database data: {FUNCTION_CACHE.why}")

    return check
