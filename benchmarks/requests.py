"""What moving state out of the process costs per request: the before-shop beside the after.

One run, on the embedded stores (redis-server and `rclone serve s3` on 127.0.0.1, free ports,
SQLite files in a temporary folder), with gunicorn instances started by migrate.harness.cluster (one
sync worker each, as in the tests):

  - latency: the journey's hot requests (catalog page, add to cart, view cart, account page,
    product page) on the before-shop and the after-shop, one instance each, sent by logged-in
    users (a requests.Session each), one request in flight at a time so the figure is the
    service time, not time spent in a queue. Before and after are measured interleaved, request
    by request (the order swapped every round), so a burst of other load on the machine hits
    both alike. p50 and p99 per request; the target is after p50 <= before p50 + 1 ms.
  - throughput: --users threads, each a logged-in user cycling through the same five requests
    as fast as answers come, for --seconds (and at most --requests x 20 requests in all), on
    the after-shop with one and with two instances (each user's requests go round-robin over
    the instances, as through a balancer without sticky sessions), and on the before-shop with
    one instance for reference. The three take turns for --rounds rounds; the best run of each
    counts. Client, instances and stores share this machine's CPUs: each run reports the CPU
    seconds each of them used, which says what limited it.

Usage: .venv/bin/python benchmarks/requests.py [--requests 300] [--users 8] [--seconds 8]
       [--rounds 2] [--json]
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

from migrate.harness.cluster import Cluster  # noqa: E402
from migrate.harness.stores import start_stores  # noqa: E402

SECRET_KEY = "benchmark-secret-key-0123456789abcdef"
USERS = [("alice", "wonderland"), ("bob", "builder")]
PRODUCTS = 6  # the shops' seed catalog
KINDS = ["catalog page", "add to cart", "view cart", "account page", "product page"]
WARMUP = 20  # untimed rounds first: imports, caches, first connections to the stores
TARGET_MS = 1.0


class BenchmarkFailed(Exception):
    """A response a user would not accept: the figures would mean nothing."""


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


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile of ``samples`` (seconds) in milliseconds."""
    ordered = sorted(samples)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1] * 1000


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
class Throughput:
    shop: str
    instances: int
    users: int
    requests: int
    seconds: float
    per_second: float
    cpu_client_s: float
    cpu_instances_s: float
    cpu_stores_s: float
    cpu_busy: float  # all three over (seconds x CPUs): near 1.0, the machine was the limit
    served_by: dict[str, int] = field(default_factory=dict)


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


def measure_latency(before: list[User], after: list[User], rounds: int) -> list[Latency]:
    samples: dict[str, dict[str, list[float]]] = {k: {"before": [], "after": []} for k in KINDS}
    for n in range(WARMUP + rounds):
        b, a = before[n % len(before)], after[n % len(after)]
        for kind in KINDS:
            pair = [("before", b), ("after", a)]
            for shop, user in (pair if n % 2 == 0 else pair[::-1]):
                seconds = user.send(kind)
                if n >= WARMUP:
                    samples[kind][shop].append(seconds)
    rows = []
    for kind in KINDS:
        s = samples[kind]
        b50, a50 = percentile(s["before"], 50), percentile(s["after"], 50)
        rows.append(Latency(kind, round(b50, 2), round(percentile(s["before"], 99), 2),
                            round(a50, 2), round(percentile(s["after"], 99), 2),
                            round(a50 - b50, 2), a50 <= b50 + TARGET_MS, len(s["before"])))
    return rows


def measure_throughput(shop: str, cluster: Cluster, store_pids: list[int], users: int,
                       seconds: float, cap: int) -> Throughput:
    """``users`` threads, each a logged-in user sending the hot requests in turn, bounded by
    ``seconds`` and by ``cap`` requests in all."""
    urls = cluster.urls
    instance_pids = [p for p in (cluster.instance(i).pid for i in range(len(cluster))) if p]
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
    cpu = (time.process_time(), cpu_seconds(instance_pids), cpu_seconds(store_pids))
    began = time.perf_counter()
    deadline[0] = began + seconds
    start.wait()
    for thread in threads:
        thread.join(seconds + 60)
    elapsed = time.perf_counter() - began
    client_s = time.process_time() - cpu[0]
    instances_s = cpu_seconds(instance_pids) - cpu[1]
    stores_s = cpu_seconds(store_pids) - cpu[2]
    if errors:
        raise BenchmarkFailed(f"{shop} x{len(urls)}: {len(errors)} user(s) stopped; first: "
                              f"{errors[0]}")
    total = sum(counts)
    served = sum((user.served for user in shoppers), Counter())
    busy = (client_s + instances_s + stores_s) / (elapsed * (os.cpu_count() or 1))
    return Throughput(shop, len(urls), users, total, round(elapsed, 2),
                      round(total / elapsed, 1), round(client_s, 2), round(instances_s, 2),
                      round(stores_s, 2), round(busy, 2), dict(sorted(served.items())))


