"""Local upload folders -> object storage: ``export_files`` and ``verify_files``.

Every regular file under a source folder becomes one object whose key is
``migrate.keys.object_key(<path relative to the folder>, prefix)`` — relative POSIX path,
Unicode NFC, under the prefix, ``..`` impossible; the same function the after-app's alembic
revision 0002 rewrites database paths with, so rows and objects always agree.

Each object carries ``Content-Type`` (from the name) and the metadata ``sha256`` and ``mtime``
(seconds since the epoch, as rclone writes it); every PUT sends ``Content-MD5`` (checked by
every S3 server, including ``rclone serve s3``) and a signed ``x-amz-content-sha256`` (checked
by AWS), so a corrupted transfer is refused by the server, retried, then reported.

Idempotent and resumable: objects already in the bucket with the same size and checksum are
skipped. A local state file remembers (path, size, mtime_ns) -> sha256, ETag for every object
that completed, so an unchanged tree is confirmed against one LIST of the prefix without reading
a file; without the state (another machine, a run killed before it wrote a line) a listed
object of the same size is confirmed by the file's MD5 (or, for multipart ETags, the sha256
metadata), so nothing is ever uploaded twice.

Chunked uploads in progress on a before-instance (``chunks/<id>/{upload.json, 00001.part..}``)
are not copied as plain objects: each becomes an S3 multipart upload of ``files/<id>/<name>``
with the received chunks as its parts, and its state is written to the after-app's Redis
(``upload:<id>``, ``upload:<id>:parts``), so the client sends its next chunk to any
after-instance. Without ``redis_url`` they are listed by id with the reason.

Small files go through a few worker processes with a lean signed-HTTP client
(``migrate.files.transfer``): boto3's per-request CPU would cap the rate well below ``rclone copy``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import mimetypes
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrate import redact
from migrate.errors import CheckFailed, ConnectionFailure, UsageError
from migrate.files.transfer import (
    RETRYABLE,
    Endpoint,
    RawS3,
    S3Error,
    endpoint_from_env,
    list_tree,
    xml_text,
)
from migrate.keys import object_key
from migrate.procs import die_with_parent

MIB = 1024 * 1024
DEFAULT_THRESHOLD = 64 * MIB  # multipart at or above this size
SMALL_MAX = 8 * MIB  # below: read whole in a worker process; above: streamed from the file
MIN_PART = 8 * MIB
MAX_PARTS = 10_000
ATTEMPTS = 4  # per object: a BadDigest or a 5xx is retried this many times in all
UPLOAD_TTL = 24 * 3600  # as sample_stateless_app.uploads: upload state expires after a day idle
CHUNK_DIR = re.compile(r"^[0-9a-f]{32}$")
PART_NAME = re.compile(r"^(\d{5})\.part$")

# Manifest and record statuses.
UPLOADED, SKIPPED, PLANNED, FAILED, EXCLUDED, DUPLICATE, SUPERSEDED = (
    "uploaded", "skipped", "planned", "failed", "excluded", "duplicate", "superseded")


# --- results ---------------------------------------------------------------------------------


@dataclass
class FileRecord:
    """One local file and what happened to it (one manifest line)."""

    path: str  # the local path (source folder joined with the relative path)
    key: str
    size: int
    sha256: str | None
    status: str  # uploaded | skipped | planned | failed | excluded | duplicate | superseded
    reason: str = ""


@dataclass
class CarriedUpload:
    """A chunked upload in progress on a before-instance and where it went."""

    upload_id: str
    source: str
    filename: str
    user_id: int | None
    chunks: int
    size: int
    key: str
    status: str  # carried | already-carried | planned | listed | failed
    reason: str = ""


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
        return self.failed == 0 and all(
            u.status in ("carried", "already-carried", "planned") for u in self.uploads)

    @property
    def rate(self) -> float:
        return self.uploaded / self.seconds if self.seconds else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.uploaded_bytes / MIB / self.seconds if self.seconds else 0.0


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


# --- target and connection -------------------------------------------------------------------


def parse_target(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ("bucket", "some/prefix")."""
    if not url.startswith("s3://"):
        raise UsageError(f"--to {url!r} is not an s3:// URL: use s3://BUCKET[/PREFIX]")
    bucket, _, prefix = url[5:].partition("/")
    if not bucket:
        raise UsageError(f"--to {url!r} names no bucket: use s3://BUCKET[/PREFIX]")
    return bucket, prefix.strip("/")


