"""How records map onto the after-app's Flask-Session keys, values and TTLs.

Export and verify share one ``Plan``, so they map every record alike: key ``SESSION_KEY_PREFIX +
sid`` (or ``legacy_prefix + digest`` for a FileSystemCache file), value the msgspec msgpack (or
json) of the plain session dict, expiry the session's remaining lifetime.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from migrate.errors import UsageError
from migrate.sessions.record import (
    DEFAULT_LIFETIME,
    DEFAULT_PREFIX,
    HEX,
    LEGACY_PREFIX,
    Record,
    Serializer,
    Unconvertible,
    session_value,
    short_id,
)
from migrate.sessions.target import Item

NO_EXPIRY = float("inf")
LATEST = 253402300799.0  # 9999-12-31T23:59:59Z: an expiry past it (or NaN) is not a time


@dataclass
class Options:
    """How records map onto the target app's Flask-Session configuration."""

    key_prefix: str = DEFAULT_PREFIX  # the after-app's SESSION_KEY_PREFIX
    legacy_prefix: str = LEGACY_PREFIX  # where digest-keyed (filesystem) records go
    serializer: str = "msgpack"  # the after-app's SESSION_SERIALIZATION_FORMAT
    lifetime: int = DEFAULT_LIFETIME  # TTL for sessions stored without expiry
    on_conflict: str = "skip"  # skip | overwrite
    batch: int = 1000


@dataclass
class Failure:
    """A session that was not written, and why (never its contents)."""

    source: str
    session: str  # short_id of its sid or digest
    reason: str


class Counts(Protocol):
    """What a plan counts into (``ExportResult`` has these fields)."""

    expired: int
    failed: int
    duplicates: int
    legacy: int
    converted: int
    converted_kinds: dict[str, int]
    failures: list[Failure]


class Plan:
    """Turns records into Items, counting what cannot be written into ``counts``."""

    def __init__(self, options: Options, counts: Counts) -> None:
        if options.on_conflict not in ("skip", "overwrite"):
            raise UsageError(
                f"--on-conflict {options.on_conflict!r} is unknown: use skip or overwrite"
            )
        self.options = options
        self.counts = counts
        self.serializer = Serializer(options.serializer)
        self.prefix = options.key_prefix.encode()
        self.legacy = options.legacy_prefix.encode()
        self.overwrite = options.on_conflict == "overwrite"
        self.seen: dict[bytes, float] = {}  # key -> expiry of the copy this run writes
        self.plain_msgpack = self.serializer.format == "msgpack"
        self.duplicates_seen = False  # set by item(); the export resets it per block
        self.dropped: str | None = None  # why item() last returned None: failed|expired|duplicate
        self.encode = self.serializer.encoder.encode

    def item(self, record: Record, source: str, now: float) -> tuple[Item, dict] | None:
        """The Item for ``record`` and the dict Flask-Session will read; None when it is not
        to be written (counted; ``dropped`` says why)."""
        ident = record.sid or record.digest
        if record.error:
            return self._fail(source, ident, record.error)
        key, overwrite = self._key(record)
        if key is None:
            return self._fail(source, ident, "record has neither a sid nor a hex digest")
        expires = record.expires or 0.0
        if not expires <= LATEST:  # NaN too
            return self._fail(source, ident, "expiry out of range (not a time before the year "
                                             "10000)")
        if expires:
            ttl_ms = int((max(expires, now) - now) * 1000)
            if ttl_ms <= 0:
                self.counts.expired += 1
                self.dropped = "expired"
                return None
        else:
            ttl_ms = self.options.lifetime * 1000
        try:
            value, read = self._value(record)
        except Unconvertible as exc:
            return self._fail(source, ident, str(exc))
        earlier = self.seen.get(key)
        if earlier is not None:
            self.duplicates_seen = True
            self.counts.duplicates += 1
            if (expires or NO_EXPIRY) <= earlier:
                self.dropped = "duplicate"
                return None
            overwrite = True  # a later save of a session this run already wrote
        self.seen[key] = expires or NO_EXPIRY
        if not record.sid:
            self.counts.legacy += 1
        return Item(key, value, ttl_ms, overwrite, ident, earlier is not None), read

    def _fail(self, source: str, ident: str | None, reason: str) -> None:
        """Count a session that cannot be written (named by its short id only)."""
        self.counts.failed += 1
        self.counts.failures.append(Failure(source, short_id(ident), reason))
        self.dropped = "failed"

    def _key(self, record: Record) -> tuple[bytes | None, bool]:
        """(key, overwrite an existing key) for a record; no key without a sid or hex digest."""
        if record.sid:
            return self.prefix + record.sid.encode(), self.overwrite
        if record.digest and HEX.match(record.digest):
            # A legacy record that exists is the same file or one already promoted (an empty
            # tombstone): writing it again could resurrect a session the user has since ended.
            return self.legacy + record.digest.encode(), False
        return None, False

    def _value(self, record: Record) -> tuple[bytes, dict]:
        """(bytes to store, the dict Flask-Session will read); counts converted values."""
        try:
            if self.plain_msgpack and record.data is not None and record.pickle is None:
                # JSON values (str, int, float, bool, None, list, dict) survive msgpack as they
                # are: nothing to convert or compare. The common case, kept short.
                return self.encode(record.data), record.data
            value, kinds, read = session_value(record, self.serializer)
        except (TypeError, OverflowError, ValueError) as exc:
            raise Unconvertible(
                f"Flask-Session's msgpack serializer cannot store it: {exc}") from None
        except RecursionError:
            raise Unconvertible("session nested too deep for Flask-Session's serializer") from None
        if kinds:
            self.counts.converted += 1
            for kind in kinds:
                self.counts.converted_kinds[kind] = self.counts.converted_kinds.get(kind, 0) + 1
        return value, read

    def items(self, block: list[Record], source: str, now: float) -> list[Item]:
        """``item`` for a block; plain JSON sessions take a short path (the common case)."""
        out: list[Item] = []
        append = out.append
        if not self.plain_msgpack:
            for record in block:
                planned = self.item(record, source, now)
                if planned is not None:
                    append(planned[0])
            return out
        encode, prefix, seen, overwrite = self.encode, self.prefix, self.seen, self.overwrite
        for r in block:
            if (r.sid and r.data is not None and r.expires and r.pickle is None
                    and r.error is None and now < r.expires <= LATEST):
                ttl_ms = int((r.expires - now) * 1000)
                key = prefix + r.sid.encode()
                if ttl_ms > 0 and key not in seen:
                    try:
                        value = encode(r.data)
                    except (TypeError, OverflowError, ValueError, RecursionError):
                        pass  # the long path reports it
                    else:
                        seen[key] = r.expires
                        append(Item(key, value, ttl_ms, overwrite, r.sid))
                        continue
            planned = self.item(r, source, now)
            if planned is not None:
                append(planned[0])
        return out
