"""Property-based tests (Hypothesis) over the session parsers: NDJSON dump lines, session
pickles and FileSystemCache files. Whatever the input, each session is read, or reported and
skipped: no exception leaves the reader, the export's mapping or verify's, and no input ends
the run. Real values within the bounds read back equal."""

from __future__ import annotations

import base64
import datetime as dt
import os
import pickle
import resource
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from migrate.sessions import restricted_loads
from migrate.sessions.export import ExportResult
from migrate.sessions.plan import Options, Plan
from migrate.sessions.record import Record, Serializer, Unconvertible, session_value
from migrate.sessions.sources import COUNT_FILES, directory_records, dump_blocks, dump_records

SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


@pytest.fixture(autouse=True)
def bounded_memory() -> Iterator[None]:
    """A reader that allocates without bound fails with MemoryError here, not by taking the
    machine's memory: 3 GiB more address space than the process has now, for each test."""
    with open("/proc/self/statm") as statm:
        size = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (size + (3 << 30), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


# --- values --------------------------------------------------------------------------------------

hashables = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20),
    st.binary(max_size=20), st.dates(), st.uuids(),
    st.decimals(allow_nan=False, allow_infinity=False),
)
scalars = st.one_of(
    hashables, st.binary(max_size=20).map(bytearray), st.complex_numbers(allow_nan=False),
    st.datetimes(timezones=st.just(dt.UTC) | st.none()), st.timedeltas(),
    st.integers(min_value=2 ** 64, max_value=2 ** 2000), st.text(max_size=300),
)
keys = st.one_of(hashables, st.tuples(hashables, hashables))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.tuples(inner, inner),
        st.dictionaries(keys, inner, max_size=5), st.sets(keys, max_size=5),
        st.frozensets(hashables, max_size=5)),
    max_leaves=25)
sessions = st.dictionaries(st.text(max_size=20), values, max_size=8)


@SETTINGS
@given(session=sessions, protocol=st.integers(0, pickle.HIGHEST_PROTOCOL))
def test_a_real_session_within_the_bounds_reads_back_equal(session, protocol):
    assert restricted_loads(pickle.dumps(session, protocol)) == session


def _shared(session: dict) -> dict:
    """The same session with some values shared (as a real app's objects often are)."""
    items = list(session.values())
    return {**session, "again": items, "twice": [items, items]}


@SETTINGS
@given(session=sessions, protocol=st.integers(2, pickle.HIGHEST_PROTOCOL))
def test_shared_values_within_the_bounds_read_back_equal(session, protocol):
    shared = _shared(session)
    assert restricted_loads(pickle.dumps(shared, protocol)) == shared


# --- any bytes as a session pickle ---------------------------------------------------------------


def _read(data: bytes) -> None:
    """The export's reading of one pickle: a session, or Unconvertible with a reason."""
    try:
        session_value(Record(sid="s", pickle=data), Serializer())
    except Unconvertible as exc:
        assert str(exc)


@st.composite
def damaged_pickles(draw: st.DrawFn) -> bytes:
    """A real session pickle with bytes overwritten, inserted or cut."""
    data = bytearray(pickle.dumps(draw(sessions), draw(st.integers(0, 5))))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        edit = draw(st.sampled_from(["overwrite", "insert", "cut"]))
        piece = draw(st.binary(min_size=1, max_size=6))
        if edit == "overwrite":
            data[at:at + len(piece)] = piece
        elif edit == "insert":
            data[at:at] = piece
        else:
            del data[at:at + len(piece)]
    return bytes(data)


@SETTINGS
@given(data=st.binary(max_size=300))
def test_any_bytes_as_a_pickle_are_read_or_reported(data):
    _read(data)
    _read(b"\x80\x05" + data)  # past the protocol header: into the opcodes


@SETTINGS
@given(data=damaged_pickles())
# Found by Hypothesis: a UUID made (NEWOBJ) but never given its state (BUILD) stopped the
# export with an AttributeError from the serializer.
@example(data=b"\x80\x02}X\x00\x00\x00\x00cuuid\nUUID\n)\x81s.")
def test_a_damaged_pickle_is_read_or_reported(data):
    _read(data)


# --- NDJSON dump lines ---------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=15)


