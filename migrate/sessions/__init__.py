"""Session sources -> Flask-Session records in Redis (``migrate export-sessions``).

A *source* yields ``Record``s: a running instance's bridge (``migrate.sessions.bridge``), a cachelib
``FileSystemCache`` directory, or an NDJSON dump. Each record becomes exactly what Flask-Session
0.8's ``RedisSessionInterface`` reads: key ``SESSION_KEY_PREFIX + sid``, value the msgspec
msgpack (or json) of the plain session dict, expiry the session's remaining lifetime.

The NDJSON dump format (also what a bridge streams), one JSON object per line::

    {"sid": "<sid>", "expires": 1767225600, "data": {"_permanent": true, "user_id": 1}}
    {"sid": "<sid>", "expires": 1767225600, "pickle": "<base64 of a pickled dict>"}
    {"digest": "<sha256 or md5 hex of 'session:<sid>'>", "expires": 0, "pickle": "..."}
    {"end": true, "count": 3}

A bridge ends a response after ``page_seconds`` with ``{"end": true, "count": n, "next": c}``;
the client asks again with ``?after=c`` (``c`` is a digest, never a sid).

``expires`` is epoch seconds (0 or absent: no expiry, ``lifetime`` applies). A ``digest`` record
comes from a FileSystemCache file, whose sid is unknown: it is written under ``legacy_prefix +
digest`` and promoted to ``session:<sid>`` by the after-app's ``RedisSessionInterface``
(``migrate.sessions.bridge``) on the user's next request. Pickles are read only by
``restricted_loads``.

Session contents and full sids never leave this module: failures name a ``short_id``.
"""

from __future__ import annotations

import _compat_pickle
import gc
import hashlib
import io
import os
import pickle
import re
import struct
import time
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

from migrate import redact
from migrate.errors import ConnectionFailure, MigrateError, UsageError
from migrate.procs import die_with_parent

DEFAULT_PREFIX = "session:"
LEGACY_PREFIX = "session-legacy:"
DEFAULT_LIFETIME = 31 * 24 * 3600  # Flask's PERMANENT_SESSION_LIFETIME default
BRIDGE_PATH = "/_migrate/sessions"
HEX = re.compile(r"^(?:[0-9a-f]{32}|[0-9a-f]{64})$")
# FileSystemCache keeps its item count in a file named after the digest of this key.
_COUNT_FILES = {hashlib.sha256(b"__wz_cache_count").hexdigest(),
                hashlib.md5(b"__wz_cache_count").hexdigest()}
_TMP_SUFFIX = ".__wz_cache"


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


_line_decoder = msgspec.json.Decoder(Record)


def short_id(text: str | None) -> str:
    """A short, stable, non-reversible name for a sid or digest: safe to print and log."""
    return "#" + hashlib.sha256((text or "").encode()).hexdigest()[:10]


# --- reading pickles safely ----------------------------------------------------------------------

ALLOWED_CLASSES = {
    ("builtins", name)
    for name in ("dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray",
                 "int", "float", "bool", "complex", "NoneType")
} | {
    ("datetime", name) for name in ("datetime", "date", "time", "timedelta", "timezone")
} | {("decimal", "Decimal"), ("uuid", "UUID"), ("uuid", "SafeUUID"),
     ("copyreg", "_reconstructor"), ("builtins", "object"), ("_codecs", "encode"),
     ("markupsafe", "Markup")}
# copyreg._reconstructor + object: how protocol 0/1 pickles rebuild plain objects, and
# _codecs.encode: how protocols 0-2 spell bytes; harmless alone, and any class they rebuild
# goes through find_class too. Markup (a str) is read so the report can say the real problem:
# Flask-Session's serializer cannot store it.


def _sized(kind: type) -> Any:
    # bytes(10**12) is a call a hostile pickle could make (no real pickle does): refuse sizes.
    def make(*args: Any) -> Any:
        if args and isinstance(args[0], int):
            raise pickle.UnpicklingError(f"{kind.__name__}(<size>) is not allowed")
        return kind(*args)

    return make


_SAFE = {("builtins", "bytes"): _sized(bytes), ("builtins", "bytearray"): _sized(bytearray)}


