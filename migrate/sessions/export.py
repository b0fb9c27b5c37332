"""``export_sessions``: every live session of the sources into Redis, as Flask-Session reads it.

One process reads, plans and writes in batches, with one batch in flight while the next is
prepared. Dump and directory sources may be shared out to several processes (``jobs``), each
owning the sessions whose sid hashes to it, so duplicates still meet in one place.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrate.errors import ConnectionFailure, MigrateError
from migrate.procs import die_with_parent
from migrate.sessions.plan import Failure, Options, Plan
from migrate.sessions.sources import Source, open_source
from migrate.sessions.target import Item, Target, open_target

ProgressFn = Callable[[str, int, int | None], None]  # (source label, records done, total)


@dataclass
class ExportResult:
    """What ``export_sessions`` did. read = written + skipped + expired + failed + the
    duplicates dropped because an already written copy expires later."""

    sources: list[str]
    redis: str
    dry_run: bool
    on_conflict: str
    read: int = 0
    written: int = 0
    skipped: int = 0  # already in Redis (written by the new app, the bridge or a previous run)
    expired: int = 0
    failed: int = 0
    duplicates: int = 0  # the same session from two sources: the later-expiring one counts
    legacy: int = 0  # written under their file digest, promoted on the user's next request
    converted: int = 0  # sessions with values the serializer changes (as Flask-Session reads)
    converted_kinds: dict[str, int] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    # The API tokens of bridge sources (migrate.sessions.tokens), counted apart from sessions.
    tokens_read: int = 0
    tokens_written: int = 0
    tokens_skipped: int = 0  # already in Redis (the bridge's mirror or a previous run)
    tokens_failed: int = 0
    # Per-user hashes of bridge sources, e.g. API carts (migrate.sessions.hashes).
    hashes_read: int = 0
    hashes_written: int = 0  # something added to the after-app's hash
    hashes_skipped: int = 0  # all of it already there (the bridge's mirror or a previous run)
    hashes_failed: int = 0

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.tokens_failed == 0 and self.hashes_failed == 0

    @property
    def rate(self) -> float:
        return self.read / self.seconds if self.seconds else 0.0

    def add(self, other: ExportResult) -> None:
        """Add another part's counts to these (the parts of a parallel export)."""
        for name in ("read", "written", "skipped", "expired", "failed", "duplicates", "legacy",
                     "converted"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for kind, count in other.converted_kinds.items():
            self.converted_kinds[kind] = self.converted_kinds.get(kind, 0) + count
        self.failures += other.failures


def export_sessions(
    sources: list[str],
    redis_url: str,
    *,
    token: str | None = None,
    cluster: bool = False,
    options: Options | None = None,
    dry_run: bool = False,
    on_progress: ProgressFn | None = None,
    jobs: int | None = 1,
) -> ExportResult:
    """Copy every live session of ``sources`` into Redis in Flask-Session's format.

    Idempotent: with ``on_conflict='skip'`` a key already in Redis is left alone (the new app
    or the bridge wrote it, so it is newer) and a re-run writes nothing new. ``jobs`` > 1
    shares dump and directory sources out to that many processes (by a hash of the sid);
    ``None``: one per CPU (at most 4) for a large input, else one.
    """
    options = options or Options()
    opened = [open_source(s, token) for s in sources]
    if jobs is None:
        jobs = auto_jobs(opened)
    if jobs > 1 and all(s.kind != "bridge" for s in opened):
        return _export_in_parallel(sources, redis_url, cluster, options, dry_run, on_progress,
                                   jobs)
    result = _export(opened, open_target(redis_url, cluster), options, dry_run, on_progress)
    bridges = [(spec, s.label) for spec, s in zip(sources, opened, strict=True)
               if s.kind == "bridge"]
    if bridges:
        for kind in ("tokens", "hashes"):
            _export_from_bridges(kind, bridges, open_target(redis_url, cluster), token,
                                 dry_run, result)
    return result


def _export_from_bridges(kind: str, bridges: list[tuple[str, str]], target: Target,
                         token: str | None, dry_run: bool, result: ExportResult) -> None:
    """What the bridges stream beside the sessions, so nothing else a user holds is lost:
    ``kind`` "tokens", the live API tokens, hashed (``migrate.sessions.tokens``), or "hashes",
    per-user hashes such as API carts, each increment added once whether the bridge's mirror
    brought it already or not (``migrate.sessions.hashes``)."""
    from migrate.sessions import hashes, tokens

    path, what, export, label = {
        "tokens": (tokens.TOKENS_PATH, "API tokens", tokens.export_tokens, "API token"),
        "hashes": (hashes.HASHES_PATH, "hashes", hashes.export_hashes, "hash"),
    }[kind]

    def records():
        for spec, source in bridges:
            for record in tokens.bridge_stream(spec, path, token, what):
                yield source, record

    try:
        done = export(records(), target.client, dry_run=dry_run)
    finally:
        target.close()
    for count in ("read", "written", "skipped"):
        name = f"{kind}_{count}"
        setattr(result, name, getattr(result, name) + getattr(done, count))
    setattr(result, f"{kind}_failed", getattr(result, f"{kind}_failed") + len(done.failures))
    result.failures += [Failure(source, label, reason) for source, reason in done.failures]


def auto_jobs(sources: list[Source]) -> int:
    """Processes worth starting: decoding is CPU-bound, but small inputs are not worth a fork."""
    if any(s.kind == "bridge" for s in sources):
        return 1
    size = sum(Path(s.label).stat().st_size for s in sources if s.kind == "dump")
    files = sum(s.total or 0 for s in sources if s.kind == "directory")
    if size < 16 * 1024 * 1024 and files < 10_000:
        return 1
    return max(1, min(4, os.cpu_count() or 1))


# --- one process ---------------------------------------------------------------------------------


class _Writer:
    """Batches Items to the target, one batch in flight, and counts each reply."""

    def __init__(self, target: Target, plan: Plan, result: ExportResult, dry_run: bool) -> None:
        self.target, self.plan, self.result, self.dry_run = target, plan, result, dry_run
        self.pending: list[Item] = []
        self.source = ""  # the label of the source the pending items come from
        self.inflight: tuple[list[Item], str] | None = None  # sent, replies not read yet

    def add(self, items: list[Item], batch: int) -> None:
        if not self.plan.duplicates_seen:
            self.pending += items
            if len(self.pending) >= batch:
                self.flush()
            return
        for item in items:
            if item.duplicate:
                # The earlier copy must land, known as ours, before this replaces it.
                self.flush()
                self.drain()
            self.pending.append(item)
            if len(self.pending) >= batch:
                self.flush()

    def flush(self) -> None:
        """Send the pending batch, then count the replies to the one sent before."""
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        if self.dry_run:
            found = self.target.exists([i.key for i in batch])
            self._account(batch, self.source, [
                "exists" if (hit and not it.overwrite) else "written"
                for it, hit in zip(batch, found, strict=True)
            ])
            return
        self.target.send(batch)
        older, self.inflight = self.inflight, (batch, self.source)
        if older is not None:
            self._account(older[0], older[1], self.target.receive(older[0]))

    def drain(self) -> None:
        """Count the replies to the batch in flight."""
        if self.inflight is not None:
            (batch, source), self.inflight = self.inflight, None
            self._account(batch, source, self.target.receive(batch))

    def _account(self, batch: list[Item], source: str, outcomes: list[str]) -> None:
        result = self.result
        written = outcomes.count("written")
        if written == len(batch):
            result.written += written
            return
        for it, outcome in zip(batch, outcomes, strict=True):
            if outcome == "written":
                result.written += 1
            elif outcome == "exists":
                result.skipped += 1
                # Not ours: a later duplicate of it must not overwrite it.
                self.plan.seen.pop(it.key, None)
            else:
                result.failed += 1
                result.failures.append(Failure(source, it.label, outcome))


def _export(opened: list[Source], target: Target, options: Options, dry_run: bool,
            on_progress: ProgressFn | None) -> ExportResult:
    """The export in this process: read, plan and write every source in turn."""
    import redis

    result = ExportResult([s.label for s in opened], target.label, dry_run, options.on_conflict)
    plan = Plan(options, result)
    writer = _Writer(target, plan, result, dry_run)
    started = time.monotonic()
    # Millions of short-lived dicts and no reference cycles: the cyclic collector would only
    # rescan them (a fifth of the run time in the benchmark).
    collecting = gc.isenabled()
    gc.disable()
    try:
        for source in opened:
            writer.source = source.label
            done = 0
            for block in source.blocks(options.batch):
                result.read += len(block)
                done += len(block)
                plan.duplicates_seen = False
                writer.add(plan.items(block, source.label, time.time()), options.batch)
                if on_progress:
                    on_progress(source.label, done, source.total)
            writer.flush()
            writer.drain()
            if on_progress:
                on_progress(source.label, done, source.total)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        raise ConnectionFailure(
            f"lost Redis at {target.label} after {result.written} sessions were written "
            f"({type(exc).__name__}): restart it and re-run, the export is idempotent"
        ) from None
    finally:
        if collecting:
            gc.enable()
        target.close()
    result.seconds = round(time.monotonic() - started, 3)
    return result


# --- several processes ---------------------------------------------------------------------------


def _export_worker(queue: Any, part: tuple[int, int], sources: list[str], redis_url: str,
                   cluster: bool, options: Options, dry_run: bool, parent_pid: int) -> None:
    """One process of a parallel export: the sessions of ``part``, reported on ``queue``."""
    die_with_parent(parent_pid)

    def progress(label: str, done: int, total: int | None) -> None:
        queue.put(("progress", part[0], label, done, total))

    try:
        opened = [open_source(s, None, part) for s in sources]
        result = _export(opened, open_target(redis_url, cluster), options, dry_run, progress)
        queue.put(("result", part[0], result))
    except MigrateError as exc:
        queue.put(("error", part[0], exc))
    except BaseException as exc:  # noqa: BLE001 - reported by the parent, one line
        queue.put(("error", part[0], MigrateError(f"export worker failed: {exc!r}")))


def _export_in_parallel(sources: list[str], redis_url: str, cluster: bool, options: Options,
                        dry_run: bool, on_progress: ProgressFn | None,
                        jobs: int) -> ExportResult:
    """Decoding and unpickling are CPU-bound: several processes, each owning a share of the
    sessions, keep the one Redis busier than one Python process can."""
    import multiprocessing

    open_target(redis_url, cluster).close()  # one clear error before any process starts
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    workers = [
        context.Process(target=_export_worker, daemon=True,
                        args=(queue, (i, jobs), sources, redis_url, cluster, options, dry_run,
                              os.getpid()))
        for i in range(jobs)
    ]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    try:
        results = _collect(queue, workers, on_progress)
    finally:
        for worker in workers:
            worker.join(5)
            if worker.is_alive():
                worker.kill()
    merged = ExportResult(results[0].sources, results[0].redis, dry_run, options.on_conflict)
    for part in results:
        merged.add(part)
    merged.seconds = round(time.monotonic() - started, 3)
    return merged


def _collect(queue: Any, workers: list[Any], on_progress: ProgressFn | None) -> list[ExportResult]:
    """Every worker's result, passing their progress on; the first error is raised."""
    results: list[ExportResult] = []
    errors: list[MigrateError] = []
    done: dict[tuple[str, int], int] = {}  # (source label, worker) -> records done
    while len(results) + len(errors) < len(workers):
        try:
            message = queue.get(timeout=1.0)
        except Exception:  # noqa: BLE001 - queue.Empty: check the workers are alive
            if any(w.exitcode not in (None, 0) for w in workers):
                errors.append(ConnectionFailure("an export worker died: re-run with --jobs 1"))
                break
            continue
        if message[0] == "progress":
            _, index, label, count, total = message
            done[(label, index)] = count
            if on_progress:
                on_progress(label, sum(n for (lbl, _), n in done.items() if lbl == label), total)
        elif message[0] == "result":
            results.append(message[2])
        else:
            errors.append(message[2])
    if errors:
        raise errors[0]
    return results