def connect(target: str, endpoint_url: str | None, *, create_bucket: bool = False,
            must_exist: bool = True) -> tuple[Endpoint, str, bool]:
    """Resolve the endpoint, check the bucket (create it if asked); one clear error otherwise.

    Returns (endpoint, prefix, bucket_exists).
    """
    bucket, prefix = parse_target(target)
    ep = endpoint_from_env(endpoint_url, bucket)
    if not ep.access_key:
        raise UsageError("no AWS credentials found: set AWS_ACCESS_KEY_ID and "
                         "AWS_SECRET_ACCESS_KEY or an AWS profile")
    client = RawS3(ep, timeout=10)
    try:
        status, _, _ = client.request("HEAD", None)
        if status == 200:
            return ep, prefix, True
        if create_bucket:
            body = b""
            if ep.region != "us-east-1" and "amazonaws.com" in ep.url:
                body = (f"<CreateBucketConfiguration><LocationConstraint>{ep.region}"
                        "</LocationConstraint></CreateBucketConfiguration>").encode()
            client.request("PUT", None, body=body)
            return ep, prefix, True
    except S3Error as exc:
        if exc.status in (401, 403):
            raise ConnectionFailure(f"access to bucket {bucket!r} at {ep.url} was denied "
                                    f"({exc.code or exc.status}): check the AWS credentials"
                                    ) from None
        raise ConnectionFailure(f"bucket {bucket!r} at {ep.url}: {exc}") from None
    except RETRYABLE as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(
            exc).__name__
        raise ConnectionFailure(f"cannot reach the S3 endpoint {ep.url} ({reason}): check "
                                "--endpoint-url and that the server is up") from None
    finally:
        client.close()
    if must_exist:
        raise UsageError(f"bucket {bucket!r} does not exist at {ep.url}: create it, or pass "
                         "--create-bucket")
    return ep, prefix, False


def list_prefix(ep: Endpoint, prefix: str) -> dict[str, tuple[int, str]]:
    """Every object under the prefix: key -> (size, ETag without quotes); LISTs, no HEADs."""
    try:
        return list_tree(ep, f"{prefix}/" if prefix else "")
    except S3Error as exc:
        raise ConnectionFailure(f"cannot list s3://{ep.bucket}/{prefix}: {exc}") from None
    except RETRYABLE as exc:
        raise ConnectionFailure(f"cannot list s3://{ep.bucket}/{prefix} at {ep.url}: "
                                f"{exc}") from None


# --- scanning --------------------------------------------------------------------------------


@dataclass
class _Entry:
    source: str
    rel: str  # relative POSIX path as on disk
    path: str  # absolute local path
    key: str
    size: int
    mtime_ns: int


def _scan(source: str, prefix: str, problems: list[FileRecord],
          chunk_dirs: list[str]) -> Iterator[_Entry]:
    """Regular files under ``source``; symlinks leaving it, sockets, devices are reported."""
    root = os.path.realpath(source)
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        folder = os.path.join(source, rel_dir) if rel_dir else source
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            problems.append(FileRecord(folder, "", 0, None, FAILED,
                                       f"folder cannot be read: {exc.strerror}"))
            continue
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            try:
                if entry.is_symlink():
                    target = os.path.realpath(entry.path)
                    if os.path.commonpath([root, target]) != root:
                        problems.append(FileRecord(entry.path, "", 0, None, EXCLUDED,
                                                   "symlink pointing outside the folder: "
                                                   "not followed"))
                        continue
                    if os.path.isdir(target):
                        # Its files are exported under their own path; following it could loop.
                        problems.append(FileRecord(entry.path, "", 0, None, EXCLUDED,
                                                   "symlink to a folder inside the source: its "
                                                   "files are exported under their real path"))
                        continue
                    st = os.stat(entry.path)
                elif entry.is_dir(follow_symlinks=False):
                    if rel_dir == "chunks" and CHUNK_DIR.match(entry.name) and os.path.isfile(
                            os.path.join(entry.path, "upload.json")):
                        chunk_dirs.append(entry.path)
                        continue
                    stack.append(rel)
                    continue
                else:
                    st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                problems.append(FileRecord(entry.path, "", 0, None, FAILED,
                                           "vanished while the folder was read"))
                continue
            except OSError as exc:
                problems.append(FileRecord(entry.path, "", 0, None, FAILED,
                                           f"cannot be read: {exc.strerror}"))
                continue
            if not stat.S_ISREG(st.st_mode):
                kind = ("socket" if stat.S_ISSOCK(st.st_mode) else "fifo" if stat.S_ISFIFO(
                    st.st_mode) else "device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(
                    st.st_mode) else "special file")
                problems.append(FileRecord(entry.path, "", 0, None, EXCLUDED,
                                           f"{kind}: not a regular file, skipped"))
                continue
            try:
                key = object_key(rel, prefix)
            except ValueError as exc:
                problems.append(FileRecord(entry.path, "", st.st_size, None, FAILED, str(exc)))
                continue
            yield _Entry(source, rel, entry.path, key, st.st_size, st.st_mtime_ns)


# --- hashing ---------------------------------------------------------------------------------


def part_size_for(size: int) -> int:
    """Deterministic part size: MIN_PART, doubled until the file fits in MAX_PARTS parts."""
    part = MIN_PART
    while part * MAX_PARTS < size:
        part *= 2
    return part


def file_digests(path: str, size: int, threshold: int) -> tuple[str, str]:
    """(sha256 hex, the ETag S3 gives this file: plain MD5, or md5-of-parts for multipart)."""
    sha = hashlib.sha256()
    if size < threshold:
        md5 = hashlib.md5()
        with open(path, "rb") as f:
            while block := f.read(MIB):
                sha.update(block)
                md5.update(block)
        return sha.hexdigest(), md5.hexdigest()
    part = part_size_for(size)
    digests = []
    with open(path, "rb") as f:
        while True:
            md5 = hashlib.md5()
            left = part
            while left and (block := f.read(min(MIB, left))):
                sha.update(block)
                md5.update(block)
                left -= len(block)
            if left == part:
                break
            digests.append(md5.digest())
            if left:
                break
    etag = f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}"
    return sha.hexdigest(), etag