class DisallowedClass(pickle.UnpicklingError):
    """A pickle names a class outside the allowlist."""


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        # Protocol 0-2 pickles name Python 2 modules (__builtin__, copy_reg): compare the
        # Python 3 names that super().find_class would resolve them to.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in _SAFE:
            return _SAFE[(module, name)]
        if (module, name) in ALLOWED_CLASSES:
            return super().find_class(module, name)
        raise DisallowedClass(f"disallowed pickle class {module}.{name}")


def restricted_loads(data: bytes) -> Any:
    """Unpickle builtin, datetime, Decimal and UUID values only; anything else raises."""
    return _RestrictedUnpickler(io.BytesIO(data)).load()


def pickle_failure(exc: BaseException) -> str:
    """A reason for an unreadable pickle that quotes none of its bytes."""
    if isinstance(exc, DisallowedClass):
        return str(exc)
    if isinstance(exc, EOFError) or "truncated" in str(exc):
        return "truncated pickle"
    return f"corrupt pickle ({type(exc).__name__})"


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
    except (TypeError, OverflowError, ValueError) as exc:
        raise Unconvertible(
            f"Flask-Session's {serializer.format} serializer cannot store it: {exc}"
        ) from None
    if trusted_plain:
        # JSON values (str, int, float, bool, None, list, dict) survive msgpack unchanged.
        return value, [], data
    read = serializer.decode(value)
    if read == data:
        return value, [], read
    return value, changed_kinds(data, read), read


# --- sources -------------------------------------------------------------------------------------


@dataclass
class Source:
    """Where records come from; ``records()`` yields them, ``total`` is known for some."""

    label: str
    kind: str  # bridge | directory | dump
    records: Callable[[], Iterator[Record]]
    total: int | None = None
    native_blocks: Callable[[], Iterator[list[Record]]] | None = None

    def blocks(self, size: int = 1024) -> Iterator[list[Record]]:
        """The records in lists, to be handled a block at a time (the export's hot loop)."""
        if self.native_blocks is not None:
            yield from self.native_blocks()
            return
        block: list[Record] = []
        for record in self.records():
            block.append(record)
            if len(block) >= size:
                yield block
                block = []
        if block:
            yield block


Part = tuple[int, int] | None  # (worker, workers): a worker reads only the sessions it owns


def _owner(ident: str | None, workers: int) -> int:
    # Every session belongs to exactly one worker, whichever source and line it comes from,
    # so duplicates still meet in one place.
    return zlib.crc32((ident or "").encode()) % workers


def directory_records(path: Path, part: Part = None) -> Iterator[Record]:
    """The sessions of a cachelib FileSystemCache directory (``SESSION_TYPE='filesystem'``)."""
    with os.scandir(path) as entries:
        names = sorted(e.name for e in entries if e.is_file())
    if part is not None:
        names = [n for n in names if _owner(n, part[1]) == part[0]]
    for name in names:
        if name in _COUNT_FILES or name.endswith(_TMP_SUFFIX):
            continue
        if not HEX.match(name):
            yield Record(digest=name, error="not a FileSystemCache file (name is not a digest)")
            continue
        try:
            raw = (path / name).read_bytes()
        except FileNotFoundError:
            continue  # expired and removed by the app while we listed: nothing to move
        except OSError as exc:
            yield Record(digest=name, error=f"unreadable file ({exc.strerror})")
            continue
        if len(raw) < 5:
            yield Record(digest=name, error="corrupt file (shorter than its expiry header)")
            continue
        (expires,) = struct.unpack("I", raw[:4])
        yield Record(digest=name, expires=float(expires), pickle=raw[4:])


class _Peek(msgspec.Struct):
    """Just a line's identity: decoding it skips the session data without building it."""

    sid: str | None = None
    digest: str | None = None


_peek_decoder = msgspec.json.Decoder(_Peek)


def _own_lines(block: list[bytes], part: tuple[int, int], number: int) -> list[bytes]:
    """The lines of ``block`` whose session this worker owns (see ``_owner``)."""
    me, workers = part
    mine: list[bytes] = []
    others: list[bytes] = []
    crc32 = zlib.crc32
    for line in block:
        # Most lines start with the sid: read it without decoding the line (every worker
        # looks at every line, so this must cost far less than the decode it saves).
        if line.startswith(b'{"sid":"'):
            ident = line[8:line.find(b'"', 8)]
            if b"\\" not in ident:
                if crc32(ident) % workers == me:
                    mine.append(line)
                continue
        others.append(line)
    for line in others:
        if not line.strip():
            continue
        try:
            peek = _peek_decoder.decode(line)
            owner = _owner(peek.sid or peek.digest, workers)
        except msgspec.DecodeError:
            owner = crc32(line) % workers  # a bad line is reported by exactly one worker
        if owner == me:
            mine.append(line)
    return mine


