"""What a file hashes to, and the ETag S3 gives it: the checksums that decide "already there".

Below the multipart threshold an object's ETag is the file's MD5; at or above it, the MD5 of
its parts' MD5s with ``-<count>``, parts cut at ``part_size_for(size)`` (deterministic, so a
re-run computes the same ETag as the run that uploaded the file).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from migrate.files.transfer import MIB
from migrate.files.walk import open_regular

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

    Raises OSError, or ``walk.Changed`` when the file is no longer a regular file.
    """
    sha = hashlib.sha256()
    if size < threshold:
        md5 = hashlib.md5()
        with open(open_regular(path), "rb") as f:
            while block := f.read(MIB):
                sha.update(block)
                md5.update(block)
        return sha.hexdigest(), md5.hexdigest()
    part = part_size_for(size)
    digests = []
    with open(open_regular(path), "rb") as f:
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


@dataclass
class LargeDigests:
    """Every digest a large upload needs, computed before it starts."""

    sha256: str
    md5_b64: str  # of the whole file
    part_md5s: list[bytes]  # each part's MD5 (its Content-MD5); empty: one streamed PUT


def large_digests(path: str, size: int, multipart: bool = True) -> LargeDigests:
    """Every digest a large upload needs, in one streamed read of the file.

    Done before the upload (the sha256 goes in the metadata, fixed at creation); the parts
    then carry these MD5s, so a file changed meanwhile is refused by the server (BadDigest)
    instead of stored under a sha256 that does not match it.
    """
    sha, whole = hashlib.sha256(), hashlib.md5()
    parts: list[bytes] = []
    with open(open_regular(path), "rb") as f:
        if not multipart:
            while block := f.read(4 * MIB):
                sha.update(block)
                whole.update(block)
            return LargeDigests(sha.hexdigest(), base64.b64encode(whole.digest()).decode(), [])
        part = part_size_for(size)
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
    return LargeDigests(sha.hexdigest(), base64.b64encode(whole.digest()).decode(), parts)
