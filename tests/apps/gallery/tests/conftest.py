"""The gallery's own fixtures, in the Flask tutorial's style: a fresh app per test (its own
database, session folder and upload folder), its test client, and a signed-in user.

To run these tests on real instances instead (see migrate's README, "Parity across
instances"), nothing here changes: ``--instances-client-replaces client`` turns ``client``
into the instance client, and ``app.test_client()`` gives another instance client.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

APP_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator:
    monkeypatch.syspath_prepend(str(APP_DIR))  # as `pip install -e .` of the gallery would
    monkeypatch.setenv("GALLERY_ENV_FILE", str(tmp_path / "absent.env"))  # test_config only
    from gallery import create_app

    yield create_app({
        "SECRET_KEY": "gallery-tests-0123456789abcdef",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'gallery.db'}",
        "SESSION_FILE_DIR": str(tmp_path / "sessions"),
        "UPLOAD_FOLDER": str(tmp_path / "uploads"),
    })
    for name in [m for m in sys.modules if m == "gallery" or m.startswith("gallery.")]:
        del sys.modules[name]  # the next test (or test_second_app) imports it afresh


@pytest.fixture
def client(app):
    return app.test_client()


class Accounts:
    """Register and sign in through the app's own forms; a fresh user name every time."""

    def __init__(self, client) -> None:
        self.client = client

    def register(self, password: str = "correct horse") -> str:
        username = f"ada-{uuid.uuid4().hex[:8]}"  # unique: a shared database stays valid
        response = self.client.post("/register", data={"username": username,
                                                       "password": password})
        assert response.status_code == 302, response.text
        return username

    def login(self, username: str, password: str = "correct horse", next_: str = ""):
        path = f"/login?next={next_}" if next_ else "/login"
        return self.client.post(path, data={"username": username, "password": password})

    def signed_in(self) -> str:
        username = self.register()
        assert self.login(username).status_code == 302
        return username


@pytest.fixture
def accounts(client) -> Accounts:
    return Accounts(client)
