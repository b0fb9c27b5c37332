"""``verify_sessions``: every source session is in Redis, as Flask-Session will read it, with a TTL
in tolerance.

It shares no mapping code with the export (``plan``, ``session_value``), so a bug there cannot
hide itself here. From each source record it works out on its own what the after-app must find:

- the key: ``SESSION_KEY_PREFIX + sid``, or the legacy prefix + the file digest;
- the data: the source session (read by the same bounded pickle reader as the export, since
  that is how the source is read) encoded and decoded by Flask-Session's own serializer, so
  its conversions (tuple -> list, datetime -> str) are expected and nothing else;
- the TTL: the session's remaining lifetime, or ``lifetime`` when it has no expiry;

and reads Redis the way Flask-Session 0.8's ``RedisSessionInterface`` does: GET the key, decode
it with the format's decoder, then the other one (Flask-Session's fallback; its last resort,
``pickle.loads``, is never tried here: such a value is reported). The same session in several
sources is checked once, as the copy that expires last (the one the export keeps).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec

from migrate.errors import UsageError
from migrate.sessions import compat
from migrate.sessions.plan import Options
from migrate.sessions.record import Record, pickle_failure, restricted_loads, short_id
from migrate.sessions.sources import open_source
from migrate.sessions.target import open_target

_DIGEST = re.compile(r"[0-9a-f]{32}|[0-9a-f]{64}")
_LATEST = 253402300799.0  # 9999-12-31T23:59:59Z


@dataclass
class Difference:
    session: str  # short id
    source: str
    problem: str


@dataclass
class VerifyResult:
    """Every source session present in Redis with equal data and a TTL within tolerance."""

    sources: list[str]
    redis: str
    checked: int = 0
    matching: int = 0
    expired: int = 0
    promoted: int = 0  # legacy records already promoted to their sid by the after-app
    unreadable: int = 0  # source sessions that could not be exported either (see export)
    differences: list[Difference] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.differences


@dataclass
class _Expected:
    """What the after-app must find for one source session."""

    key: bytes
    data: dict  # what Flask-Session reads back
    expires: float  # epoch seconds; inf: none
    ttl: float  # seconds, from when the record was read
    label: str
    source: str
    legacy: bool  # keyed by file digest: the after-app may have promoted it already


class _FlaskSessionCodec:
    """Flask-Session's serializer for one ``SESSION_SERIALIZATION_FORMAT``."""

    def __init__(self, fmt: str) -> None:
        try:
            self.encoder, self.decoders = compat.flask_session_codecs(fmt)
        except ValueError:
            raise UsageError(
                f"serializer {fmt!r} is unknown: use msgpack or json (as the app)") from None
        self.format = fmt

    def read(self, value: bytes) -> Any:
        """What Flask-Session's ``decode`` returns, or None when only pickle could read it."""
        for decoder in self.decoders:
            try:
                return decoder.decode(value)
            except msgspec.DecodeError:
                continue
        return None


