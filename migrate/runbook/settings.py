"""What switch-config changes: the Flask ecosystem's own settings, then the user's mapping.

The ecosystem's settings change only when present in the file (``REDIS_URL`` is added when a
Redis-backed one was switched, since apps build Flask-Session's client from it):

=================================  ===============================================================
Flask-Session  SESSION_TYPE        filesystem / cachelib -> redis; SESSION_FILE_DIR,
                                   SESSION_FILE_THRESHOLD, SESSION_FILE_MODE, SESSION_CACHELIB
                                   commented out
Flask-Caching  CACHE_TYPE          SimpleCache / FileSystemCache / simple / filesystem ->
                                   RedisCache, CACHE_REDIS_URL set; CACHE_DIR commented out
Flask-Limiter  RATELIMIT_STORAGE_URI (or _URL)   memory:// -> the Redis URL
RQ             RQ_REDIS_URL        -> the Redis URL
Celery         CELERY_BROKER_URL, CELERY_RESULT_BACKEND   memory://, filesystem://, sqlite
                                   transports -> the Redis URL (rpc://, brokers elsewhere: kept)
uploads        UPLOAD_FOLDER       commented out: uploads now live in the bucket
redis-py apps  REDIS_URL           -> the Redis URL
SQLAlchemy     DATABASE_URL, SQLALCHEMY_DATABASE_URI   -> --database-url when given
boto3          AWS_ENDPOINT_URL_S3 -> the S3 endpoint when given
=================================  ===============================================================

App-specific keys come from a mapping the user writes, ``[tool.migrate.switch]`` in the
project's pyproject.toml and repeated ``--set KEY=VALUE`` / ``--drop KEY`` (the command line
wins)::

    [tool.migrate.switch]
    set = { UPLOAD_BUCKET = "{bucket}", STORAGE_ENDPOINT = "{s3}" }
    drop = ["MEDIA_ROOT"]

A ``set`` key is written even when absent; a ``drop`` key is commented out when present. A key
whose value is exactly one placeholder is also where that value is read back from when its
option is not given (``S3_BUCKET = "{bucket}"`` and no ``--bucket``: the file's S3_BUCKET).
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from migrate import redact
from migrate.errors import UsageError

PLACEHOLDERS = ("redis", "s3", "bucket", "prefix", "database_url")
_OPTION = {"redis": "--redis redis://HOST:6379/0", "bucket": "--s3 s3://BUCKET (or --bucket)",
           "database_url": "--database-url URL"}
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
SESSION_LOCAL = {"filesystem", "cachelib"}
SESSION_DEAD = ("SESSION_FILE_DIR", "SESSION_FILE_THRESHOLD", "SESSION_FILE_MODE",
                "SESSION_CACHELIB")
CACHE_LOCAL = {"simplecache", "filesystemcache", "simple", "filesystem"}
CACHE_REDIS = {"rediscache", "redis"}
LIMITER_KEYS = ("RATELIMIT_STORAGE_URI", "RATELIMIT_STORAGE_URL")
CELERY_KEYS = ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")
CELERY_LOCAL = {"memory", "cache+memory", "filesystem", "file", "sqlite", "sqla+sqlite",
                "db+sqlite"}
DATABASE_KEYS = ("DATABASE_URL", "SQLALCHEMY_DATABASE_URI")
SESSIONS_WHY = "sessions now live in Redis (REDIS_URL)"


@dataclass
class KeyMapping:
    """App-specific keys: ``set`` (KEY -> value with placeholders) and ``drop`` (KEYs)."""

    set: dict[str, str] = field(default_factory=dict)
    drop: list[str] = field(default_factory=list)
    origin: dict[str, str] = field(default_factory=dict)  # KEY -> where it was given

    def merged(self, sets: Mapping[str, str] | None = None, drops: Iterable[str] = (),
               set_origin: str = "set_keys", drop_origin: str = "drop_keys") -> KeyMapping:
        """This mapping with ``sets`` and ``drops`` on top (they win over it)."""
        sets, drops = dict(sets or {}), list(drops)
        for key in set(sets) & set(drops):
            raise UsageError(f"{key} is both in {set_origin} and {drop_origin}: give one")
        new = KeyMapping({k: v for k, v in self.set.items() if k not in drops},
                         [k for k in self.drop if k not in sets], dict(self.origin))
        for key, value in sets.items():
            check_entry(key, value, set_origin)
            new.set[key], new.origin[key] = value, set_origin
        for key in drops:
            check_key(key, drop_origin)
            if key not in new.drop:
                new.drop.append(key)
            new.origin[key] = drop_origin
        return new


@dataclass
class Targets:
    """The shared stores the file is switched to."""

    redis: str | None = None
    endpoint: str | None = None  # None: AWS S3's own endpoint
    bucket: str | None = None
    prefix: str = ""
    database_url: str | None = None


@dataclass
class Plan:
    """The keys to set (or add) and to comment out (with why), and notes for the user."""

    updates: dict[str, str] = field(default_factory=dict)
    comment_out: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# --- the mapping -----------------------------------------------------------------------------


def check_key(key: Any, origin: str) -> None:
    """A setting's name: letters, digits and underscores, not starting with a digit."""
    if not isinstance(key, str) or not _KEY.match(key):
        raise UsageError(f"{origin}: {key!r} is not a setting name (letters, digits and _, "
                         "not starting with a digit)")


