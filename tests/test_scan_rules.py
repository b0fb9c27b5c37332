"""Each scan rule on small snippets: what it must flag, and what it must leave alone."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from migrate.scan import RULES, scan_path

FLASK = "from flask import Flask, Blueprint, request, session, g\napp = Flask(__name__)\n"


def scan(tmp_path: Path, code: str | None = None, **files: str):
    """Scan a package made of ``files`` (``app.py`` = ``code``); return (rule, file, line)s."""
    pkg = tmp_path / "shop"
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text("")
    if code is not None:
        files["app"] = code
    for name, text in files.items():
        head = FLASK if text.startswith(FLASK) else ""
        (pkg / f"{name}.py").write_text(head + textwrap.dedent(text[len(head):]))
    return scan_path(pkg)


def rules(result) -> list[tuple[str, str, int]]:
    return [(f.rule, f.path, f.line) for f in result.findings]


def line_of(tmp_path: Path, marker: str, name: str = "app") -> int:
    lines = (tmp_path / "shop" / f"{name}.py").read_text().splitlines()
    return next(i for i, text in enumerate(lines, 1) if marker in text)


def test_every_rule_has_why_and_fix():
    for rule in RULES.values():
        assert rule.severity in ("error", "warning", "note")
        assert rule.why and rule.fix and rule.title


# --- module-level mutable state ---------------------------------------------------------------


def test_dict_changed_by_a_helper_a_view_calls(tmp_path):
    result = scan(tmp_path, FLASK + """
        COUNTS: dict[int, int] = {}

        def bump(key):
            COUNTS[key] = COUNTS.get(key, 0) + 1

        @app.route("/p/<int:key>")
        def view(key):
            bump(key)
            return str(COUNTS[key])
    """)
    assert rules(result) == [("module-state", "app.py", line_of(tmp_path, "COUNTS[key] ="))]
    finding = result.findings[0]
    assert "COUNTS" in finding.message and "view" in finding.message
    assert finding.severity == "error" and "Redis" in finding.fix


@pytest.mark.parametrize("setup,change,decorator", [
    ("SEEN = []", "SEEN.append(request.path)", "@app.before_request"),
    ("IPS = set()", "IPS.add(request.remote_addr)", "@app.errorhandler(404)"),
    ("from collections import defaultdict\nHITS = defaultdict(int)", "HITS[request.path] += 1",
     "@app.after_request"),
    ("from collections import Counter\nHITS = Counter()", "HITS.update([request.path])",
     "@app.get('/')"),
    ("from collections import deque\nLAST = deque(maxlen=5)", "LAST.appendleft(1)",
     "@app.teardown_request"),
    ("CACHE = dict()", "del CACHE['x']", "@app.post('/x')"),
])
def test_containers_changed_in_views_and_hooks(tmp_path, setup, change, decorator):
    result = scan(tmp_path, FLASK + setup + f"""

{decorator}
def handler(*args):
    {change}
    return ""