# --- the state file --------------------------------------------------------------------------


def default_state_path(ep: Endpoint) -> Path:
    """Per endpoint and bucket, in the user's cache folder (never in the source).

    Not per prefix: a line says what a local file hashes to, and it is only trusted when the
    listed object under the key being written has the ETag the line remembers.
    """
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256(f"{ep.url}|{ep.bucket}".encode()).hexdigest()[:16]
    return base / "migrate" / "export-files" / f"{digest}.ndjson"


def _load_state(path: Path) -> dict[str, tuple[int, int, str, str]]:
    """path -> (size, mtime_ns, sha256, etag); a torn last line (SIGKILL) is ignored."""
    state: dict[str, tuple[int, int, str, str]] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                    state[row["p"]] = (row["s"], row["m"], row["h"], row["e"])
                except (ValueError, KeyError, TypeError):
                    continue
    except FileNotFoundError:
        pass
    return state


# --- the workers (small files: processes; large files: threads) ------------------------------

_worker_endpoint: Endpoint | None = None
_local = threading.local()


def _init_worker(ep: Endpoint, parent_pid: int | None = None) -> None:
    global _worker_endpoint
    if parent_pid is not None:
        die_with_parent(parent_pid)
    _worker_endpoint = ep


def _client() -> RawS3:
    client = getattr(_local, "client", None)
    if client is None:
        assert _worker_endpoint is not None
        client = _local.client = RawS3(_worker_endpoint)
    return client


def _meta_headers(name: str, sha256: str, mtime_ns: int) -> dict[str, str]:
    return {
        "content-type": mimetypes.guess_type(name)[0] or "application/octet-stream",
        "x-amz-meta-sha256": sha256,
        "x-amz-meta-mtime": f"{mtime_ns / 1e9:.9f}",
    }


