"""Sessions on a 3-node Redis Cluster on loopback: the export writes to it, and the after-shop
runs on it (Flask-Session alone would silently talk to localhost instead)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import msgspec
import pytest
from cachelib import FileSystemCache
from click.testing import CliRunner

from migrate.cli import cli
from migrate.sessions import LEGACY_PREFIX
from tests import test_sessions_support as support

pytestmark = pytest.mark.slow
HOUR = 3600


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory):
    cluster = support.RedisClusterProcesses(tmp_path_factory.mktemp("cluster"))
    yield cluster
    cluster.stop()


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_export_to_a_cluster_and_the_after_shop_reads_it(redis_cluster, tmp_path: Path):
    now = time.time()
    rows = [{"sid": f"user-{i}-sid", "expires": now + HOUR,
             "data": {"_permanent": True, "user_id": 1, "username": "alice",
                      "cart": {"1": 1, "2": 2}}} for i in range(50)]
    dump = tmp_path / "dump.ndjson"
    dump.write_bytes(b"".join(msgspec.json.encode(r) + b"\n" for r in rows))
    code, out = run("export-sessions", "--from", str(dump), "--redis", redis_cluster.url,
                    "--batch", "16", "--json")
    assert code == 0 and json.loads(out)["written"] == 50, out
    client = redis_cluster.client()
    # The keys really are spread over the three nodes.
    per_node = [node.client.dbsize() for node in redis_cluster.nodes]
    assert sum(per_node) == 50 and min(per_node) > 0, per_node
    plain_url = redis_cluster.url.replace("redis+cluster://", "redis://")
    assert run("verify", "sessions", "--from", str(dump), "--redis", plain_url,
               "--redis-cluster")[0] == 0
    assert json.loads(run("export-sessions", "--from", str(dump), "--redis", redis_cluster.url,
                          "--json")[1])["skipped"] == 50

    app = support.after_app(tmp_path, redis_cluster.url)
    assert type(app.session_interface.client).__name__ == "RedisCluster"
    browser = app.test_client()
    browser.set_cookie("session", "user-7-sid")
    page = browser.get("/cart")
    assert page.status_code == 200, "the migrated user had to log in again"
    assert support.cart_lines(page.text) == {1: 1, 2: 2}
    assert client.hgetall("cart:1") == {b"1": b"1", b"2": b"2"}
    # Saved back to the cluster (not to a localhost Redis), without the adopted cart.
    stored = msgspec.msgpack.decode(client.get("session:user-7-sid"))
    assert stored["user_id"] == 1 and "cart" not in stored
    client.close()


def test_filesystem_sessions_are_promoted_on_a_cluster(redis_cluster, tmp_path: Path):
    folder = tmp_path / "flask_session"
    FileSystemCache(str(folder), threshold=0, default_timeout=HOUR).set(
        "session:fs-sid", {"_permanent": True, "user_id": 2, "username": "bob"})
    code, out = run("export-sessions", "--from", str(folder), "--redis", redis_cluster.url)
    assert code == 0, out
    app = support.after_app(tmp_path, redis_cluster.url)
    browser = app.test_client()
    browser.set_cookie("session", "fs-sid")
    page = browser.get("/account")
    assert page.status_code == 200 and 'id="user">bob<' in page.text
    client = redis_cluster.client()
    assert client.get(LEGACY_PREFIX + hashlib.sha256(b"session:fs-sid").hexdigest()) == b""
    assert msgspec.msgpack.decode(client.get("session:fs-sid"))["username"] == "bob"
    client.close()
