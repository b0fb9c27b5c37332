"""migrate.sessions.bridge in the before-shop, over real HTTP: the token, the export stream,
dual-write, and the after-shop picking up a migrated session (cart included) under the same
cookie."""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path

import msgspec
import pytest
import requests
from click.testing import CliRunner
from markupsafe import Markup

from migrate.cli import cli
from tests import test_sessions_support as support

redis_server, fresh_redis = support.redis_server, support.fresh_redis
TOKEN = "bridge-token-0123456789"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


@pytest.fixture
def start_before(tmp_path: Path):
    """Serve before-shops over HTTP; each call makes one with the given config."""
    servers: list[support.HttpServer] = []

    def start(**config) -> tuple[support.HttpServer, object]:
        app = support.before_app(tmp_path / f"before{len(servers)}", **config)
        server = support.HttpServer(app)
        servers.append(server)
        return server, app

    yield start
    for server in servers:
        server.stop()


def shopper(url: str, user: str = "alice", password: str = "wonderland") -> requests.Session:
    """A browser that logged in and filled its cart on ``url``."""
    browser = requests.Session()
    assert browser.post(url + "/login", data={"username": user, "password": password},
                        allow_redirects=False).status_code == 302
    for product, quantity in ((1, 1), (2, 2)):
        browser.post(url + "/cart/add", data={"product_id": product, "quantity": quantity},
                     allow_redirects=False)
    assert support.cart_lines(browser.get(url + "/cart").text) == {1: 1, 2: 2}
    return browser


def test_without_a_token_configured_there_is_no_bridge(start_before, fresh_redis):
    server, _ = start_before()
    shopper(server.url)
    assert requests.get(server.url + "/_migrate/sessions").status_code == 404
    code, out = run("export-sessions", "--from", server.url, "--redis", fresh_redis.url,
                    "--token", TOKEN)
    assert code == 2 and "no session bridge at" in out and "MIGRATE_BRIDGE_TOKEN" in out


def test_a_missing_or_wrong_token_gets_401(start_before, fresh_redis):
    server, _ = start_before(MIGRATE_BRIDGE_TOKEN=TOKEN)
    shopper(server.url)
    tries = ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
             {"Authorization": "Bearer"}, {"Authorization": "Bearer "},
             {"Authorization": "Bearer " + TOKEN[:-1]}, {"Authorization": "Bearer " + TOKEN[1:]},
             {"Authorization": "Bearer " + TOKEN + "x"}, {"Authorization": "Basic " + TOKEN})
    for headers in tries:  # empty, partial, prefix, longer: all refused
        response = requests.get(server.url + "/_migrate/sessions", headers=headers)
        assert response.status_code == 401 and "session" not in response.text.split()[0]
    code, out = run("export-sessions", "--from", server.url, "--redis", fresh_redis.url,
                    "--token", "wrong")
    assert code == 2 and "refused the token (HTTP 401)" in out
    assert fresh_redis.client.dbsize() == 0


def test_export_from_two_instances_then_the_after_shop_continues(start_before, fresh_redis,
                                                                 tmp_path):
    first, _ = start_before(MIGRATE_BRIDGE_TOKEN=TOKEN)
    second, _ = start_before(MIGRATE_BRIDGE_TOKEN=TOKEN)
    alice, bob = shopper(first.url), shopper(second.url, "bob", "builder")
    code, out = run("export-sessions", "--from", first.url, "--from", second.url,
                    "--redis", fresh_redis.url, "--token", TOKEN, "--json")
    result = json.loads(out)
    assert code == 0 and (result["read"], result["written"]) == (2, 2), out
    for sid in (alice.cookies["session"], bob.cookies["session"]):
        assert sid not in out
    assert run("verify", "sessions", "--from", first.url, "--from", second.url,
               "--redis", fresh_redis.url, "--token", TOKEN)[0] == 0

    after = support.HttpServer(support.after_app(tmp_path, fresh_redis.url))
    try:
        for browser, name in ((alice, "alice"), (bob, "bob")):
            page = browser.get(after.url + "/cart", allow_redirects=False)
            assert page.status_code == 200, "the migrated user had to log in again"
            assert f'id="user">{name}<' in page.text
            assert support.cart_lines(page.text) == {1: 1, 2: 2}
            # The cart moved to the after-shop's Redis hash, once, and left the session.
            browser.post(after.url + "/cart/add", data={"product_id": 1, "quantity": 1})
            assert support.cart_lines(browser.get(after.url + "/cart").text) == {1: 2, 2: 2}
        assert fresh_redis.client.hgetall("cart:1") == {b"1": b"2", b"2": b"2"}
        stored = msgspec.msgpack.decode(fresh_redis.client.get(
            "session:" + alice.cookies["session"]))
        assert "cart" not in stored and stored["_permanent"] is True
    finally:
        after.stop()


