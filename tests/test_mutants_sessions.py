"""Session behaviour a mutation run (issue 10) found no test for: small deliberate bugs in
migrate.sessions passed every test. Each test names what a user would notice, on real Redis."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import pickle
import time
from pathlib import Path

import msgspec
from cachelib import SimpleCache
from flask import Flask, session
from markupsafe import Markup

from migrate.sessions import LEGACY_PREFIX, Record, export_sessions, verify_sessions
from migrate.sessions.record import short_id
from tests import test_sessions_support as support

redis_server, fresh_redis = support.redis_server, support.fresh_redis
TOKEN = "bridge-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def mirrored_app(redis_url: str, **bridge_options) -> Flask:
    """A plain Flask-Session cachelib app with the bridge mirroring to ``redis_url``."""
    from flask_session import Session

    from migrate.sessions.bridge import MigrationBridge

    app = Flask("mirrored")
    app.config.update(SESSION_TYPE="cachelib", SESSION_CACHELIB=SimpleCache(),
                      SESSION_PERMANENT=True)
    Session(app)
    MigrationBridge(app, token=TOKEN, redis_url=redis_url, **bridge_options)

    @app.post("/login/<int:user_id>")
    def login(user_id: int):
        session["user_id"] = user_id
        return "ok"

    @app.post("/note")
    def note():  # a value Flask-Session's msgpack serializer cannot store
        session["note"] = Markup("<i>hi</i>")
        return "ok"

    @app.post("/logout")
    def logout():
        session.clear()
        return "ok"

    return app


def sid_of(client) -> str:
    return client.get_cookie("session").value


def write_dump(path: Path, rows: list[dict]) -> Path:
    path.write_bytes(b"".join(msgspec.json.encode(r) + b"\n" for r in rows))
    return path


# --- the mirror (dual-write) during the migration window -----------------------------------


def test_a_logout_leaves_an_empty_session_in_redis_that_expires_and_is_counted(fresh_redis):
    app = mirrored_app(fresh_redis.url)
    client = app.test_client()
    client.post("/login/7")
    key = "session:" + sid_of(client)
    assert msgspec.msgpack.decode(fresh_redis.client.get(key))["user_id"] == 7
    client.post("/logout")
    # Logged out in Redis too: an empty permanent session, not a key that lives forever.
    assert msgspec.msgpack.decode(fresh_redis.client.get(key)) == {"_permanent": True}
    lifetime = app.permanent_session_lifetime.total_seconds()
    assert lifetime - 60 < fresh_redis.client.ttl(key) <= lifetime
    status = client.get("/_migrate/status", headers=AUTH).get_json()
    assert status["mirrored"] >= 1 and (status["deleted"], status["errors"]) == (1, 0)


def test_a_session_that_becomes_unstorable_leaves_no_stale_copy_in_redis(fresh_redis):
    client = mirrored_app(fresh_redis.url).test_client()
    client.post("/login/8")
    key = "session:" + sid_of(client)
    assert fresh_redis.client.exists(key) == 1
    # The user logs out on the after-app's side if a stale copy (still logged in, without
    # the new value) were kept: the mirror removes it instead.
    assert client.post("/note").status_code == 200
    assert fresh_redis.client.exists(key) == 0
    status = client.get("/_migrate/status", headers=AUTH).get_json()
    assert status["unconvertible"] >= 1 and status["errors"] == 0


def test_a_mirror_with_a_target_prefix_writes_under_that_prefix_and_the_sid(fresh_redis):
    client = mirrored_app(fresh_redis.url, target_prefix="shop:").test_client()
    client.post("/login/9")
    sid = sid_of(client)
    assert fresh_redis.client.keys("shop:*") == [f"shop:{sid}".encode()]
    assert msgspec.msgpack.decode(fresh_redis.client.get(f"shop:{sid}"))["user_id"] == 9


# --- the bridge stream ------------------------------------------------------------------------


def test_a_custom_store_stream_announces_how_many_sessions_it_sent(tmp_path):
    from flask_session import Session

    from migrate.sessions.bridge import MigrationBridge

    class ThreeSessions:
        def iter_sessions(self):
            for n in range(3):
                yield Record(sid=f"custom-{n}", expires=time.time() + 60, data={"n": n})

    app = Flask("custom")
    app.config.update(SESSION_TYPE="cachelib", SESSION_CACHELIB=SimpleCache())
    Session(app)
    MigrationBridge(app, token=TOKEN, source=ThreeSessions())
    lines = app.test_client().get("/_migrate/sessions", headers=AUTH).data.splitlines()
    records = [msgspec.json.decode(line, type=Record) for line in lines]
    assert [r.sid for r in records[:-1]] == ["custom-0", "custom-1", "custom-2"]
    assert records[-1].end and records[-1].count == 3


# --- export: what the summary says ------------------------------------------------------------


def test_a_dry_run_counts_the_sessions_already_in_redis_as_skipped(tmp_path, fresh_redis):
    now = time.time()
    dump = write_dump(tmp_path / "dump.ndjson", [
        {"sid": "kept", "expires": now + 600, "data": {"user_id": 1}},
        {"sid": "new", "expires": now + 600, "data": {"user_id": 2}},
    ])
    fresh_redis.client.set("session:kept", msgspec.msgpack.encode({"user_id": 1, "v": 2}))
    result = export_sessions([str(dump)], fresh_redis.url, dry_run=True)
    # The dry run says what a real run would do: one written, one left as the new app has it.
    assert (result.read, result.written, result.skipped) == (2, 1, 1)
    assert fresh_redis.client.keys() == [b"session:kept"]
    real = export_sessions([str(dump)], fresh_redis.url)
    assert (real.written, real.skipped) == (result.written, result.skipped)


def test_a_parallel_export_summary_matches_one_process(tmp_path, fresh_redis):
    now = time.time()
    rows = [{"sid": f"s{i}", "expires": now + 600,
             "pickle": pickle.dumps({"seen": dt.datetime(2024, 1, 2), "pair": (i, i)})}
            for i in range(40)]
    dump = write_dump(tmp_path / "dump.ndjson", rows)
    progress: dict[str, int] = {}

    def shown(label: str, done: int, total: int | None) -> None:
        progress[label] = done

    parallel = export_sessions([str(dump)], fresh_redis.url, jobs=3, dry_run=True,
                               on_progress=shown)
    one = export_sessions([str(dump)], fresh_redis.url, jobs=1, dry_run=True)
    assert fresh_redis.client.dbsize() == 0  # a dry run, in every process
    assert parallel.dry_run is True and parallel.on_conflict == one.on_conflict == "skip"
    assert (parallel.sources, parallel.redis) == (one.sources, one.redis)
    assert (parallel.read, parallel.written, parallel.converted) == (40, 40, 40)
    assert parallel.converted_kinds == one.converted_kinds == {"datetime": 40, "tuple": 40}
    assert progress == {str(dump): 40}  # the progress shown adds up every process's share
    assert isinstance(parallel.seconds, float) and 0 < parallel.seconds < 600


# --- verify: what its summary says ---------------------------------------------------------


def test_verify_counts_each_session_once_and_names_the_source_of_a_difference(tmp_path,
                                                                            fresh_redis):
    now = time.time()
    dump = write_dump(tmp_path / "dump.ndjson", [
        {"sid": f"s{n}", "expires": now + 600, "data": {"n": n}} for n in range(5)])
    export_sessions([str(dump)], fresh_redis.url)
    result = verify_sessions([str(dump)], fresh_redis.url)
    assert result.ok and (result.checked, result.matching) == (5, 5)
    assert (result.sources, result.redis) == ([str(dump)], f"redis://127.0.0.1:{fresh_redis.port}/0")
    assert isinstance(result.seconds, float) and 0 <= result.seconds < 600
    fresh_redis.client.delete("session:s3")
    result = verify_sessions([str(dump)], fresh_redis.url)
    assert (result.checked, result.matching) == (5, 4)
    [difference] = result.differences
    assert (difference.session, difference.source) == (short_id("s3"), str(dump))
    assert difference.problem == "missing in Redis"


def test_verify_goes_on_past_a_duplicate_to_the_sessions_after_it(tmp_path, fresh_redis):
    now = time.time()
    dump = write_dump(tmp_path / "dump.ndjson", [
        {"sid": "dup", "expires": now + 600, "data": {"v": "kept"}},
        {"sid": "dup", "expires": now + 300, "data": {"v": "dropped: expires sooner"}},
        {"sid": "later", "expires": now + 600, "data": {"v": 1}},
    ])
    export_sessions([str(dump)], fresh_redis.url)
    fresh_redis.client.delete("session:later")
    result = verify_sessions([str(dump)], fresh_redis.url)
    assert [d.session for d in result.differences] == [short_id("later")]
    assert result.checked == 2


def test_verify_checks_the_copy_the_export_kept_when_two_expire_together(tmp_path,
                                                                         fresh_redis):
    expires = time.time() + 600
    dump = write_dump(tmp_path / "dump.ndjson", [
        {"sid": "twin", "expires": expires, "data": {"v": "first"}},
        {"sid": "twin", "expires": expires, "data": {"v": "second"}},
    ])
    export_sessions([str(dump)], fresh_redis.url)
    kept = msgspec.msgpack.decode(fresh_redis.client.get("session:twin"))
    assert kept == {"v": "first"}
    result = verify_sessions([str(dump)], fresh_redis.url)
    assert result.ok and (result.checked, result.matching) == (1, 1), result.differences


def test_verify_does_not_count_a_match_that_a_later_copy_contradicts(tmp_path, fresh_redis):
    now = time.time()
    first = write_dump(tmp_path / "a.ndjson", [
        {"sid": "s1", "expires": now + 100, "data": {"v": "older"}}])
    second = write_dump(tmp_path / "b.ndjson", [
        {"sid": "s1", "expires": now + 200, "data": {"v": "newer"}}])
    export_sessions([str(first)], fresh_redis.url)  # the newer copy never reached Redis
    result = verify_sessions([str(first), str(second)], fresh_redis.url)
    assert (result.checked, result.matching) == (1, 0)
    assert [(d.source, d.problem) for d in result.differences] == [(str(second), "data differs")]


def test_verify_accepts_file_sessions_the_after_app_already_promoted(tmp_path, fresh_redis):
    digests = [hashlib.sha256(f"session:promoted-{n}".encode()).hexdigest() for n in (1, 2)]
    dump = write_dump(tmp_path / "dump.ndjson", [
        {"digest": digest, "expires": time.time() + 600, "data": {"user_id": 1}}
        for digest in digests])
    export_sessions([str(dump)], fresh_redis.url)
    # The after-app read them through under their sids and left empty tombstones behind.
    for digest in digests:
        fresh_redis.client.set(LEGACY_PREFIX + digest, b"", ex=600)
    result = verify_sessions([str(dump)], fresh_redis.url)
    assert result.ok and (result.checked, result.promoted) == (2, 2), result.differences


def test_verify_names_a_session_without_a_ttl(tmp_path, fresh_redis):
    dump = write_dump(tmp_path / "dump.ndjson", [
        {"sid": "s", "expires": time.time() + 3600, "data": {"user_id": 1}}])
    export_sessions([str(dump)], fresh_redis.url)
    fresh_redis.client.persist("session:s")  # a session that would never expire
    [difference] = verify_sessions([str(dump)], fresh_redis.url).differences
    assert difference.problem.startswith("TTL no TTL, expected 3600 s")


# --- the bridge's own store and a dump shared out to processes -----------------------------


def test_the_bridge_streams_only_sessions_and_counts_them_in_the_trailer(tmp_path):
    from flask_session import Session

    from migrate.sessions.bridge import MigrationBridge

    cache = SimpleCache()
    for n in range(3):
        cache.set(f"session:sid-{n}", {"user_id": n}, 600)
    cache.set("view:home", "<html>cached page</html>", 600)  # the app's other cache entries
    app = Flask("shared-cache")
    app.config.update(SESSION_TYPE="cachelib", SESSION_CACHELIB=cache)
    Session(app)
    MigrationBridge(app, token=TOKEN)
    lines = app.test_client().get("/_migrate/sessions", headers=AUTH).data.splitlines()
    records = [msgspec.json.decode(line, type=Record) for line in lines]
    assert sorted(r.sid for r in records[:-1]) == ["sid-0", "sid-1", "sid-2"]
    assert records[-1].end and records[-1].count == 3 and records[-1].next is None


def test_copies_of_a_session_meet_in_one_process_whatever_their_line_looks_like(tmp_path,
                                                                              fresh_redis):
    now = int(time.time())
    sids = [f"s{n}" for n in range(30)] + ["caf\u00e9", 'quo"te']
    lines = []
    for sid in sids:  # the older copy first, written the way this tool writes a dump ...
        lines.append(msgspec.json.encode({"sid": sid, "expires": now + 100, "data": {"v": 1}}))
    for sid in sids:  # ... the newer one by another tool: other key order, escaped text
        escaped = json.dumps(sid, ensure_ascii=True)
        lines.append(f'{{"expires": {now + 200}, "sid": {escaped}, "data": {{"v": 2}}}}'
                     .encode())
        lines.append(f'{{"sid":{escaped},"expires":{now + 150},"data":{{"v":3}}}}'.encode())
    dump = tmp_path / "dump.ndjson"
    dump.write_bytes(b"\n".join(lines) + b"\n")
    result = export_sessions([str(dump)], fresh_redis.url, jobs=3)
    assert (result.read, result.duplicates, result.failed) == (3 * len(sids), 2 * len(sids), 0)
    for sid in sids:  # the copy that expires last, in every process's share
        assert msgspec.msgpack.decode(fresh_redis.client.get("session:" + sid)) == {"v": 2}
