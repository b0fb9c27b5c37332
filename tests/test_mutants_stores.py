"""The after-shop's state code (sample_stateless_app/stores.py) where a mutation run (issue 10)
found no test: a migrated session's cart is adopted into Redis only for its own user."""

from __future__ import annotations

import msgspec

from tests import test_sessions_support as support

redis_server, fresh_redis = support.redis_server, support.fresh_redis


def test_a_migrated_anonymous_session_with_a_cart_never_fills_a_shared_cart(tmp_path,
                                                                            fresh_redis):
    # A before-shop session with a cart but no user (a hand-made or damaged session): there
    # is nobody to give the cart to, and "cart:None" would be one cart for every such visitor.
    fresh_redis.client.set("session:anonymous-sid", msgspec.msgpack.encode(
        {"_permanent": True, "cart": {"1": 2}}), ex=600)
    client = support.after_app(tmp_path, fresh_redis.url).test_client()
    client.set_cookie("session", "anonymous-sid")
    assert client.get("/").status_code == 200
    assert fresh_redis.client.keys("cart:*") == []
    assert fresh_redis.client.keys("*adopted*") == []
    stored = fresh_redis.client.get("session:anonymous-sid")  # emptied: Flask-Session drops it
    assert stored is None or "cart" not in msgspec.msgpack.decode(stored)


def test_a_migrated_cart_is_adopted_once_for_its_user(tmp_path, fresh_redis):
    fresh_redis.client.set("session:alice-sid", msgspec.msgpack.encode(
        {"_permanent": True, "user_id": 1, "cart": {"1": 2, "3": 1}}), ex=600)
    app = support.after_app(tmp_path, fresh_redis.url)
    client = app.test_client()
    client.set_cookie("session", "alice-sid")
    for _ in range(2):  # a second request (or a second instance) adds nothing more
        assert client.get("/").status_code == 200
    assert fresh_redis.client.hgetall("cart:1") == {b"1": b"2", b"3": b"1"}
    lifetime = int(app.permanent_session_lifetime.total_seconds())
    marker = fresh_redis.client.keys("{cart:1}:adopted:*")
    assert len(marker) == 1 and 0 < fresh_redis.client.ttl(marker[0]) <= lifetime


def test_a_redis_that_accepts_and_never_answers_is_a_503_within_seconds(tmp_path):
    # A Redis that hangs (a full primary, a half-open connection): the page must not hang with
    # it. The after-shop's client gives up after its socket timeout and the page is a 503.
    import socket
    import threading
    import time

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_say_nothing() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept_and_say_nothing, daemon=True)
    thread.start()
    try:
        url = f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
        client = support.after_app(tmp_path, url).test_client()
        client.set_cookie("session", "someone-sid")
        started = time.monotonic()
        page = client.get("/")
        assert page.status_code == 503, page.status_code
        assert time.monotonic() - started < 20  # the 5 s socket timeout, not forever
        assert page.headers.get("Retry-After")
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        listener.close()
