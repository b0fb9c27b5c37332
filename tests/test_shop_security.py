"""Both shops as examples worth copying: each test here reproduces an attack that once worked
(issue 10, items 7-12), and both shops must refuse it the same way."""

from __future__ import annotations

import io
import os
import re

import pytest

from tests.test_shop import AVATAR, cart_lines, marker, upload_avatar

ALICE = {"username": "alice", "password": "wonderland"}


# --- 7. open redirect at login ------------------------------------------------------------

# ``next`` as it appears in the query string. A browser drops tabs and newlines inside a URL,
# trims leading spaces and control characters, and reads a backslash as a slash: every one
# of these leads it to another host if the shop sends it back in ``Location``.
OFFSITE_NEXT = [
    "//evil.example",
    "///evil.example",
    "/%09/evil.example",
    "/%0A/evil.example",
    "/%0D%0A/evil.example",
    "%09//evil.example",
    "%20//evil.example",
    "%2F%2Fevil.example",
    "%5C%5Cevil.example",
    "/%5Cevil.example",
    "%5C/evil.example",
    "/%09%5Cevil.example",
    "https://evil.example/",
    "https:evil.example",
    "HTTPS://evil.example",
    "javascript:alert(1)",
    "evil.example",
    "/%252F%252Fevil.example",  # decoded once more by a proxy or a later redirect
    "/%255Cevil.example",
]


@pytest.mark.parametrize("raw_next", OFFSITE_NEXT)
def test_login_never_redirects_off_site(client, raw_next):
    response = client.post(f"/login?next={raw_next}", data=ALICE)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize(
    "raw_next,location",
    [
        ("/cart", "/cart"),
        ("/orders/3", "/orders/3"),
        ("/product/2%3Fx%3D1", "/product/2?x=1"),
        ("/caf%C3%A9", "/caf%C3%A9"),  # sent on as ASCII, never as raw UTF-8 in a header
    ],
)
def test_login_goes_on_to_a_local_page(client, raw_next, location):
    response = client.post(f"/login?next={raw_next}", data=ALICE)
    assert response.headers["Location"] == location


def test_login_returns_to_the_page_that_asked_for_it(client):
    asked = client.get("/account").headers["Location"]
    assert client.post(asked, data=ALICE).headers["Location"] == "/account"


# --- 8. session fixation ------------------------------------------------------------------


def test_a_session_id_planted_before_login_is_worthless_after_it(app, client):
    client.get("/product/1")  # the attacker's anonymous session (a recently-viewed list)
    planted = client.get_cookie("session").value
    victim = app.test_client()
    victim.set_cookie("session", planted)  # e.g. through a cookie-tossing sibling subdomain
    assert victim.post("/login", data=ALICE).status_code == 302
    assert victim.get_cookie("session").value != planted
    assert victim.get("/account").status_code == 200
    # The attacker still holds the planted id: it must not be alice's session now.
    account = client.get("/account")
    assert account.status_code == 302 and account.headers["Location"].startswith("/login")


# --- 9. cross-site request forgery --------------------------------------------------------

# What a browser adds to a form post that another site's page makes it send, and to one from
# the shop's own page. (A script sends neither header.)
CROSS_SITE = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
SAME_ORIGIN = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}
TOKEN_FIELD = re.compile(rb'<input type="hidden" name="csrf_token" value="([^"]+)">')


def token_on(client, path: str) -> str:
    found = TOKEN_FIELD.search(client.get(path).data)
    assert found, f"no csrf_token field on {path}"
    return found.group(1).decode()


def browser_login(client) -> None:
    """Log in as a browser does: the form's token, the browser's same-origin headers."""
    token = token_on(client, "/login")
    response = client.post("/login", data={**ALICE, "csrf_token": token}, headers=SAME_ORIGIN)
    assert response.status_code == 302


def avatar_form(data: bytes = AVATAR, **fields) -> dict:
    return {"avatar": (io.BytesIO(data), "me.png"), **fields}


def test_the_session_cookie_is_samesite_lax(app, client):
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert "SameSite=Lax" in client.post("/login", data=ALICE).headers["Set-Cookie"]


