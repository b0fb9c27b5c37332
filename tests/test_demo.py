"""`migrate demo`: the whole story, as `make demo` runs it, and Ctrl-C leaving nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.waiting import read_until, wait_until

pytestmark = pytest.mark.slow
MIGRATE = [str(Path(sys.executable).parent / "migrate")]


def _demo_env(tmp_path: Path) -> dict[str, str]:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    # Every process the demo starts inherits this TMPDIR: a marker to find leftovers by.
    return {**os.environ, "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"}


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_demo_migrates_users_mid_journey_and_they_lose_nothing(tmp_path):
    env = _demo_env(tmp_path)
    done = subprocess.run([*MIGRATE, "demo", "--users", "4", "--json"], env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    before, through = result["cases"]
    assert not before["result"]["ok"] and "logged out" in before["result"]["steps"][-1]["detail"]
    assert through["result"]["ok"] and through["result"]["finished"]
    cut = result["cutover"]
    assert (cut["failed_requests"], cut["logouts"], cut["lost_cart_items"],
            cut["lost_files"]) == (0, 0, 0, 0)
    assert cut["sessions_exported"] >= 4 and cut["files_exported"] >= 4
    assert cut["uploads_carried"] == 1
    assert list((tmp_path / "tmp").iterdir()) == []
    assert _processes_with(str(tmp_path / "tmp")) == []


@pytest.mark.skipif(sys.platform != "linux", reason="finds leftover processes through /proc")
def test_ctrl_c_mid_demo_leaves_no_process_or_file(tmp_path):
    env = _demo_env(tmp_path)
    demo = subprocess.Popen([*MIGRATE, "demo", "--users", "4"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Wait until the users shop on the before-instances: the most processes are up.
        read_until(demo.stdout, "users shopping", timeout=180)
        assert len(_processes_with(str(tmp_path / "tmp"))) >= 4  # redis, rclone, 2 gunicorns
        demo.send_signal(signal.SIGINT)
        _, err = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 130
    assert "every process the demo started has been stopped" in err
    assert "Traceback" not in err
    # Stopped by pid and reaped before the demo exited; the deadline only bounds a busy host.
    wait_until(lambda: _processes_with(str(tmp_path / "tmp")) == [],
               "every process the demo started to be gone", timeout=30)
    assert list((tmp_path / "tmp").iterdir()) == []
