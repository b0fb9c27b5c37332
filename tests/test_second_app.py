"""A second app, written without migrate in mind, migrated with migrate's documented commands.

``tests/apps/gallery`` (photo notes) keeps its state the way many Flask apps do: Flask-Login
users in Flask-Session's ``filesystem`` sessions, a Flask-Caching ``SimpleCache``, photos under
``UPLOAD_FOLDER`` served with ``send_from_directory``, its own alembic history and a ``.env``.
migrate imports none of it; these tests run it as a user would.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import requests
from dotenv import dotenv_values
from sqlalchemy import create_engine, inspect, text

from migrate.harness.stores import free_port, s3_client
from migrate.procs import gunicorn_command

APP_DIR = Path(__file__).parent / "apps" / "gallery"
SECRET = "gallery-secret-key-0123456789abcdef"
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


# --- the migration, run as a team would run it -------------------------------------------------

MIGRATE = str(Path(sys.executable).parent / "migrate")  # the console script, as installed
TIMEOUT = 120  # seconds for any one command
APP_KEYS = ("SECRET_KEY", "DATABASE_URL", "SESSION_TYPE", "SESSION_FILE_DIR", "REDIS_URL",
            "CACHE_TYPE", "CACHE_REDIS_URL", "UPLOAD_FOLDER", "PHOTO_BUCKET", "PHOTO_PREFIX",
            "S3_ENDPOINT_URL", "GALLERY_ENV_FILE", "AWS_CA_BUNDLE")


class Host:
    """The app's folder (a copy) and the processes started in it, each stopped by its pid."""

    def __init__(self, root: Path, stores) -> None:
        self.root = root
        self.stores = stores
        self.logs = root.parent / "logs"
        self.logs.mkdir()
        self.servers: list[subprocess.Popen] = []
        # What the deployment's environment holds: the S3 credentials, nothing the .env says
        # (the app reads os.environ before .env, so a stray DATABASE_URL must not leak in).
        self.env = {k: v for k, v in os.environ.items() if k not in APP_KEYS}
        self.env.update({k: v for k, v in stores.app_env().items() if k.startswith("AWS_")})

    def migrate(self, *args: str, expect: int = 0) -> subprocess.CompletedProcess:
        done = subprocess.run([MIGRATE, *args], cwd=self.root, env=self.env, text=True,
                              capture_output=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
        assert done.returncode == expect, (args, done.returncode, done.stdout, done.stderr)
        return done

    def migrate_json(self, *args: str, expect: int = 0) -> dict:
        return json.loads(self.migrate(*args, "--json", expect=expect).stdout)

    def gunicorn(self, name: str) -> str:
        """One instance of the app (one worker), configured by the folder's .env; its URL."""
        port = free_port()
        command = gunicorn_command("gallery:create_app()", f"127.0.0.1:{port}")
        with open(self.logs / f"{name}.log", "ab") as log:
            server = subprocess.Popen(command, cwd=self.root, env=self.env, stdout=log,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True)
        self.servers.append(server)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(url + "/healthz", timeout=1).status_code == 200:
                    return url
            except requests.RequestException:
                pass
            assert server.poll() is None and time.monotonic() < deadline, \
                (self.logs / f"{name}.log").read_text(errors="replace")[-2000:]
            time.sleep(0.1)

    def stop(self, server: subprocess.Popen) -> None:
        if server.poll() is None:
            os.kill(server.pid, signal.SIGTERM)  # gunicorn stops its worker, then exits
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)  # its own session: pgid == pid
            server.wait(5)

    def stop_all(self) -> None:
        for server in self.servers:
            self.stop(server)


@pytest.fixture
def host(tmp_path: Path, stores):
    root = tmp_path / "gallery"
    shutil.copytree(APP_DIR, root, ignore=shutil.ignore_patterns("__pycache__", ".migrate",
                                                                  ".env"))
    started = Host(root, stores)
    yield started
    started.stop_all()


def _columns(database_url: str, table: str) -> set[str]:
    engine = create_engine(database_url)
    try:
        return {c["name"] for c in inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


def _photo_rows(database_url: str) -> list[dict]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(text("SELECT * FROM photos "
                                                                "ORDER BY id"))]
    finally:
        engine.dispose()


def _logged_in_page(browser: requests.Session, url: str) -> str:
    """The user's photo page on ``url``; fails if the instance sends them to the login page."""
    page = browser.get(url + "/", allow_redirects=False, timeout=10)
    assert page.status_code == 200, (url, page.status_code, page.headers.get("Location"))
    return page.text


