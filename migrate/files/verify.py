"""``verify_files``: every local file is in the bucket with equal size and sha256, or not.

One LIST finds what is missing or of another size; each remaining object is then checked with
one HEAD (its ``sha256`` metadata, and its ETag against the file's MD5), or with ``deep``
downloaded and hashed. With a Redis URL, each chunked upload in progress must be there under
its key with at least the chunks the folder holds (the client may have sent more since).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from migrate.errors import UsageError
from migrate.files import workers
from migrate.files.carry import connect_redis, describe_upload, redis_failure
from migrate.files.digests import DEFAULT_THRESHOLD, file_digests
from migrate.files.target import connect, list_prefix
from migrate.files.transfer import MIB, RETRYABLE, Endpoint, RawS3, S3Error, with_retries
from migrate.files.walk import Changed, Entry, ProgressFn, Walk, collided, collision, walk


@dataclass
class Difference:
    """A file that is missing from the bucket or differs there."""

    path: str
    key: str
    problem: str


@dataclass
class VerifyResult:
    """What ``verify_files`` found: every file present with equal size and sha256, or not."""

    target: str
    deep: bool
    checked: int = 0
    matching: int = 0
    missing: list[Difference] = field(default_factory=list)
    different: list[Difference] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.missing and not self.different

    @property
    def decided(self) -> int:
        """Items with a verdict so far (progress)."""
        return self.matching + len(self.missing) + len(self.different)

    def add(self, path: str, key: str, problem: str) -> None:
        if problem == "missing":
            self.missing.append(Difference(path, key, problem))
        elif problem:
            self.different.append(Difference(path, key, problem))
        else:
            self.matching += 1


def verify_files(
    sources: Iterable[str | os.PathLike],
    target: str,
    *,
    endpoint_url: str | None = None,
    deep: bool = False,
    jobs: int = 16,
    threshold: int = DEFAULT_THRESHOLD,
    redis_url: str | None = None,
    on_progress: ProgressFn | None = None,
) -> VerifyResult:
    """Check every exported file is in the bucket with equal size and sha256.

    The sha256 comes from the object's metadata (one HEAD each, in parallel) and the ETag is
    compared with the file's MD5; ``deep`` downloads every object and hashes it instead.
    With ``redis_url``, each chunked upload in progress must be in Redis with at least the
    chunks the folder holds (the client may have sent more since).
    """
    started = time.monotonic()
    roots = [os.path.abspath(s) for s in sources]
    for root in roots:
        if not os.path.isdir(root):
            raise UsageError(f"source folder {root!r} does not exist")
    ep, prefix, _ = connect(target, endpoint_url)
    result = VerifyResult(target=target, deep=deep)
    found = walk(roots, prefix)
    entries = _one_per_key(found, result)
    listing = list_prefix(ep, prefix)
    items = []
    for key, entry in entries.items():
        listed = listing.get(key)
        if listed is None:
            result.add(entry.path, key, "missing")
        elif listed[0] != entry.size:
            result.add(entry.path, key,
                       f"size differs ({listed[0]} in the bucket, {entry.size} here)")
        else:
            items.append((entry.path, key, entry.size, deep, threshold))
    result.checked += len(entries)
    _check_all(ep, items, jobs, result, entries, on_progress)
    if redis_url and found.chunk_dirs:
        _verify_uploads(found.chunk_dirs, prefix, redis_url, result)
    result.missing.sort(key=lambda d: d.key)
    result.different.sort(key=lambda d: d.key)
    result.seconds = time.monotonic() - started
    return result


def _one_per_key(found: Walk, result: VerifyResult) -> dict[str, Entry]:
    """key -> the file export kept for it: the newest of one name on two instances. Two names
    for one key are a collision, a difference whatever the bucket holds."""
    groups: dict[str, list[Entry]] = {}
    for entry in found.entries:
        groups.setdefault(entry.key, []).append(entry)
    entries: dict[str, Entry] = {}
    for key, group in groups.items():
        if len(group) > 1 and collided(group, found.names):
            result.checked += 1
            for entry in group:
                result.add(entry.path, key, collision(entry, group))
        else:
            entries[key] = max(group, key=lambda e: e.mtime_ns)
    return entries


def _check_all(ep: Endpoint, items: list[tuple], jobs: int, result: VerifyResult,
               entries: dict[str, Entry], on_progress: ProgressFn | None) -> None:
    """HEAD (or GET) each object on workers; verdicts recorded as each batch comes back."""

    def finish(rows: list[tuple[str, str]]) -> None:
        for key, problem in rows:
            result.add(entries[key].path, key, problem)
        if on_progress:
            on_progress(result.decided, result.checked, 0, 0)

    workers.init_worker(ep)
    procs, threads = workers.counts(len(items), jobs)
    if procs:
        with workers.process_pool(ep, procs) as pool:
            futures = [pool.submit(workers.run_batch, check_one, batch, threads)
                       for batch in workers.batches(items, procs)]
            for fut in futures:
                finish(fut.result())
    else:
        with ThreadPoolExecutor(jobs) as pool:
            finish(list(pool.map(check_one, items)))


def check_one(item: tuple[str, str, int, bool, int]) -> tuple[str, str]:
    """In a worker: compare one file with its object -> (key, problem or "")."""
    path, key, size, deep, threshold = item
    try:
        sha, etag = file_digests(path, size, threshold)
    except OSError as exc:
        return key, f"local file cannot be read: {exc.strerror}"
    except Changed as exc:
        return key, f"local file is {exc}"
    client = workers.client()
    try:
        if deep:
            return key, _compare_bytes(client, key, sha)
        status, head, _ = with_retries(lambda: client.request("HEAD", key), client)
    except S3Error as exc:
        return key, "missing" if exc.status == 404 else f"cannot be read: {exc}"
    except RETRYABLE as exc:
        client.close()
        return key, f"cannot be read: {exc}"
    if status == 404:
        return key, "missing"
    return key, _compare_head(head, size, sha, etag)


def _compare_bytes(client: RawS3, key: str, sha: str) -> str:
    """Download the object and hash it."""
    _, _, response = client.request("GET", key, stream=True)
    digest = hashlib.sha256()
    while block := response.read(MIB):
        digest.update(block)
    if response.will_close:
        client.close()
    return "" if digest.hexdigest() == sha else "content differs (sha256)"


def _compare_head(head: dict[str, str], size: int, sha: str, etag: str) -> str:
    """The object's size, sha256 metadata and ETag against the file's -> problem or ""."""
    length = head.get("content-length", "")
    if not length.isdigit() or int(length) != size:
        return f"size differs ({length or 'none'} in the bucket, {size} here)"
    remote_sha = head.get("x-amz-meta-sha256")
    remote_etag = head.get("etag", "").strip('"')
    if remote_sha and remote_sha != sha:
        return "sha256 metadata differs"
    if re.fullmatch(r"[0-9a-f]{32}", remote_etag) and "-" not in etag and remote_etag != etag:
        # The bytes were replaced (the metadata may have been copied along): the MD5 tells.
        return "content differs (the ETag is not the file's MD5; SSE-KMS? use --deep)"
    if not remote_sha and remote_etag != etag:
        return "no sha256 metadata and the ETag differs: use --deep"
    return ""


def _verify_uploads(chunk_dirs: list[str], prefix: str, redis_url: str,
                    result: VerifyResult) -> None:
    """Each in-progress upload must be in Redis, under its key, with its chunks as parts."""
    import redis

    client = connect_redis(redis_url, ping=False)
    try:
        for folder in sorted(chunk_dirs):
            up = describe_upload(folder, prefix)
            label = f"upload:{up.upload_id}"
            result.checked += 1
            state = {k.decode(errors="replace"): v.decode(errors="replace")
                     for k, v in client.hgetall(label).items()}
            have = client.hlen(f"{label}:parts")
            if not state:
                result.missing.append(Difference(folder, label, "in-progress upload not in "
                                                 "Redis: run export-files with --redis"))
            elif state.get("key") != up.key or have < up.chunks:
                result.different.append(Difference(
                    folder, label, f"Redis has key {state.get('key')!r} with {have} parts; "
                    f"the folder has {up.chunks} chunks for {up.key!r}"))
            else:
                result.matching += 1
    except redis.exceptions.RedisError as exc:
        raise redis_failure(redis_url, exc) from None
    finally:
        client.close()
