"""migrate export-sessions / verify sessions against a real redis-server: FileSystemCache
directories (read-through promotion), NDJSON dumps, an unmodified Flask-Session 0.8 app."""

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
from cachelib import FileSystemCache
from click.testing import CliRunner
from flask import Flask, session
from markupsafe import Markup

import migrate.sessions
from migrate.cli import cli
from migrate.sessions import (
    LEGACY_PREFIX,
    DisallowedClass,
    Options,
    export_sessions,
    restricted_loads,
    verify_sessions,
)
from migrate.sessions.interface import RedisSessionInterface
from tests import test_sessions_support as support

# The real servers these tests use (fixtures shared with test_bridge*.py).
redis_server, fresh_redis = support.redis_server, support.fresh_redis

HOUR = 3600


class Gadget:
    """A custom class: a pickle that names it must not be loaded."""


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def write_dump(path: Path, rows: list[dict]) -> Path:
    path.write_bytes(b"".join(msgspec.json.encode(r) + b"\n" for r in rows))
    return path


def flask_session_app(redis_url: str, **config) -> Flask:
    """An independent, unmodified Flask-Session 0.8 app, configured as its docs say."""
    import redis
    from flask_session import Session

    app = Flask("independent")
    app.secret_key = "independent-secret"
    app.config.update(SESSION_TYPE="redis", SESSION_REDIS=redis.Redis.from_url(redis_url),
                      **config)
    Session(app)

    @app.get("/whoami")
    def whoami():
        data = {k: v.hex() if isinstance(v, bytes) else v for k, v in session.items()}
        return {"data": data, "permanent": session.permanent}

    return app


# --- the restricted unpickler -------------------------------------------------------------------


def test_restricted_unpickler_reads_builtin_and_datetime_values():
    value = {"a": [1, 2.5, None, True], "t": (1, "x"), "s": {1}, "b": b"x",
             "when": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC), "day": dt.date(2024, 1, 2),
             "d": decimal.Decimal("1.5"), "u": uuid.UUID(int=7)}
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        assert restricted_loads(pickle.dumps(value, protocol)) == value


@pytest.mark.parametrize("payload", [Gadget(), print, __import__("os").system])
def test_restricted_unpickler_refuses_other_classes(payload):
    with pytest.raises(DisallowedClass, match="disallowed pickle class"):
        restricted_loads(pickle.dumps(payload))


# --- FileSystemCache directory -> Redis -> read-through ------------------------------------------


