"""The embedded stores are this user's alone: Redis wants a password, the run folder is private.

Any local user can connect to 127.0.0.1 and read a world-readable folder: without a password
they could list the session ids in Redis and forge a logged-in session; without private modes
they could read the shop's database, the uploaded objects, the logs and the env files.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from migrate.harness.stores import EmbeddedRedis, start_stores
from tests.waiting import read_until

ROOT = Path(__file__).resolve().parent.parent


def world_or_group_readable(root: Path) -> list[str]:
    """Every path under ``root`` (itself included) that another user could read or enter."""
    found = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077:
            found.append(f"{path.relative_to(root.parent)} {oct(mode)}")
    return found


def test_the_embedded_redis_refuses_a_client_without_its_password(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path, persist=True).start()
    try:
        anyone = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=5)
        with pytest.raises(redis.AuthenticationError):
            anyone.keys("session:*")  # no listing of session ids...
        with pytest.raises(redis.AuthenticationError):
            anyone.set("session:forged", b"{}")  # ...and no forged session
        guesser = redis.Redis(host="127.0.0.1", port=server.port, password="guess")
        with pytest.raises(redis.AuthenticationError):
            guesser.ping()

        # The URL the harness hands out carries the password; the password is random.
        assert server.password and server.password in server.url
        assert EmbeddedRedis(tmp_path).password != server.password
        owner = redis.Redis.from_url(server.url)
        owner.set("session:real", b"{}")
        assert owner.keys("session:*") == [b"session:real"]
        # Not on the command line (anyone can read argv in `ps`).
        argv = Path(f"/proc/{server.pid}/cmdline").read_bytes().decode()
        assert server.password not in argv
        url = server.url
        server.kill()
        server.restart()  # the same URL (password included) after a restart
        assert server.url == url and owner.get("session:real") == b"{}"
        owner.close()
    finally:
        server.stop()


def test_the_run_folder_and_what_is_written_in_it_are_private(tmp_path: Path) -> None:
    from sqlalchemy import create_engine, text

    run_dir = tmp_path / "run"
    with start_stores(run_dir, persist_redis=True) as started:
        stores = started.stores
        client = redis.Redis.from_url(stores.redis_url)
        client.set("session:abc", b"secret session")  # appended to the append-only file
        client.close()
        assert started.s3 is not None
        started.s3.client().put_object(Bucket=stores.s3_bucket, Key="avatars/1/me.png",
                                       Body=b"\x89PNG private")
        engine = create_engine(stores.database_url)
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE users (id INTEGER PRIMARY KEY, password TEXT)"))
        engine.dispose()

        assert (run_dir / "shop.db").is_file()
        assert (run_dir / "s3" / stores.s3_bucket / "avatars" / "1" / "me.png").is_file()
        assert any(run_dir.rglob("*.log"))
        assert world_or_group_readable(run_dir) == []


@pytest.mark.slow
def test_a_clusters_folders_and_logs_are_private(tmp_path: Path) -> None:
    from migrate.harness.cluster import Cluster

    run_dir = tmp_path / "cluster"
    with Cluster("tests.fixtures_app:app", 1, {"PYTHONPATH": str(ROOT)}, run_dir):
        assert (run_dir / "fixtures_app-1.log").is_file()
        assert world_or_group_readable(run_dir) == []


@pytest.mark.slow
def test_stores_up_hands_out_the_redis_password_in_the_env_file_only(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-c", "from migrate.cli import cli; cli()", "stores", "up",
         "--run-dir", str(run_dir)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "200"})
    output, password = "", None
    try:
        output = read_until(process.stdout, "stores up", timeout=120)
        values = dict(line.removeprefix("export ").split("=", 1)
                      for line in (run_dir / "stores.env").read_text().splitlines())
        url = values["REDIS_URL"].strip("'\"")
        assert redis.Redis.from_url(url).ping()  # what a shop, worker or exporter gets works
        password = redis.connection.parse_url(url)["password"]
        assert password
    finally:
        process.send_signal(signal.SIGTERM)
        rest = process.communicate(timeout=60)[0]
    output += rest.decode(errors="replace")
    assert process.returncode == 0, output
    assert password not in output
    assert "REDIS_URL" in output and ":***@127.0.0.1" in output