def test_every_post_form_carries_this_sessions_token(client):
    pages = {"/login": 1}
    for path, count in pages.items():
        page = client.get(path).data
        forms = re.findall(rb'<form method="post".*?</form>', page, re.S)
        assert len(forms) == count and all(TOKEN_FIELD.search(f) for f in forms), path
    browser_login(client)
    client.post("/cart/add", data={"product_id": 1})
    token = token_on(client, "/account")
    # product: add to cart, log out; cart: remove the one line, check out, log out; account:
    # avatar, log out.
    for path, count in (("/product/1", 2), ("/cart", 3), ("/account", 2)):
        forms = re.findall(rb'<form method="post".*?</form>', client.get(path).data, re.S)
        assert len(forms) == count, path
        assert [TOKEN_FIELD.search(f).group(1).decode() for f in forms] == [token] * count, path


@pytest.mark.parametrize(
    "path,form",
    [
        ("/cart/add", lambda: {"product_id": 2}),
        ("/cart/remove", lambda: {"product_id": 1}),
        ("/checkout", dict),
        ("/logout", dict),
        ("/account/avatar", avatar_form),
    ],
)
def test_a_cross_site_form_post_is_refused_and_changes_nothing(client, path, form):
    browser_login(client)
    client.post("/cart/add", data={"product_id": 1, "csrf_token": token_on(client, "/cart")},
                headers=SAME_ORIGIN)
    response = client.post(path, data=form(), headers=CROSS_SITE)
    assert response.status_code == 403
    assert "another site" in marker(response.data, "error")
    assert cart_lines(client.get("/cart").data) == {1: 1}  # still signed in, cart unchanged
    assert b'data-order="' not in client.get("/account").data
    assert client.get("/account/avatar").status_code == 404


def test_a_cross_site_login_is_refused(client):
    # Login CSRF: the attacker signs the victim into the attacker's account.
    response = client.post("/login", data=ALICE, headers=CROSS_SITE)
    assert response.status_code == 403
    assert client.get("/account").status_code == 302


def test_a_browser_using_the_shops_own_forms_gets_through(client):
    browser_login(client)
    for path, data in (("/cart/add", {"product_id": 1, "quantity": 2}), ("/checkout", {}),
                       ("/account/avatar", avatar_form())):
        data["csrf_token"] = token_on(client, "/account")
        assert client.post(path, data=data, headers=SAME_ORIGIN).status_code == 302, path
    assert b'data-order="' in client.get("/account").data
    assert client.get("/account/avatar").data == AVATAR
    logout = {"csrf_token": token_on(client, "/account")}
    assert client.post("/logout", data=logout, headers=SAME_ORIGIN).status_code == 302
    assert client.get("/account").status_code == 302


@pytest.mark.parametrize("origin", ["https://evil.example", "null"])
def test_a_browser_post_without_the_token_is_refused_even_from_an_unknown_origin(client, origin):
    browser_login(client)
    response = client.post("/cart/add", data={"product_id": 1}, headers={"Origin": origin})
    assert response.status_code == 403


def test_the_token_from_before_login_is_void_after_it(client):
    before = token_on(client, "/login")
    client.post("/login", data={**ALICE, "csrf_token": before}, headers=SAME_ORIGIN)
    response = client.post("/cart/add", data={"product_id": 1, "csrf_token": before},
                           headers=SAME_ORIGIN)
    assert response.status_code == 403
    assert token_on(client, "/account") != before


def test_another_sessions_token_is_refused(app, client):
    browser_login(client)
    other = app.test_client()
    browser_login(other)
    response = client.post("/cart/add", headers=SAME_ORIGIN,
                           data={"product_id": 1, "csrf_token": token_on(other, "/account")})
    assert response.status_code == 403


def test_the_token_may_come_in_a_header(client):
    browser_login(client)
    headers = {**SAME_ORIGIN, "X-CSRF-Token": token_on(client, "/account")}
    assert client.post("/cart/add", data={"product_id": 1}, headers=headers).status_code == 302


