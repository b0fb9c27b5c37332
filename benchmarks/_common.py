"""What benchmarks/requests.py and its helpers share: percentiles, CPU from /proc, the shop's
users."""

from __future__ import annotations

import math
import os
from pathlib import Path

import redis
import requests
from sqlalchemy import create_engine, text
from werkzeug.security import generate_password_hash

EVENTS_USER = ("live-updates", "benchmark-events-pass")


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
