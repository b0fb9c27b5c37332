"""The JSON API with tokens (``/api/...``) in both shops: opaque tokens in the before-shop's
memory, signed JWTs in the after-shop (key rotation by ``kid``, a Redis denylist at logout),
and what a client notices across two real instances."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest
import requests

from tests.conftest import SECRET

KEY_OLD = "old-key-0123456789abcdefghijklmnopqrstuv"
KEY_NEW = "new-key-zyxwvutsrqponmlkjihgfedcba9876543"


def log_in(client, user: str = "alice", password: str = "wonderland") -> dict:
    response = client.post("/api/token", json={"username": user, "password": password})
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def assert_refused(response, *words: str) -> str:
    """A 401 whose body is one line of JSON with the reason (and the words given)."""
    text = response.get_data(as_text=True) if hasattr(response, "get_data") else response.text
    assert response.status_code == 401, text
    assert response.headers["Content-Type"] == "application/json"
    assert "\n" not in text.strip() and "Traceback" not in text
    reason = json.loads(text)["error"]
    for word in words:
        assert word in reason, reason
    return reason


def test_a_client_logs_in_fills_its_cart_and_logs_out(client):
    tokens = log_in(client)
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] > 0
    headers = bearer(tokens["access_token"])
    assert client.get("/api/me", headers=headers).get_json()["username"] == "alice"
    assert client.get("/api/cart", headers=headers).get_json() == {"items": [], "total_cents": 0}
    client.post("/api/cart", headers=headers, json={"product_id": 1, "quantity": 2})
    added = client.post("/api/cart", headers=headers, json={"product_id": 3})
    assert added.status_code == 200
    cart = client.get("/api/cart", headers=headers).get_json()
    assert [(x["product_id"], x["quantity"]) for x in cart["items"]] == [(1, 2), (3, 1)]
    assert cart["total_cents"] == sum(x["price_cents"] * x["quantity"] for x in cart["items"])
    # Another user's token sees another cart.
    bob = bearer(log_in(client, "bob", "builder")["access_token"])
    assert client.get("/api/cart", headers=bob).get_json()["items"] == []
    assert client.post("/api/logout", headers=headers).get_json() == {"logged_out": True}
    assert_refused(client.get("/api/cart", headers=headers), "revoked", "POST /api/token")
    assert client.get("/api/me", headers=bob).status_code == 200  # bob is still logged in


def test_the_api_needs_no_csrf_token_and_sets_no_cookie(app):
    app.config["CSRF_STRICT"] = True  # even when scripts are asked for the form token
    client = app.test_client()
    response = client.post("/api/token", json={"username": "alice", "password": "wonderland"},
                           headers={"Origin": "https://client.example"})
    assert response.status_code == 201 and "Set-Cookie" not in response.headers
    headers = bearer(response.get_json()["access_token"])
    assert client.post("/api/cart", headers=headers, json={"product_id": 2}).status_code == 200
    # A form post that rides on a session cookie is still checked.
    client.set_cookie(app.config["SESSION_COOKIE_NAME"], "some-session")
    assert client.post("/api/cart", headers=headers, json={"product_id": 2}).status_code == 403


def test_wrong_passwords_and_bad_bodies_are_refused_in_json(client):
    assert_refused(client.post("/api/token", json={"username": "alice", "password": "x"}),
                   "wrong user name or password")
    assert_refused(client.post("/api/token", json={"username": "nobody", "password": "x"}))
    assert_refused(client.post("/api/token", json={"username": ["alice"], "password": 1}))
    for body in ({"data": "username=alice"}, {"json": ["alice", "wonderland"]}):
        response = client.post("/api/token", **body)
        assert response.status_code == 400 and "JSON" in response.get_json()["error"]
    headers = bearer(log_in(client)["access_token"])
    for payload, code in (({"product_id": "1"}, 400), ({"product_id": 1, "quantity": 100}, 400),
                          ({"product_id": 1, "quantity": True}, 400),
                          ({"product_id": 999}, 404)):
        response = client.post("/api/cart", headers=headers, json=payload)
        assert response.status_code == code and response.get_json()["error"], payload


def forged(claims: dict, key: str, kid: str = "secret-key", alg: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


def unsigned(claims: dict, header: dict) -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims)}."


def test_every_bad_token_gets_a_one_line_401(app, client):
    good = log_in(client)
    access = good["access_token"]
    cases = {
        "no header": {},
        "another scheme": {"Authorization": "Basic " + access},
        "no token": {"Authorization": "Bearer "},
        "two words": {"Authorization": f"Bearer {access} x"},
        "unknown": bearer("d" * 43),
        "changed by a character": bearer(access[:-2] + ("A" if access[-2] != "A" else "B")
                                         + access[-1]),
        "not text": {"Authorization": "Bearer \u00ff\u00fe.\u00e9"},
        "garbage with dots": bearer("a.b.c"),
        "very long": bearer("x" * 8000),
    }
    if "refresh_token" in good:  # the after-shop's JWTs
        claims = jwt.decode(access, options={"verify_signature": False})
        derived = app.extensions["api_jwt_keys"][0]["secret-key"]
        header, payload, signature = access.split(".")
        richer = dict(claims, sub="2")  # bob, say: a payload changed under the signature
        cases |= {
            "payload swapped": bearer(".".join([header, forged(richer, "x" * 32).split(".")[1],
                                                signature])),
            "expired": bearer(forged(dict(claims, exp=int(time.time()) - 3600), derived)),
            "unknown kid": bearer(forged(claims, derived, kid="gone")),
            "kid not text": bearer(unsigned(claims, {"alg": "HS256", "kid": [1]}) + "c2ln"),
            "alg none": bearer(unsigned(claims, {"alg": "none", "kid": "secret-key"})),
            "alg None": bearer(unsigned(claims, {"alg": "None", "typ": "JWT"})),
            "another key": bearer(forged(claims, "k" * 40)),
            "the refresh token": bearer(good["refresh_token"]),
            "claims missing": bearer(forged({"sub": "1", "exp": int(time.time()) + 60}, derived)),
            "sub not a number": bearer(forged(dict(claims, sub="\u00b2"), derived)),
            "header not an object": bearer(unsigned(claims, ["alg"])),  # type: ignore[arg-type]
        }
    reasons = {}
    for name, headers in cases.items():
        for method, path in (("get", "/api/cart"), ("get", "/api/me"), ("post", "/api/logout")):
            response = getattr(client, method)(path, headers=headers)
            reasons[name] = assert_refused(response)
    assert "missing Authorization header" in reasons["no header"]
    assert "malformed Authorization header" in reasons["two words"]
    if "refresh_token" in good:
        assert reasons["expired"] == "token expired: ask POST /api/token/refresh"
        assert "unknown kid" in reasons["unknown kid"]
        assert "'none' is not accepted" in reasons["alg none"]
        for name in ("payload swapped", "another key", "changed by a character"):
            assert "signature does not match" in reasons[name], name
        for name in ("garbage with dots", "kid not text", "header not an object", "not text"):
            assert "malformed token" in reasons[name], name
        assert "not the access token" in reasons["the refresh token"]
    else:
        assert "unknown or revoked token" in reasons["changed by a character"]
    # None of them broke the good token.
    assert client.get("/api/me", headers=bearer(access)).status_code == 200


@pytest.mark.parametrize("app", ["stateful"], indirect=True)  # JWTs: tested above
def test_an_expired_opaque_token_is_refused(client):
    from sample_stateful_app import api

    access = log_in(client)["access_token"]
    user_id, _ = api.TOKENS[access]
    api.TOKENS[access] = (user_id, time.time() - 1)
    assert_refused(client.get("/api/cart", headers=bearer(access)), "expired")


# --- the after-shop only: refresh, rotation, weak keys ---------------------------------------


@pytest.fixture
def after_shop(stores, database_url):
    """Make after-shops on the same Redis and database with the config given."""
    from sample_stateless_app import create_app
    from sample_stateless_app.db import upgrade

    upgrade(database_url)
    env = stores.app_env()

    def make(**config):
        return create_app({"TESTING": True, "SECRET_KEY": SECRET, "DATABASE_URL": database_url,
                           "REDIS_URL": env["REDIS_URL"], "S3_ENDPOINT_URL": "http://127.0.0.1:9",
                           **config}).test_client()

    return make


def test_refresh_gives_a_new_access_token_until_logout(after_shop):
    client = after_shop(API_ACCESS_LIFETIME=60)
    tokens = log_in(client)
    assert tokens["expires_in"] == 60 and tokens["refresh_expires_in"] > 3600
    refreshed = client.post("/api/token/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200
    access = refreshed.get_json()["access_token"]
    assert access != tokens["access_token"]
    assert client.get("/api/me", headers=bearer(access)).get_json()["username"] == "alice"
    assert_refused(client.post("/api/token/refresh",
                               json={"refresh_token": tokens["access_token"]}), "refresh")
    # Logging out with any access token of the login ends all of it, refresh token included.
    client.post("/api/logout", headers=bearer(tokens["access_token"]))
    for token in (access, tokens["access_token"]):
        assert_refused(client.get("/api/me", headers=bearer(token)), "revoked")
    assert_refused(client.post("/api/token/refresh",
                               json={"refresh_token": tokens["refresh_token"]}), "revoked")
    assert client.post("/api/token/refresh", json={}).status_code == 400


def test_the_denylist_entry_lasts_as_long_as_the_login(after_shop, stores):
    import redis

    client = after_shop(API_TOKEN_LIFETIME=300)
    tokens = log_in(client)
    client.post("/api/logout", headers=bearer(tokens["access_token"]))
    sid = jwt.decode(tokens["access_token"], options={"verify_signature": False})["sid"]
    ttl = redis.Redis.from_url(stores.redis_url).ttl(f"api-revoked:{sid}")
    assert 290 <= ttl <= 300


def test_a_rotated_key_verifies_while_listed_and_fails_when_removed(after_shop):
    old = after_shop(JWT_KEYS=f"2026-06:{KEY_OLD}")
    tokens = log_in(old)
    assert jwt.get_unverified_header(tokens["access_token"])["kid"] == "2026-06"

    rotated = after_shop(JWT_KEYS=f"2026-12:{KEY_NEW},2026-06:{KEY_OLD}")
    assert rotated.get("/api/me", headers=bearer(tokens["access_token"])).status_code == 200
    refreshed = rotated.post("/api/token/refresh",
                             json={"refresh_token": tokens["refresh_token"]}).get_json()
    assert jwt.get_unverified_header(refreshed["access_token"])["kid"] == "2026-12"
    assert old.get("/api/me", headers=bearer(refreshed["access_token"])).status_code == 401

    # The signing kid may also be named, and need not be the first listed.
    named = after_shop(JWT_KEYS={"2026-06": KEY_OLD, "2026-12": KEY_NEW},
                       JWT_SIGNING_KID="2026-12")
    assert jwt.get_unverified_header(log_in(named)["access_token"])["kid"] == "2026-12"

    removed = after_shop(JWT_KEYS=f"2026-12:{KEY_NEW}")
    assert_refused(removed.get("/api/me", headers=bearer(tokens["access_token"])), "kid")
    assert_refused(removed.post("/api/token/refresh",
                                json={"refresh_token": tokens["refresh_token"]}), "kid")
    assert removed.get("/api/me", headers=bearer(refreshed["access_token"])).status_code == 200


@pytest.mark.parametrize(("keys", "signing", "message"), [
    ("main:dev", None, "kid 'main' is a development value"),
    ("main:short-key-123", None, "kid 'main' is too short"),
    (f"main:{'ab' * 20}", None, "kid 'main' repeats too few characters"),
    (f"bad kid:{KEY_NEW}", None, "is not 1-64 letters"),
    (f"main:{KEY_NEW}", "other", "JWT_SIGNING_KID 'other' is not one of the kids"),
    (",", None, "JWT_KEYS lists no key"),
])
def test_a_weak_or_wrong_signing_key_is_refused_at_start(after_shop, keys, signing, message):
    with pytest.raises(RuntimeError) as info:
        after_shop(JWT_KEYS=keys, JWT_SIGNING_KID=signing)
    assert message in str(info.value)
    for key in (KEY_NEW, "short-key-123", "ab" * 20):
        assert key not in str(info.value)  # never the key itself


# --- two real instances ------------------------------------------------------------------------


def http_log_in(url: str) -> dict:
    response = requests.post(url + "/api/token", timeout=10,
                             json={"username": "alice", "password": "wonderland"})
    assert response.status_code == 201, response.text
    return response.json()


@pytest.mark.slow
def test_before_a_token_works_only_on_the_instance_that_issued_it(start_cluster):
    first, second = start_cluster("stateful", 2).urls
    token = bearer(http_log_in(first)["access_token"])
    assert requests.get(first + "/api/me", headers=token, timeout=10).status_code == 200
    # The trap: the other instance has never heard of it, and the client is logged out.
    assert_refused(requests.get(second + "/api/me", headers=token, timeout=10), "unknown")


@pytest.mark.slow
def test_after_a_token_works_on_every_instance_and_logout_reaches_them_all(start_cluster):
    cluster = start_cluster("stateless", 2)
    first, second = cluster.urls
    tokens, other = http_log_in(first), http_log_in(first)
    token = bearer(tokens["access_token"])
    requests.post(first + "/api/cart", headers=token, json={"product_id": 2}, timeout=10)
    cart = requests.get(second + "/api/cart", headers=token, timeout=10)
    assert cart.status_code == 200 and cart.json()["items"][0]["product_id"] == 2
    refreshed = requests.post(second + "/api/token/refresh", timeout=10,
                              json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200
    assert requests.post(first + "/api/logout", headers=token, timeout=10).status_code == 200
    assert_refused(requests.get(second + "/api/me", headers=token, timeout=10), "revoked")
    again = bearer(refreshed.json()["access_token"])
    assert_refused(requests.get(second + "/api/cart", headers=again, timeout=10), "revoked")
    # The instance that issued a token dies: the client carries on on the other one.
    cluster.kill(0)
    me = requests.get(second + "/api/me", headers=bearer(other["access_token"]), timeout=10)
    assert me.status_code == 200 and me.json()["username"] == "alice"


def test_a_redis_outage_is_a_json_503_not_a_500(after_shop):
    from tests.test_sessions_support import free_port

    tokens = log_in(after_shop())
    down = after_shop(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    response = down.get("/api/cart", headers=bearer(tokens["access_token"]))
    assert response.status_code == 503 and response.headers["Retry-After"] == "2"
    assert "unreachable" in response.get_json()["error"]
