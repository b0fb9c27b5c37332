"""The parity plugin's instance client against real gunicorn instances of a tiny app: it must
behave as Flask's test client does toward the same app, spread requests as asked, survive a
killed instance, and refuse in one line what cannot work across processes."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import sys
from pathlib import Path

import pytest

from migrate.errors import ConnectionFailure, UsageError
from migrate.parity import InstanceClient, Instances, NotAcrossInstances, ParitySettings
from migrate.parity.client import Balancer
from migrate.parity.settings import parse_env, render
from tests.parity_support import TINY_APP

MODULE = "parity_tiny_client_app"


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny")
    (folder / f"{MODULE}.py").write_text(TINY_APP, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def running(tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    settings = ParitySettings(app=f"{MODULE}:create_app()", instances=2, app_dir=tiny_dir,
                              app_env={"INSTANCE": "{instance}"})
    with Instances(settings, tmp_path_factory.mktemp("run")) as started:
        yield started


@pytest.fixture(scope="module")
def local_app(tiny_dir: Path):
    """The same app in this process, for Flask's own test client."""
    spec = importlib.util.spec_from_file_location(MODULE, tiny_dir / f"{MODULE}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module.create_app({"SECRET_KEY": "tiny-local-key-0123456789"})
    sys.modules.pop(MODULE, None)


def both(running, local_app) -> tuple[InstanceClient, object]:
    return InstanceClient(running), local_app.test_client()


CALLS = [
    ("get", "/echo", {"query_string": {"q": ["1", "two words"], "x": "é"}}),
    ("post", "/echo", {"data": {"a": "1", "b": ["x", "y"]}}),
    ("post", "/echo?q=1", {"json": {"a": [1, 2], "b": None}}),
    ("put", "/echo", {"data": b"\x00raw bytes", "content_type": "application/octet-stream"}),
    ("patch", "/echo", {"data": "text body", "headers": {"X-Test": "yes"}}),
    ("delete", "/echo", {"headers": [("X-Test", "a"), ("Origin", "http://localhost")]}),
    ("post", "/echo", {"data": {"f": (io.BytesIO(b"\x89PNG..."), "a.png"), "caption": "c"}}),
    ("post", "/echo", {"data": {"f": (io.BytesIO(b"abc"), "a.txt", "text/plain")},
                       "content_type": "multipart/form-data"}),
    ("get", "/echo%20x/../echo", {}),
]


@pytest.mark.parametrize("method,path,kwargs", CALLS, ids=[f"{c[0]}-{i}" for i, c in
                                                            enumerate(CALLS)])
def test_the_app_sees_the_request_the_test_client_would_send(running, local_app, method, path,
                                                             kwargs):
    ours, flasks = both(running, local_app)

    def call(client):
        fresh = {k: ({f: (io.BytesIO(v[0].getvalue()), *v[1:]) if isinstance(v, tuple) else v
                      for f, v in val.items()} if k == "data" and isinstance(val, dict) else val)
                 for k, val in kwargs.items()}  # each client reads its own file objects
        return getattr(client, method)(path, **fresh)

    over_http, in_process = call(ours), call(flasks)
    assert over_http.status_code == in_process.status_code
    assert over_http.json == in_process.json
    assert over_http.headers["X-Instance"] == "instance-1"


def test_a_prepared_builder_or_environ_is_sent_as_flasks_client_sends_it(running, local_app):
    from werkzeug.test import EnvironBuilder

    ours, flasks = both(running, local_app)
    builder = EnvironBuilder("/echo", method="POST", data={"a": "1"}, query_string="q=2")
    assert ours.open(builder).json == flasks.open(builder).json
    assert builder.environ_base is None  # the caller's builder is left as it was
    environ = EnvironBuilder("/echo", headers={"X-Test": "env"}).get_environ()
    assert ours.open(environ).json == flasks.open(environ).json


def test_responses_read_as_flasks_do(running, local_app):
    ours, flasks = both(running, local_app)
    for path in ("/cookie", "/hop/2", "/healthz", "/nowhere"):
        a, b = ours.get(path), flasks.get(path)
        assert (a.status_code, a.data, a.text, a.mimetype, a.location, a.json if a.is_json
                else None) == (b.status_code, b.data, b.text, b.mimetype, b.location,
                               b.json if b.is_json else None)
        assert a.get_data(as_text=True) == b.get_data(as_text=True)
        assert a.headers["Content-Type"] == b.headers["Content-Type"]


def test_requests_go_round_robin_and_each_is_recorded_with_its_instance(running):
    client = InstanceClient(running)
    served = [client.get("/healthz").headers["X-Instance"] for _ in range(4)]
    assert served == ["instance-1", "instance-2", "instance-1", "instance-2"]
    assert [r.line() for r in client.records[-2:]] == [
        "GET /healthz -> 200 from instance-1", "GET /healthz -> 200 from instance-2"]


def test_sticky_stays_and_random_is_reproducible_with_its_seed(running):
    sticky = InstanceClient(running, policy="sticky")
    assert {sticky.get("/healthz").headers["X-Instance"] for _ in range(4)} == {"instance-1"}
    assert Balancer(2, "random", 7).order() == Balancer(2, "random", 7).order()
    assert {Balancer(2, "random", seed).order()[0] for seed in range(20)} == {0, 1}


def test_the_cookie_jar_crosses_instances_as_a_browsers_does(running, local_app):
    ours, flasks = both(running, local_app)
    for client in (ours, flasks):
        client.get("/cookie")
        assert client.get_cookie("flavour").value == "oatmeal"
        client.set_cookie("extra", "1")
        assert client.get("/echo").json["cookies"] == {"flavour": "oatmeal", "extra": "1"}
        client.delete_cookie("extra")
        assert "extra" not in client.get("/echo").json["cookies"]
    # A signed-cookie session is the same on every instance; memory sessions are not.
    assert ours.post("/signed/login", data={"user": "ada"}).status_code == 302
    assert ours.get("/signed/me").json == {"user": "ada"}
    ours.post("/memory/login", data={"user": "ada"})
    assert ours.get("/memory/me").json == {"user": None}


def test_redirects_are_followed_hop_by_hop_across_instances(running, local_app):
    ours, flasks = both(running, local_app)
    a = ours.post("/hop/3", data={"x": "1"}, follow_redirects=True)
    b = flasks.post("/hop/3", data={"x": "1"}, follow_redirects=True)
    assert a.status_code == b.status_code == 200
    assert [h.status_code for h in a.history] == [h.status_code for h in b.history]
    assert a.request.path == b.request.path == "/echo"
    assert a.json["method"] == b.json["method"] == "GET"  # a 303 turns POST into GET
    assert [r.instance for r in ours.records] == ["instance-1", "instance-2", "instance-1",
                                                   "instance-2"]
    with pytest.raises(RuntimeError) as external:
        ours.get("/away", follow_redirects=True)
    with pytest.raises(RuntimeError) as theirs:
        flasks.get("/away", follow_redirects=True)
    assert str(external.value) == str(theirs.value)


def test_a_form_token_is_read_and_sent_back_like_a_browser(running):
    import re

    client = InstanceClient(running)
    page = client.get("/page").text
    token = re.search(r'name="token" value="([^"]+)"', page).group(1)
    origin = {"Origin": "http://localhost"}
    assert client.post("/page", data={"token": "forged"}, headers=origin).status_code == 403
    assert client.post("/page", data={"token": token}, headers=origin).status_code == 302
    assert client.post("/page", data={}).status_code == 302  # no Origin: as Flask's client


def test_an_answer_given_before_the_body_is_read_is_still_read(running):
    client = InstanceClient(running)
    response = client.post("/echo", data=b"x" * (2 * 1024 * 1024),
                           content_type="application/octet-stream")
    assert response.status_code == 413


def test_a_killed_instance_refuses_and_the_next_one_answers(running):
    client = InstanceClient(running)
    pid = running[1].pid
    running.kill(1)
    try:
        assert not running[1].alive
        served = [client.get("/healthz").headers["X-Instance"] for _ in range(3)]
        assert served == ["instance-1"] * 3
        assert client.records[1].refused == ("instance-2",)
        assert "refused by instance-2, sent on" in client.records[1].line()
    finally:
        info = running.restart(1)
    assert info.alive and info.pid != pid and info.url == running.urls[1]
    assert client.get("/healthz").headers["X-Instance"] in ("instance-1", "instance-2")


def test_a_request_slower_than_the_timeout_fails_in_one_line(running):
    client = InstanceClient(running, timeout=0.5)
    with pytest.raises(ConnectionFailure) as slow:
        client.get("/slow?s=3")
    message = str(slow.value)
    assert "\n" not in message
    assert message.startswith("instance-1 gave no complete answer to GET /slow?s=3")
    assert "--instances-request-timeout" in message


def test_what_works_in_one_process_only_fails_in_one_line(running):
    client = InstanceClient(running)
    for attempt in (lambda: client.session_transaction(), lambda: client.__enter__(),
                    lambda: client.application.config):
        with pytest.raises(NotAcrossInstances) as refused:
            attempt()
        assert "\n" not in str(refused.value)
    assert not hasattr(client.application, "url_map")  # AttributeError, for hasattr


def test_what_the_instances_get_is_checked_before_anything_starts(tmp_path):
    assert parse_env(["A=1", "B={redis}", "C=x=y"]) == {"A": "1", "B": "{redis}", "C": "x=y"}
    assert render("{redis}/1 {{literal}}", {"redis": "redis://r"}) == "redis://r/1 {literal}"
    bad = [
        (lambda: parse_env(["no-equals"]), "--app-env 'no-equals': give KEY=VALUE"),
        (lambda: render("{redsi}", {}), "unknown placeholder {redsi}"),
        (lambda: ParitySettings(app="not a spec!").check(), "is not an app spec"),
        (lambda: ParitySettings(app="a:b()", instances=1, kill_one=True).check(),
         "needs at least 2 instances"),
        (lambda: ParitySettings(app="a:b()", policy="fastest").check(), "round-robin"),
        (lambda: ParitySettings(app="a:b()", app_dir=tmp_path / "nope").check(), "no such"),
    ]
    for attempt, expected in bad:
        with pytest.raises(UsageError) as refused:
            attempt()
        assert expected in str(refused.value) and "\n" not in str(refused.value)


def test_the_instances_share_the_stores_and_their_own_folders(running):
    env = running.env_for("instance-1", running[0].folder, running[0].port)
    assert env["REDIS_URL"].startswith("redis://") and "127.0.0.1" in env["REDIS_URL"]
    assert env["DATABASE_URL"].startswith("sqlite:///")
    assert env["S3_ENDPOINT_URL"] == env["AWS_ENDPOINT_URL_S3"]
    assert len(env["SECRET_KEY"]) == 64
    assert "***" in running.stores.describe()  # the Redis password is masked
    assert running[0].folder != running[1].folder
    digest = hashlib.sha256(env["SECRET_KEY"].encode()).hexdigest()
    assert digest not in running.stores.describe()


def test_verify_instances_app_refuses_bad_input_in_one_line():
    from click.testing import CliRunner

    from migrate.cli import cli

    for args, expected in [
        (["--app", "a:b()", "http://127.0.0.1:1"], "leave out the URLs and --start"),
        (["--app", "not a spec!"], "is not an app spec"),
        (["--app", "a:b()", "--instances", "1"], "--instances 1 is the control run already"),
        (["--app", "a:b()", "--app-env", "oops"], "give KEY=VALUE"),
    ]:
        result = CliRunner().invoke(cli, ["verify", "instances", *args])
        assert result.exit_code == 2, result.output
        assert expected in result.output and "Traceback" not in result.output


def test_the_table_shows_each_test_on_one_and_on_n_and_where_it_failed(monkeypatch):
    from rich.console import Console

    from migrate.cli import instances as command
    from migrate.parity.verify import AppVerifyResult, Run, TestOutcome

    result = AppVerifyResult("shop:create_app()", ["tests/test_shop.py"], 2, True, [
        TestOutcome("tests/test_shop.py::test_catalog", "passed", "passed"),
        TestOutcome("tests/test_shop.py::test_login", "passed", "failed",
                    "assert None == 'alice'", ["POST /login -> 302 from instance-1",
                                               "GET / -> 200 from instance-2"]),
        TestOutcome("tests/test_shop.py::test_session", "failed", "failed", "one line"),
    ], [Run(1, 0, 3.0, "log"), Run(2, 1, 4.0, "log")],
        [{"instance": "instance-1", "pid": 42, "test": "tests/test_shop.py::test_login",
          "after_request": "POST /login -> 302 from instance-1", "restarted": True}],
        run_dir="/tmp/kept")
    console = Console(width=200, record=True)
    monkeypatch.setattr(command, "console", console)
    command._render_app(result)
    text = console.export_text()
    assert "test in tests/test_shop.py" in text
    assert "test_login" in text and "assert None == 'alice'" in text
    assert "GET / -> 200 from instance-2" in text
    assert "SIGKILLed instance-1 (pid 42) in tests/test_shop.py::test_login" in text
    assert "parity broken: 1 test(s) pass on 1 instance and fail on 2" in text
    assert "/tmp/kept" in text
    data = result.to_dict()
    assert data["ok"] is False and data["traps"] == ["tests/test_shop.py::test_login"]
    assert [row["trap"] for row in data["outcomes"]] == [False, True, False]