def dump_records(path: Path, part: Part = None) -> Iterator[Record]:
    """The records of an NDJSON dump (a saved bridge stream, or written by any tool)."""
    for block in dump_blocks(path, part):
        yield from block


def dump_blocks(path: Path, part: Part = None) -> Iterator[list[Record]]:
    """``dump_records`` a 4 MiB block of lines at a time."""
    if part is None:
        yield from _dump_chunks(path)
        return
    with open(path, "rb") as handle:
        number = 0
        while True:
            block = handle.readlines(4 * 1024 * 1024)
            if not block:
                return
            if part is not None:
                count = len(block)
                block = _own_lines(block, part, number)
                number += count - len(block)  # line numbers in reports stay approximate
            try:
                records = _line_decoder.decode_lines(b"".join(block))
            except msgspec.DecodeError:
                records = _decode_one_by_one(block, number)
            number += len(block)
            yield [r for r in records if not r.end]  # trailers of saved bridge streams


def _dump_chunks(path: Path) -> Iterator[list[Record]]:
    # Whole 4 MiB reads cut at the last newline: no list of lines to build when all is well.
    with open(path, "rb") as handle:
        number, rest = 0, b""
        while True:
            data = handle.read(4 * 1024 * 1024)
            chunk = rest + data
            if not data:
                cut = len(chunk)
            else:
                cut = chunk.rfind(b"\n") + 1
                if cut == 0:
                    rest = chunk
                    continue
            chunk, rest = chunk[:cut], chunk[cut:]
            if chunk.strip():
                try:
                    records = _line_decoder.decode_lines(chunk)
                except msgspec.DecodeError:
                    records = _decode_one_by_one(chunk.split(b"\n"), number)
                yield [r for r in records if not r.end]  # trailers of saved bridge streams
            number += chunk.count(b"\n")
            if not data:
                return


def _decode_one_by_one(lines: list[bytes], number: int) -> list[Record]:
    records = []
    for offset, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(_line_decoder.decode(line))
        except msgspec.DecodeError as exc:
            reason = str(exc).split(" - ")[0][:80]
            records.append(Record(error=f"line {number + offset + 1} is not a record ({reason})"))
    return records


def bridge_records(url: str, token: str | None, timeout: float = 30.0) -> Iterator[Record]:
    """Stream a running instance's sessions from its bridge (``migrate.sessions.bridge``)."""
    import requests

    endpoint = url.rstrip("/") + BRIDGE_PATH
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    after: str | None = None
    while True:
        trailer = yield from _bridge_page(requests, endpoint, redact.url(url), headers, after,
                                          timeout)
        if not trailer.next:
            return
        after = trailer.next


def _bridge_page(requests: Any, endpoint: str, url: str, headers: dict, after: str | None,
                 timeout: float) -> Generator[Record, None, Record]:
    """One response of a bridge (it pages long streams); returns its trailer."""
    try:
        response = requests.get(endpoint, headers=headers, stream=True, timeout=timeout,
                                params={"after": after} if after else None)
    except requests.RequestException as exc:
        raise ConnectionFailure(
            f"cannot reach the instance at {url} ({type(exc).__name__}): start it, or check --from"
        ) from None
    with response:
        if response.status_code == 401:
            raise UsageError(
                f"the bridge at {url} refused the token (HTTP 401): pass the instance's "
                "MIGRATE_BRIDGE_TOKEN with --token or the MIGRATE_BRIDGE_TOKEN variable"
            )
        if response.status_code == 404:
            raise UsageError(
                f"no session bridge at {url} (HTTP 404): add "
                "migrate.sessions.bridge.MigrationBridge to the app and set MIGRATE_BRIDGE_TOKEN, "
                "then restart it"
            )
        if response.status_code != 200:
            raise ConnectionFailure(f"the bridge at {url} answered HTTP {response.status_code}")
        trailer = None
        try:
            for line in response.iter_lines(chunk_size=256 * 1024):
                if not line:
                    continue
                record = _line_decoder.decode(line)
                if record.end:
                    trailer = record
                    continue
                yield record
        except (requests.RequestException, msgspec.DecodeError) as exc:
            raise ConnectionFailure(
                f"the session stream from {url} broke off ({type(exc).__name__}): "
                "re-run, the export is idempotent"
            ) from None
        if trailer is None:
            raise ConnectionFailure(
                f"the session stream from {url} ended early: re-run, the export is idempotent"
            )
        return trailer


