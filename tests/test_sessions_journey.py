"""Users mid-journey cross the migration: two before-instances (gunicorn), their sessions
exported through the bridge, two after-instances; the journeys go on with the same cookies."""

from __future__ import annotations

import json
import os
import sys

import pytest
from click.testing import CliRunner

from migrate.cli import cli
from migrate.harness.journey import MIB, Journey
from tests import test_sessions_support as support

pytestmark = pytest.mark.slow
redis_server = support.redis_server
TOKEN = "journey-bridge-token"
SECRET = "journey-secret-key-0123456789abcdef"


@pytest.fixture
def servers(tmp_path):
    started = support.Processes(tmp_path / "run")
    yield started
    started.stop()


def test_users_mid_journey_stay_logged_in_with_their_carts(servers, redis_server, tmp_path):
    from sample_stateful_app.db import init_db
    from sample_stateless_app.db import upgrade

    redis_server.client.flushall()
    before_db, after_db = (f"sqlite:///{tmp_path / name}" for name in ("before.db", "after.db"))
    init_db(before_db)
    upgrade(after_db)
    before = [servers.gunicorn(f"stateful-{i}", "stateful", {
        "DATABASE_URL": before_db, "MIGRATE_BRIDGE_TOKEN": TOKEN}) for i in (1, 2)]
    # One shopper per before-instance: each logs in and fills a cart there (a sticky
    # balancer's doing; with round-robin the before-shop loses them at once).
    trips = [Journey([url], user=user, file_size=6 * MIB)
             for url, user in zip(before, ("alice", "bob"), strict=True)]
    for trip in trips:
        assert trip.run(until="view cart").ok

    runner = CliRunner()
    sources = ["--from", before[0], "--from", before[1], "--redis", redis_server.url,
               "--token", TOKEN]
    exported = runner.invoke(cli, ["export-sessions", *sources, "--json"])
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.output)["written"] == 2
    verified = runner.invoke(cli, ["verify", "sessions", *sources])
    assert verified.exit_code == 0, verified.output

    env = {"DATABASE_URL": after_db, "REDIS_URL": redis_server.url, "SECRET_KEY": SECRET,
           **servers.s3()}
    after = [servers.gunicorn(f"stateless-{i}", "stateless", env) for i in (1, 2)]
    servers.start("worker", [sys.executable, "-m", "sample_stateless_app.worker"],
                  {**os.environ, **env})
    for trip in trips:
        trip.urls = after
        result = trip.run()
        assert result.ok, result.failed
        assert result.finished
        # Every step after the switch passed, spread over both after-instances: no step found
        # the user logged out (the journey's own checks fail on a login page) or the cart short.
        resumed = result.steps[trip.step_names().index("view cart") + 1:]
        assert {s.instance for s in resumed} == {"stateless-1", "stateless-2"}