@pytest.fixture
def session_dir(tmp_path: Path) -> Path:
    """A Flask-Session filesystem directory with good, odd and broken sessions."""
    folder = tmp_path / "flask_session"
    cache = FileSystemCache(str(folder), threshold=0, default_timeout=HOUR)
    cache.set("session:alice-sid", {"_permanent": True, "user_id": 1, "username": "alice",
                                    "cart": {"1": 1, "2": 2}})
    cache.set("session:dated-sid", {"_permanent": True, "seen": dt.datetime(2024, 5, 6, 7, 8),
                                    "pair": (1, 2)})
    cache.set("session:markup-sid", {"_permanent": True, "flash": Markup("<b>hi</b>")})
    cache.set("session:gadget-sid", {"_permanent": True, "g": Gadget()})
    # Expired ten seconds ago (what FileSystemCache writes: a 4-byte expiry, then the pickle).
    (folder / hashlib.sha256(b"session:old-sid").hexdigest()).write_bytes(
        struct.pack("I", int(time.time()) - 10) + pickle.dumps({"_permanent": True}))
    # Older cachelib named files by md5: the read-through finds those too.
    FileSystemCache(str(folder), threshold=0, default_timeout=HOUR, hash_method=hashlib.md5).set(
        "session:md5-sid", {"_permanent": True, "user_id": 2, "username": "bob"})
    (folder / ("c" * 64)).write_bytes(b"\x01\x02")  # corrupt: no room for a pickle
    good = (folder / hashlib.sha256(b"session:alice-sid").hexdigest()).read_bytes()
    (folder / ("d" * 64)).write_bytes(good[: len(good) // 2])  # truncated pickle
    return folder


def test_directory_export_reports_each_bad_session_and_skips_it(session_dir, fresh_redis):
    code, out = run("export-sessions", "--from", str(session_dir), "--redis", fresh_redis.url,
                    "--json")
    assert code == 1, out  # some sessions failed
    result = json.loads(out)
    assert (result["read"], result["written"], result["expired"], result["failed"]) == (8, 3, 1, 4)
    assert result["legacy"] == 3 and result["converted"] == 1
    assert result["converted_kinds"] == {"datetime": 1, "tuple": 1}
    reasons = sorted(f["reason"] for f in result["failures"])
    assert reasons[0].startswith("Flask-Session's msgpack serializer cannot store it")
    assert "Markup" in reasons[0]
    assert reasons[1:] == [
        "corrupt file (shorter than its expiry header)",
        "disallowed pickle class tests.test_sessions.Gadget",
        "truncated pickle",
    ]
    # Written under the file digest, with the remaining lifetime.
    key = LEGACY_PREFIX + hashlib.sha256(b"session:alice-sid").hexdigest()
    assert HOUR - 10 < fresh_redis.client.ttl(key) <= HOUR
    for secret in ("alice-sid", "alice", "wonderland", "<b>hi</b>"):
        assert secret not in out


def test_directory_export_is_idempotent_and_dry_run_writes_nothing(session_dir, fresh_redis):
    code, out = run("export-sessions", "--from", str(session_dir), "--redis", fresh_redis.url,
                    "--dry-run", "--json")
    assert json.loads(out)["written"] == 3 and fresh_redis.client.dbsize() == 0
    run("export-sessions", "--from", str(session_dir), "--redis", fresh_redis.url)
    snapshot = {k: fresh_redis.client.get(k) for k in fresh_redis.client.keys()}
    code, out = run("export-sessions", "--from", str(session_dir), "--redis", fresh_redis.url,
                    "--json")
    again = json.loads(out)
    assert (again["written"], again["skipped"]) == (0, 3)
    assert {k: fresh_redis.client.get(k) for k in fresh_redis.client.keys()} == snapshot


def after_style_app(redis_url: str) -> Flask:
    """A Flask-Session app on migrate's read-through interface (as the after-shop)."""
    import redis

    app = Flask("after")
    app.secret_key = "after-secret"
    app.config["SESSION_REFRESH_EACH_REQUEST"] = False  # so the promoted TTL shows as it is
    app.session_interface = RedisSessionInterface.from_config(app, redis.Redis.from_url(redis_url))

    @app.get("/whoami")
    def whoami():
        return {"data": dict(session), "permanent": session.permanent}

    @app.post("/logout")
    def logout():
        session.clear()
        return {}

    return app


def test_read_through_promotes_a_filesystem_session_under_its_cookie(session_dir, fresh_redis):
    run("export-sessions", "--from", str(session_dir), "--redis", fresh_redis.url)
    client = after_style_app(fresh_redis.url).test_client()
    for sid, user in (("alice-sid", 1), ("md5-sid", 2)):
        client.set_cookie("session", sid)
        body = client.get("/whoami").get_json()
        assert body["data"]["user_id"] == user and body["permanent"] is True
        # Promoted: the session now lives under its sid, with the lifetime it had left.
        assert HOUR - 10 < fresh_redis.client.ttl(f"session:{sid}") <= HOUR
    legacy = LEGACY_PREFIX + hashlib.sha256(b"session:alice-sid").hexdigest()
    assert fresh_redis.client.get(legacy) == b""  # a tombstone, not the session
    # Log out, then re-run the export: the old file must not bring the session back.
    client.set_cookie("session", "alice-sid")
    client.post("/logout")
    code, out = run("export-sessions", "--from", str(session_dir), "--redis", fresh_redis.url,
                    "--json")
    assert json.loads(out)["written"] == 0
    client.set_cookie("session", "alice-sid")
    assert client.get("/whoami").get_json()["data"] == {"_permanent": True}


def test_verify_passes_after_export_and_lists_differences(session_dir, fresh_redis):
    run("export-sessions", "--from", str(session_dir), "--redis", fresh_redis.url)
    code, out = run("verify", "sessions", "--from", str(session_dir), "--redis", fresh_redis.url,
                    "--json")
    result = json.loads(out)
    assert result["matching"] == 3
    # The four unreadable sessions are differences too: they are not in Redis.
    assert code == 1 and len(result["differences"]) == 4
    key = LEGACY_PREFIX + hashlib.sha256(b"session:alice-sid").hexdigest()
    fresh_redis.client.set(key, msgspec.msgpack.encode({"user_id": 666}), ex=HOUR)
    fresh_redis.client.expire(LEGACY_PREFIX + hashlib.md5(b"session:md5-sid").hexdigest(), 60)
    code, out = run("verify", "sessions", "--from", str(session_dir), "--redis", fresh_redis.url)
    assert code == 1
    assert "data differs" in out and "TTL 60 s, expected" in out


# --- NDJSON dumps and an unmodified Flask-Session app -------------------------------------------


def test_an_unmodified_flask_session_app_reads_an_exported_session(tmp_path, fresh_redis):
    now = time.time()
    pickled = pickle.dumps({"_permanent": True, "user_id": 5, "when": dt.date(2024, 2, 3),
                            "tags": {"a"}, "raw": b"\x00\x01"})
    dump = write_dump(tmp_path / "dump.ndjson", [
        {"sid": "plain-sid", "expires": now + HOUR, "data": {"_permanent": True, "user_id": 4}},
        {"sid": "pickled-sid", "expires": now + 2 * HOUR, "pickle": pickled},
        {"sid": "gone-sid", "expires": now - 5, "data": {"user_id": 3}},
        {"sid": "forever-sid", "data": {"_permanent": True}},
    ])
    code, out = run("export-sessions", "--from", str(dump), "--redis", fresh_redis.url,
                    "--lifetime", "600", "--json")
    result = json.loads(out)
    assert code == 0 and (result["written"], result["expired"]) == (3, 1)
    assert 2 * HOUR - 10 < fresh_redis.client.ttl("session:pickled-sid") <= 2 * HOUR
    assert 590 < fresh_redis.client.ttl("session:forever-sid") <= 600

    client = flask_session_app(fresh_redis.url).test_client()
    client.set_cookie("session", "pickled-sid")
    body = client.get("/whoami").get_json()
    assert body["permanent"] is True
    assert body["data"]["when"] == "2024-02-03" and body["data"]["tags"] == ["a"]
    assert body["data"]["raw"] == "0001"  # bytes stay bytes
    client.set_cookie("session", "plain-sid")
    assert client.get("/whoami").get_json()["data"] == {"_permanent": True, "user_id": 4}


def test_a_signed_cookie_finds_the_session_under_its_raw_sid(tmp_path, fresh_redis):
    dump = write_dump(tmp_path / "dump.ndjson",
                      [{"sid": "raw-sid", "expires": time.time() + HOUR, "data": {"user_id": 8}}])
    run("export-sessions", "--from", str(dump), "--redis", fresh_redis.url)
    with pytest.warns(DeprecationWarning):
        app = flask_session_app(fresh_redis.url, SESSION_USE_SIGNER=True)
    client = app.test_client()
    client.set_cookie("session", app.session_interface._sign(app, "raw-sid"))
    assert client.get("/whoami").get_json()["data"] == {"user_id": 8}


def test_conflicts_duplicates_prefix_and_json_serializer(tmp_path, fresh_redis):
    now = time.time()
    first = write_dump(tmp_path / "a.ndjson", [
        {"sid": "s1", "expires": now + 100, "data": {"v": "older"}},
        {"sid": "s2", "expires": now + 100, "data": {"v": "dump"}},
    ])
    second = write_dump(tmp_path / "b.ndjson", [
        {"sid": "s1", "expires": now + 200, "data": {"v": "newer"}},
    ])
    fresh_redis.client.set("session:s2", msgspec.msgpack.encode({"v": "new app"}))
    result = export_sessions([str(first), str(second)], fresh_redis.url)
    assert (result.written, result.skipped, result.duplicates) == (2, 1, 1)
    assert msgspec.msgpack.decode(fresh_redis.client.get("session:s1")) == {"v": "newer"}
    assert msgspec.msgpack.decode(fresh_redis.client.get("session:s2")) == {"v": "new app"}

    overwrite = Options(on_conflict="overwrite")
    result = export_sessions([str(first)], fresh_redis.url, options=overwrite)
    assert result.written == 2
    assert msgspec.msgpack.decode(fresh_redis.client.get("session:s2")) == {"v": "dump"}

    result = export_sessions([str(first)], fresh_redis.url,
                             options=Options(key_prefix="shop:", serializer="json"))
    assert result.written == 2 and json.loads(fresh_redis.client.get("shop:s1")) == {"v": "older"}
    assert verify_sessions([str(first)], fresh_redis.url,
                           options=Options(key_prefix="shop:", serializer="json")).ok


def test_a_bad_dump_line_is_reported_and_the_rest_written(tmp_path, fresh_redis):
    dump = tmp_path / "dump.ndjson"
    dump.write_bytes(b'{"sid": "ok", "data": {"a": 1}}\n{not json\n{"data": {"a": 2}}\n')
    result = export_sessions([str(dump)], fresh_redis.url)
    assert (result.written, result.failed) == (1, 2)
    assert sorted(f.reason.split(" (")[0] for f in result.failures) == [
        "line 2 is not a record", "record has neither a sid nor a hex digest"]


# --- errors a user meets -----------------------------------------------------------------------


def test_redis_down_is_one_clear_line_and_exit_2(tmp_path):
    dump = write_dump(tmp_path / "dump.ndjson", [{"sid": "s", "data": {}}])
    url = f"redis://:hunter2@127.0.0.1:{support.free_port()}/0"
    result = CliRunner().invoke(cli, ["export-sessions", "--from", str(dump), "--redis", url])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach Redis at")
    assert "hunter2" not in result.output and "Traceback" not in result.output


def test_a_missing_source_is_a_usage_error(fresh_redis):
    code, out = run("export-sessions", "--from", "/no/such/dump", "--redis", fresh_redis.url)
    assert code == 2 and "is not a source" in out


def test_several_processes_write_the_same_as_one(tmp_path, fresh_redis, session_dir):
    now = time.time()
    rows = [{"sid": f"s{i}", "expires": now + HOUR, "data": {"n": i}} for i in range(300)]
    rows += [{"sid": f"s{i}", "expires": now + 2 * HOUR, "data": {"n": -i}}
             for i in range(0, 300, 7)]
    rows.append({"sid": "bad", "pickle": pickle.dumps({"g": Gadget()})})
    dump = write_dump(tmp_path / "dump.ndjson", rows)
    code, out = run("export-sessions", "--from", str(dump), "--from", str(session_dir),
                    "--redis", fresh_redis.url, "--jobs", "3", "--json")
    result = json.loads(out)
    assert code == 1  # the bad ones are reported, the rest written
    # 300 + 3 filesystem sessions, then 43 later copies written over their earlier ones.
    assert (result["read"], result["duplicates"], result["written"]) == (352, 43, 346)
    assert result["failed"] == 5 and result["expired"] == 1
    # The later-expiring copy of a duplicate wins, whichever process read it.
    assert msgspec.msgpack.decode(fresh_redis.client.get("session:s7")) == {"n": -7}
    assert msgspec.msgpack.decode(fresh_redis.client.get("session:s8")) == {"n": 8}
    assert fresh_redis.client.dbsize() == 303


def test_a_hostile_pickle_cannot_make_huge_bytes():
    # REDUCE bytes(10**12): what no real session pickle contains, and what would eat the memory.
    hostile = b"\x80\x02c__builtin__\nbytes\n\x8a\x05\x00\x10\xa5\xd4\xe8\x85R."
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        restricted_loads(hostile)
    assert restricted_loads(pickle.dumps(bytearray(b"ok"), 2)) == bytearray(b"ok")


def test_redis_lost_mid_export_says_so_and_to_re_run(tmp_path):
    from migrate.errors import ConnectionFailure

    folder = tmp_path / "flask_session"
    cache = FileSystemCache(str(folder), threshold=0, default_timeout=HOUR)
    for i in range(30):
        cache.set(f"session:s{i}", {"_permanent": True, "n": i})
    server = support.RedisProcess(tmp_path / "redis")
    try:
        with pytest.raises(ConnectionFailure, match="re-run, the export is idempotent"):
            export_sessions([str(folder)], server.url, options=Options(batch=10),
                            on_progress=lambda *_: server.stop())
    finally:
        server.stop()


def test_the_package_names_resolve_and_an_app_loads_no_export_code():
    for name in migrate.sessions.__all__:
        assert getattr(migrate.sessions, name) is not None, name
    # A fresh interpreter: what a shop loads when it imports the interface and the bridge.
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, migrate.sessions.interface, migrate.sessions.bridge;"
         "print(' '.join(sorted(m for m in sys.modules if m.startswith('migrate.sessions'))))"],
        capture_output=True, text=True, check=True).stdout.split()
    assert not {"migrate.sessions.export", "migrate.sessions.verify",
                "migrate.sessions.plan", "migrate.sessions.target"} & set(loaded), loaded