def check_entry(key: Any, value: Any, origin: str) -> None:
    """A ``set`` entry: a valid key, not a secret, a string with known placeholders only."""
    check_key(key, origin)
    if redact.is_secret_key(key):
        raise UsageError(f"{origin}: {key} holds a secret: set it in the environment or edit "
                         "the file, never in a mapping or on the command line")
    if not isinstance(value, str):
        raise UsageError(f"{origin}: the value of {key} must be a string")
    placeholders(key, value, origin)


def placeholders(key: str, value: str, origin: str = "the mapping") -> list[str]:
    """The placeholders ``value`` uses; UsageError on an unknown or malformed one."""
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(value)
                  if name is not None]
    except ValueError:
        raise UsageError(f"{origin}: the value of {key} has an unmatched brace (write {{{{ or "
                         "}} for a literal one)") from None
    for name, spec, conv in fields:
        if name not in PLACEHOLDERS or spec or conv:
            known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            raise UsageError(f"{origin}: {key} uses an unknown placeholder {{{name}}}: use "
                             f"{known}")
    return [name for name, _, _ in fields]


def mapping_from_table(table: Mapping[str, Any], origin: str) -> KeyMapping:
    """``[tool.migrate.switch]`` read into a KeyMapping (UsageError naming what is wrong)."""
    unknown = sorted(set(table) - {"set", "drop"})
    if unknown:
        raise UsageError(f"{origin}: unknown key {unknown[0]!r}: the table has `set` "
                         "(KEY = VALUE) and `drop` ([KEY, ...])")
    sets, drops = table.get("set", {}), table.get("drop", [])
    if not isinstance(sets, dict):
        raise UsageError(f"{origin}: `set` must be a table, e.g. set = {{ KEY = \"{{bucket}}\" }}")
    if not isinstance(drops, list):
        raise UsageError(f"{origin}: `drop` must be a list, e.g. drop = [\"UPLOAD_FOLDER\"]")
    return KeyMapping().merged(sets, drops, origin, origin)


def parse_set_options(items: Iterable[str]) -> dict[str, str]:
    """Repeated ``--set KEY=VALUE`` options as a dict (the last one of a key wins)."""
    out: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq:
            raise UsageError(f"--set {key}: give KEY=VALUE, e.g. --set UPLOAD_BUCKET={{bucket}}")
        check_key(key, "--set")
        out[key] = value
    return out


def expand(value: str, key: str, targets: Targets) -> str | None:
    """``value`` with its placeholders filled in; None when it needs an S3 endpoint (AWS)."""
    names = placeholders(key, value)
    known = {"redis": targets.redis, "s3": targets.endpoint, "bucket": targets.bucket,
             "prefix": targets.prefix, "database_url": targets.database_url}
    for name in names:
        if known[name] is None and name in _OPTION:
            raise UsageError(f"{key} = \"{value}\" needs the {name.replace('_', ' ')}: give "
                             f"{_OPTION[name]}")
    if any(known[n] is None for n in names):
        return None
    return value.format_map(known)


# --- the targets -----------------------------------------------------------------------------


