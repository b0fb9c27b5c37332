"""What moving state out of the process costs per request: the before-shop beside the after.

One run, on the embedded stores (redis-server and `rclone serve s3` on 127.0.0.1, free ports,
SQLite files in a temporary folder), with gunicorn instances started by migrate.harness.cluster:
two before-instances and three after-instances (each one worker, as in the tests; the second
before-instance serves only the live-updates check).

  - cost per request: the journey's hot requests (catalog page, add to cart, view cart, account
    page, product page) on the before-shop and on one after-instance, sent by logged-in users
    (a requests.Session each), one request in flight at a time so the figure is the service
    time, not time spent in a queue. Before and after are measured interleaved, request by
    request (the order swapped every round), so a burst of other load on the machine hits both
    alike. p50 and p99 per request, and the CPU each instance used per request (from
    /proc/<pid>/stat, master and worker), against the targets: after p50 <= before p50 +
    0.5 ms on every hot request; after CPU per request <= 1.1x before.
  - scaling: --users threads, each a logged-in user cycling through the same five requests as
    fast as answers come, for --seconds (and at most --requests x 20 requests in all), on 1, 2
    and 3 after-instances (each user's requests go round-robin over them, as through a balancer
    without sticky sessions) and on the before-instance for reference. The runs take turns for
    --rounds rounds; the best of each counts. Client, instances, Redis and the S3 server share
    this machine's CPUs: each run reports the CPU each of them used per request (the client's
    own process time; every other process from /proc/<pid>/stat), which shows the scaling even
    where the machine's cores cap requests/s.

  - the API call (benchmarks/_api_events.py): GET /api/me with a signed JWT on an after-instance
    (verify + one Redis EXISTS on the logout denylist) beside the alternative a user would
    otherwise pick, the server-side session lookup (GET /account with the session cookie: the
    Redis session read), and the before-shop's token looked up in a module dict; --requests
    of each, p50, p99 and instance CPU per request. In process: jwt.decode of the shop's token
    against one Redis GET of a stored session (us per call, as a ratio).
  - event fan-out (same module): a client streams GET /orders/events from after-instance B
    while orders are placed on A, --events of them one at a time (at most --events-seconds);
    publish-to-seen p50/p99, the publish time read from the Redis stream id ("placed") and
    from confirmation_sent_at ("confirmed"); the same on one instance (A = B) for both shops;
    on two before-instances B never hears of it.

The Redis round trips per request are counted exactly by tests/test_request_cost.py; here the
Redis server's commands per request are printed beside the CPU.

Usage: .venv/bin/python benchmarks/requests.py [--requests 300] [--users 8] [--seconds 8]
       [--rounds 2] [--events 200] [--events-seconds 90] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

# Run as a script, this file's folder leads sys.path and this file would be imported as the
# `requests` library: drop the folder, and put the project root there instead.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

import requests  # noqa: E402

from benchmarks._api_events import (  # noqa: E402
    ApiAndEvents,
    measure_api_and_events,
    print_api_and_events,
)
from benchmarks._common import (  # noqa: E402
    BenchmarkFailed,
    cpu_seconds,
    percentile,
    redis_commands,
)
from migrate.harness.cluster import Cluster  # noqa: E402
from migrate.harness.stores import start_stores  # noqa: E402

SECRET_KEY = "benchmark-secret-key-0123456789abcdef"
USERS = [("alice", "wonderland"), ("bob", "builder")]
PRODUCTS = 6  # the shops' seed catalog
KINDS = ["catalog page", "add to cart", "view cart", "account page", "product page"]
WARMUP = 20  # untimed rounds first: imports, caches, first connections to the stores
TARGET_MS = 0.5  # after p50 <= before p50 + this, on every hot request
TARGET_CPU = 1.1  # after-instance CPU per request <= this x the before-instance's
AFTER_INSTANCES = 3
BEFORE_INSTANCES = 2  # the second only shows live updates never cross before-instances


class User:
    """One logged-in shopper: a requests.Session, round-robin over the instances it is given."""

    def __init__(self, urls: list[str], number: int, seed: int) -> None:
        self.urls = urls
        self.name, self.password = USERS[number % len(USERS)]
        self.http = requests.Session()
        self.next = number  # users start on different instances
        self.rng = random.Random(seed + number)
        self.served: Counter[str] = Counter()  # X-Instance -> responses

    def login(self) -> User:
        r = self.http.post(self.urls[0] + "/login",
                           data={"username": self.name, "password": self.password},
                           allow_redirects=False, timeout=30)
        if r.status_code != 302:
            raise BenchmarkFailed(f"log in as {self.name} on {self.urls[0]}: HTTP {r.status_code}")
        return self

    def send(self, kind: str) -> float:
        """Send one request of ``kind``; check the answer; return its seconds."""
        base = self.urls[self.next % len(self.urls)]
        self.next += 1
        product = self.rng.randint(1, PRODUCTS)
        if kind == "add to cart":
            method, path, data = "POST", "/cart/add", {"product_id": product, "quantity": 1}
        else:
            method, data = "GET", None
            path = {"catalog page": "/", "view cart": "/cart", "account page": "/account",
                    "product page": f"/product/{product}"}[kind]
        started = time.perf_counter()
        r = self.http.request(method, base + path, data=data, allow_redirects=False, timeout=30)
        seconds = time.perf_counter() - started
        self.served[r.headers.get("X-Instance", base)] += 1
        location = r.headers.get("Location", "")
        want = 302 if method == "POST" else 200
        if r.status_code != want or (method == "POST" and not location.startswith("/cart")):
            logged_out = " (the user appears logged out)" if location.startswith("/login") else ""
            raise BenchmarkFailed(f"{method} {base}{path}: HTTP {r.status_code}"
                                  f"{' to ' + location if location else ''}{logged_out}")
        return seconds


@dataclass
class Latency:
    request: str
    before_p50_ms: float
    before_p99_ms: float
    after_p50_ms: float
    after_p99_ms: float
    diff_p50_ms: float
    target_met: bool
    samples: int


@dataclass
class Cost:
    """CPU per request of each side while the latency was measured (same requests, interleaved)."""

    requests: int  # per shop
    before_instance_ms: float
    after_instance_ms: float
    after_vs_before: float
    target_met: bool
    redis_ms: float  # the after-shop's Redis (the before-shop sends it nothing)
    redis_commands: float  # per after-request, as Redis counted them


@dataclass
class Throughput:
    shop: str
    instances: int
    users: int
    requests: int
    seconds: float
    per_second: float
    cpu_ms_per_request: dict[str, float]  # client, instances, redis, s3
    cpu_busy: float  # all CPU used over (seconds x CPUs): near 1.0, the machine was the limit
    served_by: dict[str, int] = field(default_factory=dict)


def measure_latency(before: list[User], after: list[User], rounds: int, pids: dict[str, list[int]],
                    redis_url: str) -> tuple[list[Latency], Cost]:
    """``rounds`` of the hot requests on each shop, interleaved; the CPU of the timed rounds."""
    samples: dict[str, dict[str, list[float]]] = {k: {"before": [], "after": []} for k in KINDS}
    cpu: dict[str, float] = {}
    commands = 0
    for n in range(WARMUP + rounds):
        if n == WARMUP:
            cpu = {side: cpu_seconds(p) for side, p in pids.items()}
            commands = redis_commands(redis_url)
        b, a = before[n % len(before)], after[n % len(after)]
        for kind in KINDS:
            pair = [("before", b), ("after", a)]
            for shop, user in (pair if n % 2 == 0 else pair[::-1]):
                seconds = user.send(kind)
                if n >= WARMUP:
                    samples[kind][shop].append(seconds)
    per = {side: (cpu_seconds(p) - cpu[side]) * 1000 / (rounds * len(KINDS))
           for side, p in pids.items()}
    commands = redis_commands(redis_url) - commands - 2  # less the two INFO calls
    rows = []
    for kind in KINDS:
        s = samples[kind]
        b50, a50 = percentile(s["before"], 50), percentile(s["after"], 50)
        rows.append(Latency(kind, round(b50, 2), round(percentile(s["before"], 99), 2),
                            round(a50, 2), round(percentile(s["after"], 99), 2),
                            round(a50 - b50, 2), a50 <= b50 + TARGET_MS, len(s["before"])))
    ratio = per["after"] / per["before"] if per["before"] else math.inf
    cost = Cost(rounds * len(KINDS), round(per["before"], 3), round(per["after"], 3),
                round(ratio, 2), ratio <= TARGET_CPU, round(per["redis"], 3),
                round(commands / (rounds * len(KINDS)), 2))
    return rows, cost


def measure_throughput(shop: str, urls: list[str], pids: dict[str, list[int]], users: int,
                       seconds: float, cap: int) -> Throughput:
    """``users`` threads, each a logged-in user sending the hot requests in turn, round-robin
    over ``urls``, bounded by ``seconds`` and by ``cap`` requests in all."""
    shoppers = [User(urls, i, seed=1000).login() for i in range(users)]
    for user in shoppers:  # warm every instance and session before the clock starts
        for kind in KINDS:
            user.send(kind)
        user.served.clear()
    counts = [0] * users
    errors: list[str] = []
    start = threading.Barrier(users + 1)
    per_user = max(1, cap // users)
    deadline = [0.0]

    def run(i: int) -> None:
        user, kinds = shoppers[i], itertools.cycle(KINDS)
        start.wait()
        try:
            while counts[i] < per_user and time.perf_counter() < deadline[0]:
                user.send(next(kinds))
                counts[i] += 1
        except (BenchmarkFailed, requests.RequestException) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(users)]
    for thread in threads:
        thread.start()
    client_cpu = time.process_time()
    cpu = {side: cpu_seconds(p) for side, p in pids.items()}
    began = time.perf_counter()
    deadline[0] = began + seconds
    start.wait()
    for thread in threads:
        thread.join(seconds + 60)
    elapsed = time.perf_counter() - began
    used = {"client": time.process_time() - client_cpu}
    used.update({side: cpu_seconds(p) - cpu[side] for side, p in pids.items()})
    if errors:
        raise BenchmarkFailed(f"{shop} x{len(urls)}: {len(errors)} user(s) stopped; first: "
                              f"{errors[0]}")
    total = sum(counts)
    served = sum((user.served for user in shoppers), Counter())
    busy = sum(used.values()) / (elapsed * (os.cpu_count() or 1))
    return Throughput(shop, len(urls), users, total, round(elapsed, 2),
                      round(total / elapsed, 1),
                      {side: round(s * 1000 / max(1, total), 3) for side, s in used.items()},
                      round(busy, 2), dict(sorted(served.items())))


def progress(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300,
                        help="Timed requests per kind and shop for latency (default 300); "
                             "each throughput run stops at 20x this many requests in all.")
    parser.add_argument("--users", type=int, default=8,
                        help="Logged-in users (threads) for throughput; latency rotates over "
                             "as many sessions (default 8).")
    parser.add_argument("--seconds", type=float, default=8.0,
                        help="Length of each throughput run (default 8).")
    parser.add_argument("--rounds", type=int, default=2,
                        help="Throughput runs per configuration, taking turns; the best counts "
                             "(default 2).")
    parser.add_argument("--events", type=int, default=200,
                        help="Orders per live-updates route, each event timed from publish to "
                             "seen on the stream (default 200; at most --events-seconds).")
    parser.add_argument("--events-seconds", type=float, default=90.0,
                        help="Time bound of the live-updates measure (default 90).")
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON only.")
    args = parser.parse_args()
    if min(args.requests, args.users, args.rounds, args.events) < 1 or args.seconds <= 0 \
            or args.events_seconds <= 0:
        parser.error("--requests, --users, --rounds and --events must be at least 1, --seconds "
                     "and --events-seconds above 0")
    if args.seconds > 120 or args.requests > 10_000 or args.users > 64 or args.rounds > 10 \
            or args.events > 2000 or args.events_seconds > 300:
        parser.error("keep it bounded: --seconds <= 120, --requests <= 10000, --users <= 64, "
                     "--rounds <= 10, --events <= 2000, --events-seconds <= 300")
    return args


def run_all(args: argparse.Namespace, quiet: bool) -> tuple[list[Latency], Cost,
                                                            list[Throughput], ApiAndEvents]:
    """Start the stores and the instances, measure, stop every server by its pid."""
    clusters: list[Cluster] = []
    with start_stores() as store_set:
        stores = store_set.stores
        store_pids = {"redis": [store_set.redis.pid] if store_set.redis else [],
                      "s3": [store_set.s3.pid] if store_set.s3 else []}
        run_dir, env = stores.run_dir, stores.app_env()
        env = {**env, "SECRET_KEY": SECRET_KEY}
        try:
            progress(f"starting redis-server, rclone serve s3, {BEFORE_INSTANCES} before-instances"
                     f" and {AFTER_INSTANCES} after-instances (gunicorn) on 127.0.0.1", quiet)
            databases = {}
            for app, n in (("stateful", BEFORE_INSTANCES), ("stateless", AFTER_INSTANCES)):
                name = f"{app}-x{n}"
                databases[app] = f"sqlite:///{run_dir / (name + '.db')}"
                clusters.append(Cluster(app, n, {**env, "DATABASE_URL": databases[app]},
                                        run_dir / name).start())
            before, after = clusters
            pids = [[before.instance(0).pid]] + [[after.instance(i).pid]
                                                 for i in range(AFTER_INSTANCES)]
            users = args.users
            progress(f"cost per request: {args.requests} timed requests of each kind per shop, "
                     f"interleaved, over {users} logged-in sessions each", quiet)
            latency, cost = measure_latency(
                [User(before.urls[:1], i, seed=1).login() for i in range(users)],
                [User(after.urls[:1], i, seed=1).login() for i in range(users)],
                args.requests, {"before": pids[0], "after": pids[1], **store_pids},
                stores.redis_url)
            configs = [("after", after.urls[:n], sum(pids[1:n + 1], []))
                       for n in range(1, AFTER_INSTANCES + 1)]
            configs.append(("before", before.urls[:1], pids[0]))
            runs: list[Throughput] = []
            for round_ in range(args.rounds):  # the configurations take turns
                for n, (shop, urls, instance_pids) in enumerate(configs):
                    progress(f"scaling, round {round_ + 1}: {shop} x{len(urls)}, {users} users, "
                             f"{args.seconds:g} s", quiet)
                    run = measure_throughput(shop, urls, {"instances": instance_pids,
                                                          **store_pids},
                                             users, args.seconds, args.requests * 20)
                    progress(f"  {run.per_second:,.1f} requests/s", quiet)
                    if round_ == 0:
                        runs.append(run)
                    elif run.per_second > runs[n].per_second:
                        runs[n] = run
            extra = measure_api_and_events(
                before.urls[:2], after.urls[:2],
                {"before": databases["stateful"], "after": databases["stateless"]},
                {"before": pids[0], "after": pids[1], **store_pids}, stores.redis_url,
                SECRET_KEY, args.requests, args.events, args.events_seconds,
                lambda message: progress(message, quiet))
        finally:
            for c in clusters:
                c.stop_all()
    return latency, cost, runs, extra


def print_report(args: argparse.Namespace, load: float, latency: list[Latency], cost: Cost,
                 runs: list[Throughput], seconds: float) -> None:
    cpus = os.cpu_count() or 1
    print(f"\ncost per request, one instance each, one request in flight; {args.requests} "
          f"samples per cell; {cpus} CPUs shared by client, servers and stores; load average "
          f"{load:.2f} at start")
    print(f"{'request':<14} {'before p50':>10} {'before p99':>10} {'after p50':>10} "
          f"{'after p99':>10} {'after-before p50':>17}  target +{TARGET_MS:g} ms")
    for row in latency:
        print(f"{row.request:<14} {row.before_p50_ms:>8.2f}ms {row.before_p99_ms:>8.2f}ms "
              f"{row.after_p50_ms:>8.2f}ms {row.after_p99_ms:>8.2f}ms "
              f"{row.diff_p50_ms:>+14.2f} ms  {'met' if row.target_met else 'missed'}")
    missed = [row.request for row in latency if not row.target_met]
    print(f"target: after p50 <= before p50 + {TARGET_MS:g} ms on every hot request: "
          f"{'met' if not missed else 'missed (' + ', '.join(missed) + ')'}")
    print(f"instance CPU per request (the same {cost.requests} requests each): before "
          f"{cost.before_instance_ms:.2f} ms, after {cost.after_instance_ms:.2f} ms = "
          f"{cost.after_vs_before:.2f}x; target <= {TARGET_CPU:g}x: "
          f"{'met' if cost.target_met else 'missed'}")
    print(f"the after-shop's Redis: {cost.redis_ms:.3f} ms CPU and {cost.redis_commands:.2f} "
          f"commands per request (round trips: tests/test_request_cost.py)")
    print(f"\nscaling: {args.users} logged-in users, the five requests in turn, "
          f"{args.seconds:g} s per run, best of {args.rounds} rounds taking turns")
    print(f"{'shop':<7} {'instances':>9} {'requests':>9} {'requests/s':>11} {'vs x1':>6}   "
          f"CPU ms/request: {'client':>6} {'instances':>9} {'redis':>6} {'s3':>5} "
          f"{'total':>6}  machine busy")
    one = runs[0].per_second or 1.0
    for run in runs:
        c = run.cpu_ms_per_request
        ratio = f"{run.per_second / one:>5.2f}x" if run.shop == "after" else f"{'':>6}"
        print(f"{run.shop:<7} {run.instances:>9} {run.requests:>9,} {run.per_second:>11,.1f} "
              f"{ratio}   {'':15} {c['client']:>6.2f} {c['instances']:>9.2f} "
              f"{c['redis']:>6.2f} {c['s3']:>5.2f} {sum(c.values()):>6.2f}  "
              f"{run.cpu_busy:>11.0%}")
    print(f"(on {cpus} CPUs all of these share, requests/s stops rising once the machine is busy; "
          "flat CPU per request across 1-3 instances is what shows the after-shop scales out)")
    if load > 0.5 * cpus:
        print(f"note: load average {load:.2f} at start on {cpus} CPUs: other work was running "
              "and skews these figures; rerun on a quiet machine to compare")


def main() -> int:
    args = parse_args()
    quiet = args.json
    started = time.perf_counter()
    # SIGTERM as Ctrl-C: unwind, so every server started here is stopped by its pid.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    load = os.getloadavg()[0]  # other work on the machine skews every figure: say how much
    try:
        latency, cost, runs, extra = run_all(args, quiet)
    except BenchmarkFailed as exc:
        print(f"benchmark stopped: {exc}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - started
    missed = [row.request for row in latency if not row.target_met]
    if args.json:
        print(json.dumps({
            "cpus": os.cpu_count(), "load_average_at_start": round(load, 2),
            "requests_per_kind": args.requests, "users": args.users,
            "seconds_per_throughput_run": args.seconds, "throughput_rounds": args.rounds,
            "latency": [asdict(row) for row in latency],
            "latency_target": f"after p50 <= before p50 + {TARGET_MS:g} ms",
            "latency_target_met": not missed,
            "cpu_per_request": asdict(cost),
            "cpu_target": f"after instance CPU per request <= {TARGET_CPU:g}x before",
            "throughput": [asdict(run) for run in runs],
            "api_call": [asdict(row) for row in extra.api],
            "api_in_process": asdict(extra.micro),
            "event_fan_out": [asdict(row) for row in extra.fan_out],
            "api_call_seconds": extra.api_seconds, "event_fan_out_seconds": extra.events_seconds,
            "total_seconds": round(seconds, 1),
        }, indent=2))
        return 0
    print_report(args, load, latency, cost, runs, seconds)
    print_api_and_events(extra)
    print(f"\n(whole run {seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