def open_source(spec: str, token: str | None = None, part: Part = None) -> Source:
    """A bridge URL, a FileSystemCache directory or an NDJSON dump file."""
    if spec.startswith(("http://", "https://")):
        return Source(redact.url(spec), "bridge", lambda: bridge_records(spec, token))
    path = Path(spec)
    if path.is_dir():
        total = sum(1 for _ in os.scandir(path))
        return Source(spec, "directory", lambda: directory_records(path, part), total)
    if path.is_file():
        return Source(spec, "dump", lambda: dump_records(path, part),
                      native_blocks=lambda: dump_blocks(path, part))
    raise UsageError(
        f"{spec!r} is not a source: give a bridge URL (http://HOST:PORT), a FileSystemCache "
        "directory or an NDJSON dump file"
    )


# --- targets -------------------------------------------------------------------------------------


def is_cluster_url(url: str) -> bool:
    return urlsplit(url).scheme in ("redis+cluster", "rediss+cluster")


def redis_client(url: str, cluster: bool = False, **options: Any) -> Any:
    """A redis-py client for ``url``: a ``RedisCluster`` for ``redis+cluster://`` or ``cluster``."""
    import redis
    from redis.cluster import RedisCluster

    options.setdefault("socket_connect_timeout", 3)
    options.setdefault("socket_timeout", 30)
    if is_cluster_url(url):
        url, cluster = url.replace("+cluster", "", 1), True
    try:
        if cluster:
            return RedisCluster.from_url(url, **options)
        return redis.Redis.from_url(url, **options)
    except (redis.exceptions.RedisError, ValueError, OSError) as exc:
        raise ConnectionFailure(
            f"cannot reach Redis{' Cluster' if cluster else ''} at {redact.url(url)} "
            f"({type(exc).__name__}): start it, or fix --redis"
        ) from None


class Item(msgspec.Struct, gc=False):
    """One record ready to write (a Struct: made 100,000s of times, in C, not GC-tracked)."""

    key: bytes
    value: bytes
    ttl_ms: int
    overwrite: bool
    ident: str | None  # sid or digest: only ever shown as short_id(ident)
    duplicate: bool = False

    @property
    def label(self) -> str:
        return short_id(self.ident)


class RedisTarget:
    """Batched writes to one Redis server over its raw socket (one round trip per batch).

    redis-py's pipeline spends more CPU per command than Redis does; building RESP here and
    counting one-line replies is what makes the export far faster than a SET loop.
    """

    def __init__(self, client: Any, label: str) -> None:
        self.client = client
        self.label = label
        self._conn: Any = None
        self._buf = bytearray()

    def _connection(self) -> Any:
        if self._conn is None:
            self._conn = self.client.connection_pool.get_connection()
            self._conn.connect()
        return self._conn

    def write(self, items: list[Item]) -> list[str]:
        """'written', 'exists' or an error reply per item, in order."""
        self.send(items)
        return self.receive(items)

    def send(self, items: list[Item]) -> None:
        """Send a batch; its replies are read by ``receive``, so Redis works on one batch
        while the next is being prepared."""
        parts = []
        for it in items:
            ttl = b"%d" % it.ttl_ms
            if it.overwrite:
                parts.append(b"*5\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n$2\r\nPX\r\n$%d\r\n%b\r\n"
                             % (len(it.key), it.key, len(it.value), it.value, len(ttl), ttl))
            else:
                parts.append(
                    b"*6\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n$2\r\nPX\r\n$%d\r\n%b\r\n$2\r\nNX\r\n"
                    % (len(it.key), it.key, len(it.value), it.value, len(ttl), ttl))
        self._connection()._sock.sendall(b"".join(parts))

    def receive(self, items: list[Item]) -> list[str]:
        """The outcomes of the oldest batch sent and not yet received."""
        sock = self._connection()._sock
        count = len(items)
        buf = self._buf  # may already hold replies to the next batch: keep them
        # Every reply to SET is one line: +OK, a nil ($-1 or _), or -ERROR.
        while buf.count(b"\r\n") < count:
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("connection closed")
            buf += chunk
        ok = b"+OK\r\n" * count
        if buf.startswith(ok):  # the usual case: every SET done, no need to look line by line
            self._buf = buf[len(ok):]
            return ["written"] * count
        lines = bytes(buf).split(b"\r\n", count)
        self._buf = bytearray(lines.pop())
        outcomes = []
        for line in lines:
            if line == b"+OK":
                outcomes.append("written")
            elif line in (b"$-1", b"_"):
                outcomes.append("exists")
            else:
                outcomes.append("redis refused it: " + line[1:].decode(errors="replace")[:80])
        return outcomes

    def exists(self, keys: list[bytes]) -> list[bool]:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.exists(key)
        return [bool(n) for n in pipe.execute()]

    def read(self, keys: list[bytes]) -> list[tuple[bytes | None, int]]:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.get(key)
            pipe.pttl(key)
        flat = pipe.execute()
        return list(zip(flat[::2], flat[1::2], strict=True))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.disconnect()
            self._conn = None