# --- verify reads Redis as Flask-Session does, not with the exporter's own mapping ---------------


def _mutated_export(monkeypatch, change_record=None, change_item=None) -> None:
    """A bug in the export's mapping (Plan, which export uses for every record): a mutant."""
    from migrate.sessions.plan import Plan

    item, items = Plan.item, Plan.items
    changed: set[int] = set()  # items() calls item(): change each Item once

    def change(it) -> None:
        if change_item and id(it) not in changed:
            changed.add(id(it))
            change_item(it)

    def mutant_item(self, record, source, now):
        found = item(self, change_record(record) if change_record else record, source, now)
        if found is not None:
            change(found[0])
        return found

    def mutant_items(self, block, source, now):
        block = [change_record(r) for r in block] if change_record else block
        out = items(self, block, source, now)
        for it in out:
            change(it)
        return out

    monkeypatch.setattr(Plan, "item", mutant_item)
    monkeypatch.setattr(Plan, "items", mutant_items)


def _without_permanent(record):
    if record.data is not None:
        return msgspec.structs.replace(record, data={k: v for k, v in record.data.items()
                                                     if k != "_permanent"})
    if record.pickle is not None:
        data = restricted_loads(record.pickle)
        data.pop("_permanent", None)
        return msgspec.structs.replace(record, pickle=pickle.dumps(data))
    return record


