"""The pytest plugin: a team's own Flask tests, run against N real instances of its app.

Registered through the ``pytest11`` entry point, so installing migrate is all it takes; it does
nothing until ``--instances N`` (or ``instances = N`` in the ini file) is given::

    pytest --instances 2 --app 'myapp:create_app()' --instances-client-replaces client

Fixtures: ``instances`` (the running instances: ``kill(i)``, ``restart(i)``, ``urls``, ...)
and ``instance_client`` (Flask's test client API, each request to the next instance). Without
``--instances``, ``instance_client`` is the suite's own ``app.test_client()``, so a conftest
that aliases ``client`` to it runs unchanged either way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .stash import CLIENTS as _CLIENTS
from .stash import OFFSETS as _OFFSETS
from .stash import STATE as _STATE

# (option, ini name, type, default, help); the ini value applies when the option is not given.
_OPTIONS: list[tuple[str, str, str, Any, str]] = [
    ("--instances", "instances", "int", 0,
     "run the tests' client requests on N real gunicorn instances of --app (0: off)"),
    ("--app", "instances_app", "str", None,
     "the app as gunicorn takes it: 'package:create_app()' or 'package.wsgi:app'"),
    ("--app-env", "instances_app_env", "list", [],
     "KEY=VALUE for every instance (repeatable); placeholders {redis} {s3} {bucket} "
     "{database_url} {run_dir} {python} {instance} {instance_dir} {port}"),
    ("--app-dir", "instances_app_dir", "str", None,
     "the folder the app is imported from and --app-prepare runs in (default: rootdir)"),
    ("--app-prepare", "instances_app_prepare", "list", [],
     "a command run once before the instances start, e.g. a schema upgrade (repeatable)"),
    ("--app-worker", "instances_app_worker", "list", [],
     "a side process on the same environment, e.g. 'rq worker' (repeatable)"),
    ("--instances-policy", "instances_policy", "str", "round-robin",
     "which instance gets the next request: round-robin, random (seeded) or sticky"),
    ("--instances-seed", "instances_seed", "int", 0, "the seed of the random policy"),
    ("--instances-worker-class", "instances_worker_class", "str", "sync",
     "gunicorn's worker class (one worker per instance)"),
    ("--instances-client-replaces", "instances_client_replaces", "list", [],
     "a fixture of the suite (e.g. client) that becomes the instance client (repeatable)"),
    ("--instances-kill-one", "instances_kill_one", "bool", False,
     "SIGKILL one instance in the middle of the suite, mid-test; restart it after that test"),
    ("--instances-redis", "instances_redis", "str", None,
     "your Redis URL (default: an embedded redis-server)"),
    ("--instances-s3", "instances_s3", "str", None,
     "your S3 endpoint URL, credentials from AWS_* (default: an embedded rclone serve s3)"),
    ("--instances-database-url", "instances_database_url", "str", None,
     "your database URL (default: SQLite in the run folder)"),
    ("--instances-keep-redis", "instances_keep_redis", "bool", False,
     "do not empty the embedded Redis before each test"),
    ("--instances-start-timeout", "instances_start_timeout", "float", 30.0,
     "seconds an instance may take to answer its first request"),
    ("--instances-request-timeout", "instances_request_timeout", "float", 30.0,
     "seconds one request may take"),
    ("--instances-health-path", "instances_health_path", "str", "/healthz",
     "the path asked until an instance answers (any status counts)"),
    ("--instances-report", "instances_report", "str", None,
     "write each test's outcome and last requests to this JSON file"),
]
_INI_TYPES = {"int": "string", "str": "string", "float": "string", "list": "linelist",
              "bool": "bool"}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("instances", "parity across real instances (migrate)")
    for option, ini, kind, default, text in _OPTIONS:
        dest = ini
        if kind == "bool":
            group.addoption(option, dest=dest, action="store_true", default=None, help=text)
        elif kind == "list":
            group.addoption(option, dest=dest, action="append", default=None, help=text)
        else:
            group.addoption(option, dest=dest, default=None, help=text,
                            type={"int": int, "float": float}.get(kind, str))
        parser.addini(ini, f"{text} (as {option})", type=_INI_TYPES[kind],  # type: ignore[arg-type]
                      default=default)


def _value(config: pytest.Config, ini: str, kind: str) -> Any:
    given = config.getoption(ini)
    if given is not None:
        return given
    value = config.getini(ini)
    if kind == "int":
        return int(value) if str(value).strip() else 0
    if kind == "float":
        return float(value)
    if kind == "str":
        return value or None
    return value


class _Parity:
    """The run's state: settings (None: the plugin is off), the instances once started."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        values = {ini: _value(config, ini, kind) for _, ini, kind, _, _ in _OPTIONS}
        self.values = values
        self.replaces = set(values["instances_client_replaces"])
        self.report_path = values["instances_report"]
        self.settings = self._settings(values) if values["instances"] else None
        self.instances: Any = None
        self.kill_target: str | None = None
        self.outcomes: dict[str, dict[str, Any]] = {}

    def _settings(self, v: dict[str, Any]) -> Any:
        from migrate.errors import MigrateError

        from .settings import ParitySettings, parse_env

        if not v["instances_app"]:
            raise pytest.UsageError("--instances needs --app: the app as gunicorn takes it, "
                                    "e.g. --app 'mypackage:create_app()'")
        try:
            return ParitySettings(
                app=v["instances_app"], instances=v["instances"],
                app_env=parse_env(v["instances_app_env"]),
                app_dir=Path(v["instances_app_dir"] or self.config.rootpath).resolve(),
                prepare=list(v["instances_app_prepare"]), workers=list(v["instances_app_worker"]),
                policy=v["instances_policy"], seed=v["instances_seed"],
                worker_class=v["instances_worker_class"], redis_url=v["instances_redis"],
                s3_endpoint_url=v["instances_s3"], database_url=v["instances_database_url"],
                start_timeout=v["instances_start_timeout"],
                request_timeout=v["instances_request_timeout"],
                health_path=v["instances_health_path"], kill_one=v["instances_kill_one"],
                flush_redis=not v["instances_keep_redis"]).check()
        except MigrateError as exc:
            raise pytest.UsageError(str(exc)) from None

    def uses_client(self, item: pytest.Item) -> bool:
        names = set(getattr(item, "fixturenames", ()))
        return "instance_client" in names or bool(names & self.replaces)

    def new_client(self, item: pytest.Item) -> Any:
        from .client import InstanceClient

        assert self.settings is not None and self.instances is not None
        client = InstanceClient(self.instances, self.settings.policy,
                                f"{self.settings.seed}:{item.nodeid}",
                                self.settings.request_timeout)
        item.stash.setdefault(_CLIENTS, []).append(client)
        return client


