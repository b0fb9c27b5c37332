"""What a file hashes to, and the ETag S3 gives it: the checksums that decide "already there".

Below the multipart threshold an object's ETag is the file's MD5; at or above it, the MD5 of
its parts' MD5s with ``-<count>``, parts cut at ``part_size_for(size)`` (deterministic, so a
re-run computes the same ETag as the run that uploaded the file).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

from migrate.files.transfer import MIB
from migrate.files.walk import changed, open_regular

DEFAULT_THRESHOLD = 64 * MIB  # multipart at or above this size
MIN_PART = 8 * MIB
MAX_PARTS = 10_000


def part_size_for(size: int) -> int:
    """Deterministic part size: MIN_PART, doubled until the file fits in MAX_PARTS parts."""
    part = MIN_PART
    while part * MAX_PARTS < size:
        part *= 2
    return part


def file_digests(path: str, size: int, threshold: int) -> tuple[str, str]:
    """(sha256 hex, the ETag S3 gives this file: plain MD5, or md5-of-parts for multipart).

    Raises OSError, or ``walk.Changed`` when the file is no longer a regular file of ``size``
    bytes.
    """
    if size < threshold:
        sha, whole, _ = _read_digests(path, size, 0, MIB)
        return sha, whole.hex()
    sha, _, parts = _read_digests(path, size, part_size_for(size), MIB, whole=False)
    return sha, f"{hashlib.md5(b''.join(parts)).hexdigest()}-{len(parts)}"


def _read_digests(path: str, size: int, part: int, block: int,
                  whole: bool = True) -> tuple[str, bytes, list[bytes]]:
    """(sha256 hex, the whole file's MD5 (if ``whole``), each ``part``'s MD5 (if ``part``)),
    in one read of exactly ``size`` bytes."""
    sha, md5_all = hashlib.sha256(), hashlib.md5() if whole else None
    parts: list[bytes] = []
    md5, left = hashlib.md5(), part
    for data in _exactly(path, size, block):
        sha.update(data)
        if md5_all is not None:
            md5_all.update(data)
        view = memoryview(data)
        while part and view:
            n = min(left, len(view))
            md5.update(view[:n])
            view, left = view[n:], left - n
            if not left:
                parts.append(md5.digest())
                md5, left = hashlib.md5(), part
    if part and (left < part or not parts):
        parts.append(md5.digest())
    return sha.hexdigest(), md5_all.digest() if md5_all is not None else b"", parts


def _exactly(path: str, size: int, block: int) -> Iterator[bytes]:
    """The file's ``size`` bytes in blocks; ``walk.Changed`` if it is not that size any more
    (or shrinks or grows while it is read): what is hashed is what will be sent."""
    with open(open_regular(path, size), "rb", buffering=0) as f:
        left = size
        while left:
            data = f.read(min(block, left))
            if not data:
                raise changed(size, "it shrank while it was read")
            left -= len(data)
            yield data
        if f.read(1):
            raise changed(size, "it grew while it was read")


@dataclass
class LargeDigests:
    """Every digest a large upload needs, computed before it starts."""

    sha256: str
    md5_b64: str  # of the whole file
    part_md5s: list[bytes]  # each part's MD5 (its Content-MD5); empty: one streamed PUT


def read_with_digests(path: str, size: int, block: int = 4 * MIB) -> tuple[bytearray, LargeDigests]:
    """The file's ``size`` bytes and their digests (sha256 and MD5), in ONE read of the file.

    Each block is hashed as it arrives, while it is still in the CPU cache, the sha256 on a
    helper thread beside the MD5 (hashlib lets go of the GIL), and the bytes are sent from
    memory afterwards: what is sent is exactly what was hashed, read once. ``walk.Changed``
    when the file is not ``size`` bytes any more, or shrinks or grows while it is read.
    """
    from concurrent.futures import ThreadPoolExecutor

    buf = bytearray(size)
    view = memoryview(buf)
    md5, sha = hashlib.md5(), hashlib.sha256()
    with open(open_regular(path, size), "rb", buffering=0) as f, ThreadPoolExecutor(1) as helper:
        done = 0
        while done < size:
            n = f.readinto(view[done:done + block])
            if not n:
                raise changed(size, "it shrank while it was read")
            chunk = view[done:done + n]
            hashed = helper.submit(sha.update, chunk)
            md5.update(chunk)
            hashed.result()
            done += n
        if f.read(1):
            raise changed(size, "it grew while it was read")
    return buf, LargeDigests(sha.hexdigest(), base64.b64encode(md5.digest()).decode(), [])


def large_digests(path: str, size: int, multipart: bool = True) -> LargeDigests:
    """Every digest a large upload needs, in one streamed read of the file.

    Done before the upload (the sha256 goes in the metadata, fixed at creation); the parts
    then carry these MD5s, so a file changed meanwhile is refused by the server (BadDigest)
    instead of stored under a sha256 that does not match it; a file of another size by now is
    refused before a byte is sent (``walk.Changed``).
    """
    part = part_size_for(size) if multipart else 0
    sha, whole, parts = _read_digests(path, size, part, 4 * MIB)
    return LargeDigests(sha, base64.b64encode(whole).decode(), parts)
