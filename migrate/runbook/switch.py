"""Switch a dotenv file from the before configuration to the after one, after real probes.

The file is rewritten line by line: comments, blank lines, order and ``export`` prefixes stay;
only the keys the after-app reads differently change. Before-only keys are commented out with a
``# migrate: was ...`` line so a reader sees what moved. Nothing is written unless every target
(Redis, S3, the database) answered a real round trip. Never prints; secrets are masked in every
string it returns.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from migrate import redact
from migrate.errors import ConnectionFailure, UsageError

TARGETS = ("stateless",)
DEV_SECRETS = {"dev", "development", "secret", "changeme", "change-me"}
SECRET_HELP = "generate one with: python -c 'import secrets; print(secrets.token_hex(32))'"
# Keys only the before-app reads, and where that state lives now.
BEFORE_ONLY = {
    "UPLOAD_FOLDER": "uploads now live in object storage (S3_BUCKET)",
    "SESSION_FILE_DIR": "sessions now live in Redis (REDIS_URL)",
    "SESSION_CACHELIB": "sessions now live in Redis (REDIS_URL)",
    "CACHE_DIR": "the cache now lives in Redis (REDIS_URL)",
}
_KEY_LINE = re.compile(r"^(?P<lead>\s*(?:export\s+)?)(?P<key>[A-Za-z_][A-Za-z0-9_.]*)\s*=")
_COMMENTED_KEY = re.compile(r"^\s*#\s*(?:export\s+)?(?P<key>[A-Za-z_][A-Za-z0-9_.]*)\s*=")
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_./:@+,%=-]*$")
_BACKUP_STAMP = "%Y%m%dT%H%M%SZ"


@dataclass
class Probe:
    """One real round trip to a target: ok, or the one line that says what failed."""

    target: str
    url: str  # masked
    ok: bool
    detail: str
    seconds: float = 0.0


@dataclass
class SwitchResult:
    """What switch_config changed (or would change, on a dry run)."""

    path: str
    target: str
    changed: list[str] = field(default_factory=list)  # keys set or changed
    removed: list[str] = field(default_factory=list)  # before-only keys commented out
    backup: str | None = None
    diff: str = ""  # unified diff, secrets masked
    probes: list[Probe] = field(default_factory=list)
    dry_run: bool = False
    written: bool = False

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.probes)


@dataclass
class RollbackResult:
    """Which backup was restored over the file."""

    path: str
    backup: str
    backups_left: int


class ProbesFailed(ConnectionFailure):
    """One or more targets failed their round trip; ``result`` holds every probe."""

    def __init__(self, result: SwitchResult) -> None:
        self.result = result
        failed = [p for p in result.probes if not p.ok]
        self.lines = [f"{p.target} at {p.url}: {p.detail}" for p in failed]
        # The message is the compact form the journal and `migrate status` show.
        super().__init__("probe failed: " + ", ".join(
            f"{p.target} ({p.detail.split(':', 1)[0]})" for p in failed)
            + "; nothing was written")


# --- masking ---------------------------------------------------------------------------------


def mask_line(line: str) -> str:
    """A dotenv line with its secret value (or any URL password in it) masked."""
    # A commented-out assignment is masked too: it shows up as diff context.
    match = _KEY_LINE.match(line) or _COMMENTED_KEY.match(line)
    if match and redact.is_secret_key(match["key"]):
        return line[: match.end()] + "***" + ("\n" if line.endswith("\n") else "")
    return redact.text(line)


# --- dotenv ----------------------------------------------------------------------------------


def quote(value: str) -> str:
    """A dotenv value that python-dotenv reads back as ``value`` (no interpolation)."""
    if _SAFE_VALUE.match(value):
        return value
    if "'" not in value and "\n" not in value:
        return f"'{value}'"  # single quotes: no escapes, no ${VAR} expansion
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def read_values(path: Path) -> dict[str, str]:
    """The file's values as the apps read them (python-dotenv, no interpolation)."""
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path, interpolate=False).items() if v is not None}


def _rewrite(lines: list[str], updates: dict[str, str], comment_out: dict[str, str],
             values: dict[str, str]) -> tuple[list[str], list[str], list[str]]:
    """New lines: ``updates`` set in place (appended when new), ``comment_out`` keys disabled."""
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    out: list[str] = []
    seen: set[str] = set()
    changed: list[str] = []
    removed: list[str] = []
    for line in lines:
        match = _KEY_LINE.match(line)
        key = match["key"] if match else None
        if key in updates:
            if key in seen:
                continue  # a duplicate definition: the one we set is the only one left
            seen.add(key)
            if values.get(key) == updates[key]:
                out.append(line)
                continue
            out.append(f"{match['lead']}{key}={quote(updates[key])}{newline}")
            changed.append(key)
        elif key in comment_out:
            shown = redact.value(key, values.get(key, ""))
            out.append(f"# migrate: was {key}={shown} ({comment_out[key]}){newline}")
            removed.append(key)
        else:
            out.append(line)
    missing = [k for k in updates if k not in seen]
    if missing:
        if out and not out[-1].endswith(("\n", "\r")):
            out[-1] += newline
        out.append(f"# migrate: added for the stateless app{newline}")
        for key in missing:
            out.append(f"{key}={quote(updates[key])}{newline}")
            changed.append(key)
    return out, changed, removed