""")
    assert rules(result) == [("module-state", "app.py", line_of(tmp_path, change))]


def test_class_attributes_and_method_views(tmp_path):
    result = scan(tmp_path, FLASK + """
        from flask.views import MethodView

        class Registry:
            items = {}

        class Votes(MethodView):
            tally = []

            def post(self):
                self.tally.append(1)
                Registry.items["x"] = 1
                return ""

        app.add_url_rule("/votes", view_func=Votes.as_view("votes"))
    """)
    assert rules(result) == [
        ("module-state", "app.py", line_of(tmp_path, "self.tally.append")),
        ("module-state", "app.py", line_of(tmp_path, 'Registry.items["x"]')),
    ]


def test_state_in_another_module_and_add_url_rule(tmp_path):
    result = scan(tmp_path, state="ORDERS = []\n", views="""
        from .state import ORDERS
        from . import state

        def place():
            ORDERS.append(1)
            state.ORDERS.clear()

        def register(app):
            app.add_url_rule("/place", "place", place)
    """)
    assert rules(result) == [
        ("module-state", "views.py", line_of(tmp_path, "ORDERS.append", "views")),
        ("module-state", "views.py", line_of(tmp_path, "state.ORDERS.clear", "views")),
    ]


def test_state_in_a_module_level_object(tmp_path):
    """An in-memory repository: a module-level object whose methods change its own dict or
    list while serving requests (the object lives as long as the process)."""
    result = scan(tmp_path, repo="""
        class BookRepository:
            def __init__(self):
                self.books = {}
                self.log = []
                self.count = 0

            def add(self, book_id, title):
                self.books[book_id] = title
                self.log.append(("add", book_id))
                self.count += 1
                return book_id

            def get(self, book_id):
                return self.books.get(book_id)

        class Draft:
            def __init__(self):
                self.lines = []

            def write(self, text):
                self.lines.append(text)

        books = BookRepository()
    """, app=FLASK + """
        from .repo import Draft, books

        @app.post("/books/<int:book_id>")
        def add_book(book_id):
            draft = Draft()              # made per request: its list is the request's own
            draft.write("x")
            return {"id": books.add(book_id, request.json["title"]), "title": books.get(1)}
    """)
    assert rules(result) == [
        ("module-state", "repo.py", line_of(tmp_path, "self.books[book_id] = title", "repo")),
        ("module-state", "repo.py", line_of(tmp_path, 'self.log.append(("add"', "repo")),
    ]
    assert "books" in result.findings[0].message and "add_book" in result.findings[0].message


def test_global_rebinding_in_a_view(tmp_path):
    result = scan(tmp_path, FLASK + """
        VISITS = 0

        @app.route("/")
        def index():
            global VISITS
            VISITS += 1
            return str(VISITS)
    """)
    assert rules(result) == [("global-rebind", "app.py", line_of(tmp_path, "VISITS += 1"))]


def test_module_state_negatives(tmp_path):
    result = scan(tmp_path, FLASK + """
        import logging
        import click

        LIMIT = 10
        NAMES = ("a", "b")
        PRICES = {"tea": 3, "cake": 4}
        REGISTRY = {}
        REGISTRY["boot"] = 1           # import time: once per process, same everywhere
        logging.basicConfig(filename="app.log", level=logging.INFO)
        log = logging.getLogger(__name__)
        log.addHandler(logging.FileHandler("errors.log"))

        def create_app():
            REGISTRY["app"] = 2        # start-up, not a request
            return app

        @click.command()
        def seed():
            REGISTRY.clear()           # a CLI command, not a request

        @app.route("/price/<item>")
        def price(item):
            PRICES_ = dict(PRICES)     # a copy, local
            PRICES_[item] = 0
            REGISTRY = {}              # a local that shadows the global
            REGISTRY["x"] = 1
            return str(PRICES.get(item, LIMIT)) + NAMES[0]
    """)
    assert rules(result) == []


# --- local filesystem -------------------------------------------------------------------------


def test_file_writes_in_requests(tmp_path):
    result = scan(tmp_path, FLASK + """
        import os
        import shutil
        from pathlib import Path
        from werkzeug.datastructures import FileStorage

        def store(upload: FileStorage, name):
            upload.save(os.path.join("uploads", name))

        @app.post("/upload")
        def upload():
            os.makedirs("uploads", exist_ok=True)
            photo = request.files["photo"]
            photo.save("uploads/photo.jpg")
            for f in request.files.getlist("more"):
                store(f, f.filename)
            with open("uploads/log.txt", "a") as out:
                out.write("x")
            Path("uploads/note.txt").write_text("hi")
            shutil.copy("uploads/photo.jpg", "uploads/copy.jpg")
            return ""

        @app.get("/files/<name>")
        def get_file(name):
            from flask import send_from_directory
            return send_from_directory(app.config["UPLOAD_FOLDER"], name)
    """)
    expected = [
        ("local-file-write", "upload.save(os.path.join"),
        ("local-file-write", 'os.makedirs("uploads"'),
        ("local-file-write", 'photo.save("uploads'),
        ("local-file-write", 'open("uploads/log.txt", "a")'),
        ("local-file-write", "write_text"),
        ("local-file-write", "shutil.copy("),
        ("local-file-serve", "send_from_directory("),
    ]
    assert rules(result) == sorted(
        ((rule, "app.py", line_of(tmp_path, marker)) for rule, marker in expected),
        key=lambda r: r[2])


def test_file_negatives(tmp_path):
    result = scan(tmp_path, FLASK + """
        import os
        import tempfile
        from flask import send_from_directory

        os.makedirs("instance", exist_ok=True)   # start-up

        @app.post("/convert")
        def convert():
            path = os.path.join(tempfile.gettempdir(), "x.csv")
            with open(path, "w") as out:        # written and removed in this request
                out.write(request.get_data(as_text=True))
            size = os.path.getsize(path)
            os.remove(path)
            with tempfile.NamedTemporaryFile("w") as tmp:
                tmp.write("x")
            with tempfile.TemporaryDirectory() as folder:
                with open(os.path.join(folder, "a.txt"), "w") as out:
                    out.write("x")
            fd, name = tempfile.mkstemp()
            with open(name, "w") as out:
                out.write("y")
            with open("data/products.json") as f:   # reading is fine
                f.read()
            return str(size)

        @app.get("/assets/<name>")
        def assets(name):
            return send_from_directory(app.static_folder, name)
    """)
    assert rules(result) == []


def test_uploader_instance_in_another_module(tmp_path):
    """Issue 10, item 19: a module-level uploader object whose method writes the request file
    (``open(path, "wb")`` + ``shutil.copyfileobj``), imported and called by a view."""
    result = scan(tmp_path, extensions="""
        import os
        import shutil

        class Uploader:
            def __init__(self, folder=None):
                self.folder = folder

            def init_app(self, app):
                self.folder = app.config["UPLOAD_FOLDER"]

            def save(self, upload, name):
                path = os.path.join(self.folder, name)
                with open(path, "wb") as out:
                    shutil.copyfileobj(upload.stream, out)
                return path

        uploader = Uploader()
    """, views="""
        from flask import Blueprint, request

        from .extensions import uploader

        bp = Blueprint("files", __name__)

        @bp.post("/upload")
        def upload():
            uploader.save(request.files["file"], "x.bin")
            return ""
    """)
    assert rules(result) == [("local-file-write", "extensions.py",
                              line_of(tmp_path, 'open(path, "wb")', "extensions"))]
    assert "Uploader.save" in result.findings[0].message
    assert "upload" in result.findings[0].message


def test_storage_returned_by_a_factory(tmp_path):
    """Item 19: methods of an object a function returns (``get_storage().put(...)``, a local
    bound to it, a class built in the view, a method inherited from a base class)."""
    result = scan(tmp_path, storage="""
        import os
        import shutil
        from pathlib import Path

        from flask import current_app

        class BaseStorage:
            def __init__(self, root):
                self.root = root

            def put_stream(self, stream, name):
                target = Path(self.root) / name
                with target.open("wb") as out:
                    shutil.copyfileobj(stream, out)

        class LocalStorage(BaseStorage):
            def put(self, upload, name):
                upload.save(os.path.join(self.root, name))

        class S3Storage:
            def __init__(self, client, bucket):
                self.client, self.bucket = client, bucket

            def put(self, upload, name):
                self.client.upload_fileobj(upload.stream, self.bucket, name)

        def get_storage():
            if current_app.config.get("S3_BUCKET"):
                return S3Storage(current_app.extensions["s3"], current_app.config["S3_BUCKET"])
            return LocalStorage(current_app.config["UPLOAD_FOLDER"])
    """, app=FLASK + """
        from .storage import LocalStorage, get_storage

        @app.post("/avatar")
        def avatar():
            get_storage().put(request.files["avatar"], "avatar.png")
            return ""

        @app.post("/import")
        def import_file():
            storage = get_storage()
            storage.put_stream(request.stream, "import.csv")
            return ""

        @app.post("/direct")
        def direct():
            LocalStorage(app.instance_path).put(request.files["f"], "f.bin")
            return ""
    """)
    assert rules(result) == [
        ("local-file-write", "storage.py", line_of(tmp_path, 'target.open("wb")', "storage")),
        ("local-file-write", "storage.py", line_of(tmp_path, "upload.save(os.path", "storage")),
    ]


def test_helpers_that_save_an_upload_under_a_configured_folder(tmp_path):
    """Item 19: ``file.save(path)`` in a helper whose argument is not annotated, an image
    saved under the instance folder, a Flask-Uploads UploadSet."""
    result = scan(tmp_path, FLASK + """
        import os

        from flask import current_app
        from flask_uploads import IMAGES, UploadSet
        from werkzeug.utils import secure_filename

        photos = UploadSet("photos", IMAGES)

        def save_avatar(file):
            filename = secure_filename(file.filename)
            file.save(os.path.join(current_app.config["UPLOAD_FOLDER"], filename))
            return filename

        def save_thumb(image, name):
            path = os.path.join(current_app.instance_path, "thumbs", name)
            image.save(path)

        @app.post("/profile")
        def profile():
            name = save_avatar(request.files["avatar"])
            save_thumb(None, name)
            photos.save(request.files["photo"])
            return name
    """)
    assert rules(result) == [
        ("local-file-write", "app.py", line_of(tmp_path, "file.save(os.path.join")),
        ("local-file-write", "app.py", line_of(tmp_path, "image.save(path)")),
        ("local-file-write", "app.py", line_of(tmp_path, 'photos.save(request.files')),
    ]


def test_upload_lookalikes_are_fine(tmp_path):
    result = scan(tmp_path, FLASK + """
        import io
        import os

        from .store import bucket

        class Uploader:
            def __init__(self, folder):
                self.folder = folder

            def save(self, upload, name):
                with open(os.path.join(self.folder, name), "wb") as out:
                    out.write(upload.read())

        def seed(app):
            Uploader(app.instance_path).save(io.BytesIO(b"x"), "seed.bin")  # start-up only

        @app.post("/avatar")
        def avatar():
            upload = request.files["avatar"]
            bucket.save(upload, os.path.join("avatars", upload.filename))  # an object key
            buf = io.BytesIO()
            image = make_image(upload)
            image.save(buf, format="PNG")
            form = make_form()
            form.save()
            return ""

        def make_image(upload):
            return upload

        def make_form():
            return None
    """, store="bucket = None\n")
    assert rules(result) == []


# --- sessions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [
    'app.config["SESSION_TYPE"] = "filesystem"',
    'app.config.update(SESSION_TYPE="cachelib", SESSION_CACHELIB=FileSystemCache("/tmp/s"))',
    'app.config["SESSION_TYPE"] = "cachelib"',
])
def test_sessions_per_instance(tmp_path, config):
    result = scan(tmp_path, FLASK + f"""
