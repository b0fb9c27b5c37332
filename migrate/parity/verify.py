"""``migrate verify instances --app``: a suite on 1 instance and on N, side by side.

Runs the team's own tests twice through the parity plugin, each run in its own pytest process
(at the same time: they share nothing): once on one instance (the control: what the suite
proves through HTTP at all) and once on N (optionally with one instance SIGKILLed mid-suite).
A test that passes on one and fails on N has found a state trap; its last requests say which
instance answered each.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from migrate.errors import UsageError

from .settings import ParitySettings

PASSING = ("passed", "skipped")


@dataclass
class TestOutcome:
    """One test on 1 instance and on N."""

    __test__ = False  # not a pytest test class

    nodeid: str
    one: str  # passed, failed, error, skipped, or "not run"
    many: str
    message: str | None = None  # why it failed on N (else on 1)
    requests: list[str] = field(default_factory=list)  # its last requests on N, who answered

    @property
    def trap(self) -> bool:
        """Passes on one instance, fails on N: a state trap."""
        return self.one in PASSING and self.many not in PASSING


@dataclass
class Run:
    """One pytest run through the plugin."""

    instances: int
    exit_code: int | None
    seconds: float
    log: str  # pytest's output (kept in the run folder)
    error: str | None = None  # why the run gave no report (instances did not start, ...)


@dataclass
class AppVerifyResult:
    """Both runs and every test's outcome in each."""

    app: str
    tests: list[str]
    instances: int
    kill_one: bool
    outcomes: list[TestOutcome]
    runs: list[Run]
    kills: list[dict[str, Any]] = field(default_factory=list)
    run_dir: str | None = None  # kept when something failed (the instances' logs are there)

    @property
    def traps(self) -> list[TestOutcome]:
        return [o for o in self.outcomes if o.trap]

    @property
    def ok(self) -> bool:
        ran = all(r.error is None for r in self.runs) and bool(self.outcomes)
        return ran and all(o.one in PASSING and o.many in PASSING for o in self.outcomes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        data["traps"] = [o.nodeid for o in self.traps]
        for outcome, row in zip(self.outcomes, data["outcomes"], strict=True):
            row["trap"] = outcome.trap
        return data


def verify_app(settings: ParitySettings, tests: list[str], *, client_fixtures: list[str],
               pytest_args: list[str], timeout: float = 1800.0,
               narrate: Callable[[str], None] = lambda _: None) -> AppVerifyResult:
    """Run ``tests`` on 1 instance and on ``settings.instances``; never raises for a red test."""
    settings.check()
    if settings.instances < 2:
        raise UsageError("--instances 1 is the control run already: give 2 or more")
    if not tests:
        raise UsageError("no tests given: --tests PATH (a folder or file of the app's tests)")
    base = Path(tempfile.mkdtemp(prefix="migrate-parity-"))
    try:
        counts = [1, settings.instances]
        narrate(f"running {' '.join(tests)} on 1 and on {settings.instances} instances of "
                f"{settings.app}, side by side")
        started = [_start(base, n, settings, tests, client_fixtures, pytest_args)
                   for n in counts]
        runs = [_finish(process, n, base, timeout, narrate) for n, process in
                zip(counts, started, strict=True)]
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
    reports = [_report(base / f"run-{n}" / "report.json") for n in counts]
    result = AppVerifyResult(settings.app, tests, settings.instances, settings.kill_one,
                             _outcomes(*reports), runs, reports[1].get("kills", []))
    if result.ok:
        shutil.rmtree(base, ignore_errors=True)
    else:
        result.run_dir = str(base)
    return result


def _command(run_dir: Path, count: int, settings: ParitySettings, tests: list[str],
             client_fixtures: list[str], pytest_args: list[str]) -> list[str]:
    command = [sys.executable, "-m", "pytest", *tests, "-p", "no:cacheprovider", "-q",
               "--basetemp", str(run_dir / "tmp"),
               "--instances", str(count), "--app", settings.app,
               "--app-dir", str(settings.app_dir), "--instances-policy", settings.policy,
               "--instances-seed", str(settings.seed),
               "--instances-worker-class", settings.worker_class,
               "--instances-start-timeout", str(settings.start_timeout),
               "--instances-request-timeout", str(settings.request_timeout),
               "--instances-health-path", settings.health_path,
               "--instances-report", str(run_dir / "report.json")]
    for key, value in settings.app_env.items():
        command += ["--app-env", f"{key}={value}"]
    for option, values in (("--app-prepare", settings.prepare), ("--app-worker", settings.workers),
                           ("--instances-client-replaces", client_fixtures)):
        for value in values:
            command += [option, value]
    for option, value in (("--instances-redis", settings.redis_url),
                          ("--instances-s3", settings.s3_endpoint_url),
                          ("--instances-database-url", settings.database_url)):
        if value:
            command += [option, value]
    if settings.kill_one and count > 1:
        command.append("--instances-kill-one")
    if not settings.flush_redis:
        command.append("--instances-keep-redis")
    return [*command, *pytest_args]


def _start(base: Path, count: int, settings: ParitySettings, tests: list[str],
           client_fixtures: list[str], pytest_args: list[str]) -> subprocess.Popen:
    run_dir = base / f"run-{count}"
    run_dir.mkdir()
    command = _command(run_dir, count, settings, tests, client_fixtures, pytest_args)
    with open(run_dir / "pytest.log", "wb") as out:
        # Its own session: a Ctrl-C here is passed on once, so pytest stops its instances.
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    process.started = time.monotonic()  # type: ignore[attr-defined]
    return process


def _finish(process: subprocess.Popen, count: int, base: Path, timeout: float,
            narrate: Callable[[str], None]) -> Run:
    log = base / f"run-{count}" / "pytest.log"
    try:
        process.wait(max(1.0, timeout - (time.monotonic() - process.started)))  # type: ignore
    except (KeyboardInterrupt, subprocess.TimeoutExpired) as exc:
        _interrupt(process)
        if isinstance(exc, KeyboardInterrupt):
            raise
        return Run(count, None, timeout, str(log), f"did not finish within {timeout:g} s")
    finally:
        if process.poll() is None:
            _interrupt(process)
    seconds = time.monotonic() - process.started  # type: ignore[attr-defined]
    text = log.read_text(encoding="utf-8", errors="replace")
    last = next((line for line in reversed(text.splitlines()) if line.strip()), "")
    narrate(f"{count} instance(s): {last.strip('= ')} ({seconds:.0f} s)")
    report = _report(base / f"run-{count}" / "report.json")
    error = None
    if not report.get("tests") and process.returncode != 5:  # 5: no tests collected
        error = _why(text) or f"pytest exited with {process.returncode}: {last}"
    elif not report.get("started") or process.returncode == 2:  # interrupted
        errors = [t["message"] for t in report.get("tests", []) if t["outcome"] == "error"]
        error = errors[0] if errors else (_why(text) if process.returncode == 2 else None)
    return Run(count, process.returncode, round(seconds, 1), str(log), error)


def _interrupt(process: subprocess.Popen) -> None:
    """SIGINT (pytest stops its instances), then SIGKILL if it does not end in 30 s."""
    for sig, wait in ((signal.SIGINT, 30), (signal.SIGKILL, 10)):
        if process.poll() is not None:
            return
        try:
            os.kill(process.pid, sig)
            process.wait(wait)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            continue


def _why(text: str) -> str | None:
    """The line that says why a run gave no report (a usage error, a crash)."""
    for line in text.splitlines():
        if line.startswith(("ERROR: ", "INTERNALERROR> ")) or line.startswith("!!!"):
            return line.strip("! ").removeprefix("ERROR: ")[:400]
    return None


def _report(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _outcomes(one: dict[str, Any], many: dict[str, Any]) -> list[TestOutcome]:
    """Every test of either run, in the order the N-run met them; only those using instances."""
    first = {t["nodeid"]: t for t in one.get("tests", [])}
    second = {t["nodeid"]: t for t in many.get("tests", [])}
    order = list(second) + [n for n in first if n not in second]
    outcomes = []
    for nodeid in order:
        a, b = first.get(nodeid), second.get(nodeid)
        if not ((a or {}).get("uses_instances") or (b or {}).get("uses_instances")):
            continue
        failed = b if b and b["outcome"] not in PASSING else a
        outcomes.append(TestOutcome(nodeid, a["outcome"] if a else "not run",
                                    b["outcome"] if b else "not run",
                                    failed.get("message") if failed else None,
                                    (b or {}).get("requests", [])))
    return outcomes