def _state(config: pytest.Config) -> _Parity:
    return config.stash[_STATE]


def pytest_configure(config: pytest.Config) -> None:
    parity = config.stash[_STATE] = _Parity(config)
    if parity.settings is not None:
        config.pluginmanager.register(_Replace(parity), "migrate-parity-replace")
        config.pluginmanager.register(_Guard(parity), "migrate-parity-guard")


def pytest_report_header(config: pytest.Config) -> str | None:
    settings = _state(config).settings
    if settings is None:
        return None
    kill = ", one SIGKILLed mid-suite" if settings.kill_one else ""
    return (f"parity: {settings.instances} instance(s) of {settings.app} "
            f"({settings.policy}{kill})")


def pytest_collection_finish(session: pytest.Session) -> None:
    parity = _state(session.config)
    if parity.settings is None or not parity.settings.kill_one:
        return
    using = [item for item in session.items if parity.uses_client(item)]
    if using:
        parity.kill_target = using[len(using) // 2].nodeid


@pytest.fixture(scope="session")
def instances(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The N running instances of ``--app`` on shared stores (started once per session)."""
    from migrate.errors import MigrateError

    from .instances import Instances

    parity = _state(request.config)
    if parity.settings is None:
        pytest.fail("the instances fixture needs --instances N and --app 'package:create_app()'",
                    pytrace=False)
    started = Instances(parity.settings, tmp_path_factory.mktemp("instances"))
    try:
        started.start()
    except MigrateError as exc:
        request.session.shouldstop = "the instances did not start (see the error above)"
        pytest.fail(str(exc), pytrace=False)
    parity.instances = started
    yield started
    started.stop()


@pytest.fixture
def instance_client(request: pytest.FixtureRequest) -> Any:
    """Flask's test client API; each request goes to the next instance (a fresh cookie jar)."""
    parity = _state(request.config)
    if parity.settings is None:
        return _own_test_client(request)
    running = request.getfixturevalue("instances")
    item = request.node
    if parity.settings.flush_redis:
        running.stores.flush()
    item.stash[_OFFSETS] = running.log_offsets()
    client = parity.new_client(item)
    if item.nodeid == parity.kill_target and not running.kills:
        from .killing import kill_after_first_response

        kill_after_first_response(running, client, item.nodeid)
        request.addfinalizer(lambda: _restart_killed(running))
    return client


def _own_test_client(request: pytest.FixtureRequest) -> Any:
    try:
        app = request.getfixturevalue("app")
    except pytest.FixtureLookupError:
        pytest.fail("instance_client needs --instances N --app 'package:create_app()', or an "
                    "`app` fixture whose test_client() it gives without them", pytrace=False)
    return app.test_client()


def _restart_killed(running: Any) -> None:
    from .killing import restart_killed

    restart_killed(running)


class _Replace:
    """A fixture named by --instances-client-replaces is the instance client instead."""

    def __init__(self, parity: _Parity) -> None:
        self.parity = parity

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """A replaced fixture is never called: what it needed (the local app it would wrap)
        is not set up for it; a test that asks for that fixture itself still gets it."""
        for item in items:
            info = getattr(item, "_fixtureinfo", None)
            try:
                defs = [d for name in self.parity.replaces
                        for d in info.name2fixturedefs.get(name, ())]  # type: ignore[union-attr]
                for fixturedef in defs:
                    fixturedef.argnames = ()
                if defs:
                    info.prune_dependency_tree()  # type: ignore[union-attr]
            except (AttributeError, TypeError):
                continue  # a pytest without these: the dependencies are merely built in vain

    @pytest.hookimpl(tryfirst=True)
    def pytest_fixture_setup(self, fixturedef: Any, request: pytest.FixtureRequest) -> Any:
        if fixturedef.argname not in self.parity.replaces:
            return None
        value = request.getfixturevalue("instance_client")
        # What pytest's own pytest_fixture_setup records: (value, cache key, no exception).
        fixturedef.cached_result = (value, fixturedef.cache_key(request), None)
        return value


class _Guard:
    """The suite's Flask app in a test that talks to the instances: what it cannot do there
    fails with one line (app.config set in the test), app.test_client() is an instance client."""

    def __init__(self, parity: _Parity) -> None:
        self.parity = parity

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef: Any, request: pytest.FixtureRequest) -> Any:
        value = yield
        if fixturedef.scope == "function" and self.parity.uses_client(request.node):
            from .guard import guard_flask_app

            guard_flask_app(value, lambda: self.parity.new_client(request.node))
        return value


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    report = yield
    parity = _state(item.config)
    if parity.settings is None:
        return report
    from .reporting import annotate

    annotate(parity, item, call, report)
    return report


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int,
                            config: pytest.Config) -> None:
    parity = _state(config)
    if parity.instances is None:
        return
    from .reporting import summary_lines

    terminalreporter.section("parity across instances")
    for line in summary_lines(parity):
        terminalreporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    parity = _state(session.config)
    if parity.settings is None or not parity.report_path:
        return
    from .reporting import report_data

    path = Path(parity.report_path)
    path.write_text(json.dumps(report_data(parity), indent=2), encoding="utf-8")
