"""Both shops through the test client: same routes, behaviour and answers to bad input."""

from __future__ import annotations

import hashlib
import io
import re
import time

import pytest

AVATAR = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40


def marker(page: bytes, element_id: str) -> str | None:
    found = re.search(rf'id="{element_id}">([^<]*)<'.encode(), page)
    return found.group(1).decode() if found else None


def cart_lines(page: bytes) -> dict[int, int]:
    return {
        int(p): int(q)
        for p, q in re.findall(rb'class="line" data-product="(\d+)" data-quantity="(\d+)"', page)
    }


def upload_avatar(client, data: bytes = AVATAR, name: str = "me.png"):
    return client.post(
        "/account/avatar",
        data={"avatar": (io.BytesIO(data), name)},
        content_type="multipart/form-data",
    )


def run_mail_jobs(app) -> None:
    """The after-app queues the e-mail; a worker runs it (here, in this process, until empty)."""
    if app.import_name == "sample_stateless_app":
        from rq import SimpleWorker

        from sample_stateless_app.stores import redis_client

        with app.app_context():
            SimpleWorker(["mail"], connection=redis_client(app)).work(burst=True)


def test_catalog_for_anonymous_visitor(client):
    page = client.get("/")
    assert page.status_code == 200
    assert page.data.count(b'class="product"') >= 5
    assert marker(page.data, "user") is None
    assert b"Log in" in page.data


def test_every_response_names_its_instance(client):
    for path in ("/", "/healthz", "/product/999", "/cart"):
        assert client.get(path).headers.get("X-Instance")


def test_login_and_logout(client, auth):
    response = auth.login()
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert marker(client.get("/").data, "user") == "alice"
    assert auth.logout().status_code == 302
    account = client.get("/account")
    assert account.status_code == 302
    assert account.headers["Location"].startswith("/login")


def test_wrong_password_is_refused_clearly(client, auth):
    response = auth.login(password="not-it")
    assert response.status_code == 401
    assert b"Wrong user name or password." in response.data
    assert client.get("/account").status_code == 302


def test_login_never_redirects_to_another_host(client):
    response = client.post(
        "/login?next=//evil.example/x", data={"username": "bob", "password": "builder"}
    )
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize("path", ["/cart", "/account", "/account/avatar"])
def test_pages_ask_for_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"] == f"/login?next={path}"


def test_cart_adds_up(client, auth):
    auth.login()
    assert client.post("/cart/add", data={"product_id": 1}).status_code == 302
    client.post("/cart/add", data={"product_id": 2, "quantity": 2})
    client.post("/cart/add", data={"product_id": 1, "quantity": 3})
    page = client.get("/cart").data
    assert cart_lines(page) == {1: 4, 2: 2}
    assert marker(page, "cart-count") == "6"


@pytest.mark.parametrize(
    "form,status",
    [
        ({"product_id": "abc"}, 400),
        ({}, 400),
        ({"product_id": 1, "quantity": 0}, 400),
        ({"product_id": 1, "quantity": 100}, 400),
        ({"product_id": 999}, 404),
    ],
)
def test_bad_cart_input_is_refused_and_loses_nothing(client, auth, form, status):
    auth.login()
    client.post("/cart/add", data={"product_id": 3})
    response = client.post("/cart/add", data=form)
    assert response.status_code == status
    assert marker(response.data, "error")
    assert cart_lines(client.get("/cart").data) == {3: 1}


def test_product_counter_and_recently_viewed(client):
    first = int(marker(client.get("/product/4").data, "views"))
    second = int(marker(client.get("/product/4").data, "views"))
    assert second == first + 1
    client.get("/product/2")
    recent = re.findall(rb'<li data-product="(\d+)">', client.get("/").data)
    assert recent == [b"2", b"4"]
    assert client.get("/product/999").status_code == 404


def test_avatar_round_trip(client, auth):
    auth.login()
    assert upload_avatar(client).status_code == 302
    download = client.get("/account/avatar")
    assert download.status_code == 200
    assert download.data == AVATAR
    assert b'alt="avatar"' in client.get("/account").data


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "a/../../b.png", "..\\x.png"])
def test_avatar_with_a_path_is_refused_and_the_old_one_kept(client, auth, name):
    auth.login()
    upload_avatar(client)
    response = upload_avatar(client, b"evil", name)
    assert response.status_code == 400
    assert "Invalid file name" in marker(response.data, "error")
    assert client.get("/account/avatar").data == AVATAR


def test_oversized_avatar_is_413_and_the_old_one_kept(client, auth):
    auth.login()
    upload_avatar(client)
    response = upload_avatar(client, b"x" * (1024 * 1024 + 1), "big.png")
    assert response.status_code == 413
    assert client.get("/account/avatar").data == AVATAR


def test_no_avatar_yet_is_404(client, auth):
    auth.login("bob", "builder")
    assert client.get("/account/avatar").status_code == 404


def start_upload(client, filename: str = "data.bin") -> str:
    response = client.post("/uploads", json={"filename": filename})
    assert response.status_code == 201, response.json
    return response.json["upload_id"]


