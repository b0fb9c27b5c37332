"""Redis Sentinel: one URL form parsed in one place, the exporter writing to a Sentinel set (and
waiting for a replica), and the after-shop on two gunicorn instances riding out a real failover
(the primary SIGKILLed mid-journey) with nothing lost.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import msgspec
import pytest
from click.testing import CliRunner

from migrate import redact, redisurl
from migrate.cli import cli
from migrate.errors import UsageError
from tests import test_files_support as files_support

s3_server, s3_env = files_support.s3_server, files_support.s3_env
HOUR = 3600
SECRET = "test-secret-key-0123456789abcdef"
PASSWORD = "hunter2-sentinel-secret"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


# --- the URL (no server) ---------------------------------------------------------------------


def test_a_sentinel_url_names_the_sentinels_the_service_and_both_passwords() -> None:
    parsed = redisurl.parse(f"redis+sentinel://:{PASSWORD}@s1:26380,s2,[::1]:26381/shop/2"
                            "?sentinel_password=other&wait_replicas=1&wait_timeout=250")
    assert parsed.kind == "sentinel" and not parsed.tls
    assert parsed.sentinels == (("s1", 26380), ("s2", 26379), ("::1", 26381))
    assert (parsed.service, parsed.db) == ("shop", 2)
    assert (parsed.password, parsed.sentinel_password) == (PASSWORD, "other")
    assert (parsed.wait_replicas, parsed.wait_timeout_ms) == (1, 250)
    assert PASSWORD not in repr(parsed) and "other" not in repr(parsed)
    assert redisurl.parse("rediss+sentinel://s1/shop").tls
    # Without sentinel_password the sentinels share the servers' password (as Flask-Limiter
    # reads the URL); an empty one says they have none.
    shared = redisurl.parse(f"redis+sentinel://app:{PASSWORD}@s1:26379/shop")
    assert (shared.sentinel_username, shared.sentinel_password) == ("app", PASSWORD)
    assert redisurl.parse(f"redis+sentinel://:{PASSWORD}@s1/shop?sentinel_password="
                          ).sentinel_password is None
    # The other forms go on to redis-py as they were, without migrate's own parameters.
    plain = redisurl.parse("redis://:pw@h:6379/1?wait_replicas=2")
    assert (plain.kind, plain.url, plain.wait_replicas) == ("redis", "redis://:pw@h:6379/1", 2)
    assert redisurl.parse("redis+cluster://h:7000/0").url == "redis://h:7000/0"
    assert redisurl.parse("redis://h:7000", cluster=True).kind == "cluster"


@pytest.mark.parametrize(("url", "problem", "fix"), [
    (f"redis+sentinel://:{PASSWORD}@s1:26379,s2:26379", "no service name", "/SERVICE"),
    (f"redis+sentinel://:{PASSWORD}@s1:huh/shop", "is not a sentinel HOST:PORT", "comma"),
    (f"redis+sentinel://:{PASSWORD}@s1/shop/zero", "is not /SERVICE or /SERVICE/DB", "use"),
    (f"redis+sentinel://:{PASSWORD}@s1/shop?db=2", "unknown parameter db", "sentinel_password"),
    (f"redis+sentinel://:{PASSWORD}@s1/shop?wait_replicas=-1", "whole number", "wait_replicas="),
    (f"redis://:{PASSWORD}@h/0?wait_replicas=1&wait_timeout=0", "wait_timeout >= 1",
     "milliseconds"),
    (f"sentinel://:{PASSWORD}@s1:26379/shop", "is not a Redis URL", "redis+sentinel://"),
    (f"redis+cluster://:{PASSWORD}@h:7000?wait_replicas=1", "not supported on a Redis Cluster",
     "leave it"),
])
def test_a_bad_url_is_one_line_naming_the_problem_and_the_fix(url: str, problem: str,
                                                              fix: str) -> None:
    with pytest.raises(UsageError) as caught:
        redisurl.parse(url)
    message = str(caught.value)
    assert problem in message and fix in message, message
    assert "\n" not in message and PASSWORD not in message


def test_the_cli_refuses_a_bad_sentinel_url_in_one_line_without_the_password(
        tmp_path: Path) -> None:
    dump = tmp_path / "dump.ndjson"
    dump.write_text("")
    code, out = run("export-sessions", "--from", str(dump), "--redis",
                    f"redis+sentinel://:{PASSWORD}@127.0.0.1:26379,127.0.0.1:26380")
    assert code == 2, out
    assert "no service name" in out and "Traceback" not in out and PASSWORD not in out
    assert len(out.strip().splitlines()) == 1, out
    code, out = run("export-sessions", "--from", str(dump), "--redis-cluster", "--redis",
                    f"redis+sentinel://:{PASSWORD}@127.0.0.1:26379/shop")
    assert code == 2 and "(--redis-cluster, REDIS_CLUSTER=1) cannot be a Sentinel" in out, out


def test_sentinel_urls_are_masked_everywhere() -> None:
    url = (f"redis+sentinel://app:{PASSWORD}@s1:26379,s2:26379/shop/0"
           "?sentinel_password=sentinel-secret&wait_replicas=1")
    for shown in (redact.url(url), redact.text(f"cannot reach {url}: refused"),
                  redact.value("REDIS_URL", url), redisurl.parse(url).shown):
        assert PASSWORD not in shown and "sentinel-secret" not in shown, shown
        assert "s1:26379,s2:26379/shop/0" in shown and "wait_replicas=1" in shown


def test_with_wait_sets_the_exporters_parameters_once() -> None:
    url = redisurl.with_wait("redis+sentinel://s1/shop?wait_replicas=3", 1, 500)
    assert (redisurl.parse(url).wait_replicas, redisurl.parse(url).wait_timeout_ms) == (1, 500)
    assert redisurl.with_wait("redis://h/0", 0) == "redis://h/0"


def test_with_no_primary_a_command_fails_within_the_budget_not_retries_times_retries() -> None:
    import redis

    from migrate.embedded import free_port

    # Nothing listens on these ports: every sentinel refuses, so no primary can be found.
    url = f"redis+sentinel://127.0.0.1:{free_port()},127.0.0.1:{free_port()}/shop"
    client = redisurl.client(url, socket_connect_timeout=1, retry=redisurl.failover_retry(1.0))
    started = time.monotonic()
    with pytest.raises(redis.exceptions.ConnectionError, match="no Redis primary answered"):
        client.get("anything")
    # One budget in all, though redis-py retries the connect inside the command's retries.
    assert 1.0 <= time.monotonic() - started < 3.5


# --- on a real Sentinel set ------------------------------------------------------------------


@pytest.fixture
def sentinel_set(tmp_path: Path):
    """A primary, one replica and three sentinels on loopback, stopped by their pids."""
    from migrate.embedded_sentinel import EmbeddedSentinel

    started = EmbeddedSentinel(tmp_path / "sentinel").start()
    yield started
    started.stop()


def _dump(path: Path, count: int) -> Path:
    now = time.time()
    rows = [{"sid": f"user-{i}-sid", "expires": now + HOUR,
             "data": {"_permanent": True, "user_id": 1, "username": "alice",
                      "cart": {"1": 1, "2": 2}}} for i in range(count)]
    path.write_bytes(b"".join(msgspec.json.encode(r) + b"\n" for r in rows))
    return path


@pytest.mark.slow
def test_export_to_a_sentinel_set_reaches_the_primary_and_its_replica(sentinel_set,
                                                                      tmp_path: Path) -> None:
    from tests import test_sessions_support as support

    dump = _dump(tmp_path / "dump.ndjson", 20)
    code, out = run("export-sessions", "--from", str(dump), "--redis", sentinel_set.url,
                    "--batch", "8", "--wait-replicas", "1", "--json")
    assert code == 0, out
    assert json.loads(out)["written"] == 20
    assert sentinel_set.password not in out
    code, out = run("verify", "sessions", "--from", str(dump), "--redis", sentinel_set.url)
    assert code == 0, out
    primary_port = sentinel_set.primary_port()
    replica = next(s for s in sentinel_set.servers if s.port != primary_port)
    for port in (primary_port, replica.port):
        # On the replica as soon as the export returned: each batch waited for it (WAIT 1).
        client = sentinel_set.client(port)
        stored = msgspec.msgpack.decode(client.get("session:user-7-sid"))
        assert stored["username"] == "alice" and client.pttl("session:user-7-sid") > 0
        assert len(client.keys("session:*")) == 20
        client.close()
    # Asking for more replicas than the set has: the export is not acknowledged, in one line.
    code, out = run("export-sessions", "--from", str(dump), "--redis", sentinel_set.url,
                    "--on-conflict", "overwrite", "--wait-replicas", "2", "--wait-timeout", "200")
    assert code == 2, out
    assert "only 1 of 2 replicas" in out and "re-run" in out, out
    assert sentinel_set.password not in out and "Traceback" not in out
    # Flask-Session's interface takes the Sentinel primary's client as is: the migrated user is
    # still logged in.
    app = support.after_app(tmp_path / "after", sentinel_set.url)
    assert type(app.session_interface.client.connection_pool).__name__ == \
        "SentinelConnectionPool"
    browser = app.test_client()
    browser.set_cookie("session", "user-3-sid")
    page = browser.get("/account")
    assert page.status_code == 200, "the migrated user had to log in again"
    assert 'id="user">alice<' in page.text


@pytest.mark.slow
def test_an_upload_in_progress_is_carried_into_a_sentinel_set(sentinel_set, tmp_path: Path,
                                                              s3_server, s3_env) -> None:
    import os

    from migrate.files import export_files
    from tests.test_files_uploads import login, start_chunked_upload
    from tests.test_sessions_support import before_app

    before = before_app(tmp_path / "before")
    browser = before.test_client()
    login(browser)
    upload_id = start_chunked_upload(browser, [os.urandom(5 * 1024 * 1024), os.urandom(1000)])
    result = export_files([before.config["UPLOAD_FOLDER"]], "s3://shop-sentinel",
                          endpoint_url=s3_server.url, create_bucket=True,
                          redis_url=sentinel_set.url)
    assert result.ok and [(u.upload_id, u.status) for u in result.uploads] == [
        (upload_id, "carried")]
    primary = sentinel_set.client(sentinel_set.primary_port())
    try:  # the upload's state is on the primary the after-app's Sentinel client finds
        assert primary.hlen(f"upload:{upload_id}:parts") == 2
    finally:
        primary.close()


@pytest.mark.slow
def test_the_after_shop_rides_out_a_failover_mid_journey_and_loses_nothing(
        sentinel_set, stores, database_factory, tmp_path: Path) -> None:
    from migrate.harness.cluster import Cluster
    from migrate.harness.journey import Journey

    env = {**stores.app_env(), "REDIS_URL": sentinel_set.url,
           "DATABASE_URL": database_factory(), "SECRET_KEY": SECRET}
    cluster = Cluster("stateless", 2, env, tmp_path / "cluster").start()
    try:
        bob = Journey(cluster.urls, user="bob", file_size=1024, timeout=30)
        assert bob.run(until="add product 1").ok  # a session and a cart before the failover
        alice = Journey(cluster.urls, timeout=30)
        old_port = sentinel_set.primary_port()
        killed = []

        def kill_the_primary(number: int, name: str) -> None:
            if name == "add product 2":
                # Replication is asynchronous: a write the primary acknowledged and no replica
                # has is lost with it (README, "Redis Sentinel"). WAIT counts this client's
                # writes: one more, acknowledged by the replica, proves that every write before
                # it is there too (one ordered stream); the failover must then lose none.
                primary = sentinel_set.client(old_port)
                primary.set("test:before-failover", "1")
                assert primary.wait(1, 2000) == 1
                primary.close()
                killed.append(sentinel_set.kill_primary())

        started = time.monotonic()
        result = alice.run(before_step=kill_the_primary)
        took = time.monotonic() - started
        assert killed and not killed[0].alive, "the primary was not killed"
        # No step saw an error (a 503 would have failed it): the instances waited out the
        # failover, and the user's cart holds the product added before it and the one after.
        assert result.ok and result.finished, result.failed
        first_after = next(s for s in result.steps if s.name == "add product 2")
        assert first_after.seconds > 0.9, "the request after the kill did not span the failover"
        assert took < 40, f"the journey took {took:.1f} s"
        new_port = sentinel_set.wait_for_failover(old_port)
        assert new_port != old_port
        # Bob's session, written before the failover, carries him on; his writes after it land.
        assert bob.run(until="view cart").ok, bob.result().failed
        late = Journey(cluster.urls, user="bob", file_size=1024, timeout=30)
        assert late.run(until="add product 1").ok  # a session created after the failover
        primary = sentinel_set.client(new_port)
        try:
            for journey in (bob, late):
                sid = journey.client.http.cookies.get("session")
                stored = msgspec.msgpack.decode(primary.get(f"session:{sid}"))
                assert stored["username"] == "bob"
            assert primary.get("views:3") == b"2"  # alice's two views, after the failover
            # Bob's cart: product 1 before the failover, product 2 and the late add after.
            assert primary.hgetall("cart:2") == {b"1": b"2", b"2": b"2"}
        finally:
            primary.close()
    finally:
        cluster.stop_all()
