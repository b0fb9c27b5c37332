"""One session as a source gives it, its NDJSON line, and what Flask-Session will read of it.

The NDJSON dump format (also what a bridge streams), one JSON object per line::

    {"sid": "<sid>", "expires": 1767225600, "data": {"_permanent": true, "user_id": 1}}
    {"sid": "<sid>", "expires": 1767225600, "pickle": "<base64 of a pickled dict>"}
    {"digest": "<sha256 or md5 hex of 'session:<sid>'>", "expires": 0, "pickle": "..."}
    {"end": true, "count": 3}

A bridge ends a response after ``page_seconds`` with ``{"end": true, "count": n, "next": c}``;
the client asks again with ``?after=c`` (``c`` is a digest, never a sid).

``expires`` is epoch seconds (0 or absent: no expiry, the export's ``lifetime`` applies). Pickles
are read only by ``restricted_loads`` (``migrate.sessions.pickles``: an allowlist of classes, and
bounds on size, depth and node count). Session contents and full sids never leave this package:
failures name a ``short_id``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

from migrate.errors import UsageError

# The pickle reader's names, re-exported but loaded on first use: every `migrate` command
# imports this module (the CLI's shared options), few of them read a pickle.
_PICKLE_NAMES = ("ALLOWED_CLASSES", "DisallowedClass", "PickleRefused", "pickle_failure",
                 "restricted_loads")


def __getattr__(name: str) -> Any:
    if name in _PICKLE_NAMES:
        from migrate.sessions import pickles

        return getattr(pickles, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

DEFAULT_PREFIX = "session:"
LEGACY_PREFIX = "session-legacy:"
DEFAULT_LIFETIME = 31 * 24 * 3600  # Flask's PERMANENT_SESSION_LIFETIME default
HEX = re.compile(r"^(?:[0-9a-f]{32}|[0-9a-f]{64})$")


class Record(msgspec.Struct, omit_defaults=True):
    """One session as a source gives it (also one line of a dump or a bridge stream)."""

    sid: str | None = None
    digest: str | None = None  # hex digest of "session:<sid>" when the sid is unknown
    expires: float | None = None  # epoch seconds; None or 0: no expiry
    data: dict | None = None  # plain JSON-able session
    pickle: bytes | None = None  # a pickled dict, read only by restricted_loads
    error: str | None = None  # the source could not read this one (reason, no contents)
    end: bool = False  # trailer of a bridge stream
    count: int | None = None  # records the trailer announces
    next: str | None = None  # in a trailer: more follow, ask again with ?after=<next>


line_decoder = msgspec.json.Decoder(Record)


def short_id(text: str | None) -> str:
    """A short, stable, non-reversible name for a sid or digest: safe to print and log."""
    # surrogatepass: a file name that is not UTF-8 comes as surrogates, and still has a name.
    return "#" + hashlib.sha256((text or "").encode(errors="surrogatepass")).hexdigest()[:10]


def iter_dump_lines(records: Iterable[Record]) -> Iterator[bytes]:
    """NDJSON lines for records (what a bridge streams and a dump holds), trailer included."""
    encoder = msgspec.json.Encoder()
    count = 0
    for record in records:
        count += 1
        yield encoder.encode(record) + b"\n"
    yield encoder.encode(Record(end=True, count=count)) + b"\n"


# --- converting to what Flask-Session reads ------------------------------------------------------


def _kind(value: Any) -> str:
    return type(value).__name__


def changed_kinds(original: Any, decoded: Any) -> list[str]:
    """The types whose values a serializer round trip changed (datetime -> str, tuple -> list)."""
    if type(original) is dict and type(decoded) is dict:
        found: list[str] = []
        for key, value in original.items():
            other = decoded.get(key if key in decoded else str(key))
            found += changed_kinds(value, other)
        return found
    if type(original) is list and type(decoded) is list:
        return [k for a, b in zip(original, decoded, strict=False) for k in changed_kinds(a, b)]
    if original == decoded and type(original) is type(decoded):
        return []
    if isinstance(original, bytearray) and isinstance(decoded, bytes):
        return []
    if isinstance(original, (tuple, set, frozenset)) and isinstance(decoded, list):
        return [_kind(original)] + [
            k for a, b in zip(list(original), decoded, strict=False) for k in changed_kinds(a, b)
        ]
    return [_kind(original)]


class Serializer:
    """Flask-Session 0.8's serializer (``SESSION_SERIALIZATION_FORMAT``): msgpack or json."""

    def __init__(self, fmt: str = "msgpack") -> None:
        if fmt == "msgpack":
            self.encoder: Any = msgspec.msgpack.Encoder()
            self.decoder: Any = msgspec.msgpack.Decoder()
        elif fmt == "json":
            self.encoder = msgspec.json.Encoder()
            self.decoder = msgspec.json.Decoder()
        else:
            raise UsageError(f"serializer {fmt!r} is unknown: use msgpack or json (as the app)")
        self.format = fmt

    def encode(self, data: dict) -> bytes:
        return self.encoder.encode(data)

    def decode(self, value: bytes) -> Any:
        return self.decoder.decode(value)


class Unconvertible(Exception):
    """A session Flask-Session could not store or read; the message is the reason."""


def session_value(record: Record, serializer: Serializer) -> tuple[bytes, list[str], dict]:
    """(bytes to store, kinds converted, the dict Flask-Session will read) for one record."""
    trusted_plain = (record.pickle is None and record.data is not None
                     and serializer.format == "msgpack")
    if record.pickle is not None:
        from migrate.sessions.pickles import pickle_failure, restricted_loads

        try:
            data = restricted_loads(record.pickle)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is this session's
            raise Unconvertible(pickle_failure(exc)) from None
    else:
        data = record.data
    if not isinstance(data, dict):
        raise Unconvertible(f"not a session dict ({_kind(data)})")
    try:
        value = serializer.encode(data)
        if trusted_plain:
            # JSON values (str, int, float, bool, None, list, dict) survive msgpack unchanged.
            return value, [], data
        read = serializer.decode(value)
        if read == data:
            return value, [], read
        return value, changed_kinds(data, read), read
    except RecursionError:  # plain JSON may nest deeper than a pickle is allowed to
        raise Unconvertible(
            f"session nested too deep for Flask-Session's {serializer.format} serializer"
        ) from None
    except Exception as exc:  # noqa: BLE001 - also a half-built value (a UUID without its int)
        raise Unconvertible(
            f"Flask-Session's {serializer.format} serializer cannot store it: {exc}"
        ) from None