def test_strict_mode_asks_scripts_for_the_token_too(app, client):
    app.config["CSRF_STRICT"] = True
    assert client.post("/login", data=ALICE).status_code == 403
    token = token_on(client, "/login")
    assert client.post("/login", data={**ALICE, "csrf_token": token}).status_code == 302
    token = token_on(client, "/account")
    assert client.post("/cart/add", data={"product_id": 1}).status_code == 403
    assert client.post("/cart/add", data={"product_id": 1, "csrf_token": token}
                       ).status_code == 302


def test_the_check_can_be_switched_off(app, client):
    app.config["CSRF_ENABLED"] = False
    assert client.post("/login", data=ALICE, headers=CROSS_SITE).status_code == 302


@pytest.mark.parametrize(
    "body",
    [
        lambda: {"data": '{"filename": "x.bin", "chunks": 1}', "content_type": "text/plain"},
        lambda: {"data": {"filename": "x.bin", "chunks": 1}},  # urlencoded
        lambda: {"data": {"filename": (io.BytesIO(b"x"), "x.bin")},
                 "content_type": "multipart/form-data"},
    ],
    ids=["text/plain", "urlencoded", "multipart"],
)
def test_the_upload_api_takes_only_json_which_no_cross_site_form_can_send(client, body):
    client.post("/login", data=ALICE)
    response = client.post("/uploads", headers=CROSS_SITE, **body())
    assert response.status_code == 415
    assert "application/json" in response.json["error"]
    upload_id = client.post("/uploads", json={"filename": "x.bin"}).json["upload_id"]
    assert client.put(f"/uploads/{upload_id}/chunks/1", data=b"x").status_code == 200
    assert client.post(f"/uploads/{upload_id}/complete", headers=CROSS_SITE,
                       **body()).status_code == 415
    assert client.post(f"/uploads/{upload_id}/complete", json={"chunks": 1}).status_code == 200


# --- 10. avatars are images, files are downloads ------------------------------------------

IMAGES = {
    "png": AVATAR,
    "jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + bytes(200),
    "gif": b"GIF89a" + bytes(200),
    "webp": b"RIFF" + (208).to_bytes(4, "little") + b"WEBPVP8 " + bytes(200),
}
NOT_IMAGES = {
    "html": b"<!doctype html><script>fetch('/checkout', {method: 'POST'})</script>",
    "svg": b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
    "pdf": b"%PDF-1.7\n" + bytes(100),
    "short png signature": b"\x89PNG\r\n",
    "riff that is not webp": b"RIFF" + bytes(4) + b"WAVEfmt " + bytes(100),
    "empty": b"",
}
NOSNIFF = ("X-Content-Type-Options", "nosniff")


def disposition(response) -> tuple[str, dict[str, str]]:
    from werkzeug.http import parse_options_header

    return parse_options_header(response.headers.get("Content-Disposition", ""))


@pytest.mark.parametrize("kind", IMAGES)
def test_an_avatar_is_served_as_the_image_its_bytes_show(client, kind):
    client.post("/login", data=ALICE)
    # Whatever the name and the type the browser claims: the bytes decide.
    response = client.post("/account/avatar", content_type="multipart/form-data",
                           data={"avatar": (io.BytesIO(IMAGES[kind]), "me.html", "text/html")})
    assert response.status_code == 302
    served = client.get("/account/avatar")
    assert served.data == IMAGES[kind]
    assert served.mimetype == f"image/{kind}"
    assert served.headers.get(NOSNIFF[0]) == NOSNIFF[1]
    assert disposition(served) == ("inline", {"filename": f"avatar.{kind}"})


@pytest.mark.parametrize("kind", NOT_IMAGES)
def test_an_avatar_that_is_not_an_image_is_refused_and_the_old_one_kept(client, kind):
    client.post("/login", data=ALICE)
    upload_avatar(client)
    response = client.post("/account/avatar", content_type="multipart/form-data",
                           data={"avatar": (io.BytesIO(NOT_IMAGES[kind]), "me.png", "image/png")})
    assert response.status_code == 400
    assert marker(response.data, "error") == (
        "An avatar must be a PNG, JPEG, GIF or WebP image: this file is none of them.")
    assert client.get("/account/avatar").data == AVATAR


