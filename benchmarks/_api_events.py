"""The API call and live order updates, measured for benchmarks/requests.py (and its helpers).

  - the API call: ``GET /api/me`` with a signed JWT on an after-instance (verify, then one
    Redis EXISTS on the logout denylist) beside the alternative a user would otherwise pick,
    the server-side session lookup (``GET /account`` with the session cookie: one Redis read),
    and the before-shop's opaque token looked up in a module dict; p50, p99 and the instance's
    CPU per request, kinds taking turns block by block. In process: ``jwt.decode`` of the
    shop's own token against one Redis GET of a stored session (redis-py, local Redis).
  - event fan-out: a client streams ``GET /orders/events`` from instance B while orders are
    placed on instance A, one at a time. Publish-to-seen is (time the line arrived on B) minus
    the time the event was published (benchmarks/_fan_out.py).
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass

import jwt
import redis
import requests

from benchmarks._common import (
    EVENTS_USER,
    BenchmarkFailed,
    api_token,
    cpu_seconds,
    login,
    percentile,
    prepare_database,
)
from benchmarks._fan_out import (
    SEGMENT,
    FanOut,
    Route,
    cookie_header,
    measure_fan_out,
    never_heard,
)
from migrate.sessions.tokens import denylist_key

API_BLOCK = 10  # requests of one kind in a row; the CPU of the block is that kind's
API_WARMUP = 10  # untimed requests of each kind first
MICRO_CALLS = 2000  # in-process calls per batch; the median batch counts


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


def _per_call_us(calls: dict[str, object], count: int, batches: int = 7) -> dict[str, float]:
    """Microseconds per call of each callable: batches of ``count`` calls taking turns (a burst
    of other load hits them alike); the median batch of each."""
    timings: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(batches):
        for name, call in calls.items():
            started = time.perf_counter()
            for _ in range(count):
                call()
            timings[name].append((time.perf_counter() - started) / count)
    return {name: statistics.median(t) * 1e6 for name, t in timings.items()}


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
    us = _per_call_us({"decode": decode, "get": lambda: client.get(session_key),
                       "exists": lambda: client.exists(denylisted)}, MICRO_CALLS)
    client.close()
    jwt_us, get_us, exists_us = us["decode"], us["get"], us["exists"]
    return ApiMicro(round(jwt_us, 1), round(get_us, 1), round(exists_us, 1),
                    round(jwt_us / get_us, 2), round((jwt_us + exists_us) / get_us, 2),
                    MICRO_CALLS)


# --- both measures in one go, and their report ----------------------------------------------


@dataclass
class ApiAndEvents:
    api: list[ApiRow]
    micro: ApiMicro
    fan_out: list[FanOut]
    api_seconds: float  # how long each part took
    events_seconds: float


def measure_api_and_events(before: list[str], after: list[str], databases: dict[str, str],
                           pids: dict[str, list[int]], redis_url: str, secret_key: str,
                           requests_per_kind: int, events: int, events_seconds: float,
                           progress) -> ApiAndEvents:
    """``before``/``after``: two instances' URLs each (A, B); ``pids``: "before", "after" (the
    A instances), "redis". Logs each user in once per instance it needs."""
    from sample_stateless_app.config import jwt_keys

    name, password = "alice", "wonderland"
    started = time.perf_counter()
    progress(f"the API call: {requests_per_kind} requests of each of 4 kinds, blocks of "
             f"{API_BLOCK} taking turns")
    kinds = api_kinds(after[0], before[0], name, password)
    api = measure_api(kinds, pids, redis_url, requests_per_kind)
    token = kinds[0].headers["Authorization"].split(" ", 1)[1]
    keys, _ = jwt_keys({"SECRET_KEY": secret_key})
    micro = measure_micro(token, keys, redis_url)
    api_seconds = time.perf_counter() - started
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
    return ApiAndEvents(api, micro, fan_out, round(api_seconds, 1),
                        round(time.perf_counter() - started - api_seconds, 1))


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
    print(f"in process, per call (median of 7 batches x {m.calls}, taking turns): jwt.decode "
          f"of the shop's token "
          f"{m.jwt_decode_us:.1f} us; Redis GET of a stored session {m.redis_get_session_us:.1f} "
          f"us (redis-py, local Redis): jwt.decode = {m.jwt_vs_session:.2f}x the session GET; "
          f"with the denylist EXISTS ({m.redis_exists_us:.1f} us) the after-shop's check = "
          f"{m.jwt_and_exists_vs_session:.2f}x")
    print("\nevent fan-out: publish -> seen on B's /orders/events stream, orders placed on A one "
          "at a time; placed: by the Redis stream id's ms (truncated: reads up to 1 ms high, "
          "0.5 ms on average); confirmed: by confirmation_sent_at (us; the after-shop's is "
          "raised by its RQ worker, the before-shop's by a thread of A)")
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
    print(f"(the API call {found.api_seconds:.1f} s, the event fan-out {found.events_seconds:.1f} "
          "s of the whole run)")


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"
