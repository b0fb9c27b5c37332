"""Cluster mechanics on real gunicorn processes (a tiny WSGI app) and, where installed, HAProxy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests

from migrate.errors import ConnectionFailure, UsageError
from migrate.harness.cluster import Cluster, haproxy_available
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
APP = "tests.fixtures_app:app"
ENV = {"PYTHONPATH": str(ROOT)}  # so gunicorn can import tests.fixtures_app from any cwd


def gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


def served_by(url: str) -> str:
    return requests.get(url + "/healthz", timeout=5).headers["X-Instance"]


@pytest.mark.slow
def test_two_instances_kill_one_and_bring_it_back(tmp_path: Path) -> None:
    cluster = Cluster(APP, 2, ENV, tmp_path).start()
    try:
        assert [served_by(url) for url in cluster.urls] == ["fixtures_app-1", "fixtures_app-2"]
        first = cluster.instance(0)
        assert first.alive and (tmp_path / "fixtures_app-1").is_dir()

        cluster.kill(0)
        assert not cluster.instance(0).alive
        assert gone(first.pid)
        with pytest.raises(requests.ConnectionError):
            requests.get(first.url + "/healthz", timeout=2)
        assert served_by(cluster.urls[1]) == "fixtures_app-2"  # the other one never noticed

        again = cluster.start_instance(0)
        assert again.url == first.url and again.pid != first.pid and again.alive
        assert served_by(first.url) == "fixtures_app-1"

        cluster.stop(1)
        assert not cluster.instance(1).alive
        pids = cluster.pids()
    finally:
        cluster.stop_all()
    assert pids and all(gone(pid) for pid in pids)
    assert cluster.pids() == []


@pytest.mark.slow
def test_a_port_taken_before_the_bind_gets_a_new_one(tmp_path: Path) -> None:
    import socket

    cluster = Cluster(APP, 1, ENV, tmp_path)
    taken = cluster.urls[0]
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", int(taken.rsplit(":", 1)[1])))
    squatter.listen()
    try:
        with cluster:
            assert cluster.urls[0] != taken
            assert served_by(cluster.urls[0]) == "fixtures_app-1"
    finally:
        squatter.close()


@pytest.mark.slow
def test_an_instance_that_cannot_start_names_its_log(tmp_path: Path) -> None:
    with pytest.raises(ConnectionFailure) as info:
        Cluster("tests.no_such_module:app", 1, ENV, tmp_path).start()
    message = str(info.value)
    assert "no_such_module-1" in message and str(tmp_path / "no_such_module-1.log") in message


def test_bad_arguments_are_usage_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match="unknown app"):
        Cluster("statefull", 2, {}, tmp_path)
    with pytest.raises(UsageError, match="at least 1"):
        Cluster(APP, 0, {}, tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without haproxy
    assert not haproxy_available()
    with pytest.raises(UsageError, match="apt-get install haproxy"):
        Cluster(APP, 2, {}, tmp_path, haproxy=True)


@pytest.mark.slow
@pytest.mark.skipif(not haproxy_available(),
                    reason="haproxy not installed (.ci/run installs it with apt-get)")
def test_haproxy_balances_and_routes_around_a_killed_instance(tmp_path: Path) -> None:
    with Cluster(APP, 2, ENV, tmp_path, haproxy=True) as cluster:
        assert cluster.proxy_url and cluster.proxy_url not in cluster.urls
        seen = {served_by(cluster.proxy_url) for _ in range(6)}
        assert seen == {"fixtures_app-1", "fixtures_app-2"}
        haproxy_pid = cluster.haproxy.pid

        cluster.kill(0)
        # Every request succeeds at once (refused connections are redispatched), and once the
        # health check has noticed (200 ms), all of them go to the survivor.
        statuses = [requests.get(cluster.proxy_url + "/", timeout=5).status_code
                    for _ in range(10)]
        assert statuses == [200] * 10
        wait_until(lambda: {served_by(cluster.proxy_url) for _ in range(6)} == {"fixtures_app-2"},
                   "haproxy to send every request to the survivor", timeout=30)

        cluster.start_instance(0)
        wait_until(lambda: "fixtures_app-1" in {served_by(cluster.proxy_url) for _ in range(4)},
                   "haproxy to send traffic to the restarted one", timeout=30)
    assert gone(haproxy_pid)
    assert (tmp_path / "haproxy.cfg").exists()


@pytest.mark.slow
def test_cli_cluster_up_serves_the_shop_and_ctrl_c_leaves_nothing() -> None:
    import json
    import os
    import signal
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-c", "from migrate.cli import cli; cli()", "cluster", "up",
         "stateful", "--instances", "2", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
    )
    try:
        lines = []
        for line in process.stdout:  # the JSON document ends with a "}" line
            lines.append(line)
            if line == "}\n":
                break
        shown = json.loads("".join(lines))
        urls = [info["url"] for info in shown["instances"]]
        assert [served_by(url) for url in urls] == ["stateful-1", "stateful-2"]
        assert shown["stores"]["AWS_SECRET_ACCESS_KEY"] == "***"
        pids = [info["pid"] for info in shown["instances"]]
        run_dir = Path(shown["run_dir"])
        assert run_dir.is_dir()
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert all(gone(pid) for pid in pids)
    assert not run_dir.exists()
    for url in urls:
        with pytest.raises(requests.ConnectionError):
            requests.get(url + "/healthz", timeout=2)


def test_instances_on_one_host_share_no_gunicorn_control_socket() -> None:
    from migrate.procs import gunicorn_command

    command = gunicorn_command("app:create_app()", "127.0.0.1:8001")
    help_text = subprocess.run([sys.executable, "-m", "gunicorn", "--help"], text=True,
                               capture_output=True, timeout=60).stdout
    # Where gunicorn has a control socket (27+), each instance runs without one.
    assert ("--no-control-socket" in command) == ("--no-control-socket" in help_text)
    assert command[-1] == "app:create_app()"