from cachelib import FileSystemCache
from flask_session import Session

{config}
Session(app)
""")
    found = rules(result)
    assert found and {r for r, _, _ in found} == {"session-local"}
    assert "export-sessions" in result.findings[0].fix


def test_custom_in_memory_session_interface(tmp_path):
    result = scan(tmp_path, FLASK + """
        from flask.sessions import SessionInterface

        class MemorySessions(SessionInterface):
            def __init__(self):
                self.store = {}

            def save_session(self, app, session, response):
                self.store[session.sid] = dict(session)

        app.session_interface = MemorySessions()
    """)
    assert rules(result) == [("session-local", "app.py",
                              line_of(tmp_path, "class MemorySessions"))]


def test_flask_session_never_initialised(tmp_path):
    result = scan(tmp_path, FLASK + 'app.config["SESSION_TYPE"] = "redis"\n')
    assert rules(result) == [("session-not-initialised", "app.py", 3)]


def test_shared_sessions_are_fine(tmp_path):
    result = scan(tmp_path, FLASK + """
        from cachelib import RedisCache
        from flask_session import Session

        app.config.update(SESSION_TYPE="cachelib", SESSION_CACHELIB=RedisCache())
        other = {"SESSION_TYPE": "redis"}
        sess = Session()
        sess.init_app(app)
    """)
    assert rules(result) == []


# --- SECRET_KEY -------------------------------------------------------------------------------


@pytest.mark.parametrize("code,rule", [
    ("import os\napp.secret_key = os.urandom(24)", "secret-key-per-process"),
    ("import secrets\nSECRET_KEY = secrets.token_hex(32)", "secret-key-per-process"),
    ("import uuid\napp.config['SECRET_KEY'] = str(uuid.uuid4())", "secret-key-per-process"),
    ("import os\napp.config['SECRET_KEY'] = os.environ.get('SECRET_KEY') or os.urandom(16)",
     "secret-key-per-process"),
    ("app.config.from_mapping(SECRET_KEY='dev')", "secret-key-dev"),
    ("import os\nSECRET_KEY = os.environ.get('SECRET_KEY', 'change-me')", "secret-key-dev"),
    ("class Config:\n    SECRET_KEY = 'super secret key'", "secret-key-dev"),
    ("import random\nimport string\n"
     "SECRET_KEY = ''.join(random.choice(string.ascii_letters) for _ in range(32))",
     "secret-key-per-process"),
    ("from cryptography.fernet import Fernet\napp.secret_key = Fernet.generate_key()",
     "secret-key-per-process"),
    ("import os\nSECRET_KEY = os.environ.get('SECRET_KEY') or 'you-will-never-guess'",
     "secret-key-dev"),
    ("import os\nSECRET_KEY = os.environ.get('SECRET_KEY') or 'hard to guess string'",
     "secret-key-dev"),
])
def test_secret_keys(tmp_path, code, rule):
    result = scan(tmp_path, FLASK + code + "\n")
    assert [r for r, _, _ in rules(result)] == [rule]


def test_secret_key_from_the_environment_is_fine(tmp_path):
    result = scan(tmp_path, FLASK + """
        import os
        app.config["SECRET_KEY"] = os.environ["SECRET_KEY"]
        HELP = {"SECRET_KEY": "set one shared random value in the environment of every instance"}
    """)
    assert rules(result) == []


def test_secret_key_from_a_helper_that_generates_and_caches_it(tmp_path):
    """Issue 10, item 18: the key comes from a helper that makes one per host (cached to disk)."""
    result = scan(tmp_path, FLASK + """
        import os

        def load_or_create_key(path):
            try:
                with open(path, "rb") as f:
                    return f.read()
            except OSError:
                key = os.urandom(32)
                with open(path, "wb") as f:
                    f.write(key)
                return key

        app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY") or load_or_create_key(
            os.path.join(app.instance_path, "secret_key"))
    """)
    assert rules(result) == [("secret-key-per-process", "app.py",
                              line_of(tmp_path, 'app.config["SECRET_KEY"]'))]
    finding = result.findings[0]
    assert "load_or_create_key" in finding.message and "os.urandom" in finding.message
    assert "file" in finding.message and "environment" in finding.fix


def test_secret_key_from_a_helper_in_another_module(tmp_path):
    """Item 18 across modules: ``from .keys import x``, ``keys.y()``, a chain of helpers."""
    result = scan(tmp_path, keys="""
        import secrets
        import uuid

        def generate():
            return secrets.token_hex(32)

        def _fresh():
            return uuid.uuid4().hex

        def make():
            value = _fresh()
            return value.encode()
    """, config="""
        from .keys import generate

        class Config:
            SECRET_KEY = generate()
    """, app="""
        from flask import Flask

        from . import keys

        def create_app():
            app = Flask(__name__)
            key = keys.make()
            app.secret_key = key
            return app
    """)
    assert rules(result) == [
        ("secret-key-per-process", "app.py", line_of(tmp_path, "app.secret_key = key")),
        ("secret-key-per-process", "config.py",
         line_of(tmp_path, "SECRET_KEY = generate()", "config")),
    ]
    assert "uuid.uuid4" in result.findings[0].message
    assert "secrets.token_hex" in result.findings[1].message


def test_secret_key_in_a_local_name(tmp_path):
    result = scan(tmp_path, FLASK + """
        import os
        import uuid

        _KEY = uuid.uuid4().hex
        app.secret_key = _KEY

        def create_app():
            raw = os.urandom(24)
            app.config.update(SECRET_KEY=raw.hex())
            return app
    """)
    assert rules(result) == [
        ("secret-key-per-process", "app.py", line_of(tmp_path, "app.secret_key = _KEY")),
        ("secret-key-per-process", "app.py", line_of(tmp_path, "SECRET_KEY=raw.hex()")),
    ]


def test_secret_key_helpers_that_do_not_generate_are_fine(tmp_path):
    result = scan(tmp_path, FLASK + """
        import os
        import secrets

        def read_key():
            key = os.environ.get("SECRET_KEY")
            if not key:
                raise RuntimeError("set SECRET_KEY")
            return key

        def csrf_token():
            return secrets.token_urlsafe(16)

        def helper_with_a_nonce():
            nonce = secrets.token_hex(8)
            print(nonce)
            return os.environ["SECRET_KEY"]

        app.config["SECRET_KEY"] = read_key()
        app.config["CSRF_SEED"] = csrf_token()
        app.secret_key = helper_with_a_nonce()

        class ObjectStore:
            def __init__(self, secret_key=None):
                made = secrets.token_urlsafe(30)  # an S3 secret, not Flask's
                self.secret_key = secret_key or made

        def start_instances():
            key = secrets.token_hex(32)  # migrate: ignore[secret-key-per-process]
            return {"SECRET_KEY": key}  # one key handed to every instance
    """)
    assert rules(result) == [] and result.suppressed == 1


# --- caches -----------------------------------------------------------------------------------


def test_process_local_caches(tmp_path):
    result = scan(tmp_path, FLASK + """
        from cachelib import SimpleCache
        from flask_caching import Cache

        cache = Cache(app, config={"CACHE_TYPE": "SimpleCache"})
        disk = Cache(config={"CACHE_TYPE": "filesystem", "CACHE_DIR": "/tmp/c"})
        pages = SimpleCache()
    """)
    assert rules(result) == [
        ("process-cache", "app.py", line_of(tmp_path, '"SimpleCache"')),
        ("process-cache", "app.py", line_of(tmp_path, '"filesystem"')),
        ("process-cache", "app.py", line_of(tmp_path, "pages = SimpleCache()")),
    ]


def test_memoised_functions_that_read_request_or_database(tmp_path):
    result = scan(tmp_path, FLASK + """
        import functools
        from functools import lru_cache
        from .db import db

        @functools.lru_cache(maxsize=None)
        def user_prefs():
            return session.get("prefs")

        @lru_cache
        def product(product_id):
            return db.session.execute(f"select {product_id}").one()

        def current_lang():
            return request.accept_languages.best

        @functools.cache
        def greeting():
            return "hello " + current_lang()

        @lru_cache(maxsize=128)
        def slugify(text):
            return text.lower().replace(" ", "-")
    """, db="db = None\n")
    lines = (tmp_path / "shop" / "app.py").read_text().splitlines()
    bare = next(i for i, text in enumerate(lines, 1) if text.strip() == "@lru_cache")
    assert rules(result) == [
        ("function-cache", "app.py", line_of(tmp_path, "@functools.lru_cache")),
        ("function-cache", "app.py", bare),
        ("function-cache", "app.py", line_of(tmp_path, "@functools.cache")),
    ]


# --- background work --------------------------------------------------------------------------


def test_threads_timers_schedulers_and_executors(tmp_path):
    result = scan(tmp_path, FLASK + """
        import threading
        from concurrent.futures import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        EXECUTOR = ThreadPoolExecutor(4)
        scheduler = BackgroundScheduler()
        scheduler.start()

        def send_mail(to):
            pass

        @app.post("/signup")
        def signup():
            threading.Thread(target=send_mail, args=("a@b",), daemon=True).start()
            EXECUTOR.submit(send_mail, "c@d")
            return ""

        def create_app():
            timer = threading.Timer(60, send_mail, args=("x",))
            timer.start()
            return app
    """)
    found = {(f.rule, f.line, f.severity) for f in result.findings}
    assert found == {
        ("background-thread", line_of(tmp_path, "scheduler.start()"), "warning"),
        ("background-thread", line_of(tmp_path, "threading.Thread("), "error"),
        ("background-thread", line_of(tmp_path, "EXECUTOR.submit"), "error"),
        ("background-thread", line_of(tmp_path, "timer.start()"), "warning"),
    }


def test_threads_that_finish_within_the_request_or_run_from_main(tmp_path):
    result = scan(tmp_path, FLASK + """
        import threading
        from concurrent.futures import ThreadPoolExecutor

        def work():
            pass

        @app.get("/report")
        def report():
            worker = threading.Thread(target=work)
            worker.start()
            worker.join()
            with ThreadPoolExecutor() as pool:
                list(pool.map(str, range(3)))
            return ""

        if __name__ == "__main__":
            threading.Thread(target=work).start()
    """)
    assert rules(result) == []


def test_socketio_handlers_and_background_tasks(tmp_path):
    """Flask-SocketIO's example app: a background task started by the connect handler."""
    result = scan(tmp_path, FLASK + """
        from threading import Lock

        from flask_socketio import SocketIO, emit

        socketio = SocketIO(app)
        thread = None
        thread_lock = Lock()
        CLIENTS = set()

        def background_thread():
            while True:
                socketio.sleep(10)
                socketio.emit("my_response", {"data": "Server generated event"})

        @socketio.event
        def connect():
            global thread
            with thread_lock:
                if thread is None:
                    thread = socketio.start_background_task(background_thread)
            emit("my_response", {"data": "Connected"})

        @socketio.on("join")
        def on_join(data):
            CLIENTS.add(request.sid)
    """)
    started = line_of(tmp_path, "socketio.start_background_task")
    assert [(f.rule, f.line, f.severity) for f in result.findings] == [
        ("global-rebind", started, "error"),
        ("background-thread", started, "error"),
        ("live-updates", line_of(tmp_path, "CLIENTS.add"), "error"),  # Socket.IO clients
    ]