@st.composite
def dump_lines(draw: st.DrawFn) -> bytes:
    """One line: a record (some fields odd), damaged JSON, or bytes."""
    kind = draw(st.sampled_from(["record", "odd", "damaged", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=80)).replace(b"\n", b" ")
    record: dict = {}
    if draw(st.booleans()):
        record["sid"] = draw(st.text(max_size=12))
    if draw(st.booleans()):
        record["digest"] = draw(st.text("0123456789abcdef", min_size=31, max_size=65))
    if draw(st.booleans()):
        record["expires"] = draw(st.floats(allow_nan=False, allow_infinity=False)
                                 | st.sampled_from([0, 4102444800.5, 1000000000.5]))
    if draw(st.booleans()):
        record["data"] = draw(st.dictionaries(st.text(max_size=8), json_values, max_size=4))
    else:
        raw = draw(damaged_pickles() | st.binary(max_size=60))
        record["pickle"] = base64.b64encode(raw).decode()
    if kind == "odd":  # a field of the wrong type, an unknown field, numbers JSON allows
        field = draw(st.sampled_from(["sid", "digest", "expires", "data", "pickle", "end",
                                      "count", "extra"]))
        record[field] = draw(json_values)
    line = msgspec.json.encode(record)
    if kind == "odd" and draw(st.booleans()):
        line = line.replace(b"}", b',"expires":' + draw(st.sampled_from(
            [b"1e400", b"-1e400", b"1e308", b"99999999999999999999999"])) + b"}", 1)
    if kind == "damaged":
        at = draw(st.integers(0, len(line)))
        line = line[:at] + draw(st.binary(max_size=4)).replace(b"\n", b"") + line[at + 1:]
    return line


def _plan_everything(records: list[Record]) -> ExportResult:
    """The export's mapping and verify's over every record: neither may raise."""
    from migrate.sessions import verify

    result = ExportResult([], "", True, "skip")
    plan = Plan(Options(), result)
    plan.items(records, "dump", time.time())
    for record in records:
        plan.item(record, "dump", time.time())
    codec = verify._FlaskSessionCodec("msgpack")
    checker = verify._Checker(verify.VerifyResult([], ""), codec, 60.0)
    for record in records:
        verify._expect(record, "dump", Options(), codec, checker)
    return result


@SETTINGS
@given(lines=st.lists(dump_lines(), max_size=12), blank=st.booleans())
def test_every_dump_line_is_read_or_reported_once(tmp_path_factory, lines, blank):
    dump = tmp_path_factory.mktemp("dump") / "dump.ndjson"
    dump.write_bytes(b"\n".join(lines) + (b"\n\n" if blank else b""))
    records = list(dump_records(dump))
    # A line is one record (or one failure), but for trailers of saved bridge streams.
    expected = [line for line in lines if line.strip() and not _is_trailer(line)]
    assert len(records) == len(expected)
    for record in records:
        if record.error:
            assert record.error.startswith("line ")
    # Shared out to three processes: each line is still read exactly once.
    parts = [r for worker in range(3) for block in dump_blocks(dump, (worker, 3)) for r in block]
    assert len(parts) == len(records)
    _plan_everything(records)


def _is_trailer(line: bytes) -> bool:
    try:
        return msgspec.json.decode(line, type=Record).end
    except (msgspec.DecodeError, RecursionError):
        return False


# --- FileSystemCache folders ---------------------------------------------------------------------

file_names = st.one_of(
    st.text("0123456789abcdef", min_size=64, max_size=64).map(str.encode),
    st.text("0123456789abcdef", min_size=32, max_size=32).map(str.encode),
    st.binary(min_size=1, max_size=20).filter(lambda n: b"/" not in n and b"\0" not in n
                                              and n not in (b".", b"..")),
)


@st.composite
def cache_files(draw: st.DrawFn) -> tuple[bytes, bytes]:
    name = draw(file_names)
    header = struct.pack("I", draw(st.integers(0, 2 ** 32 - 1)))
    body = draw(st.one_of(
        st.binary(max_size=40),
        damaged_pickles().map(lambda p: header + p),
        sessions.map(lambda s: header + pickle.dumps(s, pickle.HIGHEST_PROTOCOL)),
    ))
    return name, body


@SETTINGS
@given(files=st.lists(cache_files(), max_size=8, unique_by=lambda f: f[0]))
def test_every_cache_file_is_read_or_reported(tmp_path_factory, files):
    folder = tmp_path_factory.mktemp("flask_session")
    for name, body in files:
        with open(os.path.join(os.fsencode(folder), name), "wb") as handle:
            handle.write(body)
    records = list(directory_records(Path(folder)))
    counted = [n for n, _ in files if os.fsdecode(n) not in COUNT_FILES]
    assert len(records) == len(counted)
    for record in records:
        assert record.error or record.pickle is not None
        if record.pickle is not None:
            _read(record.pickle)
    _plan_everything(records)