class ClusterTarget(RedisTarget):
    """Batched writes to a Redis Cluster: redis-py groups the batch by node and slot."""

    def __init__(self, client: Any, label: str) -> None:
        super().__init__(client, label)
        self._outcomes: list[list[str]] = []

    def send(self, items: list[Item]) -> None:
        self._outcomes.append(self.write(items))

    def receive(self, items: list[Item]) -> list[str]:
        return self._outcomes.pop(0)

    def write(self, items: list[Item]) -> list[str]:
        pipe = self.client.pipeline()
        for it in items:
            pipe.set(it.key, it.value, px=it.ttl_ms, nx=not it.overwrite)
        outcomes = []
        for reply in pipe.execute(raise_on_error=False):
            if isinstance(reply, Exception):
                if _is_connection_error(reply):
                    raise reply
                outcomes.append(f"redis refused it: {str(reply)[:80]}")
            else:
                outcomes.append("written" if reply else "exists")
        return outcomes

    def close(self) -> None:
        self.client.close()


def _is_connection_error(exc: BaseException) -> bool:
    import redis

    return isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                            ConnectionError, OSError))


def open_target(url: str, cluster: bool = False) -> RedisTarget:
    """Connect (and PING) the Redis or Redis Cluster at ``url``; ConnectionFailure if down."""
    import redis

    client = redis_client(url, cluster)
    is_cluster = cluster or is_cluster_url(url)
    try:
        client.ping()
    except (redis.exceptions.RedisError, OSError) as exc:
        raise ConnectionFailure(
            f"cannot reach Redis{' Cluster' if is_cluster else ''} at {redact.url(url)} "
            f"({type(exc).__name__}): start it, or fix --redis"
        ) from None
    return (ClusterTarget if is_cluster else RedisTarget)(client, redact.url(url))


# --- export --------------------------------------------------------------------------------------


@dataclass
class Failure:
    """A session that was not written, and why (never its contents)."""

    source: str
    session: str  # short_id of its sid or digest
    reason: str


@dataclass
class ExportResult:
    """What ``export_sessions`` did. read = written + skipped + expired + failed + the
    duplicates dropped because an already written copy expires later."""

    sources: list[str]
    redis: str
    dry_run: bool
    on_conflict: str
    read: int = 0
    written: int = 0
    skipped: int = 0  # already in Redis (written by the new app, the bridge or a previous run)
    expired: int = 0
    failed: int = 0
    duplicates: int = 0  # the same session from two sources: the later-expiring one counts
    legacy: int = 0  # written under their file digest, promoted on the user's next request
    converted: int = 0  # sessions with values the serializer changes (as Flask-Session reads)
    converted_kinds: dict[str, int] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.failed == 0

    @property
    def rate(self) -> float:
        return self.read / self.seconds if self.seconds else 0.0


@dataclass
class Options:
    """How records map onto the target app's Flask-Session configuration."""

    key_prefix: str = DEFAULT_PREFIX  # the after-app's SESSION_KEY_PREFIX
    legacy_prefix: str = LEGACY_PREFIX  # where digest-keyed (filesystem) records go
    serializer: str = "msgpack"  # the after-app's SESSION_SERIALIZATION_FORMAT
    lifetime: int = DEFAULT_LIFETIME  # TTL for sessions stored without expiry
    on_conflict: str = "skip"  # skip | overwrite
    batch: int = 1000


