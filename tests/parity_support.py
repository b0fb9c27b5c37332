"""What the parity plugin's tests share: a tiny app with one trap of each kind, a way to run
pytest in a subprocess with the plugin, and a look into /proc for processes left behind."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# A small app with a trap of each kind (a session in process memory, a counter in a module
# dict) beside what works anywhere (Flask's signed-cookie session), and endpoints that show
# exactly what arrived, for comparing the instance client with Flask's own test client.
TINY_APP = textwrap.dedent('''
    import hashlib
    import os
    import secrets
    import time

    from flask import Flask, abort, redirect, request, session

    MEMORY_SESSIONS = {}  # sid -> user: a before-app's in-process session store
    COUNTER = {"n": 0}

    def create_app(test_config=None):
        app = Flask(__name__)
        app.config.update(SECRET_KEY=os.environ.get("SECRET_KEY", "tiny-dev-key-0123456789"),
                          MAX_CONTENT_LENGTH=64 * 1024)
        if test_config:
            app.config.update(test_config)
        name = os.environ.get("INSTANCE", "local")

        @app.after_request
        def tag(response):
            response.headers["X-Instance"] = name
            return response

        @app.get("/healthz")
        def healthz():
            return {"ok": True}

        @app.route("/echo", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
        def echo():
            files = {k: [f.filename, f.mimetype, hashlib.sha256(f.read()).hexdigest()]
                     for k, f in request.files.items()}
            raw = "" if request.mimetype in ("multipart/form-data",
                                             "application/x-www-form-urlencoded") \\
                else request.get_data(as_text=True)
            return {"method": request.method, "full_path": request.full_path,
                    "args": request.args.to_dict(flat=False),
                    "form": request.form.to_dict(flat=False), "files": files,
                    "json": request.get_json(silent=True), "raw": raw,
                    "host": request.host, "agent": request.user_agent.string,
                    "mimetype": request.mimetype, "x_test": request.headers.get("X-Test"),
                    "origin": request.headers.get("Origin"),
                    "cookies": request.cookies.to_dict()}

        @app.post("/memory/login")
        def memory_login():
            sid = secrets.token_hex(8)
            MEMORY_SESSIONS[sid] = request.form["user"]
            response = redirect("/memory/me")
            response.set_cookie("sid", sid)
            return response

        @app.get("/memory/me")
        def memory_me():
            return {"user": MEMORY_SESSIONS.get(request.cookies.get("sid", ""))}

        @app.post("/signed/login")
        def signed_login():
            session["user"] = request.form["user"]
            return redirect("/signed/me")

        @app.get("/signed/me")
        def signed_me():
            return {"user": session.get("user")}

        @app.post("/count")
        def count():
            COUNTER["n"] += 1
            return {"n": COUNTER["n"]}

        @app.route("/hop/<int:n>", methods=["GET", "POST"])
        def hop(n):
            return redirect(f"/hop/{n - 1}" if n > 1 else "/echo", 303 if n % 2 else 302)

        @app.get("/away")
        def away():
            return redirect("http://elsewhere.example/x")

        @app.get("/cookie")
        def cookie():
            response = app.make_response(("set", 200))
            response.set_cookie("flavour", "oatmeal", path="/")
            return response

        @app.get("/page")
        def page():
            session.setdefault("token", secrets.token_hex(8))
            html = (f'<form method="post"><input type="hidden" name="token" '
                    f'value="{session["token"]}"></form>')
            return html, 200, {"Content-Type": "text/html; charset=utf-8"}

        @app.post("/page")
        def page_post():
            if "Origin" in request.headers and request.form.get("token") != session.get("token"):
                abort(403)
            return redirect("/page")

        @app.get("/slow")
        def slow():
            time.sleep(min(float(request.args.get("s", "0")), 5))
            return "done"

        return app
''')

# The same app's suite, as a team writes it (Flask's test client only).
TINY_CONFTEST = textwrap.dedent('''
    import pytest

    from {module} import create_app

    @pytest.fixture
    def app():
        return create_app({{"TESTING": True}})

    @pytest.fixture
    def client(app):
        return app.test_client()
''')

TINY_TESTS = textwrap.dedent('''
    def test_signed_session_survives(client):
        assert client.post("/signed/login", data={"user": "ada"}).status_code == 302
        assert client.get("/signed/me").json == {"user": "ada"}

    def test_memory_session_survives(client):
        assert client.post("/memory/login", data={"user": "ada"}).status_code == 302
        assert client.get("/memory/me").json == {"user": "ada"}

    def test_counter_counts(client):
        first = client.post("/count").json["n"]
        assert client.post("/count").json["n"] == first + 1

    def test_no_request_at_all():
        assert 1 + 1 == 2
''')


def write_tiny_project(folder: Path, module: str, tests: str = TINY_TESTS) -> Path:
    """The tiny app as ``module`` in ``folder``, with its own conftest and tests."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{module}.py").write_text(TINY_APP, encoding="utf-8")
    tests_dir = folder / "tests"
    tests_dir.mkdir(exist_ok=True)
    (tests_dir / "conftest.py").write_text(TINY_CONFTEST.format(module=module), encoding="utf-8")
    (tests_dir / "test_tiny.py").write_text(tests, encoding="utf-8")
    return folder


def run_pytest(folder: Path, *args: str, timeout: float = 120,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """pytest in ``folder`` (its own rootdir) in a subprocess, the plugin loaded as installed."""
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
               "--basetemp", str(folder / "basetemp"), "--rootdir", str(folder), *args]
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(folder), **(env or {})})


def start_pytest(folder: Path, *args: str) -> subprocess.Popen:
    """The same, left running (its own session, so a signal reaches it alone)."""
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
               "--basetemp", str(folder / "basetemp"), "--rootdir", str(folder), *args]
    return subprocess.Popen(command, cwd=folder, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(folder)})


def processes_under(marker: str) -> list[str]:
    """Live processes whose command line or working folder mentions ``marker`` (a path)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode("utf-8", "replace")
            cwd = os.readlink(f"/proc/{entry}/cwd")
            with open(f"/proc/{entry}/stat") as handle:
                state = handle.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (marker in cmdline or cwd.startswith(marker)):
            found.append(f"{entry}: {cmdline[:200]}")
    return found