def test_chunked_upload_round_trip(client, auth):
    auth.login()
    parts = [b"a" * 1000, b"b" * 1000, b"c" * 10]
    upload_id = start_upload(client)
    for n, part in enumerate(parts, 1):
        assert client.put(f"/uploads/{upload_id}/chunks/{n}", data=part).json == {"received": n}
    done = client.post(f"/uploads/{upload_id}/complete", json={"chunks": 3})
    assert done.status_code == 200
    assert done.json["size"] == 2010
    file = client.get(f"/files/{done.json['file_id']}")
    assert hashlib.sha256(file.data).digest() == hashlib.sha256(b"".join(parts)).digest()


def test_resent_chunk_is_stored_once(client, auth):
    # A client whose response was lost retries the same chunk: the file must not hold it twice.
    # (Replacing a chunk with *different* bytes is not portable: rclone serve s3 streams parts
    # to its backend as they arrive and refuses to replace one.)
    auth.login()
    upload_id = start_upload(client)
    for _ in range(2):
        assert client.put(f"/uploads/{upload_id}/chunks/1", data=b"first").status_code == 200
    client.put(f"/uploads/{upload_id}/chunks/2", data=b"+second")
    client.put(f"/uploads/{upload_id}/chunks/2", data=b"+second")
    done = client.post(f"/uploads/{upload_id}/complete", json={"chunks": 2}).json
    assert client.get(f"/files/{done['file_id']}").data == b"first+second"


def test_chunk_out_of_order_is_409(client, auth):
    auth.login()
    upload_id = start_upload(client)
    response = client.put(f"/uploads/{upload_id}/chunks/2", data=b"x")
    assert response.status_code == 409
    assert response.json["error"] == "Chunk 2 is out of order: send chunk 1 next."


def test_missing_chunk_at_complete_is_400_and_upload_survives(client, auth):
    auth.login()
    upload_id = start_upload(client)
    client.put(f"/uploads/{upload_id}/chunks/1", data=b"one")
    response = client.post(f"/uploads/{upload_id}/complete", json={"chunks": 2})
    assert response.status_code == 400
    assert "Chunk 2 is missing" in response.json["error"]
    client.put(f"/uploads/{upload_id}/chunks/2", data=b"two")
    assert client.post(f"/uploads/{upload_id}/complete", json={"chunks": 2}).status_code == 200


@pytest.mark.parametrize("upload_id", ["0" * 32, "not-an-id", "../../etc"])
def test_unknown_upload_id_is_404(client, auth, upload_id):
    auth.login()
    response = client.put(f"/uploads/{upload_id}/chunks/1", data=b"x")
    assert response.status_code == 404
    assert "error" in response.json


def test_another_users_upload_is_invisible(client, auth):
    auth.login()
    upload_id = start_upload(client)
    auth.logout()
    auth.login("bob", "builder")
    assert client.put(f"/uploads/{upload_id}/chunks/1", data=b"x").status_code == 404


def test_oversized_chunk_is_413(client, auth):
    auth.login()
    upload_id = start_upload(client)
    response = client.put(f"/uploads/{upload_id}/chunks/1", data=b"x" * (6 * 1024 * 1024 + 1))
    assert response.status_code == 413
    assert response.json == {"error": "That file is too large."}


def test_upload_with_a_path_is_refused(client, auth):
    auth.login()
    response = client.post("/uploads", json={"filename": "../../x"})
    assert response.status_code == 400
    assert "Invalid file name" in response.json["error"]


def test_checkout_lists_order_and_sends_confirmation(app, client, auth):
    auth.login()
    assert client.post("/checkout").status_code == 400  # empty cart
    client.post("/cart/add", data={"product_id": 1, "quantity": 2})
    response = client.post("/checkout")
    assert response.status_code == 302
    order_url = response.headers["Location"]
    order_id = order_url.rsplit("/", 1)[1]
    assert cart_lines(client.get("/cart").data) == {}
    assert f'data-order="{order_id}"'.encode() in client.get("/account").data
    run_mail_jobs(app)
    for _ in range(50):  # the before-app's thread may need a moment
        if marker(client.get(order_url).data, "confirmation") == "sent":
            break
        time.sleep(0.05)
    assert marker(client.get(order_url).data, "confirmation") == "sent"


def test_health_and_readiness(client):
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json["status"] == "ready"
    assert all(v == "ok" for k, v in ready.json.items() if k != "status")


@pytest.mark.parametrize("kind", ["stateful", "stateless"])
def test_a_false_flag_from_the_environment_reads_as_false(kind, monkeypatch, tmp_path):
    import importlib

    monkeypatch.setenv("ENV_FILE", str(tmp_path / "absent.env"))
    monkeypatch.setenv("SESSION_PERMANENT", "false")
    monkeypatch.setenv("SESSION_REFRESH_EACH_REQUEST", "True")
    config = importlib.import_module(f"sample_{kind}_app.config")
    loaded = config.load_config(str(tmp_path)) if kind == "stateful" else config.load_config()
    assert loaded["SESSION_PERMANENT"] is False
    assert loaded["SESSION_REFRESH_EACH_REQUEST"] is True