# --- SQLite -----------------------------------------------------------------------------------


def test_sqlite_on_local_disk(tmp_path):
    result = scan(tmp_path, FLASK + """
        import os
        import sqlite3

        app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite:///shop.db"
        app.config["OTHER_URI"] = f"sqlite:///{app.instance_path}/other.db"
        URL = os.environ.get("DATABASE_URL", "sqlite:///" + os.path.join(app.instance_path, "x"))

        @app.get("/count")
        def count():
            conn = sqlite3.connect("counts.db")
            return str(conn.execute("select 1").fetchone())
    """)
    found = [(f.rule, f.line) for f in result.findings]
    assert found == [("sqlite-local", line_of(tmp_path, m)) for m in (
        '"sqlite:///shop.db"', 'f"sqlite:///', '"sqlite:///" +', 'sqlite3.connect("counts')]
    assert "instance folder" in result.findings[1].message
    assert "instance folder" in result.findings[2].message


def test_sqlite_negatives(tmp_path):
    result = scan(tmp_path, FLASK + '''
        """Connect with a URL such as sqlite:///dev.db in development."""
        import sqlite3

        app.config["SQLALCHEMY_DATABASE_URI"] = "postgresql+psycopg://db/shop"

        def is_sqlite(url):
            return url.startswith("sqlite")

        @app.get("/scratch")
        def scratch():
            return str(sqlite3.connect(":memory:").execute("select 1").fetchone())
    ''')
    assert rules(result) == []