def test_dual_write_keeps_redis_current_after_the_export(start_before, fresh_redis):
    server, _ = start_before(MIGRATE_BRIDGE_TOKEN=TOKEN, MIGRATE_BRIDGE_REDIS_URL=fresh_redis.url)
    alice = shopper(server.url)
    code, out = run("export-sessions", "--from", server.url, "--redis", fresh_redis.url,
                    "--token", TOKEN, "--json")
    # The bridge had already mirrored the session: the export finds it there and keeps it.
    assert code == 0 and json.loads(out)["skipped"] == 1
    alice.post(server.url + "/cart/add", data={"product_id": 3, "quantity": 4})
    key = "session:" + alice.cookies["session"]
    assert msgspec.msgpack.decode(fresh_redis.client.get(key))["cart"] == {"1": 1, "2": 2, "3": 4}
    assert 7 * 24 * 3600 - 10 < fresh_redis.client.ttl(key)


def test_a_logout_during_the_export_is_not_undone(start_before, fresh_redis, tmp_path):
    server, _ = start_before(MIGRATE_BRIDGE_TOKEN=TOKEN, MIGRATE_BRIDGE_REDIS_URL=fresh_redis.url)
    alice = shopper(server.url)
    # The export read the session (a saved stream is that snapshot) ...
    snapshot = tmp_path / "stream.ndjson"
    snapshot.write_bytes(requests.get(server.url + "/_migrate/sessions",
                                      headers={"Authorization": f"Bearer {TOKEN}"}).content)
    fresh_redis.client.flushall()
    # ... then the user logged out before the export wrote it.
    alice.post(server.url + "/logout")
    code, out = run("export-sessions", "--from", str(snapshot), "--redis", fresh_redis.url,
                    "--json")
    assert json.loads(out)["skipped"] == 1
    stored = fresh_redis.client.get("session:" + alice.cookies.get("session", "")) or b""
    assert "user_id" not in (msgspec.msgpack.decode(stored) if stored else {})


def test_a_session_flask_session_cannot_store_is_reported_not_written(start_before, fresh_redis):
    server, app = start_before(MIGRATE_BRIDGE_TOKEN=TOKEN)
    shopper(server.url)
    cache = app.session_interface.cache
    cache.set("session:markup-sid", {"_permanent": True, "note": Markup("<i>x</i>")}, 600)
    # SimpleCache keeps an expired session until it prunes: the export must skip it.
    cache._cache["session:expired-sid"] = (int(time.time()) - 5, pickle.dumps({"a": 1}))
    code, out = run("export-sessions", "--from", server.url, "--redis", fresh_redis.url,
                    "--token", TOKEN)
    assert code == 1
    assert "cannot store it: Encoding objects of type Markup is unsupported" in out
    assert "markup-sid" not in out and "<i>x</i>" not in out
    assert fresh_redis.client.exists("session:markup-sid") == 0
    assert fresh_redis.client.exists("session:expired-sid") == 0


def bridge_app(tmp_path: Path, cache, **bridge_options):
    """A minimal Flask-Session cachelib app with the bridge (no shop around it)."""
    from flask import Flask, session
    from flask_session import Session

    from migrate.sessions.bridge import MigrationBridge

    app = Flask("plain")
    app.config.update(SESSION_TYPE="cachelib", SESSION_CACHELIB=cache)
    Session(app)
    MigrationBridge(app, token=TOKEN, **bridge_options)

    @app.post("/login/<int:user_id>")
    def login(user_id: int):
        session["user_id"] = user_id
        return "ok"

    return app


