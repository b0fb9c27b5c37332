"""The stores the instances share: embedded ones the run starts, or the user's URLs.

Redis and S3 are real servers (``migrate.embedded``) on 127.0.0.1 unless ``--instances-redis``
/ ``--instances-s3`` name the user's; the database is a SQLite file in the run folder unless
``--instances-database-url`` names one. Only what the run started is stopped, and only the
embedded Redis is ever emptied between tests.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from migrate import redact, redisurl
from migrate.embedded import REGION, EmbeddedRedis, EmbeddedS3
from migrate.errors import ConnectionFailure

from .settings import ParitySettings


@dataclass
class SharedStores:
    """Where the instances' shared state lives; stop() stops what was started here."""

    redis_url: str
    s3_endpoint_url: str
    s3_access_key: str
    s3_secret_key: str
    bucket: str
    database_url: str
    secret_key: str  # one SECRET_KEY for every instance (a session signed by one is read by all)
    redis: EmbeddedRedis | None = None
    s3: EmbeddedS3 | None = None

    def env(self) -> dict[str, str]:
        """The variables every instance gets (secrets: never print them; see ``masked``)."""
        return {
            "REDIS_URL": self.redis_url,
            "DATABASE_URL": self.database_url,
            "S3_ENDPOINT_URL": self.s3_endpoint_url,
            "AWS_ENDPOINT_URL_S3": self.s3_endpoint_url,  # boto3 reads it by itself
            "S3_BUCKET": self.bucket,
            "AWS_ACCESS_KEY_ID": self.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": self.s3_secret_key,
            "AWS_DEFAULT_REGION": REGION,
            "SECRET_KEY": self.secret_key,
        }

    def placeholders(self, run_dir: Path, python: str) -> dict[str, str]:
        return {"redis": self.redis_url, "s3": self.s3_endpoint_url, "bucket": self.bucket,
                "database_url": self.database_url, "run_dir": str(run_dir), "python": python}

    def describe(self) -> str:
        """One line, safe to print: where each store is and whether the run started it."""
        redis_where = "embedded" if self.redis else "yours"
        s3_where = "embedded" if self.s3 else "yours"
        return (f"Redis {redact.url(self.redis_url)} ({redis_where}), S3 "
                f"{redact.url(self.s3_endpoint_url)} bucket {self.bucket} ({s3_where}), "
                f"database {redact.url(self.database_url)}")

    def flush(self) -> None:
        """Empty the embedded Redis (a fresh start per test, as a fresh test app has)."""
        if self.redis is None or not self.redis.alive:
            return
        import redis

        client = redis.Redis.from_url(self.redis_url, socket_timeout=5)
        try:
            client.flushall()
        finally:
            client.close()

    def stop(self) -> None:
        for server in (self.s3, self.redis):
            if server is not None:
                server.stop()


def start_shared_stores(settings: ParitySettings, run_dir: Path) -> SharedStores:
    """Check the user's stores answer; start embedded ones for the rest."""
    if settings.redis_url:
        _check_redis(settings.redis_url)
    if settings.s3_endpoint_url:
        _check_s3(settings.s3_endpoint_url)
    redis_server = s3_server = None
    try:
        redis_url = settings.redis_url
        if not redis_url:
            redis_server = EmbeddedRedis(run_dir / "stores").start()
            redis_url = redis_server.url
        if settings.s3_endpoint_url:
            endpoint = settings.s3_endpoint_url
            access = os.environ.get("AWS_ACCESS_KEY_ID", "")
            secret = os.environ.get("AWS_SECRET_ACCESS_KEY", "")
        else:
            s3_server = EmbeddedS3(run_dir / "stores", bucket=settings.s3_bucket).start()
            endpoint, access, secret = (s3_server.endpoint_url, s3_server.access_key,
                                        s3_server.secret_key)
        local = f"sqlite:///{run_dir / 'app.db'}"  # migrate: ignore[sqlite-local]
        # One key for the whole run, shared by every instance (never one per process).
        key = secrets.token_hex(32)  # migrate: ignore[secret-key-per-process]
        return SharedStores(redis_url, endpoint, access, secret, settings.s3_bucket,
                            settings.database_url or local, key, redis_server, s3_server)
    except BaseException:
        for server in (s3_server, redis_server):
            if server is not None:
                server.stop()
        raise


def _check_redis(url: str) -> None:
    import redis

    try:
        client = redisurl.client(url, socket_connect_timeout=3, socket_timeout=5)
        client.ping()
        client.close()
    except (redis.exceptions.RedisError, OSError, ValueError) as exc:
        raise ConnectionFailure(
            f"cannot reach Redis at {redact.url(url)} ({type(exc).__name__}): start it, fix "
            "--instances-redis, or leave it out to start an embedded one") from None


def _check_s3(endpoint_url: str) -> None:
    import requests

    try:
        requests.get(endpoint_url, timeout=5)
    except requests.RequestException as exc:
        raise ConnectionFailure(
            f"cannot reach the S3 endpoint {redact.url(endpoint_url)} ({type(exc).__name__}): "
            "start it, fix --instances-s3, or leave it out to start an embedded one") from None
