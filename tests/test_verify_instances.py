"""`migrate verify instances`: the journey over a user's own instances, and the kill test on
instances migrate starts itself. Real gunicorn instances, real Redis and S3 over HTTP."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from migrate.cli import cli
from migrate.harness.stores import free_port


def invoke(*args: str):
    return CliRunner().invoke(cli, ["verify", "instances", *args])


def last_line(output: str, start: str) -> str:
    return next(line for line in reversed(output.splitlines()) if line.startswith(start))


@pytest.mark.slow
def test_two_stateless_instances_pass_and_the_table_names_both(start_cluster):
    cluster = start_cluster("stateless", 2)
    result = invoke(*cluster.urls, "--file-mib", "6")
    assert result.exit_code == 0, result.output
    assert "stateless-1" in result.output and "stateless-2" in result.output
    assert "journey passed" in result.output
    for column in ("#", "step", "instance", "status", "detail"):
        assert column in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_two_stateful_instances_fail_where_the_user_appears_logged_out(start_cluster):
    cluster = start_cluster("stateful", 2)
    result = invoke(*cluster.urls, "--file-mib", "6")
    assert result.exit_code == 1, result.output
    verdict = last_line(result.output, "journey failed")
    assert "step 3 (add product 1)" in verdict
    assert "logged out" in verdict

    as_json = invoke(*cluster.urls, "--file-mib", "6", "--json")
    assert as_json.exit_code == 1
    data = json.loads(as_json.stdout)
    assert data["ok"] is False
    failed = [s for s in data["journey"]["steps"] if not s["ok"]]
    assert len(failed) == 1 and "appears logged out" in failed[0]["detail"]
    assert failed[0]["instance"].startswith("stateful-")


@pytest.mark.slow
def test_start_and_kill_one_passes_with_nothing_lost():
    before = _children()
    result = invoke("--start", "stateless", "--instances", "2", "--kill-one", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is True and data["started"] == "stateless"
    kill = data["kill"]
    assert kill["step_name"] == "send chunk 2"
    assert kill["dead_after"] is True  # its URL refused connections after the SIGKILL
    assert kill["retries_after"] >= 1  # requests meant for it went to the survivor
    steps = data["journey"]["steps"]
    assert data["journey"]["finished"] and all(s["ok"] for s in steps)
    after_kill = [s for s in steps if s["number"] >= kill["before_step"]]
    assert {s["instance"] for s in after_kill} == {"stateless-2", "stateless-1"} - {
        kill["instance"]}
    download = next(s for s in steps if s["name"] == "download file")
    assert "matches" in download["detail"]  # the upload survived the kill: same sha256
    assert _children() == before  # every process it started was stopped


def test_start_and_kill_one_table_says_what_was_killed(monkeypatch):
    """The human output of the kill test (a fake library result: the table is what's tested)."""
    from migrate.harness import instances as verify
    from migrate.harness.journey import JourneyResult, StepResult

    steps = [StepResult(1, "catalog", "GET", "/", True, 200, "stateless-1", detail="6 products"),
             StepResult(2, "send chunk 2", "PUT", "/u", True, 200, "stateless-2", retries=1,
                        detail="5242880 bytes")]
    fake = verify.InstancesResult(
        ["http://127.0.0.1:1", "http://127.0.0.1:2"],
        JourneyResult([], "alice", True, steps, 1.0, True), started="stateless",
        instances=["stateless-1", "stateless-2"],
        kill=verify.Kill("stateless-1", "http://127.0.0.1:1", 42, 2, "send chunk 2", True, 1))
    monkeypatch.setattr(verify, "verify_started", lambda *a, **k: fake)
    result = invoke("--start", "stateless", "--kill-one")
    assert result.exit_code == 0, result.output
    assert "SIGKILL stateless-1" in result.output
    assert "journey passed" in last_line(result.output, "journey passed")
    assert "nothing lost after the kill" in result.output


def test_kill_one_with_urls_is_refused_in_one_line():
    port = free_port()
    result = invoke(f"http://127.0.0.1:{port}", "--kill-one")
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "only kills processes it started" in lines[0]
    assert "--start stateless" in lines[0]
    assert "Traceback" not in result.output


def test_kill_one_needs_two_instances():
    result = invoke("--start", "stateless", "--instances", "1", "--kill-one")
    assert result.exit_code == 2
    assert "at least 2 instances" in result.output


def test_unreachable_url_is_one_clear_line():
    port = free_port()  # nothing listens there
    result = invoke(f"http://127.0.0.1:{port}")
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert f"http://127.0.0.1:{port}" in lines[0] and "no answer" in lines[0]
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_one_unreachable_url_among_live_ones_is_named(start_cluster):
    cluster = start_cluster("stateless", 1)
    dead = f"http://127.0.0.1:{free_port()}"
    result = invoke(cluster.urls[0], dead)
    assert result.exit_code == 2
    assert dead in result.output and cluster.urls[0] + " " not in result.output
    assert "Traceback" not in result.output


def _children() -> set[int]:
    """The pids of this test process's children (servers it started and has not reaped)."""
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            pids.add(int(entry))
    return pids


@pytest.mark.slow
def test_sigterm_during_start_stops_everything_it_started(tmp_path):
    """Ctrl-C or SIGTERM mid-journey: one line, exit 130, no process left behind."""
    import signal
    import subprocess
    import sys
    import time
    import uuid
    from pathlib import Path

    mark = f"MIGRATE_TEST_MARK={uuid.uuid4().hex}"  # inherited by every process it starts
    env = {**os.environ, mark.split("=")[0]: mark.split("=")[1]}
    err = tmp_path / "stderr.txt"
    with open(err, "wb") as handle:
        command = [str(Path(sys.executable).parent / "migrate"), "verify", "instances",
                   "--start", "stateless", "--file-mib", "6"]
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=handle)
        deadline = time.monotonic() + 60
        while b"step 2 " not in err.read_bytes():
            assert process.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.05)
        assert _marked(mark), "nothing was started?"
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 130
    assert err.read_text().strip().splitlines()[-1].startswith("stopped:")
    assert "Traceback" not in err.read_text()
    assert _marked(mark) == []


def _marked(mark: str) -> list[int]:
    """Live processes whose environment carries ``mark``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/environ", "rb") as handle:
                    if mark.encode() in handle.read().split(b"\0"):
                        with open(f"/proc/{entry}/stat") as stat:
                            if stat.read().rsplit(")", 1)[1].split()[0] != "Z":
                                found.append(int(entry))
            except OSError:
                continue
    return found
