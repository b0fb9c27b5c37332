"""Where the per-object work runs: a few worker processes, each with a few threads, each
thread with its own keep-alive S3 connection.

A handful of items is not worth starting processes for: below ``MIN_FOR_PROCESSES`` they run
on threads in this process. Workers are started with ``spawn`` (the parent has threads:
progress, large uploads; forking them is unsafe) and die with the command that started them.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from migrate.files.transfer import Endpoint, RawS3
from migrate.procs import die_with_parent

MIN_FOR_PROCESSES = 200

_endpoint: Endpoint | None = None
_local = threading.local()
_threads: ThreadPoolExecutor | None = None  # per process: a worker keeps its threads


def init_worker(ep: Endpoint, parent_pid: int | None = None) -> None:
    """Set the endpoint this process's clients talk to (first thing in a worker process)."""
    global _endpoint
    if parent_pid is not None:
        die_with_parent(parent_pid)
    _endpoint = ep


def client() -> RawS3:
    """This thread's connection to the endpoint ``init_worker`` set."""
    current = getattr(_local, "client", None)
    if current is None:
        assert _endpoint is not None, "init_worker() was not called"
        current = _local.client = RawS3(_endpoint)
    return current


def run_batch(fn: Callable[[Any], Any], items: list, threads: int) -> list:
    """In a worker process: ``fn`` over a batch with ``threads`` keep-alive connections."""
    global _threads
    if _threads is None:
        _threads = ThreadPoolExecutor(threads)
    return list(_threads.map(fn, items))


def counts(items: int, jobs: int, processes: int | None = None) -> tuple[int, int]:
    """(worker processes, threads in each) for ``items`` with ``jobs`` at once in all."""
    procs = processes if processes is not None else min(os.cpu_count() or 1, jobs, 4)
    if items < MIN_FOR_PROCESSES:
        procs = 0
    return procs, max(1, -(-jobs // max(procs, 1)))


def process_pool(ep: Endpoint, procs: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(procs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=init_worker, initargs=(ep, os.getpid()))


def batches(items: Sequence, procs: int) -> Iterator[Sequence]:
    """Batches small enough to spread, large enough that each costs one round trip to a worker."""
    size = max(16, min(256, len(items) // (procs * 8) or 16))
    for i in range(0, len(items), size):
        yield items[i:i + size]