@pytest.mark.slow
def test_migrate_the_second_app(host: Host, stores, tmp_path: Path) -> None:
    """The runbook on photo notes, every step a documented command run in the app's folder;
    then what alice notices on two after-instances: nothing."""
    shared = tmp_path / "shared"  # one host's disk (or a volume every instance mounts)
    sessions_dir, uploads = shared / "sessions", shared / "uploads"
    env_file = host.root / ".env"
    env_file.write_text(
        "# photo notes, production\n"
        f"SECRET_KEY={SECRET}\n"
        f"DATABASE_URL={stores.database_url}\n"
        "SESSION_TYPE=filesystem\n"
        f"SESSION_FILE_DIR={sessions_dir}\n"
        "CACHE_TYPE=SimpleCache\n"
        f"UPLOAD_FOLDER={uploads}\n", encoding="utf-8")
    redis_url, endpoint, bucket = stores.redis_url, stores.s3_endpoint_url, stores.s3_bucket
    target = f"s3://{bucket}/gallery"
    s3 = s3_client(endpoint, stores.s3_access_key, stores.s3_secret_key)

    # Before: alice registers, logs in and uploads a photo on the running app.
    before = host.gunicorn("before")
    alice = requests.Session()
    login = {"username": "alice", "password": "wonderland"}
    assert alice.post(before + "/register", data=login, timeout=10).status_code == 200
    assert alice.post(before + "/login", data=login, timeout=10).url == before + "/"
    alice.post(before + "/photos", data={"caption": "rabbit hole"},
               files={"photo": ("hole.png", PHOTO, "image/png")}, timeout=10)
    assert "rabbit hole" in _logged_in_page(alice, before)
    cookie = alice.cookies["session"]
    [first] = _photo_rows(stores.database_url)
    assert (uploads / first["path"]).read_bytes() == PHOTO

    # 1. Audit: scan finds the state traps in the app's code.
    report = host.migrate_json("scan", ".", expect=1)
    assert {f["rule"] for f in report["findings"]} >= {
        "session-local", "process-cache", "local-file-write", "local-file-serve"}

    # 2. Preflight: every store probed, the .env diff shown, nothing written.
    original = env_file.read_bytes()
    host.migrate("switch-config", ".env", "--to", "stateless", "--redis", redis_url,
                 "--s3", target, "--endpoint-url", endpoint, "--dry-run")
    assert env_file.read_bytes() == original

    # 3. Move the sessions and the files (the source folders are left as they are).
    exported = host.migrate_json("export-sessions", "--from", str(sessions_dir),
                                 "--redis", redis_url)
    assert exported["legacy"] == 1 and not exported["failed"], exported
    state_file = str(tmp_path / "export-state")
    copied = host.migrate_json("export-files", str(uploads), "--to", target,
                               "--endpoint-url", endpoint, "--state-file", state_file)
    assert copied["uploaded"] == 1 and not copied["failed"], copied
    key = f"gallery/{first['path']}"
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == PHOTO

    # 4. Expand with the app's own alembic history ([tool.migrate] in its pyproject.toml):
    #    the create_all database is stamped at the baseline, photos.key joins photos.path.
    host.migrate("db", "upgrade", "--revision", "0002", "--prefix", "gallery",
                 "--database-url", stores.database_url)
    [first] = _photo_rows(stores.database_url)
    assert first["key"] == key and first["path"] is not None
    # The before-app keeps working on it, and migrate's trigger keys what it writes.
    assert alice.get(f"{before}/photos/{first['id']}", timeout=10).content == PHOTO
    alice.post(before + "/photos", data={"caption": "looking glass"},
               files={"photo": ("glass.png", PHOTO * 2, "image/png")}, timeout=10)
    second = _photo_rows(stores.database_url)[1]
    assert second["key"] == f"gallery/{second['path']}"

    # 5. Switch the configuration: Flask-Session, Flask-Caching, and the app's own keys.
    host.migrate("switch-config", ".env", "--to", "stateless", "--redis", redis_url,
                 "--s3", target, "--endpoint-url", endpoint)
    settings = dotenv_values(env_file)
    assert settings["SESSION_TYPE"] == "redis" and settings["REDIS_URL"] == redis_url
    assert settings["CACHE_TYPE"] == "RedisCache" and settings["CACHE_REDIS_URL"] == redis_url
    assert (settings["PHOTO_BUCKET"], settings["PHOTO_PREFIX"], settings["S3_ENDPOINT_URL"]) \
        == (bucket, "gallery", endpoint)
    assert "UPLOAD_FOLDER" not in settings and "SESSION_FILE_DIR" not in settings

    # 6. Roll: the before-instance stops; what it wrote meanwhile is exported again (a re-run
    #    copies only what is new) and verified; two after-instances start (same code, the new
    #    .env).
    host.stop(host.servers[0])
    again = host.migrate_json("export-files", str(uploads), "--to", target,
                              "--endpoint-url", endpoint, "--state-file", state_file)
    assert (again["uploaded"], again["skipped"], again["failed"]) == (1, 1, 0), again
    host.migrate_json("export-sessions", "--from", str(sessions_dir), "--redis", redis_url)
    host.migrate("verify", "files", str(uploads), "--to", target, "--endpoint-url", endpoint)
    host.migrate("verify", "sessions", "--from", str(sessions_dir), "--redis", redis_url)
    a, b = host.gunicorn("after-a"), host.gunicorn("after-b")

    # What alice notices: nothing. Same cookie, logged in on both, her photos on both.
    assert alice.cookies["session"] == cookie
    for url in (a, b, a):
        page = _logged_in_page(alice, url)
        assert "alice" in page and "rabbit hole" in page and "looking glass" in page
        for row, data in ((first, PHOTO), (second, PHOTO * 2)):
            photo = alice.get(f"{url}/photos/{row['id']}", timeout=10)
            assert photo.status_code == 200 and photo.content == data
            assert photo.headers["Content-Type"] == "image/png"
    # Her session was promoted to its own key in Redis on her first after-request.
    assert redis.Redis.from_url(redis_url).exists(f"session:{cookie}")
    # A photo uploaded on one instance is listed, counted (shared cache) and served by the other.
    alice.post(b + "/photos", data={"caption": "tea party"},
               files={"photo": ("tea.png", PHOTO[::-1], "image/png")}, timeout=10)
    page = _logged_in_page(alice, a)
    assert "tea party" in page and '<span id="count">3</span>' in page
    third = _photo_rows(stores.database_url)[2]
    assert third["path"] is None and third["key"].startswith("gallery/1/")
    assert alice.get(f"{a}/photos/{third['id']}", timeout=10).content == PHOTO[::-1]

    # 7. Contract, with every instance on the after-app: the path column goes.
    host.migrate("db", "upgrade", "--prefix", "gallery", "--database-url", stores.database_url)
    assert "path" not in _columns(stores.database_url, "photos")
    rows = _photo_rows(stores.database_url)
    assert [r["key"] for r in rows] == [key, second["key"], third["key"]]
    for url in (a, b):
        for row, data in zip(rows, (PHOTO, PHOTO * 2, PHOTO[::-1]), strict=True):
            assert alice.get(f"{url}/photos/{row['id']}", timeout=10).content == data
    # Nothing was taken from the old folders (migrate never deletes a source).
    assert (uploads / first["path"]).read_bytes() == PHOTO and any(sessions_dir.iterdir())


