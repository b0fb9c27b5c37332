"""``export_files``: local upload folders -> object storage, idempotent and resumable.

Every regular file under a source folder becomes one object whose key is
``migrate.keys.object_key(<path relative to the folder>, prefix)`` (``walk``), the same function
the after-app's alembic revision rewrites database paths with, so rows and objects agree. The
bucket is listed while the folders are walked (``target``); files already there are skipped
(``plan``, with the ``state`` file), the rest are sent (``send``), and chunked uploads in
progress are carried into multipart uploads (``carry``). Each outcome is counted in the
result, written to the manifest (one JSON line per file) and, once stored, to the state file.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from migrate.errors import UsageError
from migrate.files.carry import CARRIED_STATUSES, CarriedUpload, carry_uploads
from migrate.files.digests import DEFAULT_THRESHOLD
from migrate.files.plan import plan
from migrate.files.send import send
from migrate.files.state import StateLog, default_state_path, load_state
from migrate.files.target import connect, list_prefix
from migrate.files.transfer import MIB, Endpoint
from migrate.files.walk import (
    DUPLICATE,
    EXCLUDED,
    FAILED,
    PLANNED,
    SKIPPED,
    SUPERSEDED,
    UPLOADED,
    Entry,
    FileRecord,
    ProgressFn,
    Walk,
    walk,
)


@dataclass
class ExportResult:
    """What ``export_files`` did: counts, bytes, seconds, and every item that needs a look."""

    target: str
    endpoint: str
    dry_run: bool
    files: int = 0  # regular files found
    bytes: int = 0
    uploaded: int = 0
    uploaded_bytes: int = 0
    skipped: int = 0  # already in the bucket, same size and checksum
    planned: int = 0  # dry run: would be uploaded
    duplicates: int = 0  # same key and content in two sources: uploaded once
    failed: int = 0
    excluded: int = 0  # symlinks leaving the folder, sockets, devices, fifos
    seconds: float = 0.0
    problems: list[FileRecord] = field(default_factory=list)  # failed, excluded, superseded
    plan: list[FileRecord] = field(default_factory=list)  # dry run: what would be uploaded
    uploads: list[CarriedUpload] = field(default_factory=list)
    manifest: str | None = None

    @property
    def ok(self) -> bool:
        """Nothing failed and no in-progress upload was left behind."""
        return self.failed == 0 and all(u.status in CARRIED_STATUSES for u in self.uploads)

    @property
    def rate(self) -> float:
        return self.uploaded / self.seconds if self.seconds else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.uploaded_bytes / MIB / self.seconds if self.seconds else 0.0

    def count(self, rec: FileRecord) -> None:
        """Add one record to the counts (and to the problems or the plan)."""
        if rec.status == UPLOADED:
            self.uploaded += 1
            self.uploaded_bytes += rec.size
        elif rec.status == SKIPPED:
            self.skipped += 1
        elif rec.status == PLANNED:
            self.planned += 1
            self.plan.append(rec)
        elif rec.status == DUPLICATE:
            self.duplicates += 1
        elif rec.status == FAILED:
            self.failed += 1
        elif rec.status == EXCLUDED:
            self.excluded += 1
        if rec.status in (FAILED, EXCLUDED, SUPERSEDED):
            self.problems.append(rec)


def export_files(
    sources: Iterable[str | os.PathLike],
    target: str,
    *,
    endpoint_url: str | None = None,
    jobs: int = 16,
    threshold: int = DEFAULT_THRESHOLD,
    manifest: str | os.PathLike | None = None,
    state_file: str | os.PathLike | None = None,
    dry_run: bool = False,
    create_bucket: bool = False,
    redis_url: str | None = None,
    processes: int | None = None,
    on_progress: ProgressFn | None = None,
) -> ExportResult:
    """Copy every file under ``sources`` to ``target`` (s3://bucket/prefix); see the module doc.

    Raises UsageError (a source or the bucket is missing) and ConnectionFailure (the endpoint
    cannot be reached); every per-file problem is reported in the result instead.
    """
    started = time.monotonic()
    # Absolute: the state file must name the same file whatever folder the next run starts in.
    roots = [os.path.abspath(s) for s in sources]
    for root in roots:
        if not os.path.isdir(root):
            raise UsageError(f"source folder {root!r} does not exist: give the before-app's "
                             "UPLOAD_FOLDER")
    ep, prefix, exists = connect(target, endpoint_url,
                                 create_bucket=create_bucket and not dry_run,
                                 must_exist=not dry_run)
    result = ExportResult(target=target, endpoint=ep.shown, dry_run=dry_run,
                          manifest=os.fspath(manifest) if manifest else None)
    found, listing = _walk_and_list(roots, ep, prefix, exists)
    result.files = len(found.entries)
    result.bytes = sum(e.size for e in found.entries)
    state_path = Path(state_file) if state_file else default_state_path(ep)
    state = load_state(state_path)
    record = _Recorder.open(result, manifest, None if dry_run else state_path, on_progress)
    try:
        for rec in found.problems:
            record(rec)
        todo = plan(found.entries, listing, state, threshold, record, ep, found.names)
        if dry_run:
            for entry in todo:
                record(FileRecord(entry.path, entry.key, entry.size, None, PLANNED), entry)
        else:
            send(ep, todo, jobs, processes, threshold, record)
        result.uploads = carry_uploads(found.chunk_dirs, ep, prefix, redis_url, dry_run)
        record.uploads(result.uploads)
    finally:
        record.close()
    result.seconds = time.monotonic() - started
    return result


def _walk_and_list(roots: list[str], ep: Endpoint, prefix: str,
                   exists: bool) -> tuple[Walk, dict[str, tuple[int, str]]]:
    """The folders walked and the bucket listed at once (the listing mostly waits on the
    server)."""
    with ThreadPoolExecutor(1) as lister:
        listed = lister.submit(list_prefix, ep, prefix) if exists else None
        found = walk(roots, prefix)
        return found, listed.result() if listed is not None else {}


PROGRESS_EVERY = 0.05  # seconds


@dataclass
class _Recorder:
    """``record(rec, entry, etag)``: called by every thread as each file is decided or sent."""

    result: ExportResult
    manifest: TextIO | None
    state: StateLog | None
    on_progress: ProgressFn | None
    files_done: int = 0
    bytes_done: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    shown_at: float = 0.0  # when on_progress was last called: at most every PROGRESS_EVERY s

    @classmethod
    def open(cls, result: ExportResult, manifest: str | os.PathLike | None,
             state_path: Path | None, on_progress: ProgressFn | None) -> _Recorder:
        """Open the manifest (if asked) and the state file (unless a dry run) for writing."""
        out = state = None
        try:
            if manifest:
                out = open(manifest, "w", encoding="utf-8", errors="backslashreplace")
            if state_path:
                state = StateLog(state_path)
        except OSError as exc:
            if out:
                out.close()
            raise UsageError(f"cannot write {exc.filename}: {exc.strerror} (--manifest, "
                             "--state-file)") from None
        return cls(result, out, state, on_progress)

    def __call__(self, rec: FileRecord, entry: Entry | None = None, etag: str = "") -> None:
        """Count, write the manifest line and (once stored) the state line; under the lock."""
        with self.lock:
            if self.manifest:
                self.manifest.write(json.dumps(_manifest_row(rec), ensure_ascii=False) + "\n")
            self.result.count(rec)
            if self.state and entry is not None and etag and rec.status in (UPLOADED, SKIPPED):
                # Written as each object completes: a SIGKILL loses at most the lines in flight.
                self.state.remember(entry, rec.sha256, etag)
            if entry is not None:
                self.files_done += 1
                self.bytes_done += entry.size
                if self.on_progress and self._due():
                    self.on_progress(self.files_done, self.result.files, self.bytes_done,
                                     self.result.bytes)

    def _due(self) -> bool:
        """Progress is drawn a few times a second, not per file (a no-op re-run records
        thousands of files in a blink), and always for the last one."""
        now = time.monotonic()
        if now - self.shown_at >= PROGRESS_EVERY or self.files_done >= self.result.files:
            self.shown_at = now
            return True
        return False

    def uploads(self, uploads: list[CarriedUpload]) -> None:
        """One manifest line per chunked upload in progress."""
        if self.manifest:
            for up in uploads:
                self.manifest.write(json.dumps(
                    {"upload_id": up.upload_id, "path": up.source, "key": up.key,
                     "size": up.size, "sha256": None, "status": up.status,
                     "reason": up.reason}, ensure_ascii=False) + "\n")

    def close(self) -> None:
        if self.manifest:
            self.manifest.close()
        if self.state:
            self.state.close()


def _manifest_row(rec: FileRecord) -> dict[str, object]:
    return {"path": rec.path, "key": rec.key, "size": rec.size, "sha256": rec.sha256,
            "status": rec.status, **({"reason": rec.reason} if rec.reason else {})}
