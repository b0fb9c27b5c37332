"""Sending files: each file becomes one object, with its checksums checked by the server.

- below ``SMALL_MAX``: read whole in a worker process and sent in one PUT, batches of them
  spread over a few processes (``workers``);
- up to the multipart threshold (and ``BUFFER_MAX``): read once into memory, hashed as it is
  read, and sent from memory in one PUT: one read per byte;
- past ``BUFFER_MAX`` with a raised threshold: one PUT streamed from the file after a hashing
  pass (memory stays flat);
- at or above the threshold: a multipart upload read once, part after part into memory, each
  part hashed (its MD5, and the running sha256 and MD5 of the whole file) and sent from that
  buffer on a part thread while the next is read. S3 fixes an object's metadata when the upload
  is created, before the bytes are read: once it is complete, the object is copied onto itself
  (server side, ``x-amz-metadata-directive: REPLACE``) with its ``sha256`` and ``md5chksum``.
  Past CopyObject's 5 GiB the object keeps its md5-of-parts ETag, which ``verify files``
  recomputes from the file, and the sha256 is in the state file and the manifest.

Every PUT carries ``Content-MD5`` (checked by every S3 server) and the metadata ``sha256`` and
``mtime``. Large files travel on threads in this process while the small ones go through the
workers; ``LARGE_AT_ONCE`` large files are read, hashed and sent at once, so one's hashing
overlaps the others' sending (memory stays bounded by that many x ``BUFFER_MAX``, or x part
threads x part size).
"""

from __future__ import annotations

import base64
import hashlib
import mimetypes
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any, BinaryIO
from urllib.parse import quote

from migrate.errors import CheckFailed, ConnectionFailure
from migrate.files import workers
from migrate.files.digests import LargeDigests, large_digests, part_size_for, read_with_digests
from migrate.files.transfer import (
    MIB,
    RETRYABLE,
    Endpoint,
    S3Error,
    ShortBody,
    checked_etag,
    with_retries,
    xml_text,
)
from migrate.files.walk import (
    FAILED,
    UPLOADED,
    Changed,
    Entry,
    FileRecord,
    RecordFn,
    changed,
    open_regular,
)

SMALL_MAX = 8 * MIB  # below: read whole in a worker process; above: on threads here
BUFFER_MAX = 64 * MIB  # a single PUT up to this size is read once into memory and sent from it
LARGE_AT_ONCE = 4  # large files in flight: memory stays under 4 x BUFFER_MAX (or their parts)
COPY_MAX = 5 * 1024 * MIB  # CopyObject's limit: a bigger object keeps its creation metadata
BLOCK = 4 * MIB  # a part is read (and hashed) in blocks of this size
LOST = "not attempted: the S3 endpoint stopped answering"
_endpoint_lost = threading.Event()  # per process: once the endpoint is gone, stop trying


def send(ep: Endpoint, todo: list[Entry], jobs: int, processes: int | None, threshold: int,
         record: RecordFn) -> None:
    """Upload every entry of ``todo``, calling ``record`` for each as it completes or fails.

    Raises ConnectionFailure when the endpoint stops answering (a re-run resumes) and
    CheckFailed when a worker process dies.
    """
    cut = min(SMALL_MAX, threshold)
    small = [e for e in todo if e.size < cut]
    large = [e for e in todo if e.size >= cut]
    workers.init_worker(ep)
    # Large files go part by part on threads while the small ones go through the workers.
    large_thread = threading.Thread(target=_send_large, args=(large, jobs, threshold, record),
                                    name="export-large", daemon=True)
    large_thread.start()
    try:
        procs, threads = workers.counts(len(small), jobs, processes)
        if procs:
            _send_small_in_processes(ep, small, procs, threads, record)
        elif small:
            _send_small_here(small, jobs, record)
    finally:
        large_thread.join()


# --- small files ---------------------------------------------------------------------------


