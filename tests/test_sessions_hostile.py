"""Hostile and broken sessions (issue 10, item 1): each is refused with a reason that quotes none
of its contents, quickly and in bounded memory, and the run goes on to the next session. The
reader is bounded in size, nesting depth and node count, in the FileSystemCache folder, the NDJSON
dump and the bridge stream alike, for export-sessions and verify sessions both."""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import pickle
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

import msgspec
import pytest
from cachelib import FileSystemCache, SimpleCache
from click.testing import CliRunner
from markupsafe import Markup

from migrate.cli import cli
from migrate.sessions import restricted_loads
from tests import test_sessions_support as support

redis_server, fresh_redis = support.redis_server, support.fresh_redis
HOUR = 3600
TOKEN = "bridge-token-0123456789"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


# --- hostile pickles -----------------------------------------------------------------------------


def _body(value: object) -> bytes:
    """The opcodes of ``value`` without the protocol header and STOP, to splice into a pickle."""
    return pickle.dumps(value, 2)[2:-1]


def self_referencing_list() -> bytes:
    a: list = []
    a.append(a)
    return pickle.dumps({"_permanent": True, "a": a})


def self_referencing_dict() -> bytes:
    d: dict = {"_permanent": True}
    d["me"] = d
    return pickle.dumps(d)


def shared_references(levels: int = 40) -> bytes:
    """329 bytes that a serializer expands to 2**40 values (``x = [x, x]``, 40 times)."""
    x: list = []
    for _ in range(levels):
        x = [x, x]
    return pickle.dumps({"_permanent": True, "x": x})


def deep_lists(levels: int = 100_000) -> bytes:
    return b"\x80\x02}X\x01\x00\x00\x00d" + b"]" * levels + b"a" * (levels - 1) + b"s."


def str_of_shared_references() -> bytes:
    """copyreg._reconstructor(str, str, x): repr() of a fanned-out list while loading."""
    return (b"\x80\x02ccopy_reg\n_reconstructor\nc__builtin__\nstr\nc__builtin__\nstr\n"
            + _body(_fanned_list(30)) + b"\x87R.")


def _fanned_list(levels: int) -> list:
    x: list = []
    for _ in range(levels):
        x = [x, x]
    return x


def codec_chain(levels: int = 40) -> bytes:
    """_codecs.encode(..., 'hex') 40 times: each doubles the bytes (2**40 at the end)."""
    body = b"C\x01a"
    for _ in range(levels):
        body = b"c_codecs\nencode\n" + body + b"X\x03\x00\x00\x00hex\x86R"
    return b"\x80\x02" + body + b"."


def _copies(callable_: bytes, count: int = 3000) -> bytes:
    """A list of 100,000 ints, then ``callable_(it)`` ``count`` times: 4 bytes a copy."""
    big = b"]q\x00(" + b"K\x01" * 100_000 + b"e"
    return (b"\x80\x02]" + big + b"0"
            + (b"c" + callable_ + b"\nh\x00\x85Ra") * count + b".")


def tuple_copies() -> bytes:
    return _copies(b"__builtin__\ntuple")


def set_copies() -> bytes:
    return _copies(b"__builtin__\nset")


def decimal_copies(count: int = 5000) -> bytes:
    digits = b"9" * 500_000
    return (b"\x80\x02]X" + struct.pack("<I", len(digits)) + digits + b"q\x000"
            + b"cdecimal\nDecimal\nh\x00\x85Ra" * count + b".")


def fanned_tuple_key(levels: int = 40) -> bytes:
    """A dict key that is a tuple of 2**40 values by shared references: hashing it never ends."""
    body = b"K\x01\x85q\x000"  # t0 = (1,), kept in the memo only
    for level in range(1, levels + 1):  # t[level] = (t[level - 1], t[level - 1])
        body += b"h%ch%c\x86q%c0" % (level - 1, level - 1, level)
    return b"\x80\x02}" + body + b"h%cNs." % levels


