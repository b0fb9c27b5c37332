"""Event fan-out for benchmarks/requests.py: how long a live order update takes from its
publish to a stream on another instance.

A client streams ``GET /orders/events`` from instance B (a child process reading a raw socket,
so the client's other work cannot delay the stamp) while orders are placed on instance A, one
at a time. Publish-to-seen is (time the line arrived) minus the time the event was published,
both read from this machine's one clock: for "placed" the Redis stream id ``<ms>-<seq>`` (when
Redis added it; the after-shop only, to the millisecond: up to 1 ms high), for "confirmed" the
order's ``confirmation_sent_at``, set just before that event is published (microseconds, both
shops).
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import queue
import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from sqlalchemy import bindparam, create_engine, text

from benchmarks._common import BenchmarkFailed, percentile

SEGMENT = 50  # events per stream; the configurations take turns, one stream each
STREAM_SECONDS = 20  # a stream's ?seconds= (the shops' cap is 25)
EVENT_WAIT = 5.0  # the longest wait for an event that should come
NEVER_WAIT = 2.0  # how long B listens for orders placed on another before-instance


def _read_stream(base: str, request: bytes, conn, stopping) -> None:
    """In a child process (its own GIL: the client's other work cannot delay the stamp): read
    the stream, send ("opened",), ("event", seen, id, data) or ("error", line) up ``conn``."""
    buffer, head_done = b"", False
    try:
        parts = urlsplit(base)
        with socket.create_connection((parts.hostname, parts.port), timeout=0.5) as sock:
            sock.sendall(request)
            while not stopping.is_set():
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    continue
                seen = time.time()
                if not chunk:
                    return
                buffer += chunk
                if not head_done:
                    if b"\r\n\r\n" not in buffer:
                        continue
                    head, buffer = buffer.split(b"\r\n\r\n", 1)
                    status = head.split(b"\r\n", 1)[0].decode(errors="replace")
                    if " 200 " not in status + " ":
                        conn.send(("error", f"stream from {base}: {status} (not logged in?)"))
                        return
                    head_done = True
                *messages, buffer = buffer.split(b"\n\n")
                for message in messages:
                    _relay(message.decode(), seen, conn)
    except OSError as exc:
        conn.send(("error", f"stream from {base}: {type(exc).__name__}: {exc}"))
    finally:
        conn.close()


def _relay(message: str, seen: float, conn) -> None:
    """One server-sent message: "retry:" says the stream is open; an event goes up, stamped."""
    fields = {name: value.strip() for name, _, value in
              (line.partition(":") for line in message.splitlines())}
    if "retry" in fields:
        conn.send(("opened",))
    if "id" in fields and "data" in fields:
        conn.send(("event", seen, fields["id"], json.loads(fields["data"])))


class Stream(threading.Thread):
    """One ``GET /orders/events`` read from a raw socket (HTTP/1.0: no chunk framing) by a
    child process, each event stamped with the wall-clock time its bytes arrived there; this
    thread relays the events to ``events``."""

    def __init__(self, base: str, cookie: str, seconds: float, last_id: str | None) -> None:
        super().__init__(daemon=True)
        parts = urlsplit(base)
        resume = f"Last-Event-ID: {last_id}\r\n" if last_id else ""
        self.request = (f"GET /orders/events?seconds={seconds:g} HTTP/1.0\r\n"
                        f"Host: {parts.netloc}\r\nCookie: {cookie}\r\n"
                        f"Accept: text/event-stream\r\n{resume}\r\n").encode()
        self.base = base
        self.events: queue.SimpleQueue[tuple[float, str, dict]] = queue.SimpleQueue()
        self.opened = threading.Event()
        self.error = ""
        # fork: the child only reads a socket; no other thread of ours runs at this point.
        context = multiprocessing.get_context("fork")
        self.stopping = context.Event()
        self.pipe, child_end = context.Pipe(duplex=False)
        self.child = context.Process(target=_read_stream, daemon=True,
                                     args=(base, self.request, child_end, self.stopping))
        self.child.start()
        child_end.close()

    def run(self) -> None:
        try:
            while True:
                message = self.pipe.recv()
                if message[0] == "opened":
                    self.opened.set()
                elif message[0] == "event":
                    self.events.put(message[1:])
                else:
                    self.error = message[1]
        except (EOFError, OSError):
            pass  # the child closed its end: the stream is over
        finally:
            self.opened.set()  # whoever waits for the stream to open must not hang

    def stop(self) -> None:
        self.stopping.set()
        self.child.join(5)
        if self.child.is_alive():  # our own child, by its pid
            self.child.kill()
            self.child.join(5)
        self.join(5)
        self.pipe.close()


@dataclass
class Seen:
    """One order's two events as stream B heard them."""

    order_id: int
    placed_at: float | None = None  # when "placed" reached B (wall clock)
    placed_id: str = ""
    confirmed_at: float | None = None


def cookie_header(http: requests.Session) -> str:
    return "; ".join(f"{c.name}={c.value}" for c in http.cookies)


def place_order(http: requests.Session, base: str) -> int:
    """Add one item and check out on ``base``; the new order's id."""
    r = http.post(base + "/cart/add", data={"product_id": 1, "quantity": 1},
                  allow_redirects=False, timeout=30)
    if r.status_code != 302:
        raise BenchmarkFailed(f"POST {base}/cart/add: HTTP {r.status_code}")
    r = http.post(base + "/checkout", allow_redirects=False, timeout=30)
    location = r.headers.get("Location", "")
    if r.status_code != 302 or not location.rstrip("/").split("/")[-1].isdigit():
        raise BenchmarkFailed(f"POST {base}/checkout: HTTP {r.status_code} to {location!r}")
    return int(location.rstrip("/").split("/")[-1])


def collect(stream: Stream, seen: dict[int, Seen], until: float, want: int | None,
            statuses: tuple[str, ...] = ("placed", "confirmed")) -> None:
    """Record the stream's events until ``until``, or until order ``want`` has ``statuses``."""
    while True:
        if want is not None and want in seen:
            got = seen[want]
            have = {"placed": got.placed_at, "confirmed": got.confirmed_at}
            if all(have[s] is not None for s in statuses):
                return
        left = until - time.monotonic()
        if left <= 0:
            return
        try:
            at, event_id, data = stream.events.get(timeout=min(left, 0.2))
        except queue.Empty:
            if not stream.is_alive():
                return
            continue
        record = seen.setdefault(int(data["order_id"]), Seen(int(data["order_id"])))
        if data["status"] == "placed" and record.placed_at is None:
            record.placed_at, record.placed_id = at, event_id
        elif data["status"] == "confirmed" and record.confirmed_at is None:
            record.confirmed_at = at


@dataclass
class FanOut:
    shop: str
    path: str  # "A -> B" or "A = B"
    events: int  # orders measured
    placed_p50_ms: float | None  # by the stream id (the after-shop's only)
    placed_p99_ms: float | None
    confirmed_p50_ms: float | None  # by confirmation_sent_at (both shops)
    confirmed_p99_ms: float | None
    missed: int  # measured orders whose events B did not hear within EVENT_WAIT
    never: bool = False  # B heard none of the orders placed on A


@dataclass
class Route:
    """Orders placed by ``buyer`` on ``a``, the same user's stream read from ``b``."""

    shop: str
    path: str
    buyer: requests.Session
    a: str
    b: str
    cookie: str  # the session cookie B knows the user by
    database_url: str
    seen: dict[int, Seen]
    measured: list[int]
    last_id: str | None = None


def run_segment(route: Route, count: int, deadline: float) -> None:
    """One stream on B: a first order to know it listens (not measured), then up to ``count``
    orders one at a time, each waited for before the next; stops in time to end the stream."""
    stream = Stream(route.b, route.cookie, STREAM_SECONDS, route.last_id)
    stream.start()
    opened = time.monotonic()
    try:
        stream.opened.wait(EVENT_WAIT)
        if stream.error:
            raise BenchmarkFailed(stream.error)
        first = place_order(route.buyer, route.a)
        collect(stream, route.seen, time.monotonic() + EVENT_WAIT, first, ("placed",))
        if route.seen.get(first, Seen(first)).placed_at is None:
            raise BenchmarkFailed(f"{route.shop} {route.path}: the stream on {route.b} did not "
                                  f"hear an order placed on {route.a} within {EVENT_WAIT:g} s")
        end = min(deadline, opened + STREAM_SECONDS - 2 * EVENT_WAIT)
        for _ in range(count):
            if time.monotonic() > end:
                break
            order = place_order(route.buyer, route.a)
            route.measured.append(order)
            collect(stream, route.seen, time.monotonic() + EVENT_WAIT, order)
        collect(stream, route.seen, time.monotonic() + 0.05, None)
    finally:
        stream.stop()
    ids = [s.placed_id for s in route.seen.values() if s.placed_id]
    route.last_id = max(ids, key=lambda i: tuple(int(x) for x in i.split("-"))) if ids else None


def confirmations(database_url: str, orders: list[int]) -> dict[int, float]:
    """When each order's "confirmed" event was raised: its confirmation_sent_at (UTC)."""
    if not orders:
        return {}
    engine = create_engine(database_url)
    query = text("SELECT id, confirmation_sent_at FROM orders WHERE id IN :ids").bindparams(
        bindparam("ids", expanding=True))
    with engine.connect() as db:
        rows = db.execute(query, {"ids": orders}).all()
    engine.dispose()
    found = {}
    for order_id, sent in rows:
        if isinstance(sent, str):  # SQLite through a plain query: ISO text
            sent = dt.datetime.fromisoformat(sent)
        if sent is not None:
            found[order_id] = sent.replace(tzinfo=dt.UTC).timestamp()
    return found


def summarise(route: Route) -> FanOut:
    sent = confirmations(route.database_url, route.measured)
    placed, confirmed, missed = [], [], 0
    for order in route.measured:
        got = route.seen.get(order, Seen(order))
        if got.placed_at is None or got.confirmed_at is None:
            missed += 1
        if got.placed_at is not None and got.placed_id.partition("-")[2]:  # a Redis stream id
            placed.append(got.placed_at - int(got.placed_id.split("-")[0]) / 1000)
        if got.confirmed_at is not None and order in sent:
            confirmed.append(got.confirmed_at - sent[order])

    def p(samples: list[float], q: float) -> float | None:
        return round(percentile(samples, q), 2) if samples else None

    return FanOut(route.shop, route.path, len(route.measured), p(placed, 50), p(placed, 99),
                  p(confirmed, 50), p(confirmed, 99), missed)


def measure_fan_out(routes: list[Route], count: int, seconds: float) -> list[FanOut]:
    """``count`` orders per route, SEGMENT per stream, the routes taking turns (a burst of
    other load hits them alike); all within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(len(r.measured) < count for r in routes):
        for route in routes:
            left = count - len(route.measured)
            if left > 0 and time.monotonic() < deadline:
                run_segment(route, min(SEGMENT, left), deadline)
    return [summarise(route) for route in routes]


def never_heard(buyer_a: requests.Session, a: str, buyer_b: requests.Session, b: str,
                orders: int = 3) -> FanOut:
    """The before-shop on two instances: B listens while ``orders`` are placed on A. B must
    still hear an order placed on B itself (its stream works); what it heard of A's counts."""
    stream = Stream(b, cookie_header(buyer_b), STREAM_SECONDS, None)
    stream.start()
    seen: dict[int, Seen] = {}
    try:
        stream.opened.wait(EVENT_WAIT)
        if stream.error:
            raise BenchmarkFailed(stream.error)
        on_a = [place_order(buyer_a, a) for _ in range(orders)]
        collect(stream, seen, time.monotonic() + NEVER_WAIT, None)
        control = place_order(buyer_b, b)
        collect(stream, seen, time.monotonic() + EVENT_WAIT, control, ("placed",))
    finally:
        stream.stop()
    if seen.get(control, Seen(control)).placed_at is None:
        raise BenchmarkFailed(f"before A -> B: the stream on {b} did not hear an order placed "
                              "on B itself: the check would prove nothing")
    heard = sum(1 for order in on_a if order in seen)
    return FanOut("before", "A -> B", orders, None, None, None, None, orders - heard,
                  never=heard == 0)
