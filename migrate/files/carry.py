"""Chunked uploads in progress on a before-instance, carried into S3 multipart uploads.

A before-instance keeps an upload it is receiving as ``chunks/<id>/upload.json`` (filename,
user) beside ``00001.part``, ``00002.part``... Each becomes an S3 multipart upload of
``files/<id>/<filename>`` with the chunks as its parts, and its state is written to the
after-app's Redis (``upload:<id>`` and ``upload:<id>:parts``, as ``sample_stateless_app.uploads``
keeps it), so the client sends its next chunk to any after-instance. Without a Redis URL they
are listed by id with the reason, never dropped silently. What the folder holds is read from
outside: ``upload.json`` is bounded, the chunks must be regular files numbered 1..n, and each is
opened checked (``walk.open_regular``: never through a symlink, never waiting on a FIFO), so a
chunk swapped after its check is refused too.
"""

from __future__ import annotations

import base64
import hashlib
import json
import mimetypes
import os
import re
import stat
from dataclasses import dataclass
from typing import Any

from migrate import redact
from migrate.errors import ConnectionFailure
from migrate.files.digests import MAX_PARTS
from migrate.files.transfer import (
    RETRYABLE,
    Endpoint,
    RawS3,
    S3Error,
    checked_etag,
    with_retries,
    xml_text,
)
from migrate.files.walk import Changed, file_kind, open_regular
from migrate.keys import object_key

UPLOAD_TTL = 24 * 3600  # as sample_stateless_app.uploads: upload state expires after a day idle
PART_NAME = re.compile(r"^(\d{5})\.part$")
MAX_UPLOAD_JSON = 64 * 1024
CARRIED_STATUSES = ("carried", "already-carried", "planned")  # the others need a look


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


def connect_redis(redis_url: str, *, ping: bool = True) -> Any:
    """A client for the after-app's Redis; ConnectionFailure (password hidden) if it is down."""
    import redis

    from migrate import redisurl

    # Any URL the after-app takes: redis://, rediss://, a Cluster's or a Sentinel set's.
    client = redisurl.client(redis_url, socket_connect_timeout=3, socket_timeout=10)
    if ping:
        try:
            client.ping()
        except redis.exceptions.RedisError as exc:
            raise redis_failure(redis_url, exc) from None
    return client


def redis_failure(redis_url: str, exc: Exception) -> ConnectionFailure:
    return ConnectionFailure(f"cannot reach Redis at {redact.url(redis_url)} "
                             f"({type(exc).__name__}): check --redis")


def carry_uploads(chunk_dirs: list[str], ep: Endpoint, prefix: str, redis_url: str | None,
                  dry_run: bool) -> list[CarriedUpload]:
    """Each in-progress upload becomes an S3 multipart upload with its state in Redis.

    Per upload, a problem is reported in its status and reason; Redis failing is a
    ConnectionFailure (the state could not be published: a re-run carries it).
    """
    carried: list[CarriedUpload] = []
    seen: dict[str, str] = {}
    for folder in sorted(chunk_dirs):
        up = describe_upload(folder, prefix)
        if up.upload_id in seen:
            up.status, up.reason = "failed", f"the same upload id is also in {seen[up.upload_id]}"
        elif up.status != "failed" and dry_run:
            up.status = "planned"
        elif up.status != "failed" and not redis_url:
            up.status, up.reason = "listed", (
                "not carried over: pass --redis URL (the after-app's REDIS_URL); its chunks "
                "stay in the source folder")
        seen[up.upload_id] = folder
        carried.append(up)
    pending = [up for up in carried if up.status == "pending"]
    if pending and redis_url:
        _carry_all(pending, ep, redis_url)
    return carried


def _carry_all(pending: list[CarriedUpload], ep: Endpoint, redis_url: str) -> None:
    import redis

    redis_client = connect_redis(redis_url)
    try:
        for up in pending:
            try:
                _carry_one(up.source, up, ep, redis_client)
            except (S3Error, Changed, *RETRYABLE) as exc:
                up.status, up.reason = "failed", f"could not be carried over: {exc}"
    except redis.exceptions.RedisError as exc:
        raise redis_failure(redis_url, exc) from None
    finally:
        redis_client.close()


