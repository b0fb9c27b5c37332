"""The rendered haproxy.cfg in front of two after-shop instances, through a rolling restart.

`migrate deploy haproxy` renders the file (127.0.0.1, a free port, the admin socket in the
test's folder: the only differences from production); a real HAProxy runs it. Two loopback
clients (a visitor reading the catalog, alice adding to her cart) keep sending requests while
each instance in turn is drained the way the file's header says (`disable server` on the admin
socket), SIGTERMed once nothing is in flight on it, started again and enabled. Not one request
fails, and every cart add is in the cart at the end.
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from migrate import config
from migrate.deploy import load_spec, render
from migrate.embedded import LIVE, free_port, log_tail, spawn
from migrate.harness.journey import cart_lines

ROOT = Path(__file__).resolve().parent.parent
MAX_REQUESTS = 4000  # per client: the loops are bounded in count and in time
MAX_SECONDS = 120.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("haproxy") is None,
                       reason="haproxy not installed (.ci/run installs it with apt-get)"),
]


@dataclass
class Sent:
    at: float
    method: str
    path: str
    outcome: str  # the status code, or the exception's name
    instance: str | None


class Traffic:
    """A visitor and a shopper through the proxy, until ``stop()`` (or the bounds)."""

    def __init__(self, url: str, *, shopper: bool = True) -> None:
        self.url = url
        self.sent: list[Sent] = []
        self.adds = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._visitor, daemon=True)]
        if shopper:
            self._threads.append(threading.Thread(target=self._shopper, daemon=True))
        self._deadline = time.monotonic() + MAX_SECONDS

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _running(self, count: int) -> bool:
        return (not self._stop.is_set() and count < MAX_REQUESTS
                and time.monotonic() < self._deadline)

    def _send(self, http: requests.Session, method: str, path: str, expect: int,
              **kwargs) -> bool:
        at = time.monotonic()
        try:
            r = http.request(method, self.url + path, allow_redirects=False, timeout=15,
                             **kwargs)
            outcome, instance = str(r.status_code), r.headers.get("X-Instance")
        except requests.RequestException as exc:
            outcome, instance = type(exc).__name__, None
        self.sent.append(Sent(at, method, path, outcome, instance))
        return outcome == str(expect)

    def _visitor(self) -> None:
        with requests.Session() as http:
            count = 0
            while self._running(count):
                self._send(http, "GET", "/", 200)
                count += 1
                time.sleep(0.01)

    def _shopper(self) -> None:
        with requests.Session() as http:
            if not self._send(http, "POST", "/login",
                              302, data={"username": "alice", "password": "wonderland"}):
                return
            count = 0
            while self._running(count):
                if self._send(http, "POST", "/cart/add", 302,
                              data={"product_id": 1, "quantity": 1}):
                    self.adds += 1
                count += 1
                time.sleep(0.01)

    def failed(self) -> list[Sent]:
        expected = {"GET": "200", "POST": "302"}
        return [s for s in self.sent if s.outcome != expected[s.method]]

    def served_by(self, since: float) -> set[str | None]:
        return {s.instance for s in self.sent if s.at >= since}

    def wait_for(self, instance: str, count: int, since: float, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while sum(s.instance == instance and s.at >= since for s in self.sent) < count:
            assert time.monotonic() < deadline, f"{instance} served fewer than {count} requests"
            time.sleep(0.05)


def admin(sock: Path, command: str) -> str:
    """One command on HAProxy's admin socket, its whole answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(5)
        client.connect(str(sock))
        client.sendall(command.encode() + b"\n")
        chunks = []
        while data := client.recv(65536):
            chunks.append(data)
    return b"".join(chunks).decode()


def server_stat(sock: Path, backend: str, server: str) -> dict[str, str]:
    rows = csv.DictReader(admin(sock, "show stat").lstrip("# ").splitlines())
    return next(r for r in rows if r["pxname"] == backend and r["svname"] == server)


