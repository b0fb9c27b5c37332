"""SECRET_KEY: generated per process, or a hard-coded development value."""

from __future__ import annotations

import ast

from migrate.scan.model import Rule
from migrate.scan.project import Candidate
from migrate.scan.rules.base import WalkerBase
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
                          "random.choice", "random.choices", "random.randbytes"})
DEV_WORDS = ("dev", "secret", "change", "test", "default", "example", "insecure", "replace",
             "your", "sample", "demo", "password", "key")


def is_dev_secret(value: str) -> bool:
    """True for an empty or short placeholder-like value ("dev", "change-me", ...)."""
    low = value.strip().lower()
    if not low:
        return True
    return len(low) <= 40 and any(word in low for word in DEV_WORDS)


class SecretKeyRules(WalkerBase):
    """Judges every value given to SECRET_KEY (config, ``app.secret_key``, defaults)."""

    def _secret_key(self, value: ast.AST, line: int, col: int) -> None:
        for sub in ast.walk(value):
            if isinstance(sub, ast.Call):
                qual = self.qual(sub.func) or ""
                if qual in RANDOM_CALLS:
                    self.add(Candidate("secret-key-per-process", line, col,
                                       f"SECRET_KEY comes from {qual}(): a new key in "
                                       "every process"))
                    return
        for text in value_strings(value):
            if is_dev_secret(text):
                self.add(Candidate("secret-key-dev", line, col,
                                   f"SECRET_KEY defaults to the development value {text!r}"))
                return
