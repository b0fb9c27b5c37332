"""Where sessions come from: a running instance's bridge, a FileSystemCache folder, a dump.

Each source yields ``Record``s (``migrate.sessions.record`` documents the NDJSON lines). A
FileSystemCache file knows only the digest of its key, not the sid: its record carries
``digest`` and is written under ``legacy_prefix + digest``, to be promoted by the after-app's
``migrate.sessions.interface.RedisSessionInterface`` on the user's next request.

Several export processes may share one dump or folder: a ``Part`` (worker, workers) reads only
the sessions that worker owns, by a hash of their sid or digest.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from migrate import redact
from migrate.errors import ConnectionFailure, UsageError
from migrate.sessions.pickles import MAX_BYTES
from migrate.sessions.record import HEX, Record, line_decoder

BRIDGE_PATH = "/_migrate/sessions"
# FileSystemCache keeps its item count in a file named after the digest of this key, and
# writes each file under a temporary name first.
COUNT_FILES = {hashlib.sha256(b"__wz_cache_count").hexdigest(),
               hashlib.md5(b"__wz_cache_count").hexdigest()}
TMP_SUFFIX = ".__wz_cache"
# Lines are decoded, converted and sent a block at a time: 256 KiB (about 250 sessions) keeps a
# block's objects in the CPU cache from decode to send; 4 MiB blocks ran at half the rate.
BLOCK_BYTES = 256 * 1024
MAX_LINE_BYTES = 2 * MAX_BYTES  # a dump line: a pickle at its limit, in base64, fits


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


def owner(ident: str | None, workers: int) -> int:
    """The worker a session belongs to: one, whichever source and line it comes from, so
    duplicates still meet in one place."""
    return zlib.crc32((ident or "").encode(errors="surrogatepass")) % workers


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


# --- a FileSystemCache directory -----------------------------------------------------------------


def directory_records(path: Path, part: Part = None) -> Iterator[Record]:
    """The sessions of a cachelib FileSystemCache directory (``SESSION_TYPE='filesystem'``)."""
    with os.scandir(path) as entries:
        names = sorted(e.name for e in entries if e.is_file())
    if part is not None:
        names = [n for n in names if owner(n, part[1]) == part[0]]
    for name in names:
        if name in COUNT_FILES or name.endswith(TMP_SUFFIX):
            continue
        if not HEX.match(name):
            yield Record(digest=name, error="not a FileSystemCache file (name is not a digest)")
            continue
        try:
            with open(path / name, "rb") as handle:
                raw = handle.read(4 + MAX_BYTES + 1)  # the expiry header, then the pickle
        except FileNotFoundError:
            continue  # expired and removed by the app while we listed: nothing to move
        except OSError as exc:
            yield Record(digest=name, error=f"unreadable file ({exc.strerror})")
            continue
        if len(raw) > 4 + MAX_BYTES:
            yield Record(digest=name, error=f"file too large (over {MAX_BYTES >> 20} MiB)")
            continue
        if len(raw) < 5:
            yield Record(digest=name, error="corrupt file (shorter than its expiry header)")
            continue
        (expires,) = struct.unpack("I", raw[:4])  # native byte order, as cachelib writes it
        yield Record(digest=name, expires=float(expires), pickle=raw[4:])


# --- an NDJSON dump ------------------------------------------------------------------------------


class _Peek(msgspec.Struct):
    """Just a line's identity: decoding it skips the session data without building it."""

    sid: str | None = None
    digest: str | None = None


_peek_decoder = msgspec.json.Decoder(_Peek)


def _own_lines(block: list[bytes], part: tuple[int, int], first: int) -> list[tuple[int, bytes]]:
    """(number, line) for the lines of ``block`` whose session this worker owns (see
    ``owner``); ``first`` is the number of the block's first line."""
    me, workers = part
    mine: list[tuple[int, bytes]] = []
    others: list[tuple[int, bytes]] = []
    crc32 = zlib.crc32
    for number, line in enumerate(block, first):
        # Most lines start with the sid: read it without decoding the line (every worker
        # looks at every line, so this must cost far less than the decode it saves).
        if line.startswith(b'{"sid":"'):
            ident = line[8:line.find(b'"', 8)]
            if b"\\" not in ident:
                if crc32(ident) % workers == me:
                    mine.append((number, line))
                continue
        others.append((number, line))
    for number, line in others:
        if not line.strip():
            continue
        try:
            peek = _peek_decoder.decode(line)
            line_owner = owner(peek.sid or peek.digest, workers)
        except (msgspec.DecodeError, RecursionError):
            line_owner = crc32(line) % workers  # a bad line is reported by exactly one worker
        if line_owner == me:
            mine.append((number, line))
    return mine


