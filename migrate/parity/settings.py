"""What the parity run starts: the app, how many instances, their environment, the stores.

One dataclass serves the pytest plugin (built from its options and ini values) and
``migrate verify instances --app`` (built from the command's options). Values given as
``KEY=VALUE`` may name the shared stores and the instance with placeholders:

==================  =========================================================
``{redis}``         the shared Redis URL
``{s3}``            the S3 endpoint URL
``{bucket}``        the bucket the instances share
``{database_url}``  the shared database (SQLite in the run folder by default)
``{run_dir}``       the run folder (logs, stores, the instances' folders)
``{python}``        the interpreter running the tests
``{instance}``      the process's name: instance-1, ..., worker-1, ..., prepare
``{instance_dir}``  the process's own folder (an instance's "host's disk")
``{port}``          the instance's port (0 for a worker or a prepare command)
==================  =========================================================
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from pathlib import Path

from migrate.errors import UsageError

POLICIES = ("round-robin", "random", "sticky")
STORE_PLACEHOLDERS = ("redis", "s3", "bucket", "database_url", "run_dir", "python")
INSTANCE_PLACEHOLDERS = ("instance", "instance_dir", "port")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# An app spec as gunicorn takes it: "pkg.module:app" or "pkg.module:factory(args)".
_APP = re.compile(r"[A-Za-z_][\w.]*(:[A-Za-z_]\w*(\(.*\))?)?\Z", re.DOTALL)


@dataclass
class ParitySettings:
    """Everything a parity run needs; ``check()`` turns bad values into one line each."""

    app: str
    instances: int = 2
    app_env: dict[str, str] = field(default_factory=dict)  # KEY -> value with placeholders
    app_dir: Path = field(default_factory=Path.cwd)  # the app is imported from here
    prepare: list[str] = field(default_factory=list)  # commands run once, before the instances
    workers: list[str] = field(default_factory=list)  # side processes (an RQ worker, ...)
    policy: str = "round-robin"
    seed: int = 0
    worker_class: str = "sync"
    redis_url: str | None = None  # the user's Redis; None: an embedded redis-server
    s3_endpoint_url: str | None = None  # the user's S3; None: an embedded rclone serve s3
    s3_bucket: str = "parity"
    database_url: str | None = None  # None: SQLite in the run folder
    start_timeout: float = 30.0
    request_timeout: float = 30.0
    health_path: str = "/healthz"
    kill_one: bool = False
    flush_redis: bool = True  # FLUSHALL the embedded Redis before each test (never the user's)

    def check(self) -> ParitySettings:
        if not self.app or not _APP.match(self.app.strip()):
            raise UsageError(
                f"--app {self.app!r} is not an app spec: give the factory as gunicorn takes "
                "it, e.g. --app 'mypackage:create_app()' or --app 'mypackage.wsgi:app'")
        if not 1 <= self.instances <= 16:
            raise UsageError(f"--instances {self.instances}: give 1 to 16 (2 finds the traps)")
        if self.policy not in POLICIES:
            raise UsageError(f"--instances-policy {self.policy!r}: use one of "
                             f"{', '.join(POLICIES)}")
        if self.kill_one and self.instances < 2:
            raise UsageError("--instances-kill-one needs at least 2 instances (one is killed, "
                             "another carries on): add --instances 2")
        if not self.app_dir.is_dir():
            raise UsageError(f"--app-dir {self.app_dir}: no such folder; give the folder the "
                             "app is imported from")
        if not self.health_path.startswith("/"):
            raise UsageError(f"--instances-health-path {self.health_path!r}: give a path "
                             "starting with /, e.g. /healthz")
        for value in (*self.app_env.values(), *self.prepare, *self.workers):
            _check_placeholders(value)
        return self


def parse_env(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["KEY=VALUE", ...]`` as a dict; UsageError (one line) for a malformed pair."""
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not _KEY.match(key):
            raise UsageError(f"--app-env {pair!r}: give KEY=VALUE, e.g. --app-env "
                             "SESSION_TYPE=redis or --app-env CACHE_REDIS_URL={redis}")
        env[key] = value
    return env


def render(template: str, values: dict[str, str]) -> str:
    """``template`` with its placeholders filled from ``values`` (``{{`` for a brace)."""
    _check_placeholders(template)
    return template.format_map(values)  # every process gets every placeholder (its own name)


def _check_placeholders(template: str) -> None:
    known = (*STORE_PLACEHOLDERS, *INSTANCE_PLACEHOLDERS)
    try:
        fields = [name for _, name, spec, conv in string.Formatter().parse(template)
                  if name is not None]
    except ValueError as exc:
        raise UsageError(f"{template!r}: {exc} (write {{{{ for a literal brace)") from None
    for name in fields:
        if name not in known:
            raise UsageError(f"{template!r}: unknown placeholder {{{name}}}; use one of "
                             f"{_names(known)} (write {{{{ for a literal brace)")


def _names(names: tuple[str, ...]) -> str:
    return ", ".join("{" + n + "}" for n in names)
