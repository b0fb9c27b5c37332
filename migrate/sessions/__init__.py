"""Session sources -> Flask-Session records in Redis (``migrate export-sessions``).

- ``record``     one session (``Record``), its NDJSON line, the restricted pickle reader, and
                 the value Flask-Session's serializer will read;
- ``sources``    a running instance's bridge, a cachelib FileSystemCache folder, an NDJSON dump;
- ``target``     the Redis or Redis Cluster written to (``redis_client``, batched writes);
- ``plan``       how a record maps onto the after-app's key, value and TTL (``Options``);
- ``export``     ``export_sessions`` and its ``ExportResult``;
- ``verify``     ``verify_sessions`` and its ``VerifyResult``;
- ``bridge``     the before-app's extension for the migration window (``MigrationBridge``);
- ``interface``  the after-app's read-through ``RedisSessionInterface``;
- ``tokens``     API bearer tokens across the migration: hashed in Redis, the denylist layout;
- ``compat``     the few uses of redis-py, Flask-Session and cachelib internals.

The names below are loaded on first use, so an app importing ``migrate.sessions.interface`` or
``migrate.sessions.bridge`` loads none of the export machinery.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from migrate.sessions.export import ExportResult, export_sessions
    from migrate.sessions.plan import Failure, Options
    from migrate.sessions.record import (
        DEFAULT_LIFETIME,
        DEFAULT_PREFIX,
        LEGACY_PREFIX,
        DisallowedClass,
        Record,
        restricted_loads,
    )
    from migrate.sessions.target import redis_client
    from migrate.sessions.verify import Difference, VerifyResult, verify_sessions

__all__ = [
    "DEFAULT_LIFETIME", "DEFAULT_PREFIX", "LEGACY_PREFIX", "Difference", "DisallowedClass",
    "ExportResult", "Failure", "Options", "Record", "VerifyResult", "export_sessions",
    "redis_client", "restricted_loads", "verify_sessions",
]
_MODULES = ("record", "target", "plan", "export", "verify")  # where to look, lightest first


def __getattr__(name: str) -> Any:
    if name in __all__:
        for home in _MODULES:
            module = importlib.import_module(f"{__name__}.{home}")
            if hasattr(module, name):
                globals()[name] = value = getattr(module, name)
                return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