# --- probes ----------------------------------------------------------------------------------


def _oneline(exc: BaseException) -> str:
    """The driver's own first line (SQLAlchemy wraps it in a longer one), passwords masked."""
    inner = getattr(exc, "orig", None) or exc
    first = (str(inner).strip().splitlines() or [type(exc).__name__])[0]
    text = " ".join(first.split()).rstrip(".")
    text = redact.text(text)
    return text if len(text) <= 160 else text[:157] + "..."


def probe_redis(url: str) -> Probe:
    """SET a probe key with a short TTL, GET it back, DEL it."""
    started = time.monotonic()
    key = f"migrate:probe:{uuid.uuid4().hex}"
    try:
        from migrate.sessions import redis_client

        client = redis_client(url, socket_connect_timeout=3, socket_timeout=5)
        try:
            client.set(key, b"probe", ex=30)
            if client.get(key) != b"probe":
                raise ConnectionFailure("the probe key read back different bytes")
            client.delete(key)
        finally:
            client.close()
    except Exception as exc:  # every failure is one line: the user fixes the URL or the server
        return Probe("redis", redact.url(url), False,
                     f"{type(exc).__name__}: {_oneline(exc)} (start it or fix --redis)",
                     time.monotonic() - started)
    return Probe("redis", redact.url(url), True, "set, get, delete ok", time.monotonic() - started)


def probe_s3(endpoint_url: str | None, bucket: str) -> Probe:
    """PUT, GET and DELETE a probe object (credentials from the AWS env vars/config)."""
    import boto3
    from botocore.config import Config

    started = time.monotonic()
    shown = f"{redact.url(endpoint_url) if endpoint_url else 'AWS S3'} bucket {bucket}"
    key = f".migrate-probe/{uuid.uuid4().hex}"
    try:
        # A fresh session: boto3's default one caches the credentials it first found.
        client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url,
            region_name=os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
            config=Config(s3={"addressing_style": "path"}, connect_timeout=3, read_timeout=10,
                          retries={"max_attempts": 1},
                          request_checksum_calculation="when_required",
                          response_checksum_validation="when_required"))
        client.put_object(Bucket=bucket, Key=key, Body=b"probe")
        body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        client.delete_object(Bucket=bucket, Key=key)
        if body != b"probe":
            raise ConnectionFailure("the probe object read back different bytes")
    except Exception as exc:  # NoCredentials, EndpointConnectionError, AccessDenied, NoSuchBucket
        return Probe("s3", shown, False,
                     f"{type(exc).__name__}: {_oneline(exc)} (check --s3, --bucket and "
                     "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)", time.monotonic() - started)
    return Probe("s3", shown, True, "put, get, delete ok", time.monotonic() - started)


def probe_database(url: str) -> Probe:
    """Connect and SELECT 1 (a SQLite file must already exist: connecting would create it)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    started = time.monotonic()
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "",
                                                                             ":memory:"):
            if not Path(parsed.database).is_file():
                raise FileNotFoundError(f"no SQLite file at {parsed.database}")
        engine = create_engine(url, connect_args={"connect_timeout": 5}
                               if parsed.get_backend_name() == "postgresql" else {})
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        finally:
            engine.dispose()
    except Exception as exc:
        return Probe("database", redact.url(url), False,
                     f"{type(exc).__name__}: {_oneline(exc)} (fix --database-url)",
                     time.monotonic() - started)
    return Probe("database", redact.url(url), True, "SELECT 1 ok", time.monotonic() - started)


# --- the switch ------------------------------------------------------------------------------


def check_secret_key(value: str | None, where: str) -> None:
    """Refuse a missing or development SECRET_KEY: every instance must sign with one key."""
    if not value:
        raise UsageError(f"SECRET_KEY is not set in {where}: {SECRET_HELP}")
    if value.lower() in DEV_SECRETS or len(value) < 16:
        raise UsageError(f"SECRET_KEY in {where} is a development value (or shorter than 16 "
                         f"characters): {SECRET_HELP}")


def parse_s3(s3_url: str | None) -> tuple[str | None, str | None]:
    """``--s3``: an http(s) endpoint (optionally /BUCKET) or ``s3://BUCKET``."""
    if not s3_url:
        return None, None
    parts = urlsplit(s3_url)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise UsageError(f"--s3 {s3_url}: give s3://BUCKET or http(s)://HOST:PORT")
        return None, parts.netloc
    if parts.scheme in ("http", "https") and parts.netloc:
        bucket = parts.path.strip("/").split("/")[0] or None
        return f"{parts.scheme}://{parts.netloc}", bucket
    raise UsageError(f"--s3 {redact.url(s3_url)}: give an endpoint like http://127.0.0.1:9000 "
                     "or s3://BUCKET")