def deep_tuple_key(levels: int = 1_000_000) -> bytes:
    """A dict key nested a million tuples deep: hashing it overflows the C stack."""
    return b"\x80\x02}K\x01" + b"\x85" * levels + b"Ns."


def huge_integer() -> bytes:
    return b"\x80\x02}X\x01\x00\x00\x00n\x8b" + struct.pack("<i", 1 << 20) + b"\x01" * (1 << 20) \
        + b"s."


def oversized() -> bytes:
    return pickle.dumps({"_permanent": True, "blob": "x" * (5 << 20)})


HOSTILE = {
    "self-referencing list": (self_referencing_list, "refers to itself"),
    "self-referencing dict": (self_referencing_dict, "refers to itself"),
    "shared references": (shared_references, "more than 1,000,000 values"),
    "deep lists": (deep_lists, "nested deeper than 100 levels"),
    "str of shared references": (str_of_shared_references, "not allowed"),
    "codec chain": (codec_chain, "not allowed"),
    "tuple copies": (tuple_copies, "not allowed"),
    "set copies": (set_copies, "builds more than"),
    "decimal copies": (decimal_copies, "builds more than"),
    "huge integer": (huge_integer, "integer too large"),
    "oversized": (oversized, "pickle too large"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_pickle_is_refused_with_its_reason(name):
    make, reason = HOSTILE[name]
    data = make()
    started = time.monotonic()
    with pytest.raises(pickle.UnpicklingError, match=reason):
        restricted_loads(data)
    assert time.monotonic() - started < 20  # refused, not worked through


def huge_memo_index(protocol: int) -> bytes:
    """Six bytes whose memo index makes the C unpickler allocate and zero 32 GiB."""
    put = b"r\xff\xff\xff\x7f" if protocol else b"p2147483647\n"
    return (b"\x80\x02" if protocol else b"") + b"}" + put + b"."


@pytest.mark.parametrize(("make", "reason"), [
    (fanned_tuple_key, b"tuples of more than"),
    (deep_tuple_key, b"tuples nested deeper"),
    (lambda: huge_memo_index(2), b"memo index out of range"),
    (lambda: huge_memo_index(0), b"memo index out of range"),
], ids=["fanned tuple key", "deep tuple key", "memo index", "memo index, protocol 0"])
def test_a_pickle_that_would_hang_or_crash_the_reader_is_refused(make, reason):
    # In a child process with 2 GiB of address space: before the bounds, the first hashes for
    # hours in C (no timeout can interrupt it), the second overflows the C stack (a
    # segmentation fault), the last two run out of memory.
    code = ("import resource, sys, pickle\nfrom migrate.sessions import restricted_loads\n"
            "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
            "try:\n    restricted_loads(sys.stdin.buffer.read())\n"
            "except pickle.UnpicklingError as exc:\n    print('refused:', exc)\n")
    try:
        done = subprocess.run([sys.executable, "-c", code], input=make(), capture_output=True,
                              timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("reading the pickle did not end within 60 s")
    assert done.returncode == 0, done.stderr.decode()[-500:]
    assert done.stdout.startswith(b"refused: " + reason), done.stdout


def legitimate_sessions() -> list[dict]:
    shared = ["a", "shared", "list"]
    return [
        {"_permanent": True, "cart": {str(i): i % 5 + 1 for i in range(5000)}},
        {"_permanent": True, "same": [shared] * 1000, "again": shared},
        {"_flashes": [("message", "Added to your cart."), ("error", "Out of stock.")]},
        {"when": [(dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC), dt.date(2024, 1, 2))] * 50,
         "pairs": {(1, 2), (3, (4, 5))}, "frozen": frozenset({"a", "b"}),
         "money": decimal.Decimal("1.50"), "id": uuid.UUID(int=7), "raw": bytearray(b"xy"),
         "note": Markup("<b>hi</b>"), "big": 2 ** 200, "c": complex(1, 2)},
        {"deep": _nested(60)},
        {"_permanent": True, "text": "t" * 100_000 + "é" * 1000, "blob": b"\x85\x86\x87" * 1000},
    ]


def _nested(levels: int) -> object:
    value: object = "bottom"
    for i in range(levels):
        value = [value] if i % 2 else {"k": value}
    return value


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_real_sessions_within_the_bounds_still_load(protocol):
    for session in legitimate_sessions():
        assert restricted_loads(pickle.dumps(session, protocol)) == session


# --- every source: one failure line per bad session, and the rest carries on ----------------------

BAD = {
    "self-referencing": self_referencing_dict,
    "shared references": shared_references,
    "deep": deep_lists,
    "copies": set_copies,
}


def hostile_folder(tmp_path: Path) -> Path:
    """A FileSystemCache folder: two good sessions, the hostile pickles, one oversized file."""
    folder = tmp_path / "flask_session"
    cache = FileSystemCache(str(folder), threshold=0, default_timeout=HOUR)
    cache.set("session:good-1", {"_permanent": True, "user_id": 1})
    cache.set("session:good-2", {"_permanent": True, "user_id": 2})
    header = struct.pack("I", int(time.time()) + HOUR)
    for name, make in BAD.items():
        (folder / hashlib.sha256(f"session:{name}".encode()).hexdigest()).write_bytes(
            header + make())
    (folder / hashlib.sha256(b"session:huge").hexdigest()).write_bytes(header + oversized())
    return folder


def assert_reported(result: dict, count: int) -> None:
    reasons = sorted(f["reason"] for f in result["failures"])
    assert len(reasons) == count, reasons
    assert any("refers to itself" in r for r in reasons)
    assert any("more than 1,000,000 values" in r for r in reasons)
    assert any("nested deeper than 100 levels" in r for r in reasons)
    assert any("builds more than" in r for r in reasons)


def test_the_folder_export_and_verify_report_each_hostile_file_and_go_on(tmp_path, fresh_redis):
    folder = hostile_folder(tmp_path)
    code, out = run("export-sessions", "--from", str(folder), "--redis", fresh_redis.url,
                    "--json")
    assert code == 1, out
    result = json.loads(out)
    assert (result["read"], result["written"], result["failed"]) == (7, 2, 5)
    assert_reported(result, 5)
    assert any(r["reason"].startswith("file too large") for r in result["failures"])
    code, out = run("verify", "sessions", "--from", str(folder), "--redis", fresh_redis.url,
                    "--json")
    verified = json.loads(out)
    assert code == 1 and verified["matching"] == 2 and len(verified["differences"]) == 5
    code, out = run("export-sessions", "--from", str(folder), "--redis", fresh_redis.url)
    assert code == 1 and "Traceback" not in out
    assert "failed" in out and "good-1" not in out


def test_the_dump_export_and_verify_report_each_hostile_line_and_go_on(tmp_path, fresh_redis):
    later = time.time() + HOUR
    rows = [{"sid": "good-1", "expires": later, "data": {"_permanent": True, "user_id": 1}}]
    rows += [{"sid": f"bad-{i}", "expires": later, "pickle": make()}
             for i, make in enumerate(BAD.values())]
    rows.append({"sid": "good-2", "expires": later,
                 "pickle": pickle.dumps({"_permanent": True, "user_id": 2})})
    lines = [msgspec.json.encode(r) for r in rows]
    # JSON nested 5,000 deep, in a line of its own.
    lines.insert(2, b'{"sid":"deep-json","data":{"a":' + b"[" * 5000 + b"]" * 5000 + b"}}")
    dump = tmp_path / "dump.ndjson"
    dump.write_bytes(b"\n".join(lines) + b"\n")
    code, out = run("export-sessions", "--from", str(dump), "--redis", fresh_redis.url, "--json")
    assert code == 1, out
    result = json.loads(out)
    assert (result["read"], result["written"], result["failed"]) == (7, 2, 5)
    assert_reported(result, 5)
    assert any(r["reason"].startswith("line 3 is not a record (nested too deep")
               for r in result["failures"])
    code, out = run("verify", "sessions", "--from", str(dump), "--redis", fresh_redis.url,
                    "--json")
    verified = json.loads(out)
    assert code == 1 and verified["matching"] == 2 and len(verified["differences"]) == 5
    # Several processes share the dump out: the same, and no process dies.
    fresh_redis.client.flushall()
    code, out = run("export-sessions", "--from", str(dump), "--redis", fresh_redis.url,
                    "--jobs", "2", "--json")
    assert code == 1 and (json.loads(out)["written"], json.loads(out)["failed"]) == (2, 5), out


def test_the_bridge_export_reports_each_hostile_session_and_goes_on(tmp_path, fresh_redis):
    from flask import Flask
    from flask_session import Session

    from migrate.sessions.bridge import MigrationBridge

    cache = SimpleCache(threshold=100)
    cache.set("session:good-1", {"_permanent": True, "user_id": 1}, HOUR)
    expires = int(time.time()) + HOUR
    for name, make in BAD.items():
        cache._cache[f"session:{name}"] = (expires, make())
    app = Flask("plain")
    app.config.update(SESSION_TYPE="cachelib", SESSION_CACHELIB=cache)
    Session(app)
    MigrationBridge(app, token=TOKEN)
    server = support.HttpServer(app)
    try:
        code, out = run("export-sessions", "--from", server.url, "--redis", fresh_redis.url,
                        "--token", TOKEN, "--json")
        assert code == 1, out
        result = json.loads(out)
        assert (result["read"], result["written"], result["failed"]) == (5, 1, 4)
        assert_reported(result, 4)
        code, out = run("verify", "sessions", "--from", server.url, "--redis", fresh_redis.url,
                        "--token", TOKEN, "--json")
        verified = json.loads(out)
        assert code == 1 and verified["matching"] == 1 and len(verified["differences"]) == 4
    finally:
        server.stop()


def test_the_bridge_mirror_never_fails_a_request_over_a_session_it_cannot_encode(tmp_path,
                                                                                  fresh_redis):
    from flask import Flask, session
    from flask_session import Session

    from migrate.sessions.bridge import MigrationBridge

    app = Flask("plain")
    app.config.update(SESSION_TYPE="cachelib", SESSION_CACHELIB=SimpleCache())
    Session(app)
    bridge = MigrationBridge(app, token=TOKEN, redis_url=fresh_redis.url)

    @app.post("/loop")
    def loop():
        a: list = []
        a.append(a)
        session["loop"] = a  # the app's own store pickles it; msgpack cannot
        return "ok"

    client = app.test_client()
    assert client.post("/loop").status_code == 200
    assert bridge.stats.unconvertible >= 1 and bridge.stats.mirrored == 0


def test_an_overlong_line_or_an_expiry_out_of_range_is_one_failure(tmp_path, fresh_redis,
                                                                   monkeypatch):
    from migrate.sessions import sources

    monkeypatch.setattr(sources, "MAX_LINE_BYTES", 1000)
    monkeypatch.setattr(sources, "BLOCK_BYTES", 256)  # the long line spans several reads
    later = time.time() + HOUR
    dump = tmp_path / "dump.ndjson"
    dump.write_bytes(b"".join(msgspec.json.encode(r) + b"\n" for r in [
        {"sid": "good-1", "expires": later, "data": {"_permanent": True}},
        {"sid": "long", "expires": later, "data": {"x": "y" * 5000}},
        {"sid": "far", "expires": 1e308, "data": {"_permanent": True}},
        {"sid": "past", "expires": -1e308, "data": {"_permanent": True}},
        {"sid": "good-2", "expires": later, "data": {"_permanent": True}},
    ]))
    for jobs in ("1", "2"):
        fresh_redis.client.flushall()
        code, out = run("export-sessions", "--from", str(dump), "--redis", fresh_redis.url,
                        "--jobs", jobs, "--json")
        result = json.loads(out)
        assert code == 1, out
        assert (result["read"], result["written"], result["expired"]) == (5, 2, 1)
        assert sorted(f["reason"] for f in result["failures"]) == [
            "expiry out of range (not a time before the year 10000)",
            "line 2 is longer than 1,000 bytes"]
        assert fresh_redis.client.exists("session:good-1", "session:good-2") == 2