def verify_sessions(
    sources: list[str],
    redis_url: str,
    *,
    token: str | None = None,
    cluster: bool = False,
    options: Options | None = None,
    tolerance: float = 60.0,
) -> VerifyResult:
    """Compare every source session with its Redis record (data equal, TTL within tolerance)."""
    options = options or Options()
    codec = _FlaskSessionCodec(options.serializer)
    opened = [open_source(s, token) for s in sources]
    target = open_target(redis_url, cluster)
    check = _Checker(VerifyResult([s.label for s in opened], target.label), codec, tolerance)
    started = time.monotonic()
    batch: list[_Expected] = []
    try:
        for source in opened:
            for record in source.records():
                expected = _expect(record, source.label, options, codec, check)
                if expected is not None:
                    batch.append(expected)
                if len(batch) >= options.batch:
                    check.batch(batch, target.read([e.key for e in batch]))
                    batch = []
        if batch:
            check.batch(batch, target.read([e.key for e in batch]))
    finally:
        target.close()
    result = check.result
    result.differences = list(check.differences.values())
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _expect(record: Record, source: str, options: Options, codec: _FlaskSessionCodec,
            check: _Checker) -> _Expected | None:
    """What Redis must hold for ``record``; None when nothing is to be found (counted)."""
    ident = record.sid or record.digest
    if record.error:
        return check.unreadable(ident, source, record.error)
    if record.sid:
        key, legacy = (options.key_prefix + record.sid).encode(), False
    elif record.digest and _DIGEST.fullmatch(record.digest):
        key, legacy = (options.legacy_prefix + record.digest).encode(), True
    else:
        return check.unreadable(ident, source, "record has neither a sid nor a hex digest")
    now = time.time()
    expires = record.expires or math.inf
    if not (expires <= _LATEST or expires == math.inf):
        return check.unreadable(ident, source, "expiry out of range")
    if expires <= now:
        check.result.expired += 1
        return None
    data = _source_data(record)
    if isinstance(data, str):
        return check.unreadable(ident, source, data)
    try:
        read = codec.decoders[0].decode(codec.encoder.encode(data))
    except Exception as exc:  # noqa: BLE001 - a type it lacks, a half-built value, too deep
        return check.unreadable(
            ident, source, f"Flask-Session's {codec.format} serializer cannot store it: {exc}")
    ttl = options.lifetime if expires == math.inf else expires - now
    return _Expected(key, read, expires, ttl, short_id(ident), source, legacy)


def _source_data(record: Record) -> dict | str:
    """The session dict a source record holds, or why it has none."""
    if record.pickle is not None:
        try:
            data = restricted_loads(record.pickle)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is this session's
            return pickle_failure(exc)
    else:
        data = record.data
    if not isinstance(data, dict):
        return f"not a session dict ({type(data).__name__})"
    return data


class _Checker:
    """Compares expected sessions with Redis's replies; the later copy of a duplicate wins."""

    def __init__(self, result: VerifyResult, codec: _FlaskSessionCodec, tolerance: float) -> None:
        self.result, self.codec, self.tolerance = result, codec, tolerance
        self.expires: dict[bytes, float] = {}  # key -> expiry of the copy checked
        self.differences: dict[bytes | str, Difference] = {}  # by key: a later copy replaces it
        self.matching: set[bytes] = set()

    def unreadable(self, ident: str | None, source: str, reason: str) -> None:
        self.result.unreadable += 1
        self.differences[f"unreadable {self.result.unreadable}"] = Difference(
            short_id(ident), source, f"cannot be exported: {reason}")

    def batch(self, batch: list[_Expected], replies: list[tuple[bytes | None, int]]) -> None:
        result = self.result
        for expected, (value, pttl) in zip(batch, replies, strict=True):
            earlier = self.expires.get(expected.key)
            if earlier is not None and expected.expires <= earlier:
                continue  # the copy already checked expires no sooner: the export kept that one
            if earlier is None:
                result.checked += 1
            self.expires[expected.key] = expected.expires
            self.differences.pop(expected.key, None)
            self.matching.discard(expected.key)
            if expected.legacy and value == b"":  # promoted by the after-app: a tombstone left
                result.promoted += 1
                continue
            problem = self.problem(expected, value, pttl)
            if problem:
                self.differences[expected.key] = Difference(expected.label, expected.source,
                                                            problem)
            else:
                self.matching.add(expected.key)
        result.matching = len(self.matching)

    def problem(self, expected: _Expected, value: bytes | None, pttl: int) -> str | None:
        """What is wrong with one session in Redis, or None."""
        if value is None:
            return "missing in Redis"
        stored = self.codec.read(value)
        if stored is None:
            return f"unreadable by Flask-Session's {self.codec.format} serializer"
        try:
            differs = stored != expected.data
        except RecursionError:
            differs = True
        if differs:
            if (isinstance(stored, dict) and "_permanent" in expected.data
                    and "_permanent" not in stored):
                return "data differs (_permanent lost)"
            return "data differs"
        got = pttl / 1000 if pttl and pttl > 0 else None
        if got is None or abs(got - expected.ttl) > self.tolerance:
            shown = "no TTL" if got is None else f"{got:.0f} s"
            return f"TTL {shown}, expected {expected.ttl:.0f} s ± {self.tolerance:.0f}"
        return None