def _backup_path(path: Path) -> Path:
    stamp = datetime.now(UTC).strftime(_BACKUP_STAMP)
    candidate = path.with_name(f"{path.name}.bak.{stamp}")
    n = 1
    while candidate.exists():  # two switches in one second: keep both backups
        candidate = path.with_name(f"{path.name}.bak.{stamp}-{n}")
        n += 1
    return candidate


def backups(path: str | os.PathLike[str]) -> list[Path]:
    """The file's backups, oldest first (the stamp sorts by time)."""
    path = Path(path)

    def order(p: Path) -> tuple[str, int]:
        stamp, _, n = p.name[len(path.name) + 5:].partition("-")
        return stamp, int(n) if n.isdigit() else 0

    return sorted(path.parent.glob(f"{glob_escape(path.name)}.bak.*"), key=order)


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def atomic_write(path: Path, data: bytes, mode: int | None) -> None:
    """Write ``data`` to a temp file beside ``path``, fsync, keep the mode, then os.replace."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def switch_config(
    path: str | os.PathLike[str], target: str = "stateless", *, redis_url: str | None = None,
    s3_url: str | None = None, bucket: str | None = None, database_url: str | None = None,
    secret_key_from_env: bool = False, dry_run: bool = False, probe: bool = True,
) -> SwitchResult:
    """Rewrite ``path`` for ``target`` after probing every store (ProbesFailed if one fails)."""
    if target not in TARGETS:
        raise UsageError(f"--to {target}: the only target is 'stateless'")
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file; give the before-app's .env file")
    raw = path.read_bytes()
    text_in = raw.decode("utf-8")
    lines = text_in.splitlines(keepends=True)
    values = read_values(path)

    if secret_key_from_env:
        check_secret_key(os.environ.get("SECRET_KEY"), "the environment")
    else:
        check_secret_key(values.get("SECRET_KEY"), str(path))

    endpoint, s3_bucket = parse_s3(s3_url)
    endpoint = endpoint or values.get("S3_ENDPOINT_URL") or None
    s3_bucket = bucket or s3_bucket or values.get("S3_BUCKET") or "shop"
    redis_url = redis_url or values.get("REDIS_URL")
    database_url = database_url or values.get("DATABASE_URL")
    if not redis_url:
        raise UsageError(f"REDIS_URL is not set in {path}: give --redis redis://HOST:6379/0")
    if not database_url:
        raise UsageError(f"DATABASE_URL is not set in {path}: give --database-url URL "
                         "(the before-app's database, upgraded with `migrate db upgrade`)")

    # The after-app's settings, written to its .env file (not this process's Flask config).
    updates = {"SESSION_TYPE": "redis",  # migrate: ignore[session-not-initialised]
               "REDIS_URL": redis_url, "S3_BUCKET": s3_bucket,
               "DATABASE_URL": database_url}
    if endpoint:
        updates["S3_ENDPOINT_URL"] = endpoint
    comment_out = {k: why for k, why in BEFORE_ONLY.items() if k in values}
    if secret_key_from_env and "SECRET_KEY" in values:
        # The environment wins over .env in both apps: a stale file value only misleads.
        comment_out["SECRET_KEY"] = "now set in the environment"
    new_lines, changed, removed = _rewrite(lines, updates, comment_out, values)
    diff = "".join(difflib.unified_diff(
        [mask_line(x) for x in lines], [mask_line(x) for x in new_lines],
        fromfile=f"{path} (before)", tofile=f"{path} (after)"))
    result = SwitchResult(str(path), target, changed, removed, diff=diff, dry_run=dry_run)

    if probe:
        result.probes = [probe_redis(redis_url), probe_s3(endpoint, s3_bucket),
                         probe_database(database_url)]
        if not result.ok:
            raise ProbesFailed(result)
    if dry_run or not (changed or removed):
        return result
    backup = _backup_path(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    atomic_write(backup, raw, mode)  # the backup first: a crash mid-switch loses nothing
    atomic_write(path, "".join(new_lines).encode("utf-8"), mode)
    result.backup, result.written = str(backup), True
    return result


def rollback(path: str | os.PathLike[str]) -> RollbackResult:
    """Restore the most recent backup over ``path`` (byte for byte, the file's mode kept)."""
    path = Path(path)
    found = backups(path)
    if not found:
        raise UsageError(f"{path}: no backup ({path.name}.bak.*) beside it to roll back to")
    latest = found[-1]
    mode = stat.S_IMODE((path if path.exists() else latest).stat().st_mode)
    atomic_write(path, latest.read_bytes(), mode)
    # The used backup is removed so a second rollback goes one switch further back.
    latest.unlink()
    return RollbackResult(str(path), str(latest), len(found) - 1)
