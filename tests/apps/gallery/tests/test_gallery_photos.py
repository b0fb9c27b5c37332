"""Photo notes through Flask's test client: accounts, photos, the photo count.

Written as a team writes its tests, with no thought of instances; migrate's parity plugin runs
them unchanged on N gunicorn instances (tests/test_parity_apps.py): before the migration the
signed-in tests fail on two instances, after it they all pass.
"""

from __future__ import annotations

import io
import re

import pytest

PHOTO = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
# Flask-Session deprecates its filesystem backend; this app is exactly the kind still using it.
pytestmark = pytest.mark.filterwarnings("ignore:.*deprecated:DeprecationWarning")


def count(page: str) -> int:
    return int(re.search(r'<span id="count">(\d+)</span>', page).group(1))


def photo_ids(page: str) -> list[int]:
    return [int(n) for n in re.findall(r'href="/photos/(\d+)"', page)]


def upload(client, caption: str = "engine", data: bytes = PHOTO, name: str = "engine.png"):
    return client.post("/photos", data={"caption": caption, "photo": (io.BytesIO(data), name)})


def test_pages_ask_for_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response.location.startswith("/login")


def test_a_new_user_registers_and_is_signed_in(client, accounts):
    username = accounts.register()
    response = accounts.login(username)
    assert response.status_code == 302 and response.location == "/"
    page = client.get("/").text
    assert f'<span id="user">{username}</span>' in page
    assert count(page) == 0


def test_a_taken_name_and_a_short_password_are_refused(client, accounts):
    username = accounts.register()
    taken = client.post("/register", data={"username": username, "password": "long enough"})
    assert taken.status_code == 409
    short = client.post("/register", data={"username": username + "x", "password": "short"})
    assert short.status_code == 400


def test_a_wrong_password_is_refused(client, accounts):
    username = accounts.register()
    response = accounts.login(username, password="not it at all")
    assert response.status_code == 401
    assert "Wrong user name or password." in response.text


def test_login_never_leaves_the_site(accounts):
    response = accounts.login(accounts.register(), next_="//evil.example/")
    assert response.location == "/"


def test_login_follows_to_the_page(client, accounts):
    username = accounts.register()
    response = client.post("/login", data={"username": username, "password": "correct horse"},
                           follow_redirects=True)
    assert response.status_code == 200 and len(response.history) == 1
    assert f'<span id="user">{username}</span>' in response.text


def test_a_photo_round_trip(client, accounts):
    accounts.signed_in()
    assert upload(client).status_code == 302
    page = client.get("/").text
    assert "engine" in page
    [photo_id] = photo_ids(page)
    photo = client.get(f"/photos/{photo_id}")
    assert photo.status_code == 200
    assert photo.data == PHOTO
    assert photo.mimetype == "image/png"
    assert photo.headers["X-Content-Type-Options"] == "nosniff"


def test_the_photo_count_follows_uploads(client, accounts):
    accounts.signed_in()
    assert count(client.get("/").text) == 0
    upload(client, "one")
    assert count(client.get("/").text) == 1
    upload(client, "two")
    assert count(client.get("/").text) == 2


def test_a_file_that_is_not_an_image_is_refused(client, accounts):
    accounts.signed_in()
    response = client.post("/photos", data={"photo": (io.BytesIO(b"<html>"), "x.html")},
                           follow_redirects=True)
    assert "Choose a photo" in response.text
    assert count(response.text) == 0


def test_someone_elses_photo_is_not_found(app, client, accounts):
    accounts.signed_in()
    upload(client)
    [photo_id] = photo_ids(client.get("/").text)
    other = app.test_client()
    type(accounts)(other).signed_in()  # a second user, in a second client
    assert other.get(f"/photos/{photo_id}").status_code == 404
    assert client.get(f"/photos/{photo_id}").status_code == 200


def test_logout_forgets_the_user(client, accounts):
    accounts.signed_in()
    assert client.post("/logout").status_code == 302
    assert client.get("/").status_code == 302