# --- testing and development configurations (issue 10, item 20) ------------------------------


def test_testing_and_development_config_classes(tmp_path):
    """A testing config's in-memory SQLite or simple cache is not a trap (never deployed); a
    development config's is a note; the production config's SQLite is still an error."""
    result = scan(tmp_path, config="""
        import os

        basedir = os.path.abspath(os.path.dirname(__file__))

        class Config:
            SECRET_KEY = os.environ["SECRET_KEY"]
            CACHE_TYPE = "RedisCache"

        class DevelopmentConfig(Config):
            DEBUG = True
            SQLALCHEMY_DATABASE_URI = "sqlite:///" + os.path.join(basedir, "data-dev.sqlite")
            CACHE_TYPE = "SimpleCache"

        class TestingConfig(Config):
            TESTING = True
            SQLALCHEMY_DATABASE_URI = "sqlite://"
            CACHE_TYPE = "SimpleCache"

        class UnitTestConfig(Config):
            SQLALCHEMY_DATABASE_URI = "sqlite:///:memory:"
            CACHE_TYPE = "simple"

        class CIConfig(Config):
            TESTING = True
            SQLALCHEMY_DATABASE_URI = "sqlite://"

        class ProductionConfig(Config):
            SQLALCHEMY_DATABASE_URI = os.environ.get(
                "DATABASE_URL", "sqlite:///" + os.path.join(basedir, "data.sqlite"))
    """)
    found = [(f.rule, f.line, f.severity) for f in result.findings]
    assert found == [
        ("sqlite-local", line_of(tmp_path, '"sqlite:///" + os.path.join(basedir, "data-dev',
                                 "config"), "note"),
        ("process-cache", line_of(tmp_path, 'CACHE_TYPE = "SimpleCache"', "config"), "note"),
        ("sqlite-local", line_of(tmp_path, '"sqlite:///" + os.path.join(basedir, "data.s',
                                 "config"), "error"),
    ]
    assert "development" in result.findings[0].message


