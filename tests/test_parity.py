"""The five journey cases of DESIGN.md on real gunicorn instances, Redis and S3 over HTTP.

before x1 passes (the baseline); before x2 fails where the user appears logged out; after x2
passes with the baseline's pages; after x2 with one instance SIGKILLed mid-journey passes with
nothing lost; the same through a real HAProxy. Plus 20 concurrent cart adds over two instances,
two at a time with their Redis writes held until both have read: a lost update shows every time.
"""

from __future__ import annotations

import concurrent.futures
import re
import threading

import pytest
import requests

from migrate.harness.cluster import haproxy_available
from migrate.harness.journey import Journey, run_journey

pytestmark = pytest.mark.slow


def test_before_one_instance_passes(start_cluster):
    cluster = start_cluster("stateful", 1)
    result = run_journey(cluster.urls)
    assert result.ok, result.failed
    assert result.finished
    assert {s.instance for s in result.steps} == {"stateful-1"}


def test_before_two_instances_fails_where_the_user_appears_logged_out(start_cluster):
    cluster = start_cluster("stateful", 2)
    result = run_journey(cluster.urls)
    assert not result.ok
    login, failed = result.steps[1], result.failed
    assert login.name == "log in" and login.ok
    # The very next request goes to the other instance, which has never seen the session.
    assert failed.name == "add product 1"
    assert failed.instance != login.instance
    assert failed.status == 302
    assert "appears logged out" in failed.detail


def test_after_two_instances_pass_with_the_baselines_pages(start_cluster):
    baseline = run_journey(start_cluster("stateful", 1).urls)
    assert baseline.ok, baseline.failed
    cluster = start_cluster("stateless", 2)
    result = run_journey(cluster.urls)
    assert result.ok, result.failed
    assert {s.instance for s in result.steps} == {"stateless-1", "stateless-2"}
    # Requests really alternated: each instance served about half of the steps.
    served = [s.instance for s in result.steps]
    assert min(served.count("stateless-1"), served.count("stateless-2")) >= len(served) // 2 - 2
    for (name, before), (_, after) in zip(baseline.pages(), result.pages(), strict=True):
        assert before == after, f"step {name!r} differs from the baseline"


def test_after_survives_an_instance_killed_mid_journey(start_cluster):
    cluster = start_cluster("stateless", 2)
    trip = Journey(cluster.urls)

    def kill_during_upload(number: int, name: str) -> None:
        if name == "send chunk 2":
            cluster.kill(0)

    result = trip.run(before_step=kill_during_upload)
    assert result.ok, result.failed
    assert result.finished
    after_kill = result.steps[[s.name for s in result.steps].index("send chunk 2"):]
    assert {s.instance for s in after_kill} == {"stateless-2"}
    assert sum(s.retries for s in after_kill) >= 1  # refused connections went to the survivor
    assert not cluster.instance(0).alive


@pytest.mark.skipif(not haproxy_available(), reason="haproxy not installed (.ci/run installs it)")
def test_after_through_haproxy_with_a_kill(start_cluster):
    cluster = start_cluster("stateless", 2, haproxy=True)
    trip = Journey([cluster.proxy_url])

    def kill_midway(number: int, name: str) -> None:
        if name == "view product":
            cluster.kill(1)

    result = trip.run(before_step=kill_midway)
    assert result.ok, result.failed
    before_kill = result.steps[: [s.name for s in result.steps].index("view product")]
    assert {s.instance for s in before_kill} == {"stateless-1", "stateless-2"}


