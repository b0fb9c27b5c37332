""".ci/run fails when a tool its tests drive is missing, with one line naming it.

A missing haproxy, nginx, chromium or redis-server only skips tests: a CI that merely warned
would go green with those suites never run. The script runs here on a PATH of stand-ins
(``make`` records that it ran instead of running the suite; no apt-get, so nothing installs).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ("haproxy", "nginx", "chromium", "redis-server")


def fake_path(tmp_path: Path, tools: tuple[str, ...]) -> Path:
    """A bin folder: the real basics the script needs, stand-ins for ``tools`` and ``make``."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in ("bash", "dirname", "id", "sed", "python3"):
        found = shutil.which(name)
        assert found, name
        (folder / name).symlink_to(found)
    for name in (*tools, "make"):
        stand_in = folder / name
        stand_in.write_text(f'#!/bin/sh\necho "{name} ran: $*"\n')
        stand_in.chmod(0o755)
    return folder


def run_ci(tmp_path: Path, tools: tuple[str, ...]) -> subprocess.CompletedProcess:
    env = {"PATH": str(fake_path(tmp_path, tools)), "HOME": str(tmp_path),
           "DATABASE_URL": "sqlite://"}  # no probe for a local PostgreSQL
    return subprocess.run([str(ROOT / ".ci" / "run")], env=env, capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)


@pytest.mark.skipif(os.name != "posix", reason="a bash script")
@pytest.mark.parametrize("absent", ["haproxy", "chromium"])
def test_a_missing_tool_fails_ci_with_one_line_naming_it(tmp_path: Path, absent: str) -> None:
    done = run_ci(tmp_path, tuple(t for t in TOOLS if t != absent))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "make ran" not in done.stdout  # the suite did not run (and could not go green)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and absent in lines[0] and lines[0].startswith("CI:"), done.stderr


@pytest.mark.skipif(os.name != "posix", reason="a bash script")
def test_with_every_tool_present_ci_runs_the_tests(tmp_path: Path) -> None:
    done = run_ci(tmp_path, TOOLS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "make ran: test" in done.stdout and done.stderr == ""