def test_code_guarded_by_testing_or_debug(tmp_path):
    result = scan(tmp_path, FLASK + """
        import os

        from cachelib import SimpleCache

        def create_app(test_config=None):
            if test_config is None:
                app.config.from_pyfile("config.py", silent=True)
            else:
                app.config["DATABASE"] = "sqlite://"
            if app.config["TESTING"]:
                app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite://"
                app.extensions["pages"] = SimpleCache()
            if not app.testing:
                app.config["CACHE_TYPE"] = "RedisCache"
            else:
                app.config["CACHE_TYPE"] = "SimpleCache"
            if os.environ.get("FLASK_DEBUG"):
                app.config["CACHE_TYPE"] = "simple"
            if not app.debug and not app.testing:
                app.config["OTHER_URI"] = "sqlite:///prod.db"
            app.config.from_mapping(TESTING=True, SQLALCHEMY_DATABASE_URI="sqlite://")
            return app
    """)
    found = [(f.rule, f.line, f.severity) for f in result.findings]
    assert found == [
        ("process-cache", line_of(tmp_path, 'app.config["CACHE_TYPE"] = "simple"'), "note"),
        ("sqlite-local", line_of(tmp_path, '"sqlite:///prod.db"'), "error"),
    ]


def test_the_rules_say_why_testing_configs_are_not_traps():
    from migrate.scan.model import ScanResult
    from migrate.scan.report import sarif_data

    for rule in ("sqlite-local", "process-cache"):
        assert "testing" in RULES[rule].notes and "development" in RULES[rule].notes
    driver = sarif_data(ScanResult(root="."))["runs"][0]["tool"]["driver"]
    help_text = {r["id"]: r["help"]["markdown"] for r in driver["rules"]}
    assert RULES["sqlite-local"].notes in help_text["sqlite-local"]


def test_in_memory_sqlite_as_a_placeholder_argument(tmp_path):
    """An in-memory URL handed to an ordinary function (no database opened, or a scratch one)
    is not the app's database; as a setting, an env default or to create_engine it is."""
    result = scan(tmp_path, FLASK + """
        import os

        from sqlalchemy import create_engine

        from .db import DbConfig

        def revision():
            config = DbConfig.from_project("sqlite://", project=".")  # only completes a config
            return config

        engine = create_engine("sqlite://")
        URL = os.environ.get("DATABASE_URL", "sqlite://")
        DbConfig.from_project("sqlite:///app.db")
    """, db="DbConfig = None\n")
    assert [(f.rule, f.line) for f in result.findings] == [
        ("sqlite-local", line_of(tmp_path, 'create_engine("sqlite://")')),
        ("sqlite-local", line_of(tmp_path, 'os.environ.get("DATABASE_URL"')),
        ("sqlite-local", line_of(tmp_path, '"sqlite:///app.db"')),
    ]


# --- suppression and robustness ---------------------------------------------------------------


def test_ignore_comment_suppresses_one_rule_on_its_line(tmp_path):
    result = scan(tmp_path, FLASK + """
        import os
        COUNTS = {}
        app.secret_key = os.urandom(8)  # migrate: ignore[secret-key-per-process]

        @app.get("/")
        def index():
            COUNTS["a"] = 1  # migrate: ignore[module-state]
            COUNTS["b"] = 1  # migrate: ignore[local-file-write]
            return ""
    """)
    assert rules(result) == [("module-state", "app.py", line_of(tmp_path, 'COUNTS["b"]'))]
    assert result.suppressed == 2


def test_a_file_that_does_not_parse_is_reported_and_the_scan_goes_on(tmp_path):
    result = scan(tmp_path, FLASK + """
        @app.get("/")
        def index():
            global HITS
            HITS = 1
    """, broken="def oops(:\n    pass\n")
    assert [(p.path, p.line) for p in result.parse_errors] == [("broken.py", 1)]
    assert rules(result) == [("global-rebind", "app.py", line_of(tmp_path, "HITS = 1"))]
    assert result.files == 3


def test_url_scheme_checks_and_batch_maps_are_not_traps(tmp_path):
    result = scan(tmp_path, FLASK + """
        from concurrent.futures import ThreadPoolExecutor

        POOL = ThreadPoolExecutor(4)

        @app.get("/sizes")
        def sizes():
            url = app.config["DATABASE_URL"]
            if url.startswith("sqlite://") or url.endswith("sqlite:"):
                return ""
            return str(list(POOL.map(len, ["a", "bb"])))
    """)
    assert rules(result) == []


def test_cycles_between_module_level_objects_and_classes_end(tmp_path):
    result = scan(tmp_path, FLASK + """
        a = b.make()
        b = a.make()

        class A(B):
            pass

        class B(A):
            pass

        c = A()

        @app.get("/")
        def index():
            a.save(1)
            c.save(2)
            A().missing()
            return ""
    """)
    assert rules(result) == []


# --- issue 12: API tokens, live updates, in-process locks, the rate limiter's storage --------