def wait_stat(sock: Path, backend: str, server: str, key: str, want: str,
              timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (got := server_stat(sock, backend, server)[key]) != want:
        assert time.monotonic() < deadline, f"{backend}/{server} {key} stayed {got}, not {want}"
        time.sleep(0.05)


def start_haproxy(cfg: Path, proxy_url: str, log: Path) -> subprocess.Popen:
    # Foreground (-db): we hold its pid and stop it by that pid.
    process = spawn([shutil.which("haproxy") or "haproxy", "-db", "-f", str(cfg)], log,
                    dict(os.environ))
    deadline = time.monotonic() + 20
    while True:
        try:
            if requests.get(proxy_url + "/healthz", timeout=2).status_code == 200:
                return process
        except requests.RequestException:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            raise AssertionError(f"haproxy did not start: {log_tail(log)}")
        time.sleep(0.05)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    LIVE.discard(process)


@contextlib.contextmanager
def behind_rendered_haproxy(start_cluster, tmp_path: Path):
    """Two after-shop instances and a real HAProxy on the file `migrate deploy` rendered."""
    cluster = start_cluster("stateless", 2)
    port, sock = free_port(), tmp_path / "admin.sock"
    spec = load_spec(config.load(ROOT), listen=f"127.0.0.1:{port}", admin_socket=str(sock),
                     servers=tuple(url.removeprefix("http://") for url in cluster.urls))
    (cfg,) = render("haproxy", spec, tmp_path / "haproxy").files
    assert "option httpchk GET /readyz" in cfg.content and "stats socket" in cfg.content
    proxy_url = f"http://127.0.0.1:{port}"
    log = tmp_path / "haproxy.log"
    haproxy = start_haproxy(Path(cfg.path), proxy_url, log)
    try:
        yield cluster, sock, proxy_url, log
    finally:
        stop(haproxy)
    assert haproxy.poll() is not None


def test_a_rolling_restart_behind_the_rendered_haproxy_loses_no_request(start_cluster,
                                                                         tmp_path: Path):
    with behind_rendered_haproxy(start_cluster, tmp_path) as (cluster, sock, proxy_url, _):
        with Traffic(proxy_url) as traffic:
            start = time.monotonic()
            for name in ("stateless-1", "stateless-2"):
                traffic.wait_for(name, 10, start)
            for i, server in enumerate(("shop-1", "shop-2")):
                name, other = cluster.instance(i).name, cluster.instance(1 - i).name
                admin(sock, f"disable server shop/{server}")
                drained = time.monotonic()
                wait_stat(sock, "shop", server, "scur", "0")  # its in-flight requests done
                cluster.stop(i)  # SIGTERM: gunicorn's graceful shutdown
                traffic.wait_for(other, 20, drained)
                assert traffic.served_by(drained) == {other}
                cluster.start_instance(i)
                admin(sock, f"enable server shop/{server}")
                wait_stat(sock, "shop", server, "status", "UP")
                traffic.wait_for(name, 10, time.monotonic())  # back in the rotation
        sent, failed = len(traffic.sent), traffic.failed()
        assert failed == [], f"{len(failed)} of {sent} requests failed: {failed[:5]}"
        assert sent >= 100 and traffic.adds >= 20
        cart = requests.Session()
        cart.post(proxy_url + "/login", data={"username": "alice", "password": "wonderland"},
                  allow_redirects=False, timeout=15)
        page = cart.get(proxy_url + "/cart", timeout=15)
        assert cart_lines(page.text) == {1: traffic.adds}  # every add is in the cart


def test_an_instance_sigtermed_without_a_drain_costs_no_request(start_cluster,
                                                                tmp_path: Path):
    """No drain: its refused connections are redispatched until the checks take it out."""
    with behind_rendered_haproxy(start_cluster, tmp_path) as (cluster, sock, proxy_url, log):
        with Traffic(proxy_url, shopper=False) as traffic:
            traffic.wait_for("stateless-1", 10, time.monotonic())
            cluster.stop(0)
            stopped = time.monotonic()
            traffic.wait_for("stateless-2", 40, stopped)
            wait_stat(sock, "shop", "shop-1", "status", "DOWN")  # 3 failed checks
            cluster.start_instance(0)
            wait_stat(sock, "shop", "shop-1", "status", "UP")
            traffic.wait_for("stateless-1", 10, time.monotonic())
        assert traffic.failed() == []
        assert traffic.served_by(stopped) == {"stateless-1", "stateless-2"}
    # The log's retry count (+N: redispatched) shows requests did meet the stopped instance.
    assert re.search(r" \d+/\d+/\d+/\d+/\+[1-9]\d* ", log.read_text(encoding="utf-8"))
