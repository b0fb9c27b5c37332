"""What a request costs the after-shop in Redis round trips: the wait a user feels on every page.

The session is read in one round trip with what the page needs (the header's cart, the cached
catalog, a product's view count); a read-only page writes nothing; a page that writes sends its
writes in one more. Counted on the app's real Redis connection (every command batch redis-py
sends is one round trip) and checked on the server's own command counts (INFO commandstats).
"""

from __future__ import annotations

import re

import pytest
import redis
import redis.connection

from tests.conftest import make_app

READ_ONLY = ["/", "/cart", "/account", "/orders/1"]
WRITES = ("set", "del", "incr", "incrby", "hincrby", "expire", "pexpire")


@pytest.fixture
def shop(request, tmp_path, database_url, monkeypatch):
    """The after-shop on the embedded Redis, and that Redis seen from outside."""
    env = request.getfixturevalue("stores").app_env()
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    app = make_app("stateless", request, tmp_path, database_url)
    return app, redis.Redis.from_url(env["REDIS_URL"])


@pytest.fixture
def round_trips(monkeypatch):
    """A list that gets one entry per command batch any redis-py connection sends."""
    sent: list[bytes] = []
    send = redis.connection.AbstractConnection.send_packed_command

    def counted(self, command, check_health=True):
        sent.append(command if isinstance(command, bytes) else b"".join(map(bytes, command)))
        return send(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)
    return sent


def commands(server: redis.Redis) -> dict[str, int]:
    """How many times the server ran each command so far."""
    return {name.removeprefix("cmdstat_"): stats["calls"]
            for name, stats in server.info("commandstats").items()}


def cost(client, server: redis.Redis, sent: list[bytes], method: str, path: str, **kwargs):
    """Send one request; its response, the round trips it made and the commands Redis ran."""
    before = commands(server)
    sent.clear()
    response = client.open(path, method=method, **kwargs)
    trips = len(sent)
    after = commands(server)
    ran = {name: calls - before.get(name, 0) for name, calls in after.items()
           if calls != before.get(name, 0)}
    ran.pop("info", None)  # the INFO that read the counts
    return response, trips, ran


def signed_in_with_an_order(client) -> None:
    assert client.post("/login", data={"username": "alice", "password": "wonderland"}
                       ).status_code == 302
    client.post("/cart/add", data={"product_id": 2, "quantity": 1})
    assert client.post("/checkout").headers["Location"].endswith("/orders/1")
    client.post("/cart/add", data={"product_id": 3, "quantity": 2})
    for path in READ_ONLY + ["/product/1"]:  # every script loaded, every connection open
        client.get(path)


@pytest.mark.parametrize("path", READ_ONLY)
def test_a_read_only_page_for_a_signed_in_user_is_one_round_trip_and_writes_nothing(
        shop, round_trips, path):
    app, server = shop
    client = app.test_client()
    signed_in_with_an_order(client)
    response, trips, ran = cost(client, server, round_trips, "GET", path)
    assert response.status_code == 200
    # The header still shows the cart as Redis holds it: 2 of product 3.
    assert re.search(rb'id="cart-count">2<', response.data)
    assert trips == 1, round_trips
    assert not set(ran) & set(WRITES), ran


def test_a_product_page_is_two_round_trips_and_counts_every_view(shop, round_trips):
    app, server = shop
    client = app.test_client()
    signed_in_with_an_order(client)
    start = int(server.get("views:4") or 0)
    shown = []
    for _ in range(3):
        response, trips, ran = cost(client, server, round_trips, "GET", "/product/4")
        assert response.status_code == 200 and trips <= 2, round_trips
        assert ran.get("incrby") == 1  # the view is counted on the server, once
        shown.append(int(re.search(rb'id="views">(\d+)<', response.data)[1]))
    assert shown == [start + 1, start + 2, start + 3]
    assert int(server.get("views:4")) == start + 3


def test_adding_to_the_cart_is_two_round_trips(shop, round_trips):
    app, server = shop
    client = app.test_client()
    signed_in_with_an_order(client)
    response, trips, ran = cost(client, server, round_trips, "POST", "/cart/add",
                                data={"product_id": 5, "quantity": 3})
    assert response.status_code == 302 and trips <= 2, round_trips
    assert ran.get("hincrby") == 1 and "set" not in ran, ran
    assert re.search(rb'id="cart-count">5<', client.get("/cart").data)