def test_a_filesystem_cache_app_streams_digest_records(tmp_path):
    from cachelib import FileSystemCache

    from migrate.sessions import Record

    app = bridge_app(tmp_path, FileSystemCache(str(tmp_path / "fs"), threshold=0))
    client = app.test_client()
    client.post("/login/3")
    lines = client.get("/_migrate/sessions", headers={"Authorization": f"Bearer {TOKEN}"}).data
    records = [msgspec.json.decode(line, type=Record) for line in lines.splitlines()]
    assert records[-1].end and records[-1].count == 1
    assert records[0].sid is None and len(records[0].digest) == 64 and records[0].pickle


def test_a_custom_store_plugs_in_through_the_adapter(tmp_path, fresh_redis):
    from cachelib import SimpleCache

    from migrate.sessions import Record

    class MyStore:
        def iter_sessions(self):
            yield Record(sid="custom-sid", expires=time.time() + 60, data={"user_id": 11})

    server = support.HttpServer(bridge_app(tmp_path, SimpleCache(), source=MyStore()))
    try:
        code, out = run("export-sessions", "--from", server.url, "--redis", fresh_redis.url,
                        "--token", TOKEN)
    finally:
        server.stop()
    assert code == 0, out
    assert msgspec.msgpack.decode(fresh_redis.client.get("session:custom-sid")) == {"user_id": 11}


def test_the_app_keeps_serving_when_the_mirror_redis_is_down(tmp_path):
    from cachelib import SimpleCache

    app = bridge_app(tmp_path, SimpleCache(),
                     redis_url=f"redis://127.0.0.1:{support.free_port()}/0")
    client = app.test_client()
    assert client.post("/login/4").status_code == 200
    assert client.get("/_migrate/status").status_code == 401
    status = client.get("/_migrate/status", headers={"Authorization": f"Bearer {TOKEN}"})
    # Two saves (the login, then the refresh on this request), neither reached Redis.
    assert status.get_json() == {"mirror": True, "mirrored": 0, "deleted": 0,
                                 "unconvertible": 0, "errors": 2, "tokens_mirrored": 0,
                                 "tokens_revoked": 0, "events_mirrored": 0,
                                 "hashes_mirrored": 0}


@pytest.mark.parametrize("store", ["simple", "filesystem"])
def test_a_long_stream_comes_in_pages_and_nothing_is_missed(tmp_path, fresh_redis, store):
    from cachelib import FileSystemCache, SimpleCache

    cache = (SimpleCache(threshold=100) if store == "simple"
             else FileSystemCache(str(tmp_path / "fs"), threshold=0))
    for i in range(7):
        cache.set(f"session:page-{i}", {"user_id": i}, 600)
    # page_seconds=0: every response carries one session and says where to go on.
    app = bridge_app(tmp_path, cache, page_seconds=0)
    first = app.test_client().get("/_migrate/sessions",
                                  headers={"Authorization": f"Bearer {TOKEN}"}).data
    trailer = json.loads(first.splitlines()[-1])
    assert trailer["count"] == 1 and len(trailer["next"]) == 64
    server = support.HttpServer(app)
    try:
        code, out = run("export-sessions", "--from", server.url, "--redis", fresh_redis.url,
                        "--token", TOKEN, "--json")
    finally:
        server.stop()
    result = json.loads(out)
    assert code == 0 and (result["read"], result["written"]) == (7, 7), out


@pytest.mark.parametrize("token", ["x", "short-token-15c"])
def test_a_guessable_bridge_token_is_refused_at_start(tmp_path: Path, token: str):
    from cachelib import SimpleCache
    from flask import Flask
    from flask_session import Session

    from migrate.sessions.bridge import MigrationBridge

    app = Flask("plain")
    app.config.update(SESSION_TYPE="cachelib", SESSION_CACHELIB=SimpleCache())
    Session(app)
    with pytest.raises(ValueError, match="use at least 16"):
        MigrationBridge(app, token=token)


# --- API tokens: no API client is logged out by the migration -------------------------------


def api_token(url: str, user: str = "alice", password: str = "wonderland") -> str:
    response = requests.post(url + "/api/token", json={"username": user, "password": password},
                             timeout=10)
    assert response.status_code == 201, response.text
    return response.json()["access_token"]