def test_an_avatar_stored_before_the_check_is_never_served_as_a_page(app, client):
    # An HTML "avatar" uploaded before avatars were checked (or copied over by a migration).
    page = NOT_IMAGES["html"]
    with app.app_context():
        if app.import_name == "sample_stateful_app":
            from sample_stateful_app.db import User, get_db

            folder = os.path.join(app.config["UPLOAD_FOLDER"], "avatars", "1")
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, "old.html"), "wb") as f:
                f.write(page)
            get_db().get(User, 1).avatar_path = "avatars/1/old.html"
        else:
            from sample_stateless_app.db import User, get_db
            from sample_stateless_app.stores import bucket, s3_client

            s3_client().put_object(Bucket=bucket(), Key="avatars/1/old.html", Body=page,
                                   ContentType="text/html")
            get_db().get(User, 1).avatar_key = "avatars/1/old.html"
        get_db().commit()
    client.post("/login", data=ALICE)
    served = client.get("/account/avatar")
    assert served.status_code == 404
    assert page not in served.data
    assert "not an image" in marker(served.data, "error")


def test_an_uploaded_file_is_a_download_never_a_page(client):
    client.post("/login", data=ALICE)
    page = NOT_IMAGES["html"]
    upload_id = client.post("/uploads", json={"filename": "page.html"}).json["upload_id"]
    client.put(f"/uploads/{upload_id}/chunks/1", data=page)
    file_id = client.post(f"/uploads/{upload_id}/complete", json={"chunks": 1}).json["file_id"]
    served = client.get(f"/files/{file_id}")
    assert served.status_code == 200 and served.data == page
    assert served.mimetype == "application/octet-stream"
    assert served.headers.get(NOSNIFF[0]) == NOSNIFF[1]
    assert disposition(served) == ("attachment", {"filename": "page.html"})


# --- 11. a chunk is never cut short -------------------------------------------------------

LIMIT = 4096  # MAX_CONTENT_LENGTH for these tests (the shops' own is 6 MiB)


def put_chunked(client, path: str, data: bytes, server_decodes: bool = True):
    """A PUT sent with ``Transfer-Encoding: chunked`` (no Content-Length), as a streaming
    client sends it. gunicorn and werkzeug's server decode it and set wsgi.input_terminated."""
    extra = {"wsgi.input_terminated": True} if server_decodes else {}
    return client.put(path, input_stream=io.BytesIO(data), environ_overrides=extra,
                      headers={"Transfer-Encoding": "chunked"})


@pytest.fixture
def upload_id(app, client) -> str:
    app.config["MAX_CONTENT_LENGTH"] = LIMIT
    client.post("/login", data=ALICE)
    return client.post("/uploads", json={"filename": "data.bin"}).json["upload_id"]


def test_a_chunked_body_over_the_limit_is_413_and_nothing_is_kept(client, upload_id):
    response = put_chunked(client, f"/uploads/{upload_id}/chunks/1", b"x" * (LIMIT + 1))
    assert response.status_code == 413
    assert response.json == {"error": "That file is too large."}
    done = client.post(f"/uploads/{upload_id}/complete", json={"chunks": 1})
    assert done.status_code == 400 and "Chunk 1 is missing" in done.json["error"]


