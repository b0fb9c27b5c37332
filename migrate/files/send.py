"""Sending files: each file becomes one object, with its checksums checked by the server.

- below ``SMALL_MAX``: read whole in a worker process and sent in one PUT, batches of them
  spread over a few processes (``workers``);
- up to the multipart threshold (and ``BUFFER_MAX``): read once into memory, hashed as it is
  read, and sent from memory in one PUT: one read per byte;
- past ``BUFFER_MAX`` with a raised threshold: one PUT streamed from the file after a hashing
  pass (memory stays flat);
- at or above the threshold: a multipart upload, its parts in parallel, after one pass that
  computes every digest (sha256, the whole file's MD5, each part's MD5): S3 fixes an object's
  metadata, its sha256 included, when the upload is created, so the parts are read again.

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
from concurrent.futures import ThreadPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

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
    try:
        if entry.size < min(threshold, BUFFER_MAX + 1):
            body, digests = read_with_digests(entry.path, entry.size)
        else:
            digests = large_digests(entry.path, entry.size, multipart=entry.size >= threshold)
    except (OSError, Changed) as exc:
        record(FileRecord(entry.path, entry.key, entry.size, None, FAILED, _unread(exc)), entry)
        return
    _send_one_large(entry, digests, part_threads, record, body)


def _send_one_large(entry: Entry, digests: LargeDigests, part_threads: int,
                    record: RecordFn, body: bytearray | None = None) -> None:
    try:
        if digests.part_md5s:
            sha, etag = put_multipart(entry, digests, part_threads)
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


def put_multipart(entry: Entry, digests: LargeDigests, part_threads: int) -> tuple[str, str]:
    """Multipart upload, parts in parallel, memory bounded by threads x part size.

    Returns (sha256, ETags): some servers list a multipart object with its whole-file MD5
    (rclone's do), others with the md5-of-parts ETag; the state remembers both.
    """
    headers = _meta_headers(entry.path, digests.sha256, entry.mtime_ns)
    # rclone reads a multipart object's whole-file MD5 from this (its ETag is md5-of-parts).
    headers["x-amz-meta-md5chksum"] = digests.md5_b64
    s3 = workers.client()
    _, _, data = with_retries(lambda: s3.request(
        "POST", entry.key, query={"uploads": ""}, headers=headers), s3)
    upload_id = xml_text(data, "UploadId")
    if not upload_id:
        raise S3Error(500, "NoUploadId", "the server returned no multipart upload id")
    try:
        with ThreadPoolExecutor(part_threads) as pool:
            etags = list(pool.map(lambda n: _put_part(entry, digests, upload_id, n),
                                  range(1, len(digests.part_md5s) + 1)))
        parts_md5 = hashlib.md5(b"".join(digests.part_md5s)).hexdigest()
        etag = _complete(entry.key, upload_id, etags, f"{parts_md5}-{len(etags)}")
    except BaseException:
        try:
            s3.request("DELETE", entry.key, query={"uploadId": upload_id})
        except Exception:  # noqa: BLE001 - best effort; the original error matters
            pass
        raise
    return digests.sha256, f"{etag} {base64.b64decode(digests.md5_b64).hex()}"


def _put_part(entry: Entry, digests: LargeDigests, upload_id: str, n: int) -> str:
    """On a part thread: send part ``n`` -> its ETag."""
    part = part_size_for(entry.size)
    fd = open_regular(entry.path, entry.size)  # the size it was hashed at (else Changed)
    try:
        body = os.pread(fd, part, (n - 1) * part)
    finally:
        os.close(fd)
    if len(body) != min(part, entry.size - (n - 1) * part):
        raise changed(entry.size, "it shrank while it was sent")
    md5 = digests.part_md5s[n - 1]
    headers = {"content-md5": base64.b64encode(md5).decode()}
    s3 = workers.client()
    # Content-MD5 guards the part; hashing it again for the signature would cost a pass.
    _, head, _ = with_retries(lambda: s3.request(
        "PUT", entry.key, query={"partNumber": str(n), "uploadId": upload_id},
        headers=headers, body=body, payload_sha256="UNSIGNED-PAYLOAD"), s3)
    return checked_etag(head, md5.hex())


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