class _Plan:
    """Turns records into Items, counting what cannot be written."""

    def __init__(self, options: Options, result: ExportResult) -> None:
        if options.on_conflict not in ("skip", "overwrite"):
            raise UsageError(
                f"--on-conflict {options.on_conflict!r} is unknown: use skip or overwrite"
            )
        self.options = options
        self.result = result
        self.serializer = Serializer(options.serializer)
        self.prefix = options.key_prefix.encode()
        self.legacy = options.legacy_prefix.encode()
        self.overwrite = options.on_conflict == "overwrite"
        self.seen: dict[bytes, float] = {}
        self.plain_msgpack = self.serializer.format == "msgpack"
        self.duplicates_seen = False
        self.encode = self.serializer.encoder.encode

    def fail(self, source: str, ident: str | None, reason: str) -> None:
        """Count a session that cannot be written (named by its short id only)."""
        self.result.failed += 1
        self.result.failures.append(Failure(source, short_id(ident), reason))

    def item(self, record: Record, source: str, now: float) -> tuple[Item, dict] | None:
        result = self.result
        ident = record.sid or record.digest
        if record.error:
            self.fail(source, ident, record.error)
            return None
        if record.sid:
            key = self.prefix + record.sid.encode()
            overwrite = self.overwrite
        elif record.digest and HEX.match(record.digest):
            key = self.legacy + record.digest.encode()
            # A legacy record that exists is the same file or one already promoted (an empty
            # tombstone): writing it again could resurrect a session the user has since ended.
            overwrite = False
        else:
            self.fail(source, ident, "record has neither a sid nor a hex digest")
            return None
        expires = record.expires or 0.0
        if expires:
            ttl_ms = int((expires - now) * 1000)
            if ttl_ms <= 0:
                result.expired += 1
                return None
        else:
            ttl_ms = self.options.lifetime * 1000
        try:
            if self.plain_msgpack and record.data is not None and record.pickle is None:
                # JSON values (str, int, float, bool, None, list, dict) survive msgpack as they
                # are: nothing to convert or compare. The common case, kept short.
                value, kinds, read = self.encode(record.data), None, record.data
            else:
                value, kinds, read = session_value(record, self.serializer)
        except (TypeError, OverflowError, ValueError) as exc:
            self.fail(source, ident, f"Flask-Session's msgpack serializer cannot store it: {exc}")
            return None
        except Unconvertible as exc:
            self.fail(source, ident, str(exc))
            return None
        if kinds:
            result.converted += 1
            for kind in kinds:
                result.converted_kinds[kind] = result.converted_kinds.get(kind, 0) + 1
        earlier = self.seen.get(key)
        duplicate = earlier is not None
        if duplicate:
            self.duplicates_seen = True
            result.duplicates += 1
            if (expires or float("inf")) <= earlier:
                return None
            overwrite = True  # a later save of a session this run already wrote
        self.seen[key] = expires or float("inf")
        if not record.sid:
            result.legacy += 1
        return Item(key, value, ttl_ms, overwrite, ident, duplicate), read


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
                    and r.error is None):
                ttl_ms = int((r.expires - now) * 1000)
                key = prefix + r.sid.encode()
                if ttl_ms > 0 and key not in seen:
                    try:
                        value = encode(r.data)
                    except (TypeError, OverflowError, ValueError):
                        pass  # the long path reports it
                    else:
                        seen[key] = r.expires
                        append(Item(key, value, ttl_ms, overwrite, r.sid))
                        continue
            planned = self.item(r, source, now)
            if planned is not None:
                append(planned[0])
        return out


ProgressFn = Callable[[str, int, int | None], None]  # (source label, records done, total)


