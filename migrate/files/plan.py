"""Deciding, file by file, what is already in the bucket and what must be sent.

A listed object of the same size is confirmed by the state file (the same inode, size, mtime,
ctime and ETag as remembered: no read of the file), else by the file's checksum against the
listed ETag (or, for a multipart ETag made with another part size, the object's ``sha256``
metadata). One key found in two sources (two instances' folders) is sent once: equal content
is a duplicate, different content is superseded by the newest file. Two different names that
map to one key (``a\\b`` beside ``a/b``, NFC and NFD spellings) are a collision: each is
reported, none is sent.
"""

from __future__ import annotations

from migrate.files.digests import file_digests
from migrate.files.state import Known
from migrate.files.transfer import RETRYABLE, Endpoint, RawS3, S3Error
from migrate.files.walk import (
    DUPLICATE,
    FAILED,
    SKIPPED,
    SUPERSEDED,
    Changed,
    Entry,
    FileRecord,
    RecordFn,
    collided,
    collision,
)


def plan(entries: list[Entry], listing: dict[str, tuple[int, str]], state: dict[str, Known],
         threshold: int, record: RecordFn, ep: Endpoint,
         names: dict[str, str] | None = None) -> list[Entry]:
    """The entries to send; every other one is recorded (skipped, duplicate, superseded...).

    ``names``: ``Walk.names``, to tell a collision from one name on two instances.
    """
    by_key: dict[str, list[Entry]] = {}
    for entry in entries:
        by_key.setdefault(entry.key, []).append(entry)
    todo: list[Entry] = []
    heads = _Heads(ep)
    try:
        for key, group in by_key.items():
            if len(group) > 1 and collided(group, names or {}):
                for entry in group:
                    record(FileRecord(entry.path, key, entry.size, None, FAILED,
                                      collision(entry, group)), entry)
                continue
            entry = group[0] if len(group) == 1 else _one_of(group, threshold, record)
            listed = listing.get(key)
            if listed is None or listed[0] != entry.size:
                todo.append(entry)
                continue
            known = state.get(entry.path)
            if known and known.matches(entry) and listed[1] in known.etags.split():
                # Known already: no new state line (the file would only grow on every run).
                record(FileRecord(entry.path, key, entry.size, known.sha256, SKIPPED), entry)
            elif not _confirmed(entry, listed[1], threshold, record, heads):
                todo.append(entry)
    finally:
        heads.close()
    return todo


def _confirmed(entry: Entry, listed_etag: str, threshold: int, record: RecordFn,
               heads: _Heads) -> bool:
    """No state for this file (or it changed): compare its checksum with the object's.

    True when recorded (skipped, or failed to read); False when it must be sent.
    """
    try:
        sha, etag = file_digests(entry.path, entry.size, threshold)
    except (OSError, Changed) as exc:
        record(FileRecord(entry.path, entry.key, entry.size, None, FAILED, _unread(exc)), entry)
        return True
    same = etag == listed_etag
    if not same and ("-" in listed_etag or "-" in etag):
        # A multipart ETag made with another part size: ask the object's sha256 metadata.
        same = heads.sha256(entry.key) == sha
    if same:
        record(FileRecord(entry.path, entry.key, entry.size, sha, SKIPPED), entry, listed_etag)
    return same


class _Heads:
    """A connection for the occasional HEAD, opened on first use."""

    def __init__(self, ep: Endpoint) -> None:
        self.ep = ep
        self.client: RawS3 | None = None

    def sha256(self, key: str) -> str | None:
        """The object's sha256 metadata; None when absent or unreadable (then it is sent)."""
        self.client = self.client or RawS3(self.ep)
        try:
            status, head, _ = self.client.request("HEAD", key)
        except (S3Error, *RETRYABLE):
            self.client.close()
            return None
        return head.get("x-amz-meta-sha256") if status == 200 else None

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


def _one_of(group: list[Entry], threshold: int, record: RecordFn) -> Entry:
    """The same key from two instances: equal content is sent once; else the newest wins."""
    group = sorted(group, key=lambda e: e.mtime_ns, reverse=True)
    newest = group[0]
    try:
        want: str | None = file_digests(newest.path, newest.size, threshold)[0]
    except (OSError, Changed):
        want = None  # the newest is reported when it is sent; the others are still superseded
    for other in group[1:]:
        try:
            sha = file_digests(other.path, other.size, threshold)[0] if want else None
        except (OSError, Changed) as exc:
            record(FileRecord(other.path, other.key, other.size, None, FAILED, _unread(exc)),
                   other)
            continue
        if want is not None and sha == want:
            record(FileRecord(other.path, other.key, other.size, sha, DUPLICATE,
                              f"same content as {newest.path}"), other)
        else:
            record(FileRecord(other.path, other.key, other.size, sha, SUPERSEDED,
                              f"another instance has a newer file for this key: {newest.path}"),
                   other)
    return newest


def _unread(exc: OSError | Changed) -> str:
    """The reason a file could not be read, for its record."""
    return str(exc) if isinstance(exc, Changed) else f"cannot be read: {exc.strerror}"