def test_a_token_store_is_found_by_name_by_key_or_by_lookup(tmp_path):
    result = scan(tmp_path, FLASK + """
        import secrets
        import uuid

        API_KEYS = {}
        ISSUED = {}
        CLIENTS = {}
        TOKEN_CACHE = {}

        @app.post("/keys")
        def new_key():
            API_KEYS[uuid.uuid4().hex] = request.json["user"]
            ISSUED[secrets.token_hex(16)] = request.json["user"]
            CLIENTS[uuid.uuid4().hex] = request.json["user"]
            TOKEN_CACHE["partner"] = request.json["oauth_token"]
            return ""

        @app.get("/who")
        def who():
            return CLIENTS.get(request.headers.get("X-Api-Key", ""), "nobody")
    """)
    assert [(f.rule, f.line) for f in result.findings] == [
        ("token-store", line_of(tmp_path, "API_KEYS[")),  # its name
        ("token-store", line_of(tmp_path, "ISSUED[")),  # keyed by secrets.token_hex
        ("token-store", line_of(tmp_path, "CLIENTS[")),  # looked up by the X-Api-Key header
        ("module-state", line_of(tmp_path, "TOKEN_CACHE[")),  # a cache: no token lives there
    ]
    assert all("PyJWT" in f.fix for f in result.findings[:3])


def test_tokens_that_are_not_state_are_left_alone(tmp_path):
    result = scan(tmp_path, FLASK + """
        import os

        TOKEN_TTL = 3600
        API_KEYS = {os.environ.get("PARTNER_KEY", ""): "partner"}  # configuration, read only
        TOKENS = {}

        def load_tokens(path):
            TOKENS.update(line.split(":") for line in open(path))  # start-up, not a request

        load_tokens("tokens.txt")

        @app.get("/p")
        def p():
            g.token = request.headers.get("Authorization")
            seen = {}
            seen[g.token] = TOKENS.get(g.token)  # a local dict
            return API_KEYS.get(g.token, str(TOKEN_TTL))
    """)
    assert result.findings == []


def test_live_updates_subscribers_history_and_a_streamed_queue(tmp_path):
    result = scan(tmp_path, FLASK + """
        import asyncio
        import queue
        from collections import deque

        from flask import Response

        ROOMS = {}
        HISTORY = deque(maxlen=50)
        RECENT_SEARCHES = deque(maxlen=10)
        BROADCAST = queue.Queue()

        @app.get("/events")
        def events():
            inbox = asyncio.Queue()
            ROOMS.setdefault(request.args["room"], []).append(inbox)

            def gen():
                yield from HISTORY
                while True:
                    yield BROADCAST.get()
            return Response(gen())

        @app.post("/say")
        def say():
            HISTORY.append(request.json)
            RECENT_SEARCHES.append(request.args.get("q"))
            BROADCAST.put(request.json)
            return ""
    """)
    assert [(f.rule, f.line) for f in result.findings] == [
        ("live-updates", line_of(tmp_path, "ROOMS.setdefault")),
        ("live-updates", line_of(tmp_path, "yield BROADCAST.get()")),
        ("live-updates", line_of(tmp_path, "HISTORY.append")),
        ("module-state", line_of(tmp_path, "RECENT_SEARCHES.append")),  # not a message history
    ]
    assert "Streams" in result.findings[0].fix


def test_a_work_queue_read_by_a_worker_thread_is_not_a_live_update(tmp_path):
    result = scan(tmp_path, FLASK + """
        import queue
        import threading

        MAIL = queue.Queue()

        def worker():
            while True:
                send(MAIL.get())

        def send(message):
            return message

        @app.post("/signup")
        def signup():
            MAIL.put(request.form["email"])
            return ""

        if __name__ == "__main__":
            threading.Thread(target=worker, daemon=True).start()
    """)
    assert result.findings == []


def test_a_lock_around_a_database_read_modify_write_in_another_module(tmp_path):
    result = scan(tmp_path, store=FLASK + """
        import threading

        from .db import get_stock, set_stock

        STOCK_LOCK = threading.Lock()
    """, db="""
        def get_stock(conn, pid):
            return conn.execute("SELECT stock FROM p WHERE id = ?", (pid,)).fetchone()[0]

        def set_stock(conn, pid, n):
            conn.execute("UPDATE p SET stock = ? WHERE id = ?", (n, pid))
            conn.commit()
    """, views=FLASK + """
        from . import store

        @app.post("/buy/<int:pid>")
        def buy(pid):
            conn = g.conn
            with store.STOCK_LOCK:
                left = store.get_stock(conn, pid)
                if left < 1:
                    return "sold out", 409
                store.set_stock(conn, pid, left - 1)
            return ""
    """)
    assert rules(result) == [("process-lock", "views.py",
                              line_of(tmp_path, "with store.STOCK_LOCK", "views"))]
    finding = result.findings[0]
    assert "database" in finding.message and "buy" in finding.message
    assert "conditional UPDATE" in finding.fix


def test_what_a_lock_may_guard_in_one_process(tmp_path):
    """The rule's boundary: a cache fill, a lazy client, a blind append, reads, a local lock,
    an atomic UPDATE, rows the database locks (FOR UPDATE); the cache and the log are
    module-state's, not the lock's."""
    result = scan(tmp_path, FLASK + """
        import threading

        LOCK = threading.Lock()
        _CACHE = {}
        _client = None
        LOG = []
        PRICES = {"tea": 3}

        def make_client():
            return object()

        @app.get("/a/<key>")
        def a(key):
            global _client
            with LOCK:
                if key not in _CACHE:
                    _CACHE[key] = len(key)
                if _client is None:
                    _client = make_client()
                LOG.append(key)
                price = PRICES[key]
            local = threading.Lock()
            with local:
                counts = {}
                counts[key] = counts.get(key, 0) + 1
            with LOCK:
                g.db.execute("UPDATE p SET n = n - 1 WHERE id = ? AND n > 0", (key,))
                g.db.commit()
            with LOCK:  # the database locks the row: other instances wait there
                n = g.db.execute("SELECT n FROM p WHERE id = ? FOR UPDATE", (key,)).fetchone()
                g.db.execute("UPDATE p SET n = ? WHERE id = ?", (n[0] - 1, key))
                g.db.commit()
            return str(price)
    """)
    assert [(f.rule, f.line) for f in result.findings] == [
        ("module-state", line_of(tmp_path, "_CACHE[key] = len(key)")),
        ("global-rebind", line_of(tmp_path, "_client = make_client()")),
        ("module-state", line_of(tmp_path, "LOG.append(key)")),
    ]