class WriteGate:
    """A Redis proxy that holds each write command until the other instance sends one too.

    Two requests, one per instance, then both read before either writes: a read-modify-write
    of the cart (read, add one, write back) loses one add every round, every time, where the
    race would otherwise need two requests to interleave within microseconds. Reads, scripts
    and transactions' EXEC pass at once; a write alone goes on after ``wait`` seconds.
    """

    def __init__(self, redis_url: str, parties: int = 2, wait: float = 10.0) -> None:
        import socket
        import threading
        from urllib.parse import urlsplit

        import redis

        self.parties, self.wait, self.active = parties, wait, False
        self.paired = self.alone = self._waiting = self._generation = 0
        self._turn = threading.Condition()
        self._writes = {name.encode() for name, info in
                        redis.Redis.from_url(redis_url).command().items()
                        if "write" in info["flags"]}
        upstream = urlsplit(redis_url)
        self._upstream = (upstream.hostname, upstream.port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        port = self._listener.getsockname()[1]
        self.url = upstream._replace(
            netloc=upstream.netloc.replace(f"{upstream.hostname}:{upstream.port}",
                                           f"127.0.0.1:{port}")).geturl()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self._upstream)
            threading.Thread(target=self._relay, args=(server, client), daemon=True).start()
            threading.Thread(target=self._commands, args=(client, server), daemon=True).start()

    @staticmethod
    def _relay(source, target) -> None:
        with source, target:
            while data := source.recv(65536):
                target.sendall(data)

    def _commands(self, client, server) -> None:
        buffer = b""
        with client, server:
            while data := client.recv(65536):
                buffer += data
                while (command := _resp_command(buffer)) is not None:
                    name, end = command
                    if self.active and name.lower() in self._writes:
                        self._hold()
                    server.sendall(buffer[:end])
                    buffer = buffer[end:]

    def _hold(self) -> None:
        with self._turn:
            generation = self._generation
            self._waiting += 1
            if self._waiting == self.parties:
                self._generation, self._waiting = generation + 1, 0
                self.paired += 1
                self._turn.notify_all()
            elif not self._turn.wait_for(lambda: self._generation != generation, self.wait):
                self._waiting -= 1
                self.alone += 1

    def close(self) -> None:
        self._listener.close()


def _resp_command(buffer: bytes) -> tuple[bytes, int] | None:
    """(command name, end) of the first whole RESP command in ``buffer``, or None."""
    try:
        line = buffer.index(b"\r\n")
        count, at, name = int(buffer[1:line]), line + 2, b""
        for i in range(count):
            line = buffer.index(b"\r\n", at)
            size = int(buffer[at + 1:line])
            if line + 2 + size + 2 > len(buffer):
                return None
            name = buffer[line + 2:line + 2 + size] if i == 0 else name
            at = line + 2 + size + 2
        return name, at
    except ValueError:  # no whole line yet
        return None


def test_twenty_concurrent_cart_adds_over_two_instances_lose_nothing(start_cluster, stores,
                                                                     monkeypatch):
    gate = WriteGate(stores.redis_url)
    monkeypatch.setattr(stores, "redis_url", gate.url)  # the instances reach Redis through it
    try:
        cluster = start_cluster("stateless", 2, worker=False)
        http = requests.Session()
        login = http.post(cluster.urls[0] + "/login",
                          data={"username": "bob", "password": "builder"}, allow_redirects=False)
        assert login.status_code == 302
        cookie = http.cookies.get("session")
        gate.active = True
        statuses: list[int] = []
        for round_ in range(10):  # two adds of one product at once, one on each instance
            start = threading.Barrier(2)

            def add(i: int, product: int = 1 + round_ % 3, start=start) -> int:
                start.wait()
                return requests.post(cluster.urls[i] + "/cart/add", data={"product_id": product},
                                     cookies={"session": cookie}, allow_redirects=False,
                                     timeout=60).status_code

            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                statuses += pool.map(add, (0, 1))
        gate.active = False
    finally:
        gate.close()
    assert statuses == [302] * 20
    assert gate.paired >= 10, (gate.paired, gate.alone)  # each round's writes met: race forced
    page = http.get(cluster.urls[1] + "/cart").text
    quantities = [int(q) for q in re.findall(r'data-quantity="(\d+)"', page)]
    assert sum(quantities) == 20