def _verify_dump(tmp_path: Path) -> Path:
    now = time.time()
    return write_dump(tmp_path / "dump.ndjson", [
        {"sid": "plain-sid", "expires": now + HOUR, "data": {"_permanent": True, "user_id": 4}},
        {"sid": "pickled-sid", "expires": now + HOUR,
         "pickle": pickle.dumps({"_permanent": True, "user_id": 5, "when": dt.date(2024, 2, 3)})},
    ])


def test_verify_fails_a_session_exported_without_permanent(tmp_path, fresh_redis, monkeypatch):
    dump = _verify_dump(tmp_path)
    _mutated_export(monkeypatch, change_record=_without_permanent)
    assert export_sessions([str(dump)], fresh_redis.url).written == 2
    client = flask_session_app(fresh_redis.url, SESSION_REFRESH_EACH_REQUEST=False).test_client()
    client.set_cookie("session", "plain-sid")
    assert client.get("/whoami").get_json()["permanent"] is False  # the bug a user would see
    result = verify_sessions([str(dump)], fresh_redis.url)
    assert not result.ok and result.matching == 0
    assert [d.problem for d in result.differences] == ["data differs (_permanent lost)"] * 2


def test_verify_fails_a_hundredfold_ttl_on_the_plain_json_dump_path(tmp_path, fresh_redis,
                                                                    monkeypatch):
    dump = _verify_dump(tmp_path)
    assert export_sessions([str(dump)], fresh_redis.url).written == 2
    # What test_sessions.py did not check: the plain JSON session's TTL, as exported.
    assert HOUR - 10 < fresh_redis.client.ttl("session:plain-sid") <= HOUR
    assert verify_sessions([str(dump)], fresh_redis.url).ok
    fresh_redis.client.flushall()

    def hundredfold(item):
        item.ttl_ms *= 100

    _mutated_export(monkeypatch, change_item=hundredfold)
    export_sessions([str(dump)], fresh_redis.url)
    assert 100 * HOUR - 10 < fresh_redis.client.ttl("session:plain-sid")
    result = verify_sessions([str(dump)], fresh_redis.url)
    assert not result.ok and result.matching == 0
    for difference in result.differences:
        assert 100 * HOUR - 100 < int(difference.problem.split()[1]) <= 100 * HOUR
        assert difference.problem.endswith(" s, expected 3600 s ± 60")