def _send_small_in_processes(ep: Endpoint, small: list[Entry], procs: int, threads: int,
                             record: RecordFn) -> None:
    by_key = {e.key: e for e in small}
    with workers.process_pool(ep, procs) as pool:
        futures = [pool.submit(workers.run_batch, put_small,
                               [(e.path, e.key, e.mtime_ns, e.size) for e in batch], threads)
                   for batch in workers.batches(small, procs)]
        try:
            for fut in as_completed(futures):
                if _record_small(fut.result(), by_key, record):
                    # The endpoint went away: stop here; a re-run resumes.
                    raise ConnectionFailure(
                        f"the S3 endpoint {ep.shown} stopped answering mid-run: check it "
                        "and run the same command again (finished objects are skipped)")
        except BrokenProcessPool:
            raise CheckFailed("a transfer worker process died: run the same command "
                              "again (finished objects are skipped)") from None
        finally:
            for fut in futures:
                fut.cancel()


def _send_small_here(small: list[Entry], jobs: int, record: RecordFn) -> None:
    """A handful of small files: threads in this process, no worker processes."""
    by_key = {e.key: e for e in small}
    with ThreadPoolExecutor(jobs) as pool:
        for res in pool.map(put_small, [(e.path, e.key, e.mtime_ns, e.size) for e in small]):
            _record_small([res], by_key, record)
    _endpoint_lost.clear()


def _record_small(results: list[tuple], by_key: dict[str, Entry], record: RecordFn) -> int:
    """Record a batch's results; returns how many were not attempted (the endpoint was lost)."""
    lost = 0
    for key, status, size, sha, etag, reason in results:
        entry = by_key[key]
        if reason == LOST:
            lost += 1
        record(FileRecord(entry.path, key, size or entry.size, sha or None, status, reason),
               entry, etag)
    return lost


def _meta_headers(name: str, sha256: str, mtime_ns: int) -> dict[str, str]:
    return {
        "content-type": mimetypes.guess_type(name)[0] or "application/octet-stream",
        "x-amz-meta-sha256": sha256,
        "x-amz-meta-mtime": f"{mtime_ns / 1e9:.9f}",
    }


def put_small(item: tuple[str, str, int, int]) -> tuple[str, str, int, str, str, str]:
    """In a worker: upload one file in one PUT -> (key, status, size, sha256, etag, reason).

    The file is read whole and must be the size the walk found (else reported as changed):
    one open, one fstat, one read.
    """
    path, key, mtime_ns, size = item
    if _endpoint_lost.is_set():
        return key, FAILED, 0, "", "", LOST
    for look in (1, 2):
        try:
            body = _read_whole(path, size)
            break
        except Changed as exc:
            if look == 2:
                return key, FAILED, 0, "", "", str(exc)
            # Still being written when the walk saw it (a live app's upload): one more look, at
            # the size it has settled to. Only one: a file that keeps changing is reported.
            time.sleep(0.05)
            try:
                st = os.stat(path)
            except OSError:
                return key, FAILED, 0, "", "", str(exc)
            size, mtime_ns = st.st_size, st.st_mtime_ns
        except FileNotFoundError:
            return key, FAILED, 0, "", "", "vanished before it was read"
        except OSError as exc:
            return key, FAILED, 0, "", "", f"cannot be read: {exc.strerror}"
    md5 = hashlib.md5(body)
    sha = hashlib.sha256(body).hexdigest()
    headers = _meta_headers(path, sha, mtime_ns)
    headers["content-md5"] = base64.b64encode(md5.digest()).decode()
    s3 = workers.client()

    def put() -> str:
        _, head, _ = s3.request("PUT", key, headers=headers, body=body, payload_sha256=sha)
        return checked_etag(head, md5.hexdigest())

    try:
        etag = with_retries(put, s3)
    except S3Error as exc:
        return key, FAILED, len(body), sha, "", f"refused by the server: {exc}"
    except RETRYABLE as exc:
        if isinstance(exc, ConnectionRefusedError):
            _endpoint_lost.set()
        return key, FAILED, len(body), sha, "", f"transfer failed: {exc}"
    return key, UPLOADED, len(body), sha, etag, ""


