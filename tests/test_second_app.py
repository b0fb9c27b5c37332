"""A second app, written without migrate in mind, migrated with migrate's documented commands.

``tests/apps/gallery`` (photo notes) keeps its state the way many Flask apps do: Flask-Login
users in Flask-Session's ``filesystem`` sessions, a Flask-Caching ``SimpleCache``, photos under
``UPLOAD_FOLDER`` served with ``send_from_directory``, its own alembic history and a ``.env``.
migrate imports none of it; these tests run it as a user would.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

APP_DIR = Path(__file__).parent / "apps" / "gallery"
SECRET = "gallery-secret-0123456789abcdef"
PHOTO = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40  # not a real image; served as is
# Flask-Session deprecates its filesystem backend; this app is exactly the kind still using it.
pytestmark = pytest.mark.filterwarnings("ignore:.*deprecated:DeprecationWarning")


@pytest.fixture
def gallery(monkeypatch: pytest.MonkeyPatch):
    """The app's factory, imported from its own folder (as gunicorn does with cwd there)."""
    monkeypatch.syspath_prepend(str(APP_DIR))
    monkeypatch.setenv("GALLERY_ENV_FILE", "/nonexistent/.env")  # test_config only
    import gallery

    yield gallery.create_app
    for name in [m for m in sys.modules if m == "gallery" or m.startswith("gallery.")]:
        del sys.modules[name]


def _before_config(tmp_path: Path) -> dict:
    return {"SECRET_KEY": SECRET, "DATABASE_URL": f"sqlite:///{tmp_path / 'gallery.db'}",
            "SESSION_FILE_DIR": str(tmp_path / "sessions"),
            "UPLOAD_FOLDER": str(tmp_path / "uploads")}


def test_before_app_on_one_host(gallery, tmp_path: Path) -> None:
    """Before the migration the app works on one host: two app processes sharing its session
    folder and upload folder see the same login and the same photo; the cache is per process."""
    a, b = gallery(_before_config(tmp_path)), gallery(_before_config(tmp_path))
    client = a.test_client()
    assert client.get("/").status_code == 302  # login required
    assert client.post("/register", data={"username": "ada", "password": "analytical"}
                       ).status_code == 302
    response = client.post("/login?next=//evil.example/", data={"username": "ada",
                                                                  "password": "analytical"})
    assert response.status_code == 302 and response.headers["Location"] == "/"
    response = client.post("/photos", data={"caption": "engine",
                                            "photo": (io.BytesIO(PHOTO), "engine.png")})
    assert response.status_code == 302
    page = client.get("/").get_data(as_text=True)
    assert "engine" in page and '<span id="count">1</span>' in page
    stored = list((tmp_path / "uploads").rglob("*.png"))
    assert len(stored) == 1 and stored[0].read_bytes() == PHOTO

    other = b.test_client()
    other.set_cookie("session", client.get_cookie("session").value)
    photo = other.get("/photos/1")
    assert photo.status_code == 200 and photo.data == PHOTO
    assert photo.mimetype == "image/png" and photo.headers["X-Content-Type-Options"] == "nosniff"
    assert other.post("/photos", data={"photo": (io.BytesIO(b"<html>"), "x.html")}
                      ).status_code == 302
    assert len(list((tmp_path / "uploads").rglob("*"))) == 2  # one user folder, one photo

    # The trap a shared folder does not cure: each process caches on its own.
    other.post("/photos", data={"caption": "loom", "photo": (io.BytesIO(PHOTO), "loom.png")})
    assert '<span id="count">2</span>' in other.get("/").get_data(as_text=True)
    assert '<span id="count">1</span>' in client.get("/").get_data(as_text=True)


def test_refuses_a_missing_or_short_secret(gallery, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        gallery({**_before_config(tmp_path), "SECRET_KEY": "dev"})