def test_verify_reads_what_flask_session_reads(tmp_path, fresh_redis):
    dump = _verify_dump(tmp_path)
    export_sessions([str(dump)], fresh_redis.url)
    # Flask-Session falls back to its other decoder: a JSON value is read by a msgpack app.
    fresh_redis.client.set("session:plain-sid", b'{"_permanent": true, "user_id": 4}', ex=HOUR)
    client = flask_session_app(fresh_redis.url, SESSION_REFRESH_EACH_REQUEST=False).test_client()
    client.set_cookie("session", "plain-sid")
    assert client.get("/whoami").get_json()["data"] == {"_permanent": True, "user_id": 4}
    assert verify_sessions([str(dump)], fresh_redis.url).ok
    # A value neither of its decoders reads is a difference (its last resort, pickle, is not
    # tried: verify never unpickles what Redis holds).
    fresh_redis.client.set("session:pickled-sid", b"\x80\x04garbage", ex=HOUR)
    result = verify_sessions([str(dump)], fresh_redis.url)
    assert [d.problem for d in result.differences] == [
        "unreadable by Flask-Session's msgpack serializer"]
    # The same data under a dropped _permanent, written straight into Redis.
    fresh_redis.client.set("session:plain-sid", msgspec.msgpack.encode({"user_id": 4}), ex=HOUR)
    problems = sorted(d.problem for d in verify_sessions([str(dump)], fresh_redis.url).differences)
    assert problems == ["data differs (_permanent lost)",
                        "unreadable by Flask-Session's msgpack serializer"]


