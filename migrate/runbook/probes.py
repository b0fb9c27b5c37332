"""Real round trips to the stores a switched configuration points at: Redis, S3, a database.

Each probe returns a Probe: ok, or the one line that says what failed (passwords masked).
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from migrate import redact
from migrate.errors import ConnectionFailure


@dataclass
class Probe:
    """One real round trip to a target: ok, or the one line that says what failed."""

    target: str
    url: str  # masked
    ok: bool
    detail: str
    seconds: float = 0.0


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


def probe_s3(endpoint_url: str | None, bucket: str, prefix: str = "") -> Probe:
    """PUT, GET and DELETE a probe object under ``prefix`` (credentials from the AWS env
    vars/config)."""
    import boto3
    from botocore.config import Config

    started = time.monotonic()
    shown = f"{redact.url(endpoint_url) if endpoint_url else 'AWS S3'} bucket {bucket}"
    folder = prefix.strip("/")
    key = f"{folder + '/' if folder else ''}.migrate-probe/{uuid.uuid4().hex}"
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