def describe_upload(folder: str, prefix: str) -> CarriedUpload:
    """What the folder holds: status "pending" if it can form a multipart upload, else
    "failed" with the reason."""
    upload_id = os.path.basename(folder)
    up = CarriedUpload(upload_id, folder, "", None, 0, 0, "", "failed")
    try:
        meta = _read_upload_json(os.path.join(folder, "upload.json"))
        up.filename, up.user_id = meta["filename"], int(meta["user_id"])
        up.key = object_key(f"files/{upload_id}/{up.filename}", prefix)
    except (OSError, ValueError, KeyError, TypeError, Changed) as exc:
        up.reason = f"upload.json cannot be read: {exc}"
        return up
    numbers = []
    try:
        for entry in os.scandir(folder):
            match = PART_NAME.match(entry.name)
            if match:
                st = entry.stat(follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode):
                    up.reason = (f"chunk {entry.name} is not a regular file "
                                 f"({file_kind(st.st_mode)}): not followed")
                    return up
                numbers.append(int(match.group(1)))
                up.size += st.st_size
    except OSError as exc:
        up.reason = f"the chunks cannot be read: {exc.strerror}"
        return up
    numbers.sort()
    if numbers != list(range(1, len(numbers) + 1)):
        up.reason = f"chunks are not 1..n (have {numbers[:5]}...): cannot form a multipart upload"
        return up
    if len(numbers) > MAX_PARTS:
        up.reason = f"{len(numbers):,} chunks: a multipart upload holds at most {MAX_PARTS:,}"
        return up
    up.chunks = len(numbers)
    up.status = "pending"
    return up


def _read_upload_json(path: str) -> dict:
    with open(open_regular(path, follow=False), "rb") as f:
        data = f.read(MAX_UPLOAD_JSON + 1)
    if len(data) > MAX_UPLOAD_JSON:
        raise ValueError(f"larger than {MAX_UPLOAD_JSON:,} bytes")
    meta = json.loads(data)
    if not isinstance(meta, dict) or not isinstance(meta.get("filename"), str):
        raise ValueError("not an object with a filename")
    return meta


def _carry_one(folder: str, up: CarriedUpload, ep: Endpoint, redis_client: Any) -> None:
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
        _, _, data = with_retries(lambda: s3.request(
            "POST", up.key, query={"uploads": ""},
            headers={"content-type": mimetypes.guess_type(up.filename)[0]
                     or "application/octet-stream"}), s3)
        multipart_id = xml_text(data, "UploadId")
        if not multipart_id:
            raise S3Error(500, "NoUploadId", "the server returned no multipart upload id")
        try:
            parts = {str(n): _put_chunk(s3, folder, up.key, multipart_id, n)
                     for n in range(1, up.chunks + 1)}
        except BaseException:
            _abort(s3, up.key, multipart_id)  # no Redis state names it: no client can use it
            raise
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


def _put_chunk(s3: RawS3, folder: str, key: str, multipart_id: str, n: int) -> str:
    """Send chunk ``n`` as part ``n`` -> "ETag size", as the after-app records a part."""
    name = f"{n:05d}.part"
    try:
        fd = open_regular(os.path.join(folder, name), follow=False)
    except Changed as exc:
        raise Changed(f"chunk {name} is {exc}") from None
    with open(fd, "rb") as f:
        body = f.read()
    md5 = hashlib.md5(body)
    headers = {"content-md5": base64.b64encode(md5.digest()).decode()}
    _, head, _ = with_retries(lambda: s3.request(
        "PUT", key, query={"partNumber": str(n), "uploadId": multipart_id},
        headers=headers, body=body), s3)
    checked_etag(head, md5.hexdigest())  # the part stored is the chunk sent
    return f"{head.get('etag', '')} {len(body)}"


def _abort_orphans(s3: RawS3, key: str) -> None:
    """Abort multipart uploads an earlier, killed run left for ``key`` (Redis never named
    them, so no client can be using them); best effort: not every server lists them."""
    try:
        _, _, data = s3.request("GET", None, query={"uploads": "", "prefix": key})
    except (S3Error, *RETRYABLE):
        return
    for block in re.findall(rb"<Upload>(.*?)</Upload>", data, flags=re.S):
        if xml_text(block, "Key") == key and (upload_id := xml_text(block, "UploadId")):
            _abort(s3, key, upload_id)


def _abort(s3: RawS3, key: str, upload_id: str) -> None:
    """Abort one multipart upload, best effort (a re-run's ``_abort_orphans`` tries again)."""
    try:
        s3.request("DELETE", key, query={"uploadId": upload_id})
    except (S3Error, *RETRYABLE):
        s3.close()