def dump_records(path: Path, part: Part = None) -> Iterator[Record]:
    """The records of an NDJSON dump (a saved bridge stream, or written by any tool)."""
    for block in dump_blocks(path, part):
        yield from block


def dump_blocks(path: Path, part: Part = None) -> Iterator[list[Record]]:
    """``dump_records`` a block (``BLOCK_BYTES``) of lines at a time (a worker's own lines,
    with ``part``)."""
    for number, chunk in _line_chunks(path):
        if chunk is None:
            if part is None or number % part[1] == part[0]:
                yield [Record(error=f"line {number} is longer than {MAX_LINE_BYTES:,} bytes")]
            continue
        if part is None:
            lines: list[bytes] | None = None
        else:
            lines = _own_lines(chunk.split(b"\n"), part, number)
            chunk = b"\n".join(line for _, line in lines)
        try:
            records = line_decoder.decode_lines(chunk)
        except (msgspec.DecodeError, RecursionError):
            records = _decode_one_by_one(lines if lines is not None else
                                         list(enumerate(chunk.split(b"\n"), number)))
        yield [r for r in records if not r.end]  # trailers of saved bridge streams


def _line_chunks(path: Path) -> Iterator[tuple[int, bytes | None]]:
    """(number of the first line, ``BLOCK_BYTES`` of whole lines), read a block at a time and cut
    at the last newline. A line longer than ``MAX_LINE_BYTES`` comes as (its number, None) and
    is skipped without being held in memory."""
    with open(path, "rb") as handle:
        number, rest, skipping = 1, b"", False
        while True:
            data = handle.read(BLOCK_BYTES)
            if skipping:
                newline = data.find(b"\n")
                if newline < 0:
                    if not data:
                        return
                    continue
                data, skipping, number = data[newline + 1:], False, number + 1
            chunk = rest + data
            if not chunk:
                return
            cut = len(chunk) if not data else chunk.rfind(b"\n") + 1
            if cut == 0:
                rest = chunk
                if len(rest) > MAX_LINE_BYTES:
                    yield number, None
                    rest, skipping = b"", True
                continue
            chunk, rest = chunk[:cut], chunk[cut:]
            if chunk.strip():
                yield number, chunk
            number += chunk.count(b"\n")
            if not data:
                return


def _decode_one_by_one(lines: list[tuple[int, bytes]]) -> list[Record]:
    """Each (number, line) decoded alone: a line that is not a record is reported by number."""
    records = []
    for number, line in lines:
        if not line.strip():
            continue
        try:
            records.append(line_decoder.decode(line))
        except msgspec.DecodeError as exc:
            reason = str(exc).split(" - ")[0][:80]
            records.append(Record(error=f"line {number} is not a record ({reason})"))
        except RecursionError:
            records.append(Record(error=f"line {number} is not a record (nested too deep)"))
    return records


# --- a running instance's bridge -----------------------------------------------------------------


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
        _check_status(response.status_code, url)
        trailer = None
        try:
            for line in response.iter_lines(chunk_size=256 * 1024):
                if not line:
                    continue
                try:
                    record = line_decoder.decode(line)
                except RecursionError:  # one session's data, nested too deep: that one fails
                    record = Record(error="a record of the stream is not readable (nested too "
                                          "deep)")
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


def _check_status(status: int, url: str) -> None:
    """One clear error for a bridge that does not answer with its stream."""
    if status == 401:
        raise UsageError(
            f"the bridge at {url} refused the token (HTTP 401): pass the instance's "
            "MIGRATE_BRIDGE_TOKEN with --token or the MIGRATE_BRIDGE_TOKEN variable"
        )
    if status == 404:
        raise UsageError(
            f"no session bridge at {url} (HTTP 404): add "
            "migrate.sessions.bridge.MigrationBridge to the app and set MIGRATE_BRIDGE_TOKEN, "
            "then restart it"
        )
    if status != 200:
        raise ConnectionFailure(f"the bridge at {url} answered HTTP {status}")