def progress(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300,
                        help="Timed requests per kind and shop for latency (default 300); "
                             "throughput stops at 20x this many requests in all.")
    parser.add_argument("--users", type=int, default=8,
                        help="Logged-in users (threads) for throughput; latency rotates over "
                             "as many sessions (default 8).")
    parser.add_argument("--seconds", type=float, default=8.0,
                        help="Length of each throughput run (default 8).")
    parser.add_argument("--rounds", type=int, default=2,
                        help="Throughput runs per configuration, taking turns; the best counts "
                             "(default 2).")
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON only.")
    args = parser.parse_args()
    if min(args.requests, args.users, args.rounds) < 1 or args.seconds <= 0:
        parser.error("--requests, --users and --rounds must be at least 1, --seconds above 0")
    quiet = args.json
    started = time.perf_counter()
    # SIGTERM as Ctrl-C: unwind, so every server started here is stopped by its pid.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    load = os.getloadavg()[0]  # other work on the machine skews every figure: say how much
    clusters: list[Cluster] = []

    def cluster(app: str, instances: int, run_dir: Path, env: dict[str, str]) -> Cluster:
        name = f"{app}-x{instances}"
        env = {**env, "SECRET_KEY": SECRET_KEY,
               "DATABASE_URL": f"sqlite:///{run_dir / (name + '.db')}"}
        started_cluster = Cluster(app, instances, env, run_dir / name)
        clusters.append(started_cluster)
        return started_cluster.start()

    try:
        with start_stores() as store_set:
            stores = store_set.stores
            store_pids = [p for p in (store_set.redis.pid if store_set.redis else None,
                                      store_set.s3.pid if store_set.s3 else None) if p]
            run_dir, env = stores.run_dir, stores.app_env()
            try:
                progress("starting redis-server, rclone serve s3, before x1, after x1 and "
                         "after x2 (gunicorn, 1 sync worker each) on 127.0.0.1", quiet)
                before = cluster("stateful", 1, run_dir, env)
                after = cluster("stateless", 1, run_dir, env)
                after2 = cluster("stateless", 2, run_dir, env)  # idle until its turn
                users = max(1, args.users)
                progress(f"latency: {args.requests} timed requests of each kind per shop, "
                         f"interleaved, over {users} logged-in sessions each", quiet)
                latency = measure_latency(
                    [User(before.urls, i, seed=1).login() for i in range(users)],
                    [User(after.urls, i, seed=1).login() for i in range(users)],
                    args.requests)
                cap = args.requests * 20
                runs: list[Throughput] = []
                configs = [("after", after), ("after", after2), ("before", before)]
                for round_ in range(args.rounds):  # the configurations take turns
                    for n, (shop, c) in enumerate(configs):
                        progress(f"throughput, round {round_ + 1}: {shop} x{len(c)}, {users} "
                                 f"users, {args.seconds:g} s", quiet)
                        run = measure_throughput(shop, c, store_pids, users, args.seconds, cap)
                        progress(f"  {run.per_second:,.1f} requests/s", quiet)
                        if round_ == 0:
                            runs.append(run)
                        elif run.per_second > runs[n].per_second:
                            runs[n] = run
            finally:
                for c in clusters:
                    c.stop_all()
    except BenchmarkFailed as exc:
        print(f"benchmark stopped: {exc}", file=sys.stderr)
        return 1

    ratio = runs[1].per_second / runs[0].per_second if runs[0].per_second else 0.0
    missed = [row.request for row in latency if not row.target_met]
    result = {
        "cpus": os.cpu_count(),
        "load_average_at_start": round(load, 2),
        "requests_per_kind": args.requests,
        "users": args.users,
        "seconds_per_throughput_run": args.seconds,
        "throughput_rounds": args.rounds,
        "latency": [asdict(row) for row in latency],
        "target": f"after p50 <= before p50 + {TARGET_MS:g} ms",
        "target_met": not missed,
        "throughput": [asdict(run) for run in runs],
        "after_two_vs_one": round(ratio, 2),
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"\nlatency, one instance each, one request in flight; {args.requests} samples per "
          f"cell; {os.cpu_count()} CPUs shared by client, servers and stores; load average "
          f"{load:.2f} at start")
    print(f"{'request':<14} {'before p50':>10} {'before p99':>10} {'after p50':>10} "
          f"{'after p99':>10} {'after-before p50':>17}  target")
    for row in latency:
        print(f"{row.request:<14} {row.before_p50_ms:>8.2f}ms {row.before_p99_ms:>8.2f}ms "
              f"{row.after_p50_ms:>8.2f}ms {row.after_p99_ms:>8.2f}ms "
              f"{row.diff_p50_ms:>+14.2f} ms  {'met' if row.target_met else 'missed'}")
    verdict = "met" if not missed else f"missed ({', '.join(missed)})"
    print(f"target: after p50 <= before p50 + {TARGET_MS:g} ms: {verdict}")
    print(f"\nthroughput, {args.users} logged-in users, the five requests in turn, "
          f"{args.seconds:g} s per run, best of {args.rounds} rounds taking turns")
    print(f"{'shop':<8} {'instances':>9} {'requests':>9} {'seconds':>8} {'requests/s':>11}   "
          f"CPU s: {'client':>6} {'instances':>9} {'stores':>6}  instance CPU/request  "
          f"machine busy")
    for run in runs:
        print(f"{run.shop:<8} {run.instances:>9} {run.requests:>9,} {run.seconds:>8.2f} "
              f"{run.per_second:>11,.1f}   {'':6} {run.cpu_client_s:>6.1f} "
              f"{run.cpu_instances_s:>9.1f} {run.cpu_stores_s:>6.1f}  "
              f"{run.cpu_instances_s * 1000 / max(1, run.requests):>17.2f} ms  "
              f"{run.cpu_busy:>11.0%}")
    print(f"after, 2 instances vs 1: {ratio:.2f}x")
    if load > 0.5 * (os.cpu_count() or 1):
        print(f"note: load average {load:.2f} at start on {os.cpu_count()} CPUs: other work "
              "was running and skews these figures; rerun on a quiet machine to compare")
    print(f"(whole run {result['total_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
