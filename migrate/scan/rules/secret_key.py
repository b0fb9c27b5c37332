"""SECRET_KEY: generated per process, or a hard-coded development value."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from migrate.scan.model import Rule
from migrate.scan.project import (
    Candidate,
    FuncKey,
    ModuleCheck,
    ModuleSummary,
    Project,
    Resolved,
)
from migrate.scan.rules.base import FuncFrame, WalkerBase
from migrate.scan.rules.syntax import value_strings

RULES = (
    Rule("secret-key-per-process", "error", "SECRET_KEY generated per process",
         "each instance signs cookies with its own key: a session signed by one is "
         "rejected by the other",
         "read one shared SECRET_KEY from the environment on every instance and refuse to "
         "start without it; `migrate steps` sets it"),
    Rule("secret-key-dev", "warning", "SECRET_KEY with a hard-coded development value",
         "an instance started without the real key signs with the default: its sessions "
         "fail on the others (and anyone can forge them)",
         "require SECRET_KEY from the environment (no default), the same on every instance; "
         "`migrate steps` sets it"),
)

RANDOM_CALLS = frozenset({"os.urandom", "secrets.token_bytes", "secrets.token_hex",
                          "secrets.token_urlsafe", "secrets.randbits", "secrets.choice",
                          "uuid.uuid4", "uuid.uuid1", "random.random", "random.getrandbits",
                          "random.choice", "random.choices", "random.randbytes",
                          "cryptography.fernet.Fernet.generate_key"})
PER_PROCESS = RULES[0]
HELPER_DEPTH = 6
"""How many helpers deep a generated key is followed (helper -> helper -> ...)."""
DEV_WORDS = ("dev", "secret", "change", "test", "default", "example", "insecure", "replace",
             "your", "sample", "demo", "password", "key", "guess", "placeholder", "fixme",
             "todo", "string")


def is_dev_secret(value: str) -> bool:
    """True for an empty or short placeholder-like value ("dev", "change-me", ...)."""
    low = value.strip().lower()
    if not low:
        return True
    return len(low) <= 40 and any(word in low for word in DEV_WORDS)


class SecretKeyRules(WalkerBase):
    """Judges every value given to SECRET_KEY (config, ``app.secret_key``, defaults): made
    here by a random call, through names bound to one, or by a project helper (judged by
    ``generated_keys`` once every module is known)."""

    def _secret_key(self, value: ast.AST, line: int, col: int) -> None:
        random, made, calls = self.trace(value, RANDOM_CALLS)
        if random:
            where = f" (line {made})" if made != line else ""
            self.add(Candidate(PER_PROCESS.id, line, col,
                               f"SECRET_KEY comes from {random}(){where}: a new key in every "
                               "process", origin=made if made != line else 0))
            return
        if calls:
            self.s.secret_refs.append((self.scope, tuple(calls), line, col))
        for text in value_strings(value):
            if is_dev_secret(text):
                self.add(Candidate("secret-key-dev", line, col,
                                   f"SECRET_KEY defaults to the development value {text!r}"))
                return

    def _finish_secret(self, frame: FuncFrame) -> None:
        """What the function's return values are made from (a random call, other calls)."""
        info = frame.info
        info.writes_disk = any(c.rule == "local-file-write" for c, _ in frame.writes)
        returns: list[str] = []
        for value in frame.returns:  # deep only where a random call was seen
            random, _, calls = self.trace(value, RANDOM_CALLS, frame.random_seen)
            if random:
                info.key_random = random
                return
            returns += calls
        info.returns = tuple(dict.fromkeys(returns))


def generated_keys(project: Project) -> ModuleCheck:
    """SECRET_KEY values returned by a project helper (here or in another module, possibly
    through other helpers) that generates a key: a new one in every process or on every
    host (when it is cached in a file)."""

    def check(summary: ModuleSummary) -> Iterator[Resolved]:
        for scope, calls, line, col in summary.secret_refs:
            for dotted in calls:
                found = project.resolve_dotted(summary.module, scope, dotted)
                made = _generator(project, found, set()) if found is not None else None
                if made is None:
                    continue
                (module, qual), random, disk = made
                where = project.modules[module].path
                kept = (" and keeps it in a file on this host's disk (each host makes its "
                        "own)" if disk else "")
                via = "" if qual == found[1] else f" (through `{qual}` in {where})"
                yield Resolved(summary.path, PER_PROCESS.id, PER_PROCESS.severity, line, col,
                               f"SECRET_KEY comes from `{dotted}()`, which makes a new key "
                               f"with {random}(){via}{kept}: {PER_PROCESS.why}")
                break

    return check


def _generator(project: Project, key: FuncKey,
               seen: set[FuncKey]) -> tuple[FuncKey, str, bool] | None:
    """The helper under ``key`` that generates the key it returns, its random call, and
    whether a helper on the way writes a file; None when it returns no generated key."""
    info = project.modules[key[0]].functions.get(key[1])
    if info is None or key in seen or len(seen) > HELPER_DEPTH:
        return None
    seen.add(key)
    if info.key_random:
        return key, info.key_random, info.writes_disk
    for dotted in info.returns:
        found = project.resolve_dotted(key[0], key[1], dotted)
        made = _generator(project, found, seen) if found is not None else None
        if made is not None:
            return made[0], made[1], made[2] or info.writes_disk
    return None