def api(url: str, path: str, token: str, method: str = "get", **kwargs) -> requests.Response:
    return getattr(requests, method)(url + path, headers={"Authorization": f"Bearer {token}"},
                                     timeout=10, **kwargs)


def test_api_clients_keep_working_after_the_migration(start_before, fresh_redis, tmp_path):
    from migrate.sessions.tokens import digest

    before, _ = start_before(MIGRATE_BRIDGE_TOKEN=TOKEN)
    alice, bob = api_token(before.url), api_token(before.url, "bob", "builder")
    assert api(before.url, "/api/logout", bob, "post").status_code == 200
    assert requests.get(before.url + "/_migrate/tokens").status_code == 401
    code, out = run("export-sessions", "--from", before.url, "--redis", fresh_redis.url,
                    "--token", TOKEN, "--json")
    result = json.loads(out)
    assert code == 0 and (result["tokens_read"], result["tokens_written"]) == (1, 1), out
    assert alice not in out and digest(alice) not in out
    # Redis holds the token's digest, never the token; its TTL is what it had left.
    keys = [k.decode() for k in fresh_redis.client.keys("api-token:*")]
    assert keys == [f"api-token:{digest(alice)}"]
    assert 7 * 24 * 3600 - 60 < fresh_redis.client.ttl(keys[0]) <= 7 * 24 * 3600
    again = json.loads(run("export-sessions", "--from", before.url, "--redis", fresh_redis.url,
                           "--token", TOKEN, "--json")[1])
    assert (again["tokens_written"], again["tokens_skipped"]) == (0, 1)

    after = support.HttpServer(support.after_app(tmp_path, fresh_redis.url))
    try:
        me = api(after.url, "/api/me", alice)
        assert me.status_code == 200 and me.json()["username"] == "alice", me.text
        assert me.headers["X-Token-Upgrade"] == "POST /api/token/refresh"
        assert api(after.url, "/api/me", bob).status_code == 401  # logged out stays out
        pair = requests.post(after.url + "/api/token/refresh", json={"refresh_token": alice},
                             timeout=10).json()
        assert 7 * 24 * 3600 - 60 < pair["refresh_expires_in"] <= 7 * 24 * 3600
        signed = api(after.url, "/api/cart", pair["access_token"], "post", json={"product_id": 2})
        assert signed.status_code == 200 and "X-Token-Upgrade" not in signed.headers
        # Logging out with the new token ends the old one too: it was the same login.
        assert api(after.url, "/api/logout", pair["access_token"], "post").status_code == 200
        for token in (alice, pair["access_token"]):
            refused = api(after.url, "/api/me", token)
            assert refused.status_code == 401 and "revoked" in refused.json()["error"]
        assert requests.post(after.url + "/api/token/refresh", timeout=10,
                             json={"refresh_token": pair["refresh_token"]}).status_code == 401
    finally:
        after.stop()


