"""Live order updates (Server-Sent Events): the page, the stream's answers to a reconnect, and on
two real gunicorn instances, where the events live: one process (before) or Redis (after)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests import test_sessions_support as support
from tests.test_shop import run_mail_jobs
from tests.waiting import wait_until


@dataclass
class Stream:
    """What one stream said: its retry, notices, status events and heartbeats, in order."""

    retry: int | None = None
    notices: list[str] = field(default_factory=list)
    events: list[tuple[str, int, str]] = field(default_factory=list)  # id, order, status
    heartbeats: int = 0


def parse(lines, into: Stream) -> Stream:
    """Parse SSE lines into ``into`` as they come (an event is complete at its blank line)."""
    fields: dict[str, str] = {}
    for line in lines:
        if line.startswith(":"):
            into.heartbeats += 1
        elif line:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        else:
            if "retry" in fields:
                into.retry = int(fields["retry"])
            if fields.get("event") == "notice":
                into.notices.append(fields["data"])
            elif fields.get("event") == "status":
                data = json.loads(fields["data"])
                into.events.append((fields["id"], data["order_id"], data["status"]))
            fields = {}
    return into


def stream_text(client, last_id: str | None = None, query: str = "seconds=0") -> Stream:
    headers = {"Last-Event-ID": last_id} if last_id is not None else {}
    response = client.get(f"/orders/events?{query}", headers=headers)
    assert response.status_code == 200, response.data[:300]
    assert response.mimetype == "text/event-stream"
    return parse(response.get_data(as_text=True).split("\n"), Stream())


def place_order(client, product_id: int = 1) -> int:
    client.post("/cart/add", data={"product_id": product_id, "quantity": 1})
    response = client.post("/checkout")
    assert response.status_code == 302, response.data[:300]
    return int(response.headers["Location"].rsplit("/", 1)[1])


# --- through the test client, both shops ------------------------------------------------------


def test_the_live_page_shows_the_orders_status_and_subscribes(client, auth, app):
    assert client.get("/orders/1/live").status_code == 302  # anonymous: the login page
    assert client.get("/orders/events").status_code == 302
    auth.login()
    order_id = place_order(client)
    page = client.get(f"/orders/{order_id}/live")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert re.search(rf'id="status" data-order="{order_id}"', html)
    assert 'data-events="/orders/events"' in html and "new EventSource(" in html
    assert re.search(r'id="status"[^>]*>(placed|confirmed)<', html)
    run_mail_jobs(app)
    assert wait_until(lambda: ">confirmed<" in client.get(f"/orders/{order_id}/live").get_data(
        as_text=True), "the confirmation e-mail", timeout=10)
    auth.logout()
    client.post("/login", data={"username": "bob", "password": "builder"})
    assert client.get(f"/orders/{order_id}/live").status_code == 404  # not bob's order


def test_a_reconnect_gets_what_it_missed_and_an_unknown_id_replays_from_the_oldest(
        client, auth, app):
    auth.login()
    # The before-shop keeps its history in module globals, so earlier tests' events (of this
    # pytest process) are there too: only the events after these are this test's.
    earlier = stream_text(client).events
    first = place_order(client)
    run_mail_jobs(app)
    # Every event kept, in order, with ids; the stream ends at once (seconds=0).
    whole = wait_until(lambda: (s := stream_text(client)) and len(s.events) == len(earlier) + 2
                       and s, "placed and confirmed", timeout=10)
    assert whole.retry and whole.retry > 0 and whole.notices == []
    assert [(o, s) for _, o, s in whole.events if (_, o, s) not in earlier] == [
        (first, "placed"), (first, "confirmed")]
    oldest, last = whole.events[0][0], whole.events[-1][0]

    second = place_order(client)
    run_mail_jobs(app)
    resumed = wait_until(lambda: (s := stream_text(client, last_id=last)) and len(s.events) == 2
                         and s, "the second order's events", timeout=10)
    assert resumed.notices == [] and [(o, s) for _, o, s in resumed.events] == [
        (second, "placed"), (second, "confirmed")]

    # Unknown, malformed or hostile ids: everything kept, and a notice that says so; no 500.
    for bad in ("99999999999999999999-0", "99999999999999999999", "not-an-id", "1-0-0" * 50):
        replay = stream_text(client, last_id=bad)
        assert replay.notices == [f"Last-Event-ID is unknown or too old: history starts at "
                                  f"{oldest}"], bad
        assert replay.events == whole.events + resumed.events, bad
    assert client.get("/orders/events?seconds=soon").status_code == 400


def test_an_idle_stream_sends_heartbeats_and_ends_on_time(client, auth, app):
    app.config["EVENTS_HEARTBEAT_SECONDS"] = 0.2
    auth.login("bob", "builder")  # who has no orders, in this process's earlier tests either
    started = time.monotonic()
    quiet = stream_text(client, query="seconds=1")
    assert 0.9 < time.monotonic() - started < 5
    assert quiet.heartbeats >= 3 and quiet.events == []


@pytest.mark.slow
def test_events_on_a_redis_cluster(tmp_path: Path):
    cluster = support.RedisClusterProcesses(tmp_path / "cluster")
    try:
        app = support.after_app(tmp_path / "app", cluster.url)
        client = app.test_client()
        client.post("/login", data={"username": "alice", "password": "wonderland"})
        order_id = place_order(client)
        seen = stream_text(client)
        assert [(o, s) for _, o, s in seen.events] == [(order_id, "placed")]
        assert stream_text(client, last_id="12-0").notices  # unknown: a notice, no error
        resumed = stream_text(client, last_id=seen.events[0][0])
        assert resumed.events == [] and resumed.notices == []

        # A live stream (XREAD BLOCK on the cluster) hears an event raised meanwhile.
        def raise_later() -> None:
            time.sleep(0.3)
            with app.app_context():
                from sample_stateless_app import events
                events.publish(1, order_id, "shipped")  # alice is user 1 of the fresh database

        threading.Thread(target=raise_later, daemon=True).start()
        live = stream_text(client, last_id=seen.events[0][0], query="seconds=1.5")
        assert [(o, s) for _, o, s in live.events] == [(order_id, "shipped")]
    finally:
        cluster.stop()


# --- two real gunicorn instances --------------------------------------------------------------


class Listener(threading.Thread):
    """A browser's EventSource, in a thread: it reads a stream and, when the stream ends or
    its instance is gone, reconnects with Last-Event-ID, to the next instance if need be."""

    def __init__(self, cookies, urls: list[str], seconds: float = 3) -> None:
        super().__init__(daemon=True)
        self.session = requests.Session()
        self.session.cookies.update(cookies)
        self.urls, self.seconds = urls, seconds
        self.stream = Stream()
        self.connections: list[tuple[str, str | None]] = []  # instance, Last-Event-ID sent
        self.may_connect = threading.Event()
        self.may_connect.set()
        self.done = threading.Event()
        self.deadline = time.monotonic() + 90  # bounds the thread, whatever the test does
        self.start()

    def run(self) -> None:
        at = 0
        while not self.done.is_set() and time.monotonic() < self.deadline:
            self.may_connect.wait(timeout=30)
            last = self.stream.events[-1][0] if self.stream.events else None
            url = self.urls[at % len(self.urls)]
            try:
                with self.session.get(f"{url}/orders/events?seconds={self.seconds}",
                                      headers={"Last-Event-ID": last} if last else {},
                                      stream=True, timeout=(2, 10)) as response:
                    assert response.status_code == 200, response.status_code
                    self.connections.append((url, last))
                    parse(response.iter_lines(decode_unicode=True), self.stream)
            except requests.RequestException:
                at += 1  # this instance is gone: the next one, as a balancer would
                time.sleep(0.05)

    def seen(self) -> list[tuple[int, str]]:
        return [(order, status) for _, order, status in self.stream.events]

    def stop(self) -> None:
        self.done.set()
        self.may_connect.set()
        self.join(timeout=self.seconds + 12)
        assert not self.is_alive(), "the listener did not stop"


def logged_in(url: str) -> requests.Session:
    session = requests.Session()
    response = session.post(f"{url}/login", data={"username": "alice", "password": "wonderland"},
                            allow_redirects=False, timeout=10)
    assert response.status_code == 302, response.status_code
    return session


def checkout(session: requests.Session, url: str) -> int:
    session.post(f"{url}/cart/add", data={"product_id": 1, "quantity": 1}, timeout=10)
    response = session.post(f"{url}/checkout", allow_redirects=False, timeout=10)
    assert response.status_code == 302, response.status_code
    return int(response.headers["Location"].rsplit("/", 1)[1])


@pytest.mark.slow
def test_before_an_event_raised_on_one_instance_never_reaches_the_other(start_cluster):
    cluster = start_cluster("stateful", 2)
    a, b = cluster.urls
    shopper_a, shopper_b = logged_in(a), logged_in(b)  # sessions are per instance, too
    on_a = Listener(shopper_a.cookies, [a])
    on_b = Listener(shopper_b.cookies, [b])
    try:
        wait_until(lambda: on_a.connections and on_b.connections, "both streams open", 20)
        order_id = checkout(shopper_a, a)
        wait_until(lambda: (order_id, "confirmed") in on_a.seen(), "the event on A", 20)
        time.sleep(1)  # B would have had it within milliseconds, were it shared
        assert on_b.seen() == []  # the trap: B's clients never hear of A's events
        # And a client of A that comes back on B: B has no history of A's events.
        moved = parse(requests.get(f"{b}/orders/events?seconds=0", cookies=shopper_b.cookies,
                                   headers={"Last-Event-ID": on_a.stream.events[0][0]},
                                   timeout=10).text.split("\n"), Stream())
        assert moved.events == [] and "unknown or too old" in moved.notices[0]
    finally:
        on_a.stop()
        on_b.stop()


@pytest.mark.slow
def test_after_events_reach_every_instance_and_a_killed_instances_client_misses_nothing(
        start_cluster, stores):
    import redis

    cluster = start_cluster("stateless", 2)
    a, b = cluster.urls
    shopper = logged_in(a)  # one session, good on every instance
    on_b = Listener(shopper.cookies, [b])
    moving = Listener(shopper.cookies, [a, b])  # on A until A dies, then on B
    try:
        wait_until(lambda: on_b.connections and moving.connections, "both streams open", 20)
        first = checkout(shopper, a)  # "placed" raised on A, "confirmed" by the mail worker
        wait_until(lambda: (first, "confirmed") in on_b.seen(), "A's event seen on B", 20)
        wait_until(lambda: (first, "confirmed") in moving.seen(), "the event on A", 20)

        moving.may_connect.clear()  # it reconnects only when told: what it misses is certain
        cluster.kill(0)
        second, third = checkout(shopper, b), checkout(shopper, b)
        wait_until(lambda: (third, "confirmed") in on_b.seen(), "the later events on B", 20)
        assert (second, "placed") not in moving.seen()
        moving.may_connect.set()
        wait_until(lambda: (third, "confirmed") in moving.seen(), "the resumed stream", 20)
    finally:
        moving.stop()
        on_b.stop()

    store = redis.Redis.from_url(stores.app_env()["REDIS_URL"])
    [key] = store.keys("events:*")  # one user, one stream
    kept = store.xrange(key)
    every = [entry_id.decode() for entry_id, _ in kept]
    assert len(every) == 6
    # Every event exactly once, in order, for the client that never moved and the one that did.
    assert [event_id for event_id, _, _ in on_b.stream.events] == every
    assert [event_id for event_id, _, _ in moving.stream.events] == every
    assert sorted(moving.seen()) == sorted(
        (order, status) for order in (first, second, third) for status in ("placed", "confirmed"))
    assert moving.connections[0][0] == a and moving.connections[-1][0] == b
    # It came back to B with the id of the last event it had seen on A.
    assert any(url == b and last is not None for url, last in moving.connections)
    assert moving.stream.notices == [] and moving.stream.retry


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="Debian chromium not installed: .ci/run installs it")
def test_the_live_page_in_a_browser_turns_confirmed_when_the_worker_sends_the_mail(
        start_cluster):
    from playwright.sync_api import expect, sync_playwright

    cluster = start_cluster("stateless", 2)
    a, b = cluster.urls
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"))
        try:
            page = browser.new_page()
            page.set_default_timeout(15_000)
            page.goto(f"{a}/login")
            page.fill("input[name=username]", "alice")
            page.fill("input[name=password]", "wonderland")
            page.click("main form button")
            page.goto(f"{a}/product/1")
            os.kill(cluster.worker.pid, signal.SIGSTOP)  # no mail until the page is watching
            try:
                page.click("form[action='/cart/add'] button")
                page.click("form[action='/checkout'] button")
                order_id = page.url.rsplit("/", 1)[1]
                # The same origin's cookie, another instance (host cookies ignore the port).
                page.goto(f"{b}/orders/{order_id}/live")
                expect(page.locator("#status")).to_have_text("placed")
                expect(page.locator("#connection")).to_have_text("live")
            finally:
                os.kill(cluster.worker.pid, signal.SIGCONT)
            expect(page.locator("#status")).to_have_text("confirmed")
            expect(page.locator("#updates li").last).to_contain_text("confirmed (event ")
        finally:
            browser.close()
    for i in range(len(cluster)):
        cluster.kill(i)  # at once: a graceful stop would wait for the stream the page left open
