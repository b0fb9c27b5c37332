"""Server-side sessions kept per instance, and Flask-Session configured but never started."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from migrate.scan.model import Rule
from migrate.scan.project import Candidate, ModuleCheck, ModuleSummary, Project, Resolved
from migrate.scan.rules.base import ClassFrame, WalkerBase
from migrate.scan.rules.syntax import value_strings

SHARED_SESSIONS = "keep sessions in Redis: SESSION_TYPE='redis'; move live ones with " \
    "`migrate export-sessions`"

RULES = (
    Rule("session-local", "error", "Server-side sessions kept per instance",
         "a user whose next request reaches another instance is logged out, cart and all",
         SHARED_SESSIONS),
    Rule("session-not-initialised", "warning", "Flask-Session configured but never initialised",
         "SESSION_* settings do nothing without Session(app): sessions silently stay in "
         "signed cookies",
         "call Session(app) after configuring it (SESSION_TYPE='redis'), or drop the "
         "SESSION_* settings; then move live sessions with `migrate export-sessions`"),
)
SESSION_LOCAL, SESSION_NOT_INITIALISED = RULES

SERVER_SIDE_TYPES = ("filesystem", "cachelib", "redis", "memcached", "mongodb", "sqlalchemy",
                     "dynamodb")
LOCAL_CACHELIB = ("SimpleCache", "FileSystemCache")


def starts_flask_session(qual: str) -> bool:
    """True for a call of Flask-Session's ``Session`` (``Session(app)``)."""
    return qual.startswith("flask_session.") and qual.endswith(".Session") \
        or qual == "flask_session.Session"


class SessionRules(WalkerBase):
    """Reads the session settings and custom session interfaces of a module."""

    def _session_type(self, value: ast.AST, line: int, col: int) -> None:
        for text in value_strings(value):
            self.s.session_types.append((text, line, col))

    def _session_cachelib(self, value: ast.AST, line: int, col: int) -> None:
        local = None
        for sub in ast.walk(value):
            if isinstance(sub, ast.Call):
                name = (self.qual(sub.func) or "").rpartition(".")[2]
                if name in LOCAL_CACHELIB:
                    local = name
                    self.consumed.add(id(sub))
        if local:
            where = "process memory" if local == "SimpleCache" else "this host's disk"
            self.add(Candidate("session-local", line, col,
                               f"SESSION_CACHELIB is a {local}: sessions live in {where}"))
            self.s.session_cachelib = "local"
        elif self.s.session_cachelib != "local":
            self.s.session_cachelib = "shared"

    def _finish_session_interface(self, frame: ClassFrame) -> None:
        """A custom SessionInterface that stores sessions in a dict of its own."""
        for attr, line, _col, how in frame.self_mutations:
            key = f"{frame.qualname}.{attr}"
            if attr in frame.instance_mutables or key in self.s.mutables:
                self.add(Candidate("session-local", frame.line, 0,
                                   f"session interface `{frame.name}` keeps sessions in "
                                   f"`self.{attr}` (process memory; changed on line {line}, "
                                   f"{how})"))
                return


def session_types(project: Project) -> ModuleCheck:
    """SESSION_TYPE values judged with the whole project's SESSION_CACHELIB and Session(app)."""
    initialised = any(s.session_init for s in project.summaries)
    cachelib = {s.session_cachelib for s in project.summaries} - {""}

    def check(summary: ModuleSummary) -> Iterator[Resolved]:
        for value, line, col in summary.session_types:
            low = value.lower()
            rule = SESSION_LOCAL
            if low == "filesystem":
                yield Resolved(summary.path, rule.id, rule.severity, line, col,
                               "SESSION_TYPE 'filesystem' keeps sessions in files on "
                               f"this host's disk: {rule.why}")
            elif low == "cachelib" and "shared" not in cachelib:
                what = ("SESSION_CACHELIB is a SimpleCache or FileSystemCache"
                        if "local" in cachelib else
                        "without SESSION_CACHELIB, Flask-Session uses a FileSystemCache")
                yield Resolved(summary.path, rule.id, rule.severity, line, col,
                               f"SESSION_TYPE 'cachelib' keeps sessions per instance "
                               f"({what}): {rule.why}")
            if not initialised and low in SERVER_SIDE_TYPES:
                rule = SESSION_NOT_INITIALISED
                yield Resolved(summary.path, rule.id, rule.severity, line, col,
                               f"SESSION_TYPE {value!r} is set but nothing calls "
                               f"Session(app): {rule.why}")

    return check