def test_a_missing_product_counts_no_view(shop, round_trips):
    app, server = shop
    client = app.test_client()
    signed_in_with_an_order(client)
    response, _, ran = cost(client, server, round_trips, "GET", "/product/999")
    assert response.status_code == 404
    assert "incrby" not in ran and not server.exists("views:999")


def test_refresh_each_request_extends_the_session_in_the_same_round_trip(shop, round_trips):
    app, server = shop
    app.config["SESSION_REFRESH_EACH_REQUEST"] = True
    client = app.test_client()
    signed_in_with_an_order(client)
    lifetime = int(app.permanent_session_lifetime.total_seconds())
    (key,) = server.keys("session:*")
    server.expire(key, 60)  # as if the user last came by long ago
    response, trips, ran = cost(client, server, round_trips, "GET", "/account")
    assert response.status_code == 200 and trips == 1, round_trips
    assert lifetime - 10 < server.ttl(key) <= lifetime  # the session lives on, as before
    assert "set" not in ran and ran.get("pexpire") == 1, ran  # extended, not rewritten
    assert "Set-Cookie" in response.headers  # the cookie's expiry moves with it


def test_a_changed_session_is_still_written_once(shop, round_trips):
    app, server = shop
    client = app.test_client()
    signed_in_with_an_order(client)
    client.get("/product/2")
    (key,) = server.keys("session:*")
    stored = server.get(key)
    response, trips, ran = cost(client, server, round_trips, "GET", "/product/5")
    assert response.status_code == 200 and ran.get("set") == 1, ran
    assert server.get(key) != stored  # "recently viewed" now leads with product 5
    recent = re.search(rb'<ul class="recent">(.*?)</ul>', client.get("/").data)[1]
    assert re.findall(rb'data-product="(\d+)"', recent)[:2] == [b"5", b"2"]


@pytest.mark.parametrize("fmt", ["msgpack", "json"])
def test_any_app_reads_a_key_named_by_a_session_field_with_the_session(stores, round_trips, fmt):
    """The interface for a user's own app: a read named by a session field, in either serializer,
    taken once; a key it could not read (another type) is left to the app's own read, which
    meets the error as it would have."""
    from flask import Flask, session

    from migrate.sessions.interface import Read, RedisSessionInterface, take_prefetched

    server = redis.Redis.from_url(stores.redis_url)
    app = Flask("own_app")
    app.config.update(SECRET_KEY="x" * 32, SESSION_SERIALIZATION_FORMAT=fmt)
    app.session_interface = RedisSessionInterface.from_config(app, server, prefetch=lambda req: [
        Read("HGETALL", "prefs:", field="user"), Read("GET", "motd"), Read("GET", "a-hash")])
    seen = {}

    @app.post("/login/<int:user>")
    def login(user):
        session["user"] = user
        return ""

    @app.get("/")
    def page():
        seen.update(prefs=take_prefetched("HGETALL", f"prefs:{session['user']}"),
                    motd=take_prefetched("GET", "motd"), again=take_prefetched("GET", "motd"),
                    wrong_type=take_prefetched("GET", "a-hash"),
                    no_field=take_prefetched("HGETALL", "prefs:"))
        return ""

    server.hset("prefs:42", "theme", "dark")
    server.hset("a-hash", "f", "v")
    server.set("motd", "hello")
    client = app.test_client()
    client.post("/login/42")
    client.get("/")  # the script is loaded once
    round_trips.clear()
    client.get("/")
    assert len(round_trips) == 1, round_trips
    assert seen == {"prefs": (True, {b"theme": b"dark"}), "motd": (True, b"hello"),
                    "again": (False, None), "wrong_type": (False, None),
                    "no_field": (False, None)}


def test_a_prefetch_of_a_write_command_is_refused():
    from migrate.sessions.interface import Read

    with pytest.raises(ValueError, match="use one of EXISTS, GET, HGETALL, SMEMBERS"):
        Read("DEL", "cart:")