def test_a_chunked_body_up_to_the_limit_arrives_whole(client, upload_id):
    parts = [bytes(range(256)) * (LIMIT // 256), b"tail"]
    for n, part in enumerate(parts, 1):
        response = put_chunked(client, f"/uploads/{upload_id}/chunks/{n}", part)
        assert response.json == {"received": n}
    done = client.post(f"/uploads/{upload_id}/complete", json={"chunks": 2}).json
    assert done["size"] == LIMIT + 4
    assert client.get(f"/files/{done['file_id']}").data == b"".join(parts)


def test_a_chunked_body_the_server_cannot_read_is_refused_not_taken_as_empty(client, upload_id):
    response = put_chunked(client, f"/uploads/{upload_id}/chunks/1", b"data",
                           server_decodes=False)
    assert response.status_code == 411
    assert "Content-Length" in response.json["error"]
    assert client.post(f"/uploads/{upload_id}/complete", json={"chunks": 1}).status_code == 400


def test_a_chunked_body_over_the_limit_is_413_over_real_http(app, client, upload_id):
    import requests

    from tests.test_sessions_support import HttpServer

    server = HttpServer(app)
    try:
        http = requests.Session()
        http.cookies.set("session", client.get_cookie("session").value)
        url = f"{server.url}/uploads/{upload_id}/chunks/1"
        # A generator body: requests streams it with Transfer-Encoding: chunked.
        response = http.put(url, data=(b"x" * 1024 for _ in range(5)), timeout=30)
        assert response.status_code == 413
        response = http.put(url, data=(b"y" * 1024 for _ in range(4)), timeout=30)
        assert response.json() == {"received": 1}
    finally:
        server.stop()
    done = client.post(f"/uploads/{upload_id}/complete", json={"chunks": 1}).json
    assert done["size"] == LIMIT


# --- 12. secret key, user enumeration -----------------------------------------------------


@pytest.mark.parametrize(
    "key,why",
    [
        ("x", "is too short (1 of at least 32 characters)"),
        ("0123456789abcdef0123456789abcde", "is too short (31 of at least 32 characters)"),
        ("dev", "is a development value"),
        ("Change-Me", "is a development value"),
        ("x" * 40, "repeats too few characters to be random"),
    ],
)
def test_the_after_shop_refuses_a_weak_secret_key_in_one_line(stores, key, why):
    from sample_stateless_app import create_app
    from tests.test_stateless_app import config

    with pytest.raises(RuntimeError) as refused:
        create_app(config(stores, SECRET_KEY=key))
    message = str(refused.value)
    assert message.startswith(f"SECRET_KEY {why}") and "\n" not in message
    assert "secrets.token_hex(32)" in message  # the fix


def test_the_after_shop_starts_with_a_random_32_character_key(stores):
    import secrets

    from sample_stateless_app import create_app
    from tests.test_stateless_app import config

    assert create_app(config(stores, SECRET_KEY=secrets.token_hex(16))).secret_key


def test_the_before_shop_keeps_its_dev_key_but_warns(tmp_path, caplog, monkeypatch):
    from sample_stateful_app import create_app

    monkeypatch.setenv("ENV_FILE", str(tmp_path / "absent.env"))
    monkeypatch.delenv("SECRET_KEY", raising=False)
    base = {"DATABASE_URL": f"sqlite:///{tmp_path / 'shop.db'}",
            "UPLOAD_FOLDER": str(tmp_path / "up")}
    with caplog.at_level("WARNING"):
        app = create_app(base)
    assert app.secret_key == "dev"
    warned = [r.getMessage() for r in caplog.records if "SECRET_KEY" in r.getMessage()]
    assert len(warned) == 1 and "is a development value" in warned[0]
    assert "secrets.token_hex(32)" in warned[0]
    caplog.clear()
    create_app({**base, "SECRET_KEY": "0123456789abcdef" * 2})
    assert not [r for r in caplog.records if "SECRET_KEY" in r.getMessage()]


def test_login_takes_as_long_for_an_unknown_user_as_for_a_known_one(client):
    import statistics
    import time

    client.application.config["RATELIMIT_ENABLED"] = False  # 42 failed log-ins: past the limit

    def seconds(username: str) -> float:
        started = time.perf_counter()
        response = client.post("/login", data={"username": username, "password": "not-it"})
        took = time.perf_counter() - started
        assert response.status_code == 401
        return took

    seconds("nobody"), seconds("alice")  # warm up
    known, unknown = [], []
    for _ in range(20):  # interleaved: a busy moment on the machine slows both alike
        known.append(seconds("alice"))
        unknown.append(seconds("nobody"))
    ratio = statistics.median(known) / statistics.median(unknown)
    assert 0.5 < ratio < 2, f"known/unknown user: {ratio:.1f}x"