@pytest.mark.slow
def test_db_history_round_trip(tmp_path: Path, database_url: str, gallery) -> None:
    """The app's alembic history through `migrate db` both ways: a create_all database is
    stamped and upgraded to keys; downgrade gives every row its path back."""
    app = gallery({**_before_config(tmp_path), "DATABASE_URL": database_url})
    client = app.test_client()
    client.post("/register", data={"username": "ada", "password": "analytical"})
    client.post("/login", data={"username": "ada", "password": "analytical"})
    client.post("/photos", data={"photo": (io.BytesIO(PHOTO), "engine.png")})
    app.extensions["gallery.db"][0].dispose()
    [row] = _photo_rows(database_url)
    root = tmp_path / "gallery"
    shutil.copytree(APP_DIR, root, ignore=shutil.ignore_patterns("__pycache__", ".migrate",
                                                                  ".env"))
    env = {k: v for k, v in os.environ.items() if k not in APP_KEYS}

    def db(*args: str) -> dict:
        done = subprocess.run([MIGRATE, "db", *args, "--prefix", "p", "--database-url",
                               database_url, "--json"], cwd=root, env=env, text=True,
                              capture_output=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return json.loads(done.stdout)

    upgraded = db("upgrade")
    assert "path" not in _columns(database_url, "photos")
    assert [r["key"] for r in _photo_rows(database_url)] == ["p/" + row["path"]]
    db("downgrade", "--revision", "0001")
    assert _photo_rows(database_url) == [row]
    assert db("status")["current"] == "0001", upgraded
