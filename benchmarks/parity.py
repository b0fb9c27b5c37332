"""What running a suite on real instances costs, beside running it through Flask's test client.

One run, everything on this machine (embedded redis-server and `rclone serve s3` on 127.0.0.1,
SQLite in a temporary folder, gunicorn instances with one sync worker each):

  - suite: the after-shop's own unit tests (tests/test_shop.py, its [stateless] half) in a
    pytest subprocess three ways: through Flask's test client (the suite as written), and
    through the parity plugin on 1 and on 2 instances. Wall time of each, best of --rounds.
  - start-up: how long the plugin takes to start the stores and N instances (Instances.start)
    for the shop, and one instance's restart (what --instances-kill-one adds).
  - per request: one instance of the after-shop, the catalog page and /healthz, sent
    alternately by the plugin's InstanceClient and by a requests.Session (what a hand-written
    live-server test would use), one request in flight; p50 and p99 of each and the
    difference (the target: within a few ms of requests.Session).

Usage: .venv/bin/python benchmarks/parity.py [--rounds 1] [--requests 300] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

# Run as a script, this file's folder leads sys.path and this file would be imported as a
# module named `parity`... put the project root there instead.
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from migrate.parity import InstanceClient, Instances, ParitySettings  # noqa: E402

APP = "sample_stateless_app:create_app()"
UPGRADE = ("python -c 'import os; from sample_stateless_app.db import upgrade; "
           "upgrade(os.environ[\"DATABASE_URL\"])'")
WORKER = "python -m sample_stateless_app.worker"
PLUGIN = ["--app", APP, "--instances-client-replaces", "client", "--app-prepare", UPGRADE,
          "--app-worker", WORKER, "--app-env", "INSTANCE_NAME={instance}"]
TARGET_MS = 3.0  # "within a few ms of a requests.Session call"


@dataclass
class SuiteRun:
    way: str
    seconds: float
    outcome: str  # pytest's last line
    setup_seconds: float = 0.0  # the fixtures (the local app, the instances), all tests
    call_seconds: float = 0.0  # the tests' own bodies: their requests


@dataclass
class Latency:
    path: str
    client: str
    p50_ms: float
    p99_ms: float


def run_suite(way: str, extra: list[str], base: Path) -> SuiteRun:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/test_shop.py", "-k", "stateless", "-q",
         "-p", "no:cacheprovider", "--durations=0", "--durations-min=0",
         "--basetemp", str(base / way.replace(" ", "-").replace(",", "")), *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - started
    last = (done.stdout.strip().splitlines() or ["?"])[-1].strip("= ")
    if done.returncode != 0:
        raise SystemExit(f"the suite failed {way}: {last}")
    phases = {"setup": 0.0, "call": 0.0}
    for line in done.stdout.splitlines():  # "0.52s setup    tests/test_shop.py::..."
        parts = line.split()
        if len(parts) >= 3 and parts[1] in phases and parts[0].endswith("s"):
            phases[parts[1]] += float(parts[0][:-1])
    return SuiteRun(way, round(seconds, 2), last, round(phases["setup"], 2),
                    round(phases["call"], 2))


def suite(rounds: int, base: Path) -> list[SuiteRun]:
    ways = [("through Flask's test client", []),
            ("through the plugin, 1 instance", ["--instances", "1", *PLUGIN]),
            ("through the plugin, 2 instances", ["--instances", "2", *PLUGIN])]
    best: dict[str, SuiteRun] = {}
    for _ in range(rounds):  # the ways take turns: a burst of other load hits them alike
        for way, extra in ways:
            run = run_suite(way, extra, base)
            if way not in best or run.seconds < best[way].seconds:
                best[way] = run
    return [best[way] for way, _ in ways]


def settings(instances: int) -> ParitySettings:
    return ParitySettings(app=APP, instances=instances, app_dir=ROOT, prepare=[UPGRADE],
                          app_env={"INSTANCE_NAME": "{instance}"})


def startup(base: Path) -> dict[str, float]:
    figures = {}
    for n in (1, 2):
        started = time.perf_counter()
        running = Instances(settings(n), base / f"start-{n}").start()
        figures[f"stores + prepare + {n} instance(s)"] = time.perf_counter() - started
        if n == 2:
            restarts = []
            for _ in range(3):
                running.kill(1)
                started = time.perf_counter()
                running.restart(1)
                restarts.append(time.perf_counter() - started)
            figures["one instance's restart (median of 3)"] = statistics.median(restarts)
        running.stop()
    return {k: round(v, 2) for k, v in figures.items()}


def latency(base: Path, requests_count: int) -> list[Latency]:
    out = []
    with Instances(settings(1), base / "latency") as running:
        ours = InstanceClient(running)
        session = requests.Session()
        url = running.urls[0]
        for path in ("/", "/healthz"):
            samples: dict[str, list[float]] = {"InstanceClient": [], "requests.Session": []}
            for i in range(requests_count + 20):  # 20 untimed first: imports, caches
                for name in (["InstanceClient", "requests.Session"] if i % 2 else
                             ["requests.Session", "InstanceClient"]):
                    started = time.perf_counter()
                    if name == "InstanceClient":
                        status = ours.get(path).status_code
                    else:
                        status = session.get(url + path, timeout=30).status_code
                    took = (time.perf_counter() - started) * 1000
                    if status != 200:
                        raise SystemExit(f"{name} GET {path}: HTTP {status}")
                    if i >= 20:
                        samples[name].append(took)
            for name, values in samples.items():
                values.sort()
                out.append(Latency(path, name, round(statistics.median(values), 3),
                                   round(values[int(len(values) * 0.99) - 1], 3)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="migrate-bench-parity-") as tmp:
        base = Path(tmp)
        runs = suite(args.rounds, base)
        start = startup(base)
        lat = latency(base, args.requests)
    result = {"suite": [asdict(r) for r in runs], "startup_seconds": start,
              "latency": [asdict(x) for x in lat], "load_average": round(load, 2),
              "total_seconds": round(time.perf_counter() - began, 1)}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    plain = runs[0].seconds
    print("\nthe after-shop's unit tests (tests/test_shop.py -k stateless)")
    print(f"  {'':<34} {'wall':>9} {'':>8} {'fixtures':>9} {'test bodies':>12}")
    for run in runs:
        print(f"  {run.way:<34} {run.seconds:>7.2f} s ({run.seconds / plain:.2f}x) "
              f"{run.setup_seconds:>7.2f} s {run.call_seconds:>10.2f} s  {run.outcome}")
    print("  (fixtures: through the test client, each test's app with a fresh database and its "
          "migrations;\n   through the plugin, the instances once and no local app for a "
          "replaced client)")
    print("\nstart-up")
    for what, seconds in start.items():
        print(f"  {what:<40} {seconds:>6.2f} s")
    print(f"\nper request, one instance, one in flight, {args.requests} samples each")
    print(f"  {'path':<9} {'client':<18} {'p50':>9} {'p99':>9}")
    for row in lat:
        print(f"  {row.path:<9} {row.client:<18} {row.p50_ms:>7.2f}ms {row.p99_ms:>7.2f}ms")
    for path in ("/", "/healthz"):
        ours, theirs = (next(r.p50_ms for r in lat if r.path == path and r.client == c)
                        for c in ("InstanceClient", "requests.Session"))
        verdict = "met" if ours - theirs <= TARGET_MS else "MISSED"
        print(f"  {path}: InstanceClient - requests.Session p50 = {ours - theirs:+.2f} ms "
              f"(target <= +{TARGET_MS:g} ms: {verdict})")
    if load > (os.cpu_count() or 1):
        print(f"note: load average {load:.2f} at start on {os.cpu_count()} CPUs: other work "
              "shared the machine")
    print(f"(whole run {result['total_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