def export_sessions(
    sources: list[str],
    redis_url: str,
    *,
    token: str | None = None,
    cluster: bool = False,
    options: Options | None = None,
    dry_run: bool = False,
    on_progress: ProgressFn | None = None,
    jobs: int | None = 1,
    _part: Part = None,
) -> ExportResult:
    """Copy every live session of ``sources`` into Redis in Flask-Session's format.

    Idempotent: with ``on_conflict='skip'`` a key already in Redis is left alone (the new app
    or the bridge wrote it, so it is newer) and a re-run writes nothing new. ``jobs`` > 1
    shares dump and directory sources out to that many processes (by a hash of the sid);
    ``None``: one per CPU (at most 4) for a large input, else one.
    """
    import redis

    options = options or Options()
    opened = [open_source(s, token, _part) for s in sources]
    if jobs is None:
        jobs = auto_jobs(opened)
    if jobs > 1 and all(s.kind != "bridge" for s in opened):
        return _export_in_parallel(sources, redis_url, cluster, options, dry_run, on_progress,
                                   jobs)
    target = open_target(redis_url, cluster)
    result = ExportResult([s.label for s in opened], target.label, dry_run, options.on_conflict)
    plan = _Plan(options, result)
    started = time.monotonic()
    pending: list[Item] = []
    inflight: list[tuple[list[Item], str]] = []  # sent, replies not read yet (at most one)
    pending_source = ""

    def account(batch: list[Item], source: str, outcomes: list[str]) -> None:
        written = outcomes.count("written")
        if written == len(batch):
            result.written += written
            return
        for it, outcome in zip(batch, outcomes, strict=True):
            if outcome == "written":
                result.written += 1
            elif outcome == "exists":
                result.skipped += 1
                plan.seen.pop(it.key, None)  # not ours: a later duplicate must not overwrite it
            else:
                result.failed += 1
                result.failures.append(Failure(source, it.label, outcome))

    def drain() -> None:
        while inflight:
            batch, source = inflight.pop(0)
            account(batch, source, target.receive(batch))

    def flush() -> None:
        if not pending:
            return
        batch = pending[:]
        pending.clear()
        if dry_run:
            found = target.exists([i.key for i in batch])
            account(batch, pending_source, [
                "exists" if (hit and not it.overwrite) else "written"
                for it, hit in zip(batch, found, strict=True)
            ])
            return
        target.send(batch)
        older, inflight[:] = inflight[:], [(batch, pending_source)]
        for sent, source in older:
            account(sent, source, target.receive(sent))

    # Millions of short-lived dicts and no reference cycles: the cyclic collector would only
    # rescan them (a fifth of the run time in the benchmark).
    collecting = gc.isenabled()
    gc.disable()
    try:
        for source in opened:
            pending_source = source.label
            done = 0
            for block in source.blocks(options.batch):
                result.read += len(block)
                done += len(block)
                plan.duplicates_seen = False
                items = plan.items(block, source.label, time.time())
                if not plan.duplicates_seen:
                    pending += items
                    if len(pending) >= options.batch:
                        flush()
                else:
                    for item in items:
                        if item.duplicate:
                            # The earlier copy must land, known as ours, before this replaces it.
                            flush()
                            drain()
                        pending.append(item)
                        if len(pending) >= options.batch:
                            flush()
                if on_progress:
                    on_progress(source.label, done, source.total)
            flush()
            drain()
            if on_progress:
                on_progress(source.label, done, source.total)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        raise ConnectionFailure(
            f"lost Redis at {target.label} after {result.written} sessions were written "
            f"({type(exc).__name__}): restart it and re-run, the export is idempotent"
        ) from None
    finally:
        if collecting:
            gc.enable()
        target.close()
    result.seconds = round(time.monotonic() - started, 3)
    return result


def auto_jobs(sources: list[Source]) -> int:
    """Processes worth starting: decoding is CPU-bound, but small inputs are not worth a fork."""
    if any(s.kind == "bridge" for s in sources):
        return 1
    size = sum(Path(s.label).stat().st_size for s in sources if s.kind == "dump")
    files = sum(s.total or 0 for s in sources if s.kind == "directory")
    if size < 16 * 1024 * 1024 and files < 10_000:
        return 1
    return max(1, min(4, os.cpu_count() or 1))


def _export_worker(queue: Any, part: tuple[int, int], sources: list[str], redis_url: str,
                   cluster: bool, options: Options, dry_run: bool, parent_pid: int) -> None:
    die_with_parent(parent_pid)

    def progress(label: str, done: int, total: int | None) -> None:
        queue.put(("progress", part[0], label, done, total))

    try:
        result = export_sessions(sources, redis_url, cluster=cluster, options=options,
                                 dry_run=dry_run, on_progress=progress, _part=part)
        queue.put(("result", part[0], result))
    except MigrateError as exc:
        queue.put(("error", part[0], exc))
    except BaseException as exc:  # noqa: BLE001 - reported by the parent, one line
        queue.put(("error", part[0], MigrateError(f"export worker failed: {exc!r}")))