def test_verify_checks_the_later_copy_of_a_duplicate(tmp_path, fresh_redis):
    now = time.time()
    first = write_dump(tmp_path / "a.ndjson", [
        {"sid": "s1", "expires": now + 100, "data": {"v": "older"}}])
    second = write_dump(tmp_path / "b.ndjson", [
        {"sid": "s1", "expires": now + 200, "data": {"v": "newer"}},
        {"sid": "s1", "expires": now + 150, "data": {"v": "between"}}])
    export_sessions([str(first), str(second)], fresh_redis.url)
    result = verify_sessions([str(first), str(second)], fresh_redis.url)
    assert result.ok and (result.checked, result.matching) == (1, 1), result.differences


def test_verify_lists_every_unreadable_line_beside_a_replaced_duplicate(tmp_path, fresh_redis):
    now = time.time()
    dump = tmp_path / "dump.ndjson"
    dump.write_bytes(b"\n".join([
        b"not json 1",
        msgspec.json.encode({"sid": "s1", "expires": now + 100, "data": {"v": "older"}}),
        b"not json 2",
        msgspec.json.encode({"sid": "s1", "expires": now + 200, "data": {"v": "newer"}}),
        b"not json 3",
    ]) + b"\n")
    export_sessions([str(dump)], fresh_redis.url)
    result = verify_sessions([str(dump)], fresh_redis.url, options=Options(batch=1))
    assert (result.checked, result.matching, result.unreadable) == (1, 1, 3)
    assert sorted(d.problem.split(" (")[0] for d in result.differences) == [
        f"cannot be exported: line {n} is not a record" for n in (1, 3, 5)]