def _with_retries(call: Callable[[], Any]) -> Any:
    """Retry a BadDigest (corrupted on the way), a 5xx or a dropped connection."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return call()
        except S3Error as exc:
            if attempt == ATTEMPTS or not (exc.status >= 500 or exc.code in (
                    "BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "RequestTimeout",
                    "SlowDown")):
                raise
        except RETRYABLE:
            _client().close()
            if attempt == ATTEMPTS:
                raise
        time.sleep(0.1 * 2 ** attempt)


LOST = "not attempted: the S3 endpoint stopped answering"
_endpoint_lost = threading.Event()  # per process: once the endpoint is gone, stop trying


def _put_small(item: tuple[str, str, int]) -> tuple[str, str, int, str, str, str]:
    """Upload one file in one PUT -> (key, status, size, sha256, etag, reason)."""
    path, key, mtime_ns = item
    if _endpoint_lost.is_set():
        return key, FAILED, 0, "", "", LOST
    try:
        with open(path, "rb") as f:
            body = f.read()
    except FileNotFoundError:
        return key, FAILED, 0, "", "", "vanished before it was read"
    except OSError as exc:
        return key, FAILED, 0, "", "", f"cannot be read: {exc.strerror}"
    md5 = hashlib.md5(body)
    sha = hashlib.sha256(body).hexdigest()
    headers = _meta_headers(path, sha, mtime_ns)
    headers["content-md5"] = base64.b64encode(md5.digest()).decode()

    def put() -> str:
        _, head, _ = _client().request("PUT", key, headers=headers, body=body,
                                       payload_sha256=sha)
        return head.get("etag", "").strip('"')

    try:
        etag = _with_retries(put)
    except S3Error as exc:
        return key, FAILED, len(body), sha, "", f"refused by the server: {exc}"
    except RETRYABLE as exc:
        if isinstance(exc, ConnectionRefusedError):
            _endpoint_lost.set()
        return key, FAILED, len(body), sha, "", f"transfer failed: {exc}"
    return key, UPLOADED, len(body), sha, etag or md5.hexdigest(), ""


_batch_pool: ThreadPoolExecutor | None = None


def _put_batch(items: list[tuple[str, str, int]], threads: int) -> list[tuple]:
    """In a worker process: upload a batch with ``threads`` keep-alive connections."""
    global _batch_pool
    if _batch_pool is None:
        _batch_pool = ThreadPoolExecutor(threads)
    return list(_batch_pool.map(_put_small, items))


@dataclass
class _LargeDigests:
    sha256: str
    md5_b64: str  # of the whole file
    part_md5s: list[bytes]  # each part's MD5: its Content-MD5, so parts travel unhashed


def _large_digests(path: str, size: int, multipart: bool = True) -> _LargeDigests:
    """Every digest a multipart upload needs, in one streamed read of the file.

    Done before the upload (the sha256 goes in the metadata, fixed at creation); the parts
    then carry these MD5s, so a file changed meanwhile is refused by the server (BadDigest)
    instead of stored under a sha256 that does not match it.
    """
    if not multipart:
        sha, whole = hashlib.sha256(), hashlib.md5()
        with open(path, "rb") as f:
            while block := f.read(4 * MIB):
                sha.update(block)
                whole.update(block)
        return _LargeDigests(sha.hexdigest(), base64.b64encode(whole.digest()).decode(), [])
    part = part_size_for(size)
    sha, whole = hashlib.sha256(), hashlib.md5()
    parts: list[bytes] = []
    with open(path, "rb") as f:
        while True:
            md5, left = hashlib.md5(), part
            while left and (block := f.read(min(4 * MIB, left))):
                sha.update(block)
                whole.update(block)
                md5.update(block)
                left -= len(block)
            if left < part or not parts:
                parts.append(md5.digest())
            if left:
                break
    return _LargeDigests(sha.hexdigest(), base64.b64encode(whole.digest()).decode(), parts)


def _put_streamed(entry: _Entry, digests: _LargeDigests) -> tuple[str, str]:
    """One PUT streamed from the file (below the multipart threshold): memory stays flat.

    Signed with the file's sha256 (checked by AWS) and its Content-MD5 (checked by all).
    """
    headers = _meta_headers(entry.path, digests.sha256, entry.mtime_ns)
    headers["content-md5"] = digests.md5_b64

    def put() -> str:
        with open(entry.path, "rb") as f:
            _, head, _ = _client().request("PUT", entry.key, headers=headers, body=f,
                                           length=entry.size, payload_sha256=digests.sha256)
        return head.get("etag", "").strip('"')

    etag = _with_retries(put)
    return digests.sha256, etag or base64.b64decode(digests.md5_b64).hex()


def _put_large(entry: _Entry, digests: _LargeDigests, part_threads: int) -> tuple[str, str]:
    """Multipart upload, parts in parallel, memory bounded by threads x part size."""
    part = part_size_for(entry.size)
    count = len(digests.part_md5s)
    sha256, md5_b64 = digests.sha256, digests.md5_b64
    headers = _meta_headers(entry.path, sha256, entry.mtime_ns)
    # rclone reads a multipart object's whole-file MD5 from this (its ETag is md5-of-parts).
    headers["x-amz-meta-md5chksum"] = md5_b64
    _, _, data = _with_retries(lambda: _client().request(
        "POST", entry.key, query={"uploads": ""}, headers=headers))
    upload_id = xml_text(data, "UploadId")
    if not upload_id:
        raise S3Error(500, "NoUploadId", "the server returned no multipart upload id")

    def send(n: int) -> tuple[int, str, bytes]:
        with open(entry.path, "rb") as f:
            body = os.pread(f.fileno(), part, (n - 1) * part)
        md5 = digests.part_md5s[n - 1]
        h = {"content-md5": base64.b64encode(md5).decode()}
        # Content-MD5 guards the part; hashing it again for the signature would cost a pass.
        _, head, _ = _with_retries(lambda: _client().request(
            "PUT", entry.key, query={"partNumber": str(n), "uploadId": upload_id}, headers=h,
            body=body, payload_sha256="UNSIGNED-PAYLOAD"))
        return n, head.get("etag", "").strip('"') or md5.hex(), md5

    try:
        with ThreadPoolExecutor(part_threads) as pool:
            parts = sorted(pool.map(send, range(1, count + 1)))
        xml = "<CompleteMultipartUpload>" + "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>\"{etag}\"</ETag></Part>"
            for n, etag, _ in parts) + "</CompleteMultipartUpload>"
        _, _, done = _with_retries(lambda: _client().request(
            "POST", entry.key, query={"uploadId": upload_id}, body=xml.encode()))
        if b"<Error>" in done:  # S3 can report a failed completion inside a 200
            raise S3Error(500, xml_text(done, "Code"), xml_text(done, "Message"))
    except BaseException:
        try:
            _client().request("DELETE", entry.key, query={"uploadId": upload_id})
        except Exception:  # noqa: BLE001 - best effort; the original error matters
            pass
        raise
    etag = xml_text(done, "ETag").strip('"').replace("&#34;", "").replace("&quot;", "")
    etag = etag or f"{hashlib.md5(b''.join(d for _, _, d in parts)).hexdigest()}-{count}"
    # Some servers list a multipart object with its whole-file MD5 (rclone's do), others with
    # the md5-of-parts ETag: the state remembers both, so either confirms it unchanged.
    return sha256, f"{etag} {base64.b64decode(md5_b64).hex()}"


# --- export ----------------------------------------------------------------------------------


ProgressFn = Callable[[int, int, int, int], None]  # files done, files total, bytes done, total


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
    result = ExportResult(target=target, endpoint=ep.url, dry_run=dry_run,
                          manifest=os.fspath(manifest) if manifest else None)
    problems: list[FileRecord] = []
    chunk_dirs: list[str] = []
    entries: list[_Entry] = []
    # The bucket listing mostly waits on the server: run it while this process walks the tree.
    with ThreadPoolExecutor(1) as lister:
        listed = lister.submit(list_prefix, ep, prefix) if exists else None
        for root in roots:
            entries.extend(_scan(root, prefix, problems, chunk_dirs))
        listing = listed.result() if listed is not None else {}
    state_path = Path(state_file) if state_file else default_state_path(ep)
    state = _load_state(state_path)

    out = open(manifest, "w", encoding="utf-8") if manifest else None  # noqa: SIM115
    state_out = None
    if not dry_run:
        state_path.parent.mkdir(parents=True, exist_ok=True)
        state_out = open(state_path, "a", encoding="utf-8")  # noqa: SIM115
    lock = threading.Lock()
    done = [0, 0]

    def record(rec: FileRecord, entry: _Entry | None = None, etag: str = "") -> None:
        """Count, write the manifest line and (once stored) the state line; under the lock."""
        with lock:
            if out:
                out.write(json.dumps(dataclasses_asdict(rec), ensure_ascii=False) + "\n")
            if rec.status == UPLOADED:
                result.uploaded += 1
                result.uploaded_bytes += rec.size
            elif rec.status == SKIPPED:
                result.skipped += 1
            elif rec.status == PLANNED:
                result.planned += 1
                result.plan.append(rec)
            elif rec.status == DUPLICATE:
                result.duplicates += 1
            elif rec.status == FAILED:
                result.failed += 1
            elif rec.status == EXCLUDED:
                result.excluded += 1
            if rec.status in (FAILED, EXCLUDED, SUPERSEDED):
                result.problems.append(rec)
            if state_out and entry is not None and etag and rec.status in (UPLOADED, SKIPPED):
                # Written as each object completes: a SIGKILL loses at most the lines in flight.
                state_out.write(json.dumps({"p": entry.path, "s": entry.size,
                                            "m": entry.mtime_ns, "h": rec.sha256, "e": etag},
                                           ensure_ascii=False) + "\n")
                state_out.flush()
            if entry is not None:
                done[0] += 1
                done[1] += entry.size
                if on_progress:
                    on_progress(done[0], result.files, done[1], result.bytes)

    try:
        for rec in problems:
            record(rec)
        result.files = len(entries)
        result.bytes = sum(e.size for e in entries)
        todo = _plan(entries, listing, state, threshold, record, ep)
        if dry_run:
            for entry in todo:
                record(FileRecord(entry.path, entry.key, entry.size, None, PLANNED), entry)
        else:
            _transfer(ep, todo, jobs, processes, threshold, record)
        result.uploads = _carry_uploads(chunk_dirs, ep, prefix, redis_url, dry_run,
                                        state_path)
        if out:
            for up in result.uploads:
                out.write(json.dumps({"upload_id": up.upload_id, "path": up.source,
                                      "key": up.key, "size": up.size, "sha256": None,
                                      "status": up.status, "reason": up.reason},
                                     ensure_ascii=False) + "\n")
    finally:
        if out:
            out.close()
        if state_out:
            state_out.close()
    result.seconds = time.monotonic() - started
    return result


def dataclasses_asdict(rec: FileRecord) -> dict[str, Any]:
    return {"path": rec.path, "key": rec.key, "size": rec.size, "sha256": rec.sha256,
            "status": rec.status, **({"reason": rec.reason} if rec.reason else {})}


def _plan(entries: list[_Entry], listing: dict[str, tuple[int, str]],
          state: dict[str, tuple[int, int, str, str]], threshold: int,
          record: Callable[..., None], ep: Endpoint) -> list[_Entry]:
    """Decide per file: already there (skip) or to upload; one key from two sources, once."""
    by_key: dict[str, list[_Entry]] = {}
    for entry in entries:
        by_key.setdefault(entry.key, []).append(entry)
    todo: list[_Entry] = []
    head_client: RawS3 | None = None
    for key, group in by_key.items():
        if len(group) > 1:
            group = _resolve_duplicates(group, threshold, record)
        entry = group[0]
        listed = listing.get(key)
        if listed is None or listed[0] != entry.size:
            todo.append(entry)
            continue
        known = state.get(entry.path)
        if known and known[0] == entry.size and known[1] == entry.mtime_ns and (
                listed[1] in known[3].split()):
            # Known already: no new state line (the file would only grow on every run).
            record(FileRecord(entry.path, key, entry.size, known[2], SKIPPED), entry)
            continue
        # No state for this file (or it changed): compare its checksum with the object's.
        try:
            sha, etag = file_digests(entry.path, entry.size, threshold)
        except OSError as exc:
            record(FileRecord(entry.path, key, entry.size, None, FAILED,
                              f"cannot be read: {exc.strerror}"), entry)
            continue
        same = etag == listed[1]
        if not same and ("-" in listed[1] or "-" in etag):
            # A multipart ETag made with another part size: ask the object's sha256 metadata.
            head_client = head_client or RawS3(ep)
            same = _head_sha256(head_client, key) == sha
        if same:
            record(FileRecord(entry.path, key, entry.size, sha, SKIPPED), entry, listed[1])
        else:
            todo.append(entry)
    if head_client is not None:
        head_client.close()
    return todo


def _head_sha256(client: RawS3, key: str) -> str | None:
    status, head, _ = client.request("HEAD", key)
    return head.get("x-amz-meta-sha256") if status == 200 else None


def _resolve_duplicates(group: list[_Entry], threshold: int,
                        record: Callable[..., None]) -> list[_Entry]:
    """The same key from two instances: equal content is uploaded once; else the newest wins."""
    group = sorted(group, key=lambda e: e.mtime_ns, reverse=True)
    newest = group[0]
    try:
        want = file_digests(newest.path, newest.size, threshold)[0]
    except OSError:
        return group
    for other in group[1:]:
        try:
            sha = file_digests(other.path, other.size, threshold)[0]
        except OSError as exc:
            record(FileRecord(other.path, other.key, other.size, None, FAILED,
                              f"cannot be read: {exc.strerror}"), other)
            continue
        if sha == want:
            record(FileRecord(other.path, other.key, other.size, sha, DUPLICATE,
                              f"same content as {newest.path}"), other)
        else:
            record(FileRecord(other.path, other.key, other.size, sha, SUPERSEDED,
                              f"another instance has a newer file for this key: {newest.path}"),
                   other)
    return [newest]


def _transfer(ep: Endpoint, todo: list[_Entry], jobs: int, processes: int | None,
              threshold: int, record: Callable[..., None]) -> None:
    """Small files: batches to worker processes; large files: parts on threads, meanwhile."""
    small = [e for e in todo if e.size < min(SMALL_MAX, threshold)]
    large = [e for e in todo if e.size >= min(SMALL_MAX, threshold)]
    by_key = {e.key: e for e in small}

    lost = [0]

    def finish(results: list[tuple]) -> None:
        for key, status, size, sha, etag, reason in results:
            entry = by_key[key]
            if reason == LOST:
                lost[0] += 1
            record(FileRecord(entry.path, key, size or entry.size, sha or None, status, reason),
                   entry, etag)

    def send_one_large(entry: _Entry, digests: _LargeDigests, part_threads: int) -> None:
        try:
            if digests.part_md5s:
                sha, etag = _put_large(entry, digests, part_threads)
            else:
                sha, etag = _put_streamed(entry, digests)
            record(FileRecord(entry.path, entry.key, entry.size, sha, UPLOADED), entry, etag)
        except OSError as exc:
            reason = ("vanished before it was read" if isinstance(exc, FileNotFoundError)
                      else f"transfer failed: {exc}")
            record(FileRecord(entry.path, entry.key, entry.size, None, FAILED, reason), entry)
        except Exception as exc:  # noqa: BLE001 - reported per file, the rest goes on
            record(FileRecord(entry.path, entry.key, entry.size, None, FAILED,
                              f"refused by the server: {exc}"), entry)

    def send_large() -> None:
        # A pipeline: this thread hashes file k+1 while file k travels (one streamed PUT, or
        # parts in parallel). Two files at once at most, so memory stays bounded:
        # 2 x part threads x part size.
        part_threads = max(2, min(jobs, 8) // 2)
        slots = threading.Semaphore(2)
        with ThreadPoolExecutor(2) as pool:
            for entry in large:
                try:
                    digests = _large_digests(entry.path, entry.size,
                                             multipart=entry.size >= threshold)
                except OSError as exc:
                    reason = ("vanished before it was read" if isinstance(
                        exc, FileNotFoundError) else f"cannot be read: {exc.strerror}")
                    record(FileRecord(entry.path, entry.key, entry.size, None, FAILED, reason),
                           entry)
                    continue
                slots.acquire()
                future = pool.submit(send_one_large, entry, digests, part_threads)
                future.add_done_callback(lambda _f: slots.release())

    procs = processes if processes is not None else min(os.cpu_count() or 1, jobs, 4)
    if len(small) < 200:
        procs = 0  # not worth starting processes for a handful of files
    threads = max(1, -(-jobs // max(procs, 1)))
    _init_worker(ep)
    # Large files go part by part on threads while the small ones go through the workers.
    large_thread = threading.Thread(target=send_large, name="export-large", daemon=True)
    large_thread.start()
    try:
        if procs and small:
            import multiprocessing

            # spawn: the parent has threads (progress, large uploads); forking them is unsafe.
            with ProcessPoolExecutor(procs, mp_context=multiprocessing.get_context("spawn"),
                                     initializer=_init_worker, initargs=(ep, os.getpid())) as pool:
                size = max(16, min(256, len(small) // (procs * 8) or 16))
                futures = [pool.submit(_put_batch, [(e.path, e.key, e.mtime_ns)
                                                    for e in small[i:i + size]], threads)
                           for i in range(0, len(small), size)]
                try:
                    for fut in as_completed(futures):
                        finish(fut.result())
                        if lost[0]:
                            # The endpoint went away: stop here; a re-run resumes.
                            raise ConnectionFailure(
                                f"the S3 endpoint {ep.url} stopped answering mid-run: check it "
                                "and run the same command again (finished objects are skipped)")
                except BrokenProcessPool:
                    raise CheckFailed("a transfer worker process died: run the same command "
                                      "again (finished objects are skipped)") from None
                finally:
                    for fut in futures:
                        fut.cancel()
        elif small:
            with ThreadPoolExecutor(jobs) as local_pool:
                for res in local_pool.map(_put_small,
                                          [(e.path, e.key, e.mtime_ns) for e in small]):
                    finish([res])
            _endpoint_lost.clear()
    finally:
        large_thread.join()


# --- chunked uploads in progress -------------------------------------------------------------


def _carry_uploads(chunk_dirs: list[str], ep: Endpoint, prefix: str,
                   redis_url: str | None, dry_run: bool,
                   state_path: Path) -> list[CarriedUpload]:
    """Each in-progress upload becomes an S3 multipart upload with its state in Redis."""
    carried: list[CarriedUpload] = []
    seen: dict[str, str] = {}
    redis_client = None
    if chunk_dirs and redis_url and not dry_run:
        import redis

        redis_client = redis.Redis.from_url(redis_url, socket_connect_timeout=3,
                                            socket_timeout=10)
        try:
            redis_client.ping()
        except redis.exceptions.RedisError as exc:
            raise ConnectionFailure(f"cannot reach Redis at {redact.url(redis_url)} "
                                    f"({type(exc).__name__}): check --redis") from None
    for folder in sorted(chunk_dirs):
        upload_id = os.path.basename(folder)
        up = _describe_upload(folder, prefix)
        if upload_id in seen:
            up.status, up.reason = "failed", f"the same upload id is also in {seen[upload_id]}"
        elif up.status != "failed":
            if dry_run:
                up.status = "planned"
            elif redis_client is None:
                up.status, up.reason = "listed", (
                    "not carried over: pass --redis URL (the after-app's REDIS_URL); its chunks "
                    "stay in the source folder")
            else:
                try:
                    _carry_one(folder, up, ep, redis_client)
                except (S3Error, OSError) as exc:
                    up.status, up.reason = "failed", f"could not be carried over: {exc}"
        seen[upload_id] = folder
        carried.append(up)
    return carried


def _describe_upload(folder: str, prefix: str) -> CarriedUpload:
    upload_id = os.path.basename(folder)
    up = CarriedUpload(upload_id, folder, "", None, 0, 0, "", "failed")
    try:
        with open(os.path.join(folder, "upload.json"), encoding="utf-8") as f:
            meta = json.load(f)
        up.filename, up.user_id = str(meta["filename"]), int(meta["user_id"])
        up.key = object_key(f"files/{upload_id}/{up.filename}", prefix)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        up.reason = f"upload.json cannot be read: {exc}"
        return up
    numbers = []
    for name in os.listdir(folder):
        match = PART_NAME.match(name)
        if match:
            numbers.append(int(match.group(1)))
            up.size += os.path.getsize(os.path.join(folder, name))
    numbers.sort()
    if numbers != list(range(1, len(numbers) + 1)):
        up.reason = f"chunks are not 1..n (have {numbers[:5]}...): cannot form a multipart upload"
        return up
    up.chunks = len(numbers)
    up.status = "pending"
    return up


def _carry_one(folder: str, up: CarriedUpload, ep: Endpoint, redis_client) -> None:
    """Create the multipart upload, send each chunk as its part, then publish the state."""
    main_key, parts_key = f"upload:{up.upload_id}", f"upload:{up.upload_id}:parts"
    if redis_client.exists(main_key):
        have = redis_client.hlen(parts_key)
        # Carried by an earlier run (and maybe continued on the after-app since): leave it.
        up.status = "already-carried"
        up.reason = f"already in Redis with {have} parts"
        return
    s3 = RawS3(ep)
    try:
        _abort_orphans(s3, up.key)
        _, _, data = _with_retries(lambda: s3.request(
            "POST", up.key, query={"uploads": ""},
            headers={"content-type": mimetypes.guess_type(up.filename)[0]
                     or "application/octet-stream"}))
        multipart_id = xml_text(data, "UploadId")
        parts: dict[str, str] = {}
        for n in range(1, up.chunks + 1):
            with open(os.path.join(folder, f"{n:05d}.part"), "rb") as f:
                body = f.read()
            h = {"content-md5": base64.b64encode(hashlib.md5(body).digest()).decode()}
            _, head, _ = _with_retries(lambda b=body, h=h, n=n: s3.request(
                "PUT", up.key, query={"partNumber": str(n), "uploadId": multipart_id},
                headers=h, body=b))
            parts[str(n)] = f"{head.get('etag', '')} {len(body)}"
    finally:
        s3.close()
    # Both hashes in one transaction, last: an after-instance sees the whole upload or none.
    pipe = redis_client.pipeline(transaction=True)
    pipe.hset(main_key, mapping={"user_id": up.user_id, "filename": up.filename, "key": up.key,
                                 "multipart_id": multipart_id})
    if parts:
        pipe.hset(parts_key, mapping=parts)
    pipe.expire(main_key, UPLOAD_TTL)
    pipe.expire(parts_key, UPLOAD_TTL)
    pipe.execute()
    up.status = "carried"


def _abort_orphans(s3: RawS3, key: str) -> None:
    """Abort multipart uploads an earlier, killed run left for ``key`` (Redis never named
    them, so no client can be using them); best effort: not every server lists them."""
    try:
        _, _, data = s3.request("GET", None, query={"uploads": "", "prefix": key})
    except (S3Error, *RETRYABLE):
        return
    for block in re.findall(rb"<Upload>(.*?)</Upload>", data, flags=re.S):
        if xml_text(block, "Key") == key and (upload_id := xml_text(block, "UploadId")):
            try:
                s3.request("DELETE", key, query={"uploadId": upload_id})
            except (S3Error, *RETRYABLE):
                pass


# --- verify ----------------------------------------------------------------------------------


def _check_one(item: tuple[str, str, int, bool, int]) -> tuple[str, str]:
    """In a worker: compare one file with its object -> (key, problem or "")."""
    path, key, size, deep, threshold = item
    try:
        sha, etag = file_digests(path, size, threshold)
    except OSError as exc:
        return key, f"local file cannot be read: {exc.strerror}"
    client = _client()
    try:
        if deep:
            status, head, response = client.request("GET", key, stream=True)
            digest = hashlib.sha256()
            while block := response.read(MIB):
                digest.update(block)
            if response.will_close:
                client.close()
            return key, "" if digest.hexdigest() == sha else "content differs (sha256)"
        status, head, _ = _with_retries(lambda: client.request("HEAD", key))
    except S3Error as exc:
        return key, "missing" if exc.status == 404 else f"cannot be read: {exc}"
    except RETRYABLE as exc:
        client.close()
        return key, f"cannot be read: {exc}"
    if status == 404:
        return key, "missing"
    if int(head.get("content-length", -1)) != size:
        return key, f"size differs ({head.get('content-length')} in the bucket, {size} here)"
    remote_sha = head.get("x-amz-meta-sha256")
    remote_etag = head.get("etag", "").strip('"')
    if remote_sha and remote_sha != sha:
        return key, "sha256 metadata differs"
    if re.fullmatch(r"[0-9a-f]{32}", remote_etag) and "-" not in etag and remote_etag != etag:
        # The bytes were replaced (the metadata may have been copied along): the MD5 tells.
        return key, "content differs (the ETag is not the file's MD5; SSE-KMS? use --deep)"
    if not remote_sha and remote_etag != etag:
        return key, "no sha256 metadata and the ETag differs: use --deep"
    return key, ""


def _check_batch(items: list[tuple], threads: int) -> list[tuple[str, str]]:
    global _batch_pool
    if _batch_pool is None:
        _batch_pool = ThreadPoolExecutor(threads)
    return list(_batch_pool.map(_check_one, items))


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
    problems: list[FileRecord] = []
    entries: dict[str, _Entry] = {}
    chunk_dirs: list[str] = []
    for root in roots:
        for entry in _scan(root, prefix, problems, chunk_dirs):
            # Two instances with one key: the newest is what export kept.
            if entry.key not in entries or entries[entry.key].mtime_ns < entry.mtime_ns:
                entries[entry.key] = entry
    listing = list_prefix(ep, prefix)
    items = []
    for key, entry in entries.items():
        listed = listing.get(key)
        if listed is None:
            result.missing.append(Difference(entry.path, key, "missing"))
        elif listed[0] != entry.size:
            result.different.append(Difference(
                entry.path, key, f"size differs ({listed[0]} in the bucket, {entry.size} here)"))
        else:
            items.append((entry.path, key, entry.size, deep, threshold))
    result.checked = len(entries)
    done = [len(entries) - len(items)]
    total = len(entries)

    def finish(rows: list[tuple[str, str]]) -> None:
        for key, problem in rows:
            if problem == "missing":
                result.missing.append(Difference(entries[key].path, key, problem))
            elif problem:
                result.different.append(Difference(entries[key].path, key, problem))
            else:
                result.matching += 1
        done[0] += len(rows)
        if on_progress:
            on_progress(done[0], total, 0, 0)

    _init_worker(ep)
    procs = min(os.cpu_count() or 1, jobs, 4) if len(items) >= 200 else 0
    if procs:
        import multiprocessing

        threads = max(1, -(-jobs // procs))
        size = max(16, min(256, len(items) // (procs * 8) or 16))
        with ProcessPoolExecutor(procs, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init_worker, initargs=(ep, os.getpid())) as pool:
            futures = [pool.submit(_check_batch, items[i:i + size], threads)
                       for i in range(0, len(items), size)]
            for fut in futures:
                finish(fut.result())
    else:
        with ThreadPoolExecutor(jobs) as pool:
            finish(list(pool.map(_check_one, items)))
    if redis_url and chunk_dirs:
        _verify_uploads(chunk_dirs, prefix, redis_url, result)
    result.missing.sort(key=lambda d: d.key)
    result.different.sort(key=lambda d: d.key)
    result.seconds = time.monotonic() - started
    return result


def _verify_uploads(chunk_dirs: list[str], prefix: str, redis_url: str,
                    result: VerifyResult) -> None:
    """Each in-progress upload must be in Redis, under its key, with its chunks as parts."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_connect_timeout=3, socket_timeout=10)
    try:
        for folder in sorted(chunk_dirs):
            up = _describe_upload(folder, prefix)
            label = f"upload:{up.upload_id}"
            result.checked += 1
            state = {k.decode(): v.decode() for k, v in client.hgetall(label).items()}
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
        raise ConnectionFailure(f"cannot reach Redis at {redact.url(redis_url)} "
                                f"({type(exc).__name__}): check --redis") from None
    finally:
        client.close()


def require_ok(result: VerifyResult) -> None:
    """Raise CheckFailed when verify found differences (for callers that want an exception)."""
    if not result.ok:
        raise CheckFailed(f"{len(result.missing)} files missing and {len(result.different)} "
                          f"different in {result.target}")