def test_tokens_issued_or_revoked_in_the_window_reach_redis_at_once(start_before, fresh_redis,
                                                                    tmp_path):
    before, _ = start_before(MIGRATE_BRIDGE_TOKEN=TOKEN, MIGRATE_BRIDGE_REDIS_URL=fresh_redis.url)
    kept, dropped = api_token(before.url), api_token(before.url, "bob", "builder")
    api(before.url, "/api/logout", dropped, "post")
    status = requests.get(before.url + "/_migrate/status", timeout=10,
                          headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert (status["tokens_mirrored"], status["tokens_revoked"]) == (2, 1)
    after = support.HttpServer(support.after_app(tmp_path, fresh_redis.url))
    try:  # no export yet: the mirror wrote them
        assert api(after.url, "/api/me", kept).json()["username"] == "alice"
        assert "revoked" in api(after.url, "/api/me", dropped).json()["error"]
    finally:
        after.stop()
    code, out = run("export-sessions", "--from", before.url, "--redis", fresh_redis.url,
                    "--token", TOKEN, "--json")
    assert code == 0 and json.loads(out)["tokens_skipped"] == 1


def test_the_token_stream_is_hashed_and_skips_expired_tokens(tmp_path):
    from cachelib import SimpleCache

    from migrate.sessions.tokens import digest

    live = [("raw-token-one", 7, time.time() + 60), ("raw-token-old", 8, time.time() - 1)]
    app = bridge_app(tmp_path, SimpleCache(), tokens=lambda: live)
    client = app.test_client()
    assert client.get("/_migrate/tokens").status_code == 401
    body = client.get("/_migrate/tokens", headers={"Authorization": f"Bearer {TOKEN}"}).data
    assert b"raw-token" not in body
    lines = [json.loads(line) for line in body.splitlines()]
    assert lines[0]["digest"] == digest("raw-token-one") and lines[0]["user_id"] == "7"
    assert lines[1:] == [{"end": True, "count": 1}]


def test_a_bad_token_record_is_reported_and_the_rest_written(fresh_redis):
    from migrate.sessions.tokens import digest, export_tokens

    good = {"digest": digest("t"), "user_id": "3", "expires": time.time() + 60}
    records = [("a", {"digest": "nothex", "user_id": "1", "expires": 1e12}),
               ("a", {"error": "a token record is not JSON"}),
               ("a", dict(good, user_id=5)), ("a", dict(good, expires="soon")),
               ("a", dict(good, expires=time.time() - 1)), ("a", good)]
    result = export_tokens(records, fresh_redis.client)
    assert (result.read, result.written, result.expired, len(result.failures)) == (6, 1, 1, 4)
    assert [reason for _, reason in result.failures] == [
        "a token record without a sha256 digest", "a token record is not JSON",
        "a token record without a user id", "a token record without an expiry"]
    assert fresh_redis.client.get(f"api-token:{digest('t')}") == b"3"


# --- API carts: per-user hashes cross the migration, each add counted once ---------------------


def api_cart(url: str, token: str) -> dict[int, int]:
    response = api(url, "/api/cart", token)
    assert response.status_code == 200, response.text
    return {line["product_id"]: line["quantity"] for line in response.json()["items"]}


def export_json(url: str, redis_url: str) -> dict:
    code, out = run("export-sessions", "--from", url, "--redis", redis_url, "--token", TOKEN,
                    "--json")
    assert code == 0, out
    return json.loads(out)


def test_an_api_cart_crosses_the_migration_each_add_once(start_before, fresh_redis, tmp_path):
    before, _ = start_before(MIGRATE_BRIDGE_TOKEN=TOKEN,
                               MIGRATE_BRIDGE_REDIS_URL=fresh_redis.url)
    alice = api_token(before.url)
    for product, quantity in ((1, 2), (2, 1)):
        api(before.url, "/api/cart", alice, "post", json={"product_id": product,
                                                          "quantity": quantity})
    # As if those adds came before the bridge was deployed: Redis has none of them.
    fresh_redis.client.flushall()
    first = export_json(before.url, fresh_redis.url)
    assert (first["hashes_read"], first["hashes_written"]) == (1, 1), first
    # During the window: each add is mirrored as it happens, one of them to a field the
    # export brought already.
    for product in (3, 1):
        api(before.url, "/api/cart", alice, "post", json={"product_id": product, "quantity": 1})
    assert api_cart(before.url, alice) == {1: 3, 2: 1, 3: 1}
    assert fresh_redis.client.hgetall("cart:1") == {b"1": b"3", b"2": b"1", b"3": b"1"}
    # A re-run reads the same adds in its snapshot (mirrored too): it adds nothing.
    again = export_json(before.url, fresh_redis.url)
    assert (again["hashes_written"], again["hashes_skipped"]) == (0, 1), again
    code, out = run("export-sessions", "--from", before.url, "--redis", fresh_redis.url,
                    "--token", TOKEN)
    assert code == 0 and ("per-user hashes (e.g. API carts): 0 added to, 1 already in Redis, "
                          "0 failed, of 1 read") in " ".join(out.split()), out
    status = requests.get(before.url + "/_migrate/status", timeout=10,
                          headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert status["hashes_mirrored"] == 4 and status["errors"] == 0

    after = support.HttpServer(support.after_app(tmp_path, fresh_redis.url))
    try:  # the migrated token reads the same cart on the after-shop, and adds to it
        assert api_cart(after.url, alice) == {1: 3, 2: 1, 3: 1}
        api(after.url, "/api/cart", alice, "post", json={"product_id": 2, "quantity": 1})
        # A last add on a before-instance still reaching the after-shop: only that add.
        api(before.url, "/api/cart", alice, "post", json={"product_id": 4, "quantity": 1})
        assert api_cart(after.url, alice) == {1: 3, 2: 2, 3: 1, 4: 1}
        # The after-shop emptied the cart (a check-out): a later export does not refill it.
        fresh_redis.client.delete("cart:1")
        assert export_json(before.url, fresh_redis.url)["hashes_written"] == 0
        assert api_cart(after.url, alice) == {}
    finally:
        after.stop()


def test_each_increment_lands_once_however_mirror_and_export_meet(fresh_redis):
    from migrate.sessions.hashes import add_once, export_hashes, marker_key

    client, origin = fresh_redis.client, "a1b2c3d4e5f60718"
    # The export read the snapshot {1: 2}; then an add made it 3 and was mirrored; then the
    # export wrote its (older) snapshot: the add is there once, nothing is taken back.
    assert add_once(client, "cart:7", origin, {"1": 3}) == 1
    stale = [("bridge", {"key": "cart:7", "origin": origin, "fields": {"1": 2}})]
    assert export_hashes(stale, client).skipped == 1
    assert client.hgetall("cart:7") == {b"1": b"3"}
    # A mirror Redis missed (total 4): the next one (total 5) brings both adds.
    assert add_once(client, "cart:7", origin, {"1": 5}) == 1
    assert client.hget("cart:7", "1") == b"5"
    # Another instance's part of the same user's cart is its own: both count.
    assert add_once(client, "cart:7", "ffffffffffffffff", {"1": 1, "2": 1}) == 2
    assert client.hgetall("cart:7") == {b"1": b"6", b"2": b"1"}
    # The marker shares the cart's Redis Cluster slot and outlives the window.
    assert marker_key("cart:7", origin) == "{cart:7}:migrated:" + origin
    assert marker_key("{user7}cart", origin) == "{user7}cart:migrated:" + origin
    assert 29 * 24 * 3600 < client.ttl(marker_key("cart:7", origin))
    dry = export_hashes([("b", {"key": "cart:8", "origin": origin, "fields": {"1": 1}})],
                        client, dry_run=True)
    assert dry.written == 1 and client.exists("cart:8") == 0


def test_bad_hash_records_are_reported_and_the_rest_added(fresh_redis):
    from migrate.sessions.hashes import export_hashes

    origin = "0123456789abcdef"
    good = {"key": "cart:3", "origin": origin, "fields": {"5": 2}}
    fresh_redis.client.set("cart:9", "a string, not a hash")
    records = [("a", {"error": "a record is not JSON"}), ("a", dict(good, key="")),
               ("a", dict(good, origin="../x")), ("a", dict(good, fields={"5": "two"})),
               ("a", dict(good, fields={"5": True})), ("a", dict(good, fields={})),
               ("a", dict(good, key="cart:9")), ("a", good)]
    result = export_hashes(records, fresh_redis.client)
    assert (result.read, result.written, len(result.failures)) == (8, 1, 7)
    assert [reason.split(" (")[0].split(":")[0] for _, reason in result.failures] == [
        "a record is not JSON", "a hash record without a key",
        "a hash record without the bridge's origin id",
        "a hash record with a value that is not a whole number >= 0",
        "a hash record with a value that is not a whole number >= 0",
        "a hash record without fields", "Redis refused a hash"]
    assert fresh_redis.client.hgetall("cart:3") == {b"5": b"2"}


def test_the_hash_stream_names_one_origin_per_process(tmp_path):
    from cachelib import SimpleCache

    carts = {"cart:1": {1: 2}, "cart:2": {}}
    app = bridge_app(tmp_path, SimpleCache(), hashes=lambda: carts.items())
    client = app.test_client()
    assert client.get("/_migrate/hashes").status_code == 401
    headers = {"Authorization": f"Bearer {TOKEN}"}
    bodies = [[json.loads(line) for line in client.get("/_migrate/hashes",
                                                       headers=headers).data.splitlines()]
              for _ in range(2)]
    assert bodies[0] == bodies[1]  # the same origin: a re-run meets the same markers
    record, trailer = bodies[0]
    assert record["key"] == "cart:1" and record["fields"] == {"1": 2}
    assert len(record["origin"]) == 16 and trailer == {"end": True, "count": 1}