def _read_whole(path: str, size: int) -> bytes:
    """The file's bytes, exactly ``size`` of them (``walk.Changed`` otherwise)."""
    fd = open_regular(path, size)
    try:
        body = os.read(fd, size + 1)  # a regular file reads whole: short only at its end
    finally:
        os.close(fd)
    if len(body) != size:
        raise changed(size, "it grew" if len(body) > size else f"now {len(body):,}")
    return body


# --- large files ---------------------------------------------------------------------------


def _unread(exc: OSError | Changed) -> str:
    """The reason a file could not be read, for its record."""
    if isinstance(exc, Changed):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        return "vanished before it was read"
    return f"cannot be read: {exc.strerror}"



def _send_large(large: list[Entry], jobs: int, threshold: int, record: RecordFn) -> None:
    """``LARGE_AT_ONCE`` files at a time, each read (and hashed) then sent on its own thread:
    one file's hashing overlaps the others' sending, and the server takes several at once."""
    part_threads = max(2, min(jobs, 8) // 2)
    with ThreadPoolExecutor(LARGE_AT_ONCE) as pool:
        for _ in pool.map(lambda e: _read_and_send(e, threshold, part_threads, record), large):
            pass


def _read_and_send(entry: Entry, threshold: int, part_threads: int, record: RecordFn) -> None:
    """On a large-file thread: every digest in one read, then the upload (or the failure)."""
    body: bytearray | None = None
    if entry.size >= threshold:  # read once, while it is sent: no pass before
        _send_one_large(entry, None, part_threads, record)
        return
    try:
        if entry.size < min(threshold, BUFFER_MAX + 1):
            body, digests = read_with_digests(entry.path, entry.size)
        else:
            digests = large_digests(entry.path, entry.size, multipart=False)
    except (OSError, Changed) as exc:
        record(FileRecord(entry.path, entry.key, entry.size, None, FAILED, _unread(exc)), entry)
        return
    _send_one_large(entry, digests, part_threads, record, body)


def _send_one_large(entry: Entry, digests: LargeDigests | None, part_threads: int,
                    record: RecordFn, body: bytearray | None = None) -> None:
    try:
        if digests is None:
            sha, etag = put_multipart(entry, part_threads)
        elif body is not None:
            sha, etag = put_buffered(entry, body, digests)
        else:
            sha, etag = put_streamed(entry, digests)
        record(FileRecord(entry.path, entry.key, entry.size, sha, UPLOADED), entry, etag)
    except Changed as exc:
        record(FileRecord(entry.path, entry.key, entry.size, None, FAILED, str(exc)), entry)
    except OSError as exc:
        reason = ("vanished before it was read" if isinstance(exc, FileNotFoundError)
                  else f"transfer failed: {exc}")
        record(FileRecord(entry.path, entry.key, entry.size, None, FAILED, reason), entry)
    except Exception as exc:  # noqa: BLE001 - reported per file, the rest goes on
        record(FileRecord(entry.path, entry.key, entry.size, None, FAILED,
                          f"refused by the server: {exc}"), entry)


def put_buffered(entry: Entry, body: bytearray, digests: LargeDigests) -> tuple[str, str]:
    """One PUT of a file read once into memory (``digests.read_with_digests``): signed with
    its sha256, checked by its Content-MD5; retried from memory, not from the file."""
    headers = _meta_headers(entry.path, digests.sha256, entry.mtime_ns)
    headers["content-md5"] = digests.md5_b64
    md5_hex = base64.b64decode(digests.md5_b64).hex()
    s3 = workers.client()

    def put() -> str:
        _, head, _ = s3.request("PUT", entry.key, headers=headers, body=body,
                                payload_sha256=digests.sha256)
        return checked_etag(head, md5_hex)

    return digests.sha256, with_retries(put, s3)


def put_streamed(entry: Entry, digests: LargeDigests) -> tuple[str, str]:
    """One PUT streamed from the file (below the multipart threshold): memory stays flat.

    Signed with the file's sha256 (checked by AWS) and its Content-MD5 (checked by all).
    """
    headers = _meta_headers(entry.path, digests.sha256, entry.mtime_ns)
    headers["content-md5"] = digests.md5_b64
    md5_hex = base64.b64decode(digests.md5_b64).hex()
    s3 = workers.client()

    def put() -> str:
        # The size it was hashed at, still (else Changed); exactly that many bytes are sent.
        with open(open_regular(entry.path, entry.size), "rb") as f:
            _, head, _ = s3.request("PUT", entry.key, headers=headers, body=f,
                                    length=entry.size, payload_sha256=digests.sha256)
        return checked_etag(head, md5_hex)

    try:
        etag = with_retries(put, s3)
    except ShortBody:
        raise changed(entry.size, "it shrank while it was sent") from None
    return digests.sha256, etag


def put_multipart(entry: Entry, part_threads: int) -> tuple[str, str]:
    """Multipart upload, each byte read once: parts read in turn, sent in parallel from the
    buffer they were hashed from; memory bounded by (threads + 1) x part size.

    Returns (sha256, ETags): some servers list a multipart object with its whole-file MD5
    (rclone's do, and AWS after the metadata copy), others with the md5-of-parts ETag; the
    state remembers both. A file that changes while it is read is ``walk.Changed`` and its
    upload is aborted.
    """
    headers = _meta_headers(entry.path, "", entry.mtime_ns)
    del headers["x-amz-meta-sha256"]  # not known yet: attached once every byte was read
    s3 = workers.client()
    _, _, data = with_retries(lambda: s3.request(
        "POST", entry.key, query={"uploads": ""}, headers=headers), s3)
    upload_id = xml_text(data, "UploadId")
    if not upload_id:
        raise S3Error(500, "NoUploadId", "the server returned no multipart upload id")
    try:
        sha, whole_md5, parts = _read_and_send_parts(entry, upload_id, part_threads)
        parts_md5 = hashlib.md5(b"".join(md5 for _, md5 in parts)).hexdigest()
        etag = _complete(entry.key, upload_id, [e for e, _ in parts], f"{parts_md5}-{len(parts)}")
    except BaseException:
        try:
            s3.request("DELETE", entry.key, query={"uploadId": upload_id})
        except Exception:  # noqa: BLE001 - best effort; the original error matters
            pass
        raise
    if entry.size <= COPY_MAX:
        _attach_digests(entry, sha, base64.b64encode(whole_md5).decode())
    return sha, f"{etag} {whole_md5.hex()}"


def _read_and_send_parts(entry: Entry, upload_id: str, part_threads: int,
                         ) -> tuple[str, bytes, list[tuple[str, bytes]]]:
    """Read the file once, in order, each part into its own buffer, hashed as it arrives (the
    sha256 on a helper thread beside the whole file's MD5), then sent from that buffer on a
    part thread -> (sha256 hex, whole MD5, [(part ETag, part MD5)]).

    What is sent is what was hashed. ``walk.Changed`` when the file shrinks, grows or is
    modified (its mtime moves) while it is read.
    """
    part = part_size_for(entry.size)
    count = max(1, -(-entry.size // part))
    sha, md5_all = hashlib.sha256(), hashlib.md5()
    free = threading.Semaphore(part_threads + 1)  # buffers alive: being sent, or being read
    sent: list[Future] = []
    with open(open_regular(entry.path, entry.size), "rb", buffering=0) as f, \
            ThreadPoolExecutor(part_threads) as pool, ThreadPoolExecutor(1) as helper:
        before = os.fstat(f.fileno())
        try:
            for n in range(1, count + 1):
                free.acquire()
                failed = next((s for s in sent if s.done() and s.exception()), None)
                if failed is not None:
                    failed.result()  # a part was refused: stop reading, raise its error
                buf = _read_part(f, min(part, entry.size - (n - 1) * part), entry.size,
                                 sha, md5_all, helper)
                fut = pool.submit(_put_part, entry.key, upload_id, n, buf)
                fut.add_done_callback(lambda _: free.release())
                sent.append(fut)
            after = os.fstat(f.fileno())
            if f.read(1) or after.st_size != entry.size:
                raise changed(entry.size, "it grew while it was read")
            if after.st_mtime_ns != before.st_mtime_ns:
                raise changed(entry.size, "it was modified while it was read")
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise
        parts = [fut.result() for fut in sent]
    return sha.hexdigest(), md5_all.digest(), parts


def _read_part(f: BinaryIO, size: int, file_size: int, sha: Any, md5_all: Any,
               helper: ThreadPoolExecutor) -> bytearray:
    """The next ``size`` bytes of ``f``, fed to ``sha`` (on ``helper``) and ``md5_all``."""
    buf = bytearray(size)
    view = memoryview(buf)
    done = 0
    while done < size:
        n = f.readinto(view[done:done + BLOCK])
        if not n:
            raise changed(file_size, "it shrank while it was read")
        chunk = view[done:done + n]
        hashed = helper.submit(sha.update, chunk)
        md5_all.update(chunk)
        hashed.result()
        done += n
    return buf


def _put_part(key: str, upload_id: str, n: int, body: bytearray) -> tuple[str, bytes]:
    """On a part thread: send part ``n`` from its buffer -> (its ETag, its MD5)."""
    md5 = hashlib.md5(body).digest()
    headers = {"content-md5": base64.b64encode(md5).decode()}
    s3 = workers.client()
    # Content-MD5 guards the part; hashing it again for the signature would cost a pass.
    _, head, _ = with_retries(lambda: s3.request(
        "PUT", key, query={"partNumber": str(n), "uploadId": upload_id},
        headers=headers, body=body, payload_sha256="UNSIGNED-PAYLOAD"), s3)
    return checked_etag(head, md5.hex()), md5


def _attach_digests(entry: Entry, sha256: str, md5_b64: str) -> None:
    """Copy the completed object onto itself with its sha256 (and its whole-file MD5, which
    rclone reads as ``md5chksum``) in the metadata: the server copies, no byte is re-sent."""
    s3 = workers.client()
    headers = _meta_headers(entry.path, sha256, entry.mtime_ns)
    headers["x-amz-meta-md5chksum"] = md5_b64
    headers["x-amz-copy-source"] = quote(f"{s3.ep.bucket}/{entry.key}", safe="/~")
    headers["x-amz-metadata-directive"] = "REPLACE"
    # A 200 with an <Error> body (a copy failed late) is raised by ``request``.
    with_retries(lambda: s3.request("PUT", entry.key, headers=headers), s3)


def _complete(key: str, upload_id: str, etags: list[str], expected: str) -> str:
    """Complete the multipart upload -> the object's ETag, checked to be ``expected`` (the
    MD5 of the parts' MD5s, with their count)."""
    xml = "<CompleteMultipartUpload>" + "".join(
        f"<Part><PartNumber>{n}</PartNumber><ETag>\"{etag}\"</ETag></Part>"
        for n, etag in enumerate(etags, 1)) + "</CompleteMultipartUpload>"
    s3 = workers.client()
    _, head, done = with_retries(lambda: s3.request(
        "POST", key, query={"uploadId": upload_id}, body=xml.encode()), s3)
    if b"<Error>" in done:  # S3 can report a failed completion inside a 200
        raise S3Error(500, xml_text(done, "Code"), xml_text(done, "Message"))
    etag = xml_text(done, "ETag").strip('"').replace("&#34;", "").replace("&quot;", "")
    return checked_etag({**head, "etag": etag}, expected)
