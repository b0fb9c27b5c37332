"""Embedded real stores: redis-server and rclone serve s3 over HTTP, started and stopped by pid."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from migrate.cli import cli
from migrate.errors import ConnectionFailure
from migrate.harness.stores import EmbeddedRedis, EmbeddedS3, free_port, start_stores


def gone(pid: int) -> bool:
    """True when no process (not even a zombie) has this pid."""
    return not Path(f"/proc/{pid}").exists()


def test_embedded_redis_restart_keeps_port_and_with_persist_the_data(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path, persist=True).start()
    try:
        port, first_pid = server.port, server.pid
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        client.set("cart:1", "3")
        server.kill()  # a crash: appendfsync always keeps the write
        assert gone(first_pid)
        server.restart()
        assert server.port == port and server.pid != first_pid
        assert client.get("cart:1") == b"3"
        client.close()
    finally:
        server.stop()
    assert gone(server.pid)


def test_embedded_redis_without_persist_starts_empty(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path).start()
    try:
        client = redis.Redis.from_url(server.url)
        client.set("k", "v")
        server.restart()
        assert client.get("k") is None
        client.close()
    finally:
        server.stop()


def test_embedded_s3_put_get_delete_and_a_restart_keeps_objects(tmp_path: Path) -> None:
    s3 = EmbeddedS3(tmp_path).start()
    try:
        client = s3.client()
        assert "shop" in [b["Name"] for b in client.list_buckets()["Buckets"]]
        client.put_object(Bucket="shop", Key="avatars/alice.png", Body=b"\x89PNG bytes")
        assert (tmp_path / "s3" / "shop" / "avatars" / "alice.png").read_bytes() == b"\x89PNG bytes"
        old_pid = s3.pid
        s3.restart()
        assert s3.pid != old_pid and gone(old_pid)
        body = client.get_object(Bucket="shop", Key="avatars/alice.png")["Body"].read()
        assert body == b"\x89PNG bytes"
        client.delete_object(Bucket="shop", Key="avatars/alice.png")
        assert client.list_objects_v2(Bucket="shop").get("KeyCount", 0) == 0
    finally:
        s3.stop()


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the command line through /proc")
def test_the_s3_secret_is_not_on_the_servers_command_line(tmp_path: Path) -> None:
    # Anyone on the host can read a process's argv (`ps`); the key pair goes by environment.
    s3 = EmbeddedS3(tmp_path).start()
    try:
        argv = Path(f"/proc/{s3.pid}/cmdline").read_bytes().decode()
        assert s3.secret_key not in argv and "serve\0s3" in argv
        assert "shop" in [b["Name"] for b in s3.client().list_buckets()["Buckets"]]
    finally:
        s3.stop()


def test_store_set_gives_the_app_env_and_stop_leaves_nothing() -> None:
    with start_stores() as started:
        env = started.stores.app_env()
        run_dir, pids = started.run_dir, [started.redis.pid, started.s3.pid]
        assert env["DATABASE_URL"] == f"sqlite:///{run_dir / 'shop.db'}"
        assert env["AWS_DEFAULT_REGION"] == "us-east-1" and env["S3_BUCKET"] == "shop"
        assert redis.Redis.from_url(env["REDIS_URL"]).ping()
        assert started.stores.masked()["AWS_SECRET_ACCESS_KEY"] == "***"
        # Random keys per run.
        other = EmbeddedS3(run_dir)
        assert (other.access_key, other.secret_key) != (env["AWS_ACCESS_KEY_ID"],
                                                        env["AWS_SECRET_ACCESS_KEY"])
    assert all(gone(pid) for pid in pids)
    assert not run_dir.exists()


def test_a_callers_run_dir_and_urls_are_kept(tmp_path: Path) -> None:
    redis_server = EmbeddedRedis(tmp_path / "theirs").start()
    try:
        with start_stores(tmp_path / "run", redis_url=redis_server.url,
                          database_url="sqlite:////elsewhere/shop.db") as started:
            assert started.redis is None and started.s3 is not None
            assert started.stores.redis_url == redis_server.url
            assert started.stores.database_url == "sqlite:////elsewhere/shop.db"
        assert (tmp_path / "run").is_dir()
        assert redis_server.alive  # not ours to stop
    finally:
        redis_server.stop()


def test_a_user_redis_that_refuses_is_one_clear_error(tmp_path: Path) -> None:
    url = f"redis://:topsecret@127.0.0.1:{free_port()}/0"
    with pytest.raises(ConnectionFailure) as info:
        start_stores(tmp_path, redis_url=url)
    assert "topsecret" not in str(info.value)
    assert "127.0.0.1" in str(info.value)
    assert not any(p.name.startswith("redis-") for p in tmp_path.iterdir())  # nothing started


def test_cli_stores_up_with_a_refusing_redis_exits_2_with_one_line(tmp_path: Path) -> None:
    url = f"redis://:topsecret@127.0.0.1:{free_port()}/0"
    result = CliRunner().invoke(cli, ["stores", "up", "--redis", url,
                                      "--run-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "cannot reach Redis" in lines[0] and "***" in lines[0]
    assert "topsecret" not in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_cli_stores_up_writes_the_env_file_and_never_prints_secrets(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    from tests.waiting import read_until

    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-c", "from migrate.cli import cli; cli()", "stores", "up",
         "--run-dir", str(run_dir)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    env_file = run_dir / "stores.env"
    output = ""
    try:  # up: the env file written and the table printed
        output = read_until(process.stdout, "stores up", timeout=120)
    finally:
        process.send_signal(signal.SIGTERM)
        output += process.communicate(timeout=60)[0]
    assert process.returncode == 0, output
    values = dict(line.removeprefix("export ").split("=", 1)
                  for line in env_file.read_text().splitlines() if "=" in line)
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    secret = values["AWS_SECRET_ACCESS_KEY"].strip("'\"")
    assert secret and secret not in output
    assert "AWS_SECRET_ACCESS_KEY" in output and str(env_file) in output
    assert "REDIS_URL" in output


@pytest.mark.slow
@pytest.mark.parametrize("server_class", [EmbeddedRedis, EmbeddedS3])
def test_a_port_taken_before_the_first_start_gets_a_new_one(server_class, tmp_path: Path) -> None:
    import socket

    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    taken = squatter.getsockname()[1]
    try:
        server = server_class(tmp_path, port=taken).start()
        try:
            assert server.port != taken and server.alive
            moved = server.port
            server.restart()
            assert server.port == moved  # once up, a restart keeps its URL
        finally:
            server.stop()
    finally:
        squatter.close()