def s3_target(s3_url: str | None, endpoint_url: str | None = None,
              bucket: str | None = None) -> Targets:
    """``--s3`` (``s3://BUCKET[/PREFIX]`` or ``http(s)://HOST:PORT[/BUCKET[/PREFIX]]``),
    ``--endpoint-url`` and ``--bucket`` as one target (``--bucket`` wins)."""
    endpoint, found, prefix = None, None, ""
    if s3_url:
        parts = urlsplit(s3_url)
        if parts.scheme == "s3" and parts.netloc:
            found, prefix = parts.netloc, parts.path.strip("/")
        elif parts.scheme in ("http", "https") and parts.netloc:
            if endpoint_url:
                raise UsageError(f"--s3 {redact.url(s3_url)} already names the endpoint: drop "
                                 "--endpoint-url or give --s3 s3://BUCKET")
            endpoint = f"{parts.scheme}://{parts.netloc}"
            found, _, prefix = parts.path.strip("/").partition("/")
        else:
            raise UsageError(f"--s3 {redact.url(s3_url)}: give s3://BUCKET[/PREFIX] (with "
                             "--endpoint-url URL) or an endpoint like http://127.0.0.1:9000")
    if endpoint_url:
        parts = urlsplit(endpoint_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise UsageError(f"--endpoint-url {redact.url(endpoint_url)}: give "
                             "http(s)://HOST:PORT")
        endpoint = endpoint_url.rstrip("/")
    return Targets(endpoint=endpoint, bucket=bucket or found or None, prefix=prefix.strip("/"))


def resolve(values: Mapping[str, str], mapping: KeyMapping, given: Targets) -> Targets:
    """``given`` completed from the file: REDIS_URL, DATABASE_URL and the mapping's keys whose
    value is exactly one placeholder."""
    read_back = {name: values.get(key) for key, v in mapping.set.items()
                 for name in PLACEHOLDERS if v == "{" + name + "}" and values.get(key)}
    targets = Targets(
        redis=given.redis or read_back.get("redis") or values.get("REDIS_URL") or None,
        endpoint=given.endpoint or read_back.get("s3"),
        bucket=given.bucket or read_back.get("bucket"),
        prefix=given.prefix or read_back.get("prefix") or "",
        database_url=(given.database_url or read_back.get("database_url")
                      or next((values[k] for k in DATABASE_KEYS if values.get(k)), None)))
    if targets.endpoint and not targets.bucket:
        raise UsageError("an S3 endpoint without a bucket: give --s3 s3://BUCKET or --bucket")
    return targets


# --- the plan --------------------------------------------------------------------------------


def plan(values: Mapping[str, str], mapping: KeyMapping, targets: Targets) -> Plan:
    """The ecosystem's settings switched, then the mapping's ``set`` and ``drop`` on top."""
    out = Plan()
    moved, following = _redis_settings(values, out)
    if moved and targets.redis is None:
        raise UsageError(f"{', '.join(moved)} move to Redis: give --redis redis://HOST:6379/0")
    if targets.redis is not None:
        urls = {k: targets.redis for k in [*moved, *following] if k not in out.updates}
        if any(values.get(k) != v for k, v in [*urls.items(), *out.updates.items()]):
            urls["REDIS_URL"] = targets.redis  # apps build Flask-Session's client from it
        elif "REDIS_URL" in values:
            urls["REDIS_URL"] = targets.redis
        out.updates.update(urls)
    if targets.database_url:
        out.updates.update({k: targets.database_url for k in DATABASE_KEYS if k in values})
    if targets.endpoint and "AWS_ENDPOINT_URL_S3" in values:
        out.updates["AWS_ENDPOINT_URL_S3"] = targets.endpoint  # boto3 reads it itself
    if "UPLOAD_FOLDER" in values:
        if targets.bucket:
            where = f"s3://{targets.bucket}/{targets.prefix}".rstrip("/")
            out.comment_out["UPLOAD_FOLDER"] = f"uploads now live in the bucket {where}"
        else:
            out.notes.append("UPLOAD_FOLDER kept: no bucket given (--s3 s3://BUCKET) for the "
                             "uploads to move to")
    _apply_mapping(values, mapping, targets, out)
    return out


def _apply_mapping(values: Mapping[str, str], mapping: KeyMapping, targets: Targets,
                   out: Plan) -> None:
    """The user's ``set`` and ``drop`` win over the ecosystem's settings."""
    for key, value in mapping.set.items():
        expanded = expand(value, key, targets)
        out.comment_out.pop(key, None)
        if expanded is None:
            out.updates.pop(key, None)
            out.notes.append(f"{key} not set: no S3 endpoint given (--endpoint-url); the app "
                             "uses AWS S3's own")
        else:
            out.updates[key] = expanded
    for key in mapping.drop:
        out.updates.pop(key, None)
        if key in values:
            out.comment_out[key] = f"dropped by {mapping.origin.get(key, 'the mapping')}"


def _redis_settings(values: Mapping[str, str], out: Plan) -> tuple[list[str], list[str]]:
    """Switch the ecosystem's local stores in ``out``: (settings that move to Redis, keys that
    already hold a Redis URL and follow ``--redis``)."""
    moved: list[str] = []
    following = [k for k in ("REDIS_URL", "RQ_REDIS_URL") if k in values]
    session = values.get("SESSION_TYPE", "").strip().lower()
    if session in SESSION_LOCAL:
        out.updates["SESSION_TYPE"] = "redis"  # migrate: ignore[session-not-initialised]
        moved.append("SESSION_TYPE")
    if session in SESSION_LOCAL or session == "redis":
        out.comment_out.update({k: SESSIONS_WHY for k in SESSION_DEAD if k in values})
    cache = values.get("CACHE_TYPE", "").strip().rsplit(".", 1)[-1].lower()
    if cache in CACHE_LOCAL:
        out.updates["CACHE_TYPE"] = "RedisCache"
        moved += ["CACHE_TYPE", "CACHE_REDIS_URL"]
    elif cache in CACHE_REDIS and "CACHE_REDIS_URL" in values:
        following.append("CACHE_REDIS_URL")
    if (cache in CACHE_LOCAL or cache in CACHE_REDIS) and "CACHE_DIR" in values:
        out.comment_out["CACHE_DIR"] = "the cache now lives in Redis (CACHE_REDIS_URL)"
    moved += [k for k in LIMITER_KEYS
              if values.get(k, "").strip().lower().startswith("memory://")]
    moved += [k for k in CELERY_KEYS
              if values.get(k, "").strip().partition("://")[0].lower() in CELERY_LOCAL]
    return moved, following