def _export_in_parallel(sources: list[str], redis_url: str, cluster: bool, options: Options,
                        dry_run: bool, on_progress: ProgressFn | None,
                        jobs: int) -> ExportResult:
    """Decoding and unpickling are CPU-bound: several processes, each owning a share of the
    sessions, keep the one Redis busier than one Python process can."""
    import multiprocessing

    open_target(redis_url, cluster).close()  # one clear error before any process starts
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    workers = [
        context.Process(target=_export_worker, daemon=True,
                        args=(queue, (i, jobs), sources, redis_url, cluster, options, dry_run,
                              os.getpid()))
        for i in range(jobs)
    ]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    results: list[ExportResult] = []
    errors: list[MigrateError] = []
    done: dict[tuple[str, int], int] = {}
    while len(results) + len(errors) < jobs:
        try:
            message = queue.get(timeout=1.0)
        except Exception:  # noqa: BLE001 - queue.Empty: check the workers are alive
            if any(w.exitcode not in (None, 0) for w in workers):
                errors.append(ConnectionFailure("an export worker died: re-run with --jobs 1"))
                break
            continue
        if message[0] == "progress":
            _, index, label, count, total = message
            done[(label, index)] = count
            if on_progress:
                on_progress(label, sum(n for (lbl, _), n in done.items() if lbl == label), total)
        elif message[0] == "result":
            results.append(message[2])
        else:
            errors.append(message[2])
    for worker in workers:
        worker.join(5)
        if worker.is_alive():
            worker.kill()
    if errors:
        raise errors[0]
    merged = ExportResult(results[0].sources, results[0].redis, dry_run, options.on_conflict)
    for part in results:
        for name in ("read", "written", "skipped", "expired", "failed", "duplicates", "legacy",
                     "converted"):
            setattr(merged, name, getattr(merged, name) + getattr(part, name))
        for kind, count in part.converted_kinds.items():
            merged.converted_kinds[kind] = merged.converted_kinds.get(kind, 0) + count
        merged.failures += part.failures
    merged.seconds = round(time.monotonic() - started, 3)
    return merged


# --- verify --------------------------------------------------------------------------------------


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
    opened = [open_source(s, token) for s in sources]
    target = open_target(redis_url, cluster)
    result = VerifyResult([s.label for s in opened], target.label)
    scratch = ExportResult([], "", True, "skip")
    plan = _Plan(options, scratch)
    started = time.monotonic()
    batch: list[tuple[Item, dict, float, str, bool]] = []

    def check() -> None:
        replies = target.read([b[0].key for b in batch])
        for (item, expected, want_ttl, label, legacy), (value, pttl) in zip(
            batch, replies, strict=True
        ):
            result.checked += 1
            if value is None:
                result.differences.append(Difference(item.label, label, "missing in Redis"))
                continue
            if legacy and value == b"":
                result.promoted += 1
                continue
            try:
                stored = plan.serializer.decode(value)
            except Exception:  # noqa: BLE001 - any undecodable value is a difference
                stored = None
            if stored != expected:
                result.differences.append(Difference(item.label, label, "data differs"))
                continue
            got = pttl / 1000 if pttl and pttl > 0 else None
            if got is None or abs(got - want_ttl) > tolerance:
                shown = "no TTL" if got is None else f"{got:.0f} s"
                result.differences.append(Difference(
                    item.label, label, f"TTL {shown}, expected {want_ttl:.0f} s ± {tolerance:.0f}"
                ))
                continue
            result.matching += 1
        batch.clear()

    try:
        for source in opened:
            for record in source.records():
                now = time.time()
                before = scratch.failed, scratch.expired, scratch.duplicates
                planned = plan.item(record, source.label, now)
                if planned is None:
                    if scratch.expired != before[1]:
                        result.expired += 1
                    elif scratch.failed != before[0]:
                        result.unreadable += 1
                        result.differences.append(Difference(
                            scratch.failures[-1].session, source.label,
                            f"cannot be exported: {scratch.failures[-1].reason}",
                        ))
                    continue
                item, expected = planned
                batch.append((item, expected, item.ttl_ms / 1000, source.label, not record.sid))
                if len(batch) >= options.batch:
                    check()
            if batch:
                check()
    finally:
        target.close()
    result.seconds = round(time.monotonic() - started, 3)
    return result


def iter_dump_lines(records: Iterable[Record]) -> Iterator[bytes]:
    """NDJSON lines for records (what a bridge streams and a dump holds), trailer included."""
    encoder = msgspec.json.Encoder()
    count = 0
    for record in records:
        count += 1
        yield encoder.encode(record) + b"\n"
    yield encoder.encode(Record(end=True, count=count)) + b"\n"