def test_a_lock_around_a_read_modify_write_of_process_state(tmp_path):
    result = scan(tmp_path, FLASK + """
        import threading

        class Counter:
            _lock = threading.Lock()
            hits = {}

            def hit(self, page):
                with self._lock:
                    self.hits[page] = self.hits.get(page, 0) + 1

        counter = Counter()
        total = 0
        total_lock = threading.Lock()

        @app.get("/<page>")
        def page(page):
            global total
            counter.hit(page)
            total_lock.acquire()
            try:
                total += 1
            finally:
                total_lock.release()
            return ""
    """)
    assert [(f.rule, f.line) for f in result.findings] == [
        ("process-lock", line_of(tmp_path, "with self._lock:")),
        ("module-state", line_of(tmp_path, "self.hits[page] =")),
        ("process-lock", line_of(tmp_path, "total_lock.acquire()")),
        ("global-rebind", line_of(tmp_path, "total += 1")),
    ]
    assert "`total`" in result.findings[2].message


def test_a_lock_held_outside_requests_is_not_reported(tmp_path):
    result = scan(tmp_path, FLASK + """
        import threading

        LOCK = threading.Lock()
        TOTALS = {"n": 0}

        def rebuild():
            with LOCK:
                TOTALS["n"] = TOTALS["n"] + 1

        if __name__ == "__main__":
            rebuild()
    """)
    assert result.findings == []


@pytest.mark.parametrize(("code", "line_marker", "severity"), [
    ('limiter = Limiter(key_func=lambda: "x", app=app)\n', "limiter = Limiter", "error"),
    ('Limiter(lambda: "x", app=app, storage_uri="memory://")\n', "Limiter(", "error"),
    ('app.config["RATELIMIT_STORAGE_URI"] = "memory://"\nLimiter(lambda: "x", app=app)\n',
     "RATELIMIT_STORAGE_URI", "error"),
    ('OPTIONS = {"storage_uri": "memory://"}\nLimiter(lambda: "x", app=app, **OPTIONS)\n',
     "OPTIONS =", "error"),
    ('class DevConfig:\n    RATELIMIT_STORAGE_URI = "memory://"\n', "RATELIMIT_STORAGE_URI",
     "note"),
])
def test_limiter_on_memory(tmp_path, code, line_marker, severity):
    result = scan(tmp_path, FLASK + "from flask_limiter import Limiter\n" + code)
    assert [(f.rule, f.line, f.severity) for f in result.findings] == [
        ("limiter-memory", line_of(tmp_path, line_marker), severity)]
    assert "REDIS_URL" in result.findings[0].fix


@pytest.mark.parametrize("code", [
    'Limiter(lambda: "x", app=app, storage_uri=os.environ["REDIS_URL"])\n',
    'Limiter(lambda: "x", app=app)\napp.config["RATELIMIT_STORAGE_URI"] = os.environ["R"]\n',
    'Limiter(lambda: "x", app=app, **options())\n',
    'class TestingConfig:\n    RATELIMIT_STORAGE_URI = "memory://"\n',
])
def test_limiter_on_shared_storage_is_left_alone(tmp_path, code):
    result = scan(tmp_path, FLASK + "import os\nfrom flask_limiter import Limiter\n" + code)
    assert result.findings == []


def test_a_lock_names_what_it_races_on_across_modules(tmp_path):
    result = scan(tmp_path, state="""
        STOCK = {"tea": 3}
    """, models="""
        from flask_sqlalchemy import SQLAlchemy

        db = SQLAlchemy()
    """, views=FLASK + """
        import threading

        from .models import db
        from .state import STOCK

        LOCK = threading.Lock()

        @app.post("/buy/<item>")
        def buy(item):
            with LOCK:
                if STOCK[item] < 1:
                    return "sold out", 409
                STOCK[item] -= 1
            return ""

        @app.post("/log/<int:item>")
        def log(item):
            with LOCK:
                row = db.session.get(dict, item)
                db.session.add(row)
                db.session.commit()
            return ""
    """)
    found = [(f.rule, f.line) for f in result.findings if f.rule == "process-lock"]
    lines = [i for i, t in enumerate((tmp_path / "shop" / "views.py").read_text().splitlines(), 1)
             if "with LOCK:" in t]
    assert found == [("process-lock", lines[0]), ("process-lock", lines[1])]
    first, second = (f for f in result.findings if f.rule == "process-lock")
    assert "`STOCK`" in first.message
    assert "the database" in second.message and "`db`" not in second.message


def test_a_dict_of_rq_queues_or_queue_names_is_not_a_subscriber_list(tmp_path):
    result = scan(tmp_path, FLASK + """
        from redis import Redis
        from rq import Queue

        QUEUES = {}
        ROUTES = {}

        @app.post("/jobs/<name>")
        def enqueue(name):
            QUEUES[name] = Queue(name, connection=Redis())
            queue_name = request.form["queue"]
            ROUTES[name] = queue_name
            return ""
    """)
    assert [f.rule for f in result.findings] == ["module-state", "module-state"]


def test_a_lock_around_a_view_objects_own_attributes_is_not_shared(tmp_path):
    """A class-based view is made per request: its own attributes are that request's."""
    result = scan(tmp_path, FLASK + """
        import threading

        from flask.views import MethodView

        LOCK = threading.Lock()

        class Totals(MethodView):
            def __init__(self):
                self.seen = {}

            def get(self):
                with LOCK:
                    self.seen["n"] = self.seen.get("n", 0) + 1
                return str(self.seen["n"])

        app.add_url_rule("/totals", view_func=Totals.as_view("totals"))
    """)
    assert result.findings == []
