"""The API call and live order updates, measured for benchmarks/requests.py (and its helpers).

  - the API call: ``GET /api/me`` with a signed JWT on an after-instance (verify, then one
    Redis EXISTS on the logout denylist) beside the alternative a user would otherwise pick,
    the server-side session lookup (``GET /account`` with the session cookie: one Redis read),
    and the before-shop's opaque token looked up in a module dict; p50, p99 and the instance's
    CPU per request, kinds taking turns block by block. In process: ``jwt.decode`` of the
    shop's own token against one Redis GET of a stored session (redis-py, local Redis).
  - event fan-out: a client streams ``GET /orders/events`` from instance B while orders are
    placed on instance A, one at a time. Publish-to-seen is (time the line arrived on B) minus
    the time the event was published, both read from this machine's one clock: for "placed"
    the Redis stream id ``<ms>-<seq>`` (when Redis added it; the after-shop only, to the
    millisecond: up to 1 ms high), for "confirmed" the order's ``confirmation_sent_at``, set
    just before that event is published (microseconds, both shops).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import queue
import random
import socket
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import jwt
import redis
import requests
from sqlalchemy import bindparam, create_engine, text
from werkzeug.security import generate_password_hash

from migrate.sessions.tokens import denylist_key

EVENTS_USER = ("live-updates", "benchmark-events-pass")
API_BLOCK = 10  # requests of one kind in a row; the CPU of the block is that kind's
API_WARMUP = 10  # untimed requests of each kind first
SEGMENT = 50  # events per stream; the configurations take turns, one stream each
STREAM_SECONDS = 20  # a stream's ?seconds= (the shops' cap is 25)
EVENT_WAIT = 5.0  # the longest wait for an event that should come
NEVER_WAIT = 2.0  # how long B listens for orders placed on another before-instance
MICRO_CALLS = 2000  # in-process calls per batch; the median batch counts


class BenchmarkFailed(Exception):
    """A response a user would not accept: the figures would mean nothing."""


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile of ``samples`` (seconds) in milliseconds."""
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1] * 1000


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes and their descendants (from /proc)."""
    ticks, total, seen, stack = os.sysconf("SC_CLK_TCK"), 0, set(), list(pids)
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
            for task in Path(f"/proc/{pid}/task").iterdir():
                stack += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):
            continue
    return total / ticks


def redis_commands(url: str) -> int:
    """Commands the Redis server has run so far (its own count)."""
    return int(redis.Redis.from_url(url).info("stats")["total_commands_processed"])


def login(base: str, name: str, password: str) -> requests.Session:
    """A browser-like session logged in as ``name`` on the instance at ``base`` (once)."""
    http = requests.Session()
    r = http.post(base + "/login", data={"username": name, "password": password},
                  allow_redirects=False, timeout=30)
    if r.status_code != 302 or r.headers.get("Location", "").startswith("/login"):
        raise BenchmarkFailed(f"log in as {name} on {base}: HTTP {r.status_code}")
    return http


def api_token(base: str, name: str, password: str) -> str:
    r = requests.post(base + "/api/token", json={"username": name, "password": password},
                      timeout=30)
    if r.status_code != 201:
        raise BenchmarkFailed(f"POST {base}/api/token as {name}: HTTP {r.status_code}")
    return r.json()["access_token"]


def prepare_database(database_url: str) -> None:
    """The events user (as migrate.harness.shoppers adds its shoppers) and stock to buy."""
    engine = create_engine(database_url)
    name, password = EVENTS_USER
    with engine.begin() as db:
        if db.execute(text("SELECT 1 FROM users WHERE username = :u"), {"u": name}).first() is None:
            db.execute(text("INSERT INTO users (username, password_hash) VALUES (:u, :h)"),
                       {"u": name, "h": generate_password_hash(password)})
        db.execute(text("UPDATE products SET stock = 1000000"))
    engine.dispose()


# --- the API call ----------------------------------------------------------------------------


@dataclass
class ApiKind:
    label: str
    shop: str  # whose instance's CPU counts
    path: str
    http: requests.Session
    base: str
    headers: dict[str, str]
    check: str  # text the answer must hold


@dataclass
class ApiRow:
    request: str
    p50_ms: float
    p99_ms: float
    instance_cpu_ms: float  # per request, the instance that served it
    redis_commands: float  # per request, as Redis counted them
    samples: int


@dataclass
class ApiMicro:
    """In process, per call: what verifying the token costs beside fetching a session."""

    jwt_decode_us: float
    redis_get_session_us: float
    redis_exists_us: float  # the denylist check the after-shop's API adds to the decode
    jwt_vs_session: float  # jwt_decode / redis GET
    jwt_and_exists_vs_session: float
    calls: int


def api_kinds(after: str, before: str, name: str, password: str) -> list[ApiKind]:
    """The four ways of being recognised, each on its own client (no cookie with a token)."""
    kinds = []
    for shop, base, what in (("after", after, "JWT verify + Redis EXISTS (denylist)"),
                             ("before", before, "token looked up in a module dict")):
        token = api_token(base, name, password)
        kinds.append(ApiKind(f"{shop} GET /api/me: {what}", shop, "/api/me", requests.Session(),
                             base, {"Authorization": f"Bearer {token}"}, f'"{name}"'))
    for shop, base, what in (("after", after, "session cookie, Redis session read"),
                             ("before", before, "session cookie, in-process session")):
        kinds.append(ApiKind(f"{shop} GET /account: {what}", shop, "/account",
                             login(base, name, password), base, {}, name))
    return [kinds[0], kinds[2], kinds[1], kinds[3]]


def send_api(kind: ApiKind) -> float:
    started = time.perf_counter()
    r = kind.http.get(kind.base + kind.path, headers=kind.headers, allow_redirects=False,
                      timeout=30)
    seconds = time.perf_counter() - started
    if r.status_code != 200 or kind.check not in r.text:
        raise BenchmarkFailed(f"GET {kind.base}{kind.path}: HTTP {r.status_code} "
                              f"({kind.label})")
    if kind.headers and "Set-Cookie" in r.headers:  # a token client must not start a session
        raise BenchmarkFailed(f"GET {kind.base}{kind.path} set a cookie for a token client")
    return seconds


def measure_api(kinds: list[ApiKind], pids: dict[str, list[int]], redis_url: str,
                count: int, seed: int = 7) -> list[ApiRow]:
    """``count`` requests of each kind in blocks of API_BLOCK, the kinds in a new random order
    every round; each block's instance CPU and Redis commands are its kind's."""
    for kind in kinds:
        for _ in range(API_WARMUP):
            send_api(kind)
    rng = random.Random(seed)
    client = redis.Redis.from_url(redis_url)  # one connection: no set-up commands counted
    samples: dict[str, list[float]] = {k.label: [] for k in kinds}
    cpu = dict.fromkeys(samples, 0.0)
    commands = dict.fromkeys(samples, 0)
    while min(len(s) for s in samples.values()) < count:
        for kind in rng.sample(kinds, len(kinds)):
            n = min(API_BLOCK, count - len(samples[kind.label]))
            used, ran = cpu_seconds(pids[kind.shop]), _commands(client)
            samples[kind.label] += [send_api(kind) for _ in range(n)]
            cpu[kind.label] += cpu_seconds(pids[kind.shop]) - used
            commands[kind.label] += _commands(client) - ran - 1  # less the first INFO
    client.close()
    return [ApiRow(k.label, round(percentile(samples[k.label], 50), 2),
                   round(percentile(samples[k.label], 99), 2),
                   round(cpu[k.label] * 1000 / count, 3),
                   round(commands[k.label] / count, 2), count) for k in kinds]


def _commands(client: redis.Redis) -> int:
    return int(client.info("stats")["total_commands_processed"])


def _per_call_us(call, calls: int, batches: int = 5) -> float:
    timings = []
    for _ in range(batches):
        started = time.perf_counter()
        for _ in range(calls):
            call()
        timings.append((time.perf_counter() - started) / calls)
    return statistics.median(timings) * 1e6


def measure_micro(token: str, keys: dict[str, str], redis_url: str) -> ApiMicro:
    """``jwt.decode`` as the after-shop calls it, beside one GET of a stored session."""
    from sample_stateless_app.tokens import ALGORITHM, LEEWAY, REQUIRED

    key = keys[jwt.get_unverified_header(token)["kid"]]

    def decode() -> dict:
        return jwt.decode(token, key, algorithms=[ALGORITHM], leeway=LEEWAY,
                          options={"require": REQUIRED})

    if decode().get("typ") != "access":
        raise BenchmarkFailed("the shop's token did not decode with the shop's key")
    client = redis.Redis.from_url(redis_url)
    session_key = next(client.scan_iter(match="session:*", count=1000), None)
    if session_key is None or not client.get(session_key):
        raise BenchmarkFailed("no stored session under session:* in the after-shop's Redis")
    denylisted = denylist_key(decode()["sid"])
    jwt_us = _per_call_us(decode, MICRO_CALLS)
    get_us = _per_call_us(lambda: client.get(session_key), MICRO_CALLS)
    exists_us = _per_call_us(lambda: client.exists(denylisted), MICRO_CALLS)
    jwt_us = min(jwt_us, _per_call_us(decode, MICRO_CALLS))  # once more, after the Redis runs
    client.close()
    return ApiMicro(round(jwt_us, 1), round(get_us, 1), round(exists_us, 1),
                    round(jwt_us / get_us, 2), round((jwt_us + exists_us) / get_us, 2),
                    MICRO_CALLS)


# --- event fan-out ---------------------------------------------------------------------------


class Stream(threading.Thread):
    """One ``GET /orders/events`` read from a raw socket (HTTP/1.0: no chunk framing), each
    event stamped with the wall-clock time its bytes arrived."""

    def __init__(self, base: str, cookie: str, seconds: float, last_id: str | None) -> None:
        super().__init__(daemon=True)
        self.base, self.cookie, self.seconds, self.last_id = base, cookie, seconds, last_id
        self.events: queue.SimpleQueue[tuple[float, str, dict]] = queue.SimpleQueue()
        self.opened = threading.Event()
        self.stopping = threading.Event()
        self.error = ""

    def run(self) -> None:
        parts = urlsplit(self.base)
        resume = f"Last-Event-ID: {self.last_id}\r\n" if self.last_id else ""
        request = (f"GET /orders/events?seconds={self.seconds:g} HTTP/1.0\r\n"
                   f"Host: {parts.netloc}\r\nCookie: {self.cookie}\r\n"
                   f"Accept: text/event-stream\r\n{resume}\r\n")
        try:
            with socket.create_connection((parts.hostname, parts.port), timeout=0.5) as sock:
                sock.sendall(request.encode())
                self._read(sock)
        except OSError as exc:
            self.error = f"stream from {self.base}: {type(exc).__name__}: {exc}"
        finally:
            self.opened.set()  # whoever waits for the stream to open must not hang

    def _read(self, sock: socket.socket) -> None:
        buffer, head_done = b"", False
        while not self.stopping.is_set():
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
                    self.error = f"stream from {self.base}: {status} (not logged in there?)"
                    return
                head_done = True
            while b"\n\n" in buffer:
                message, buffer = buffer.split(b"\n\n", 1)
                self._message(message.decode(), seen)

    def _message(self, message: str, seen: float) -> None:
        fields: dict[str, str] = {}
        for line in message.splitlines():
            name, _, value = line.partition(":")
            fields[name] = value.strip()
        if "retry" in fields:
            self.opened.set()
        if "id" in fields and "data" in fields:
            self.events.put((seen, fields["id"], json.loads(fields["data"])))

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)


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


# --- both measures in one go, and their report ----------------------------------------------


@dataclass
class ApiAndEvents:
    api: list[ApiRow]
    micro: ApiMicro
    fan_out: list[FanOut]


def measure_api_and_events(before: list[str], after: list[str], databases: dict[str, str],
                           pids: dict[str, list[int]], redis_url: str, secret_key: str,
                           requests_per_kind: int, events: int, events_seconds: float,
                           progress) -> ApiAndEvents:
    """``before``/``after``: two instances' URLs each (A, B); ``pids``: "before", "after" (the
    A instances), "redis". Logs each user in once per instance it needs."""
    from sample_stateless_app.config import jwt_keys

    name, password = "alice", "wonderland"
    progress(f"the API call: {requests_per_kind} requests of each of 4 kinds, blocks of "
             f"{API_BLOCK} taking turns")
    kinds = api_kinds(after[0], before[0], name, password)
    api = measure_api(kinds, pids, redis_url, requests_per_kind)
    token = kinds[0].headers["Authorization"].split(" ", 1)[1]
    keys, _ = jwt_keys({"SECRET_KEY": secret_key})
    micro = measure_micro(token, keys, redis_url)
    for database in databases.values():
        prepare_database(database)
    progress(f"event fan-out: {events} orders per route, {SEGMENT} per stream, routes taking "
             f"turns, at most {events_seconds:g} s")
    user, secret = EVENTS_USER
    after_buyer = login(after[0], user, secret)  # one session: any after-instance knows it
    before_a, before_b = login(before[0], user, secret), login(before[1], user, secret)
    routes = [
        Route("after", "A -> B", after_buyer, after[0], after[1], cookie_header(after_buyer),
              databases["after"], {}, []),
        Route("after", "A = B", after_buyer, after[0], after[0], cookie_header(after_buyer),
              databases["after"], {}, []),
        Route("before", "A = B", before_a, before[0], before[0], cookie_header(before_a),
              databases["before"], {}, []),
    ]
    fan_out = measure_fan_out(routes, events, events_seconds)
    fan_out.append(never_heard(before_a, before[0], before_b, before[1]))
    return ApiAndEvents(api, micro, fan_out)


def _ms(value: float | None) -> str:
    return f"{value:>8.2f}ms" if value is not None else f"{'-':>10}"


def print_api_and_events(found: ApiAndEvents) -> None:
    print(f"\nthe API call, one instance each, one request in flight; {found.api[0].samples} "
          "samples per row (kinds in blocks taking turns)")
    print(f"{'request':<72} {'p50':>10} {'p99':>10} {'instance CPU':>13} {'redis cmds':>10}")
    for row in found.api:
        print(f"{row.request:<72} {row.p50_ms:>8.2f}ms {row.p99_ms:>8.2f}ms "
              f"{row.instance_cpu_ms:>11.2f}ms {row.redis_commands:>10.2f}")
    jwt_row, session_row, dict_row = found.api[0], found.api[1], found.api[2]
    print(f"after, JWT vs the session lookup (the alternative a user would pick): p50 "
          f"{jwt_row.p50_ms / session_row.p50_ms:.2f}x, instance CPU "
          f"{_ratio(jwt_row.instance_cpu_ms, session_row.instance_cpu_ms)}; JWT vs the before-"
          f"shop's dict: p50 {jwt_row.p50_ms / dict_row.p50_ms:.2f}x, instance CPU "
          f"{_ratio(jwt_row.instance_cpu_ms, dict_row.instance_cpu_ms)} (/account renders a "
          "page, /api/me answers JSON: the in-process figures below isolate the lookup)")
    m = found.micro
    print(f"in process, per call (median of 5 x {m.calls}): jwt.decode of the shop's token "
          f"{m.jwt_decode_us:.1f} us; Redis GET of a stored session {m.redis_get_session_us:.1f} "
          f"us (redis-py, local Redis): jwt.decode = {m.jwt_vs_session:.2f}x the session GET; "
          f"with the denylist EXISTS ({m.redis_exists_us:.1f} us) the after-shop's check = "
          f"{m.jwt_and_exists_vs_session:.2f}x")
    print("\nevent fan-out: publish -> seen on B's /orders/events stream, orders placed on A one "
          "at a time; placed: by the Redis stream id's ms (reads up to 1 ms high); confirmed: by "
          "confirmation_sent_at (us)")
    print(f"{'shop':<7} {'route':<7} {'orders':>6} {'placed p50':>11} {'placed p99':>11} "
          f"{'confirmed p50':>14} {'confirmed p99':>14} {'missed':>6}")
    for f in found.fan_out:
        if f.never:
            print(f"{f.shop:<7} {f.path:<7} {f.events:>6} never (the event stays in A's process; "
                  "B heard an order placed on B)")
            continue
        print(f"{f.shop:<7} {f.path:<7} {f.events:>6} {_ms(f.placed_p50_ms):>11} "
              f"{_ms(f.placed_p99_ms):>11} {_ms(f.confirmed_p50_ms):>14} "
              f"{_ms(f.confirmed_p99_ms):>14} {f.missed:>6}")
    by = {(f.shop, f.path): f for f in found.fan_out}
    same_after, same_before = by[("after", "A = B")], by[("before", "A = B")]
    cross = by[("after", "A -> B")]
    if same_after.confirmed_p50_ms and same_before.confirmed_p50_ms:
        print(f"after/before, same instance, confirmed p50: "
              f"{same_after.confirmed_p50_ms / same_before.confirmed_p50_ms:.2f}x; after A -> B "
              f"vs before A = B: {_ratio(cross.confirmed_p50_ms, same_before.confirmed_p50_ms)}"
              f"; before A -> B: never")


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"
