"""Shared fixtures: embedded real stores, a fresh database per test, and the Flask tutorial's
``app`` / ``client`` / ``auth`` fixtures, run against both shops."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

SECRET = "test-secret-key-0123456789abcdef"


def _postgres_base() -> str | None:
    url = os.environ.get("DATABASE_URL", "")
    return url if url.startswith("postgresql") else None


# --- which database the tests ran on: in the header and the summary, never a password -------

# Each test that runs on a database says which one in its user_properties ("database", kind):
# ``database_factory`` adds it, and so does a test parametrized "sqlite" / "postgresql".
KINDS = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
NO_POSTGRES = "DATABASE_URL does not point at PostgreSQL"


def _shown(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparseable URL: say so, show nothing of it
        return "<unparseable URL>"


def pytest_report_header(config: pytest.Config) -> str:
    base = _postgres_base()
    if base is not None:
        return (f"database: PostgreSQL at {_shown(base)} (DATABASE_URL), a fresh database "
                "per test")
    given = os.environ.get("DATABASE_URL")
    why = (f"DATABASE_URL={_shown(given)} is not PostgreSQL" if given
           else "DATABASE_URL is not set")
    return (f"database: SQLite, a file per test ({why}: the PostgreSQL cases are skipped; "
            "set DATABASE_URL=postgresql+psycopg://USER@HOST:5432/DB to run them)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    params = getattr(getattr(item, "callspec", None), "params", {})
    for value in params.values():
        if isinstance(value, str) and value in KINDS:
            item.user_properties.append(("database", KINDS[value]))


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    ran: dict[str, dict[str, None]] = {kind: {} for kind in KINDS.values()}
    for outcome in ("passed", "failed"):
        for report in terminalreporter.stats.get(outcome, []):
            for name, kind in getattr(report, "user_properties", ()):
                if name == "database" and report.when == "call":
                    ran[kind][report.nodeid] = None
    skipped = [r for r in terminalreporter.stats.get("skipped", [])
               if NO_POSTGRES in str(getattr(r, "longrepr", ""))]
    if not (ran["SQLite"] or ran["PostgreSQL"] or skipped):
        return
    terminalreporter.write_sep("-", "databases")
    where = f" ({_shown(_postgres_base() or '')})" if ran["PostgreSQL"] else ""
    terminalreporter.write_line(
        f"database tests: {len(ran['SQLite'])} on SQLite, {len(ran['PostgreSQL'])} on "
        f"PostgreSQL{where}, {len(skipped)} skipped for want of PostgreSQL")
    if config.getoption("verbose") > 0:
        for kind, ids in ran.items():
            for nodeid in ids:
                terminalreporter.write_line(f"  {kind}: {nodeid}")


@pytest.fixture
def database_factory(tmp_path: Path, request: pytest.FixtureRequest
                     ) -> Iterator[Callable[[], str]]:
    """Makes fresh, empty databases: new PostgreSQL databases when DATABASE_URL points at a
    PostgreSQL server (CI), else SQLite files in the test's temporary folder."""
    base = _postgres_base()
    made: list[str] = []
    kind = "SQLite" if base is None else "PostgreSQL"
    request.node.user_properties.append(("database", kind))  # per test, in --junitxml too

    def make() -> str:
        name = f"migrate_test_{uuid.uuid4().hex[:12]}"
        if base is None:
            return f"sqlite:///{tmp_path / (name + '.db')}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        made.append(name)
        return make_url(base).set(database=name).render_as_string(hide_password=False)

    admin = create_engine(base, isolation_level="AUTOCOMMIT") if base else None
    yield make
    if admin is not None:
        with admin.connect() as conn:
            for name in made:
                conn.execute(
                    text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = :n"),
                    {"n": name},
                )
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture
def database_url(database_factory: Callable[[], str]) -> str:
    """A fresh, empty database for this test."""
    return database_factory()


@pytest.fixture(scope="session")
def store_set(tmp_path_factory: pytest.TempPathFactory):
    """One embedded Redis and one embedded S3 server (rclone serve s3) for the whole run."""
    from migrate.harness.stores import start_stores

    with start_stores(tmp_path_factory.mktemp("stores")) as started:
        yield started


@pytest.fixture
def stores(store_set, database_url: str):
    """The embedded stores with an empty Redis and a fresh database for this test."""
    import dataclasses

    import redis

    redis.Redis.from_url(store_set.stores.redis_url).flushall()
    return dataclasses.replace(store_set.stores, database_url=database_url)


def make_app(kind: str, request: pytest.FixtureRequest, tmp_path: Path, database_url: str):
    """Create one shop for ``test_client()`` use, on real stores where it needs them."""
    if kind == "stateful":
        from sample_stateful_app import create_app
        from sample_stateful_app.db import init_db

        init_db(database_url)
        return create_app(
            {"TESTING": True, "DATABASE_URL": database_url, "UPLOAD_FOLDER": str(tmp_path / "up")}
        )
    from sample_stateless_app import create_app
    from sample_stateless_app.db import upgrade

    stores = request.getfixturevalue("stores")
    env = stores.app_env()
    upgrade(database_url)
    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": SECRET,
            "DATABASE_URL": database_url,
            "REDIS_URL": env["REDIS_URL"],
            "S3_ENDPOINT_URL": env["S3_ENDPOINT_URL"],
            "S3_BUCKET": env["S3_BUCKET"],
        }
    )


@pytest.fixture(params=["stateful", "stateless"])
def app(request: pytest.FixtureRequest, tmp_path: Path, database_url: str, monkeypatch):
    """Each shop in turn (both must behave the same)."""
    if request.param == "stateless":
        env = request.getfixturevalue("stores").app_env()
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
            monkeypatch.setenv(key, env[key])
        monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    return make_app(request.param, request, tmp_path, database_url)


@pytest.fixture
def client(app):
    return app.test_client()


class AuthActions:
    def __init__(self, client) -> None:
        self._client = client

    def login(self, username: str = "alice", password: str = "wonderland"):
        return self._client.post("/login", data={"username": username, "password": password})

    def logout(self):
        return self._client.post("/logout")


@pytest.fixture
def auth(client) -> AuthActions:
    return AuthActions(client)


@pytest.fixture
def start_cluster(stores, database_factory, tmp_path):
    """Start a cluster of either shop on the shared stores, each with its own fresh database."""
    from migrate.harness.cluster import Cluster

    started: list[Cluster] = []

    def start(app: str, instances: int, **options) -> Cluster:
        env = {**stores.app_env(), "DATABASE_URL": database_factory(), "SECRET_KEY": SECRET}
        cluster = Cluster(app, instances, env, tmp_path / f"{app}-{len(started)}", **options)
        started.append(cluster)
        cluster.start()
        return cluster

    yield start
    for cluster in started:
        cluster.stop_all()


@pytest.fixture(autouse=True)
def fresh_before_process(monkeypatch):
    """The before-shop keeps API tokens and carts in its module, shared by every app in this
    process: each test starts with none, as a newly started instance would."""
    import sys

    api = sys.modules.get("sample_stateful_app.api")
    if api is not None:  # (not imported yet: nothing to clear)
        monkeypatch.setattr(api, "TOKENS", {})
        monkeypatch.setattr(api, "CARTS", {})
