"""What a failing test says about the instances, the run's summary, and the JSON report.

A failing test that talked to the instances gets two more sections in pytest's output: its
last requests, each with the instance that answered it, and what each instance logged during
the test (the logs themselves are kept in the run folder). An error this package raises
(something that cannot work across processes, an instance that did not start) is reported as
one line at the test's own line, not as a traceback through the plugin.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from migrate.errors import MigrateError

from .stash import CLIENTS, OFFSETS

LAST_REQUESTS = 8


def annotate(parity: Any, item: pytest.Item, call: pytest.CallInfo, report: Any) -> None:
    """Add the instance sections to a failed report; shorten our own errors; record it."""
    clients = item.stash.get(CLIENTS, [])
    if call.excinfo is not None and call.excinfo.errisinstance(MigrateError):
        report.longrepr = f"{_where(item, call.excinfo)}: {call.excinfo.value}"
    requests = _request_lines(clients)
    if report.failed and requests:
        report.sections.append(("instances: the last requests, oldest first, and who answered",
                                "\n".join(requests)))
        if parity.instances is not None and OFFSETS in item.stash:
            logs = parity.instances.log_since(item.stash[OFFSETS])
            for name, text in logs.items():
                report.sections.append((f"instances: {name} logged during the test", text))
    _record(parity, item, report, requests)


def _where(item: pytest.Item, excinfo: pytest.ExceptionInfo) -> str:
    """``path:line`` of the test's own line that led to the error (else the test's node id)."""
    path = getattr(item, "path", None)
    for entry in reversed(excinfo.traceback):
        if path is not None and Path(entry.path) == Path(path):
            return f"{_rel(path, item.config.rootpath)}:{entry.lineno + 1}"
    return item.nodeid


def _rel(path: Path, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def _request_lines(clients: list[Any]) -> list[str]:
    lines = []
    for n, client in enumerate(clients, 1):
        label = f"client {n}: " if len(clients) > 1 else ""
        lines += [label + r.line() for r in client.records[-LAST_REQUESTS:]]
    return lines


def _record(parity: Any, item: pytest.Item, report: Any, requests: list[str]) -> None:
    entry = parity.outcomes.setdefault(item.nodeid, {"nodeid": item.nodeid, "outcome": "passed",
                                                     "message": None, "requests": []})
    if report.skipped and entry["outcome"] == "passed":
        entry["outcome"] = "skipped"
    elif report.failed:
        entry["outcome"] = "failed" if report.when == "call" else "error"
        entry["message"] = entry["message"] or _message(report)
        entry["requests"] = requests[-LAST_REQUESTS:]
    entry["uses_instances"] = bool(requests) or parity.uses_client(item)


def _message(report: Any) -> str:
    longrepr = report.longrepr
    crash = getattr(longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(longrepr)
    lines = [line for line in text.splitlines() if line.strip()]
    # "AssertionError: <the assert's own message>" first, the comparison after: prefer it.
    first = next((line for line in lines if line.lstrip().startswith("assert ")),
                 lines[0] if lines else "")
    return " ".join(first.split())[:400]


def summary_lines(parity: Any) -> list[str]:
    """The instances, where their logs are, and the kill (for the terminal summary)."""
    running = parity.instances
    lines = [f"{info.name}: {info.url} (pid {info.pid or '-'}, log {info.log})"
             for info in (running[i] for i in range(len(running)))]
    if running.stores is not None:
        lines.append(f"stores: {running.stores.describe()}")
    for kill in running.kills:
        again = "restarted after the test" if kill.restarted else "not restarted"
        lines.append(f"SIGKILLed {kill.instance} (pid {kill.pid}) in {kill.test} after "
                     f"{kill.after_request}; {again}")
    failed = sum(o["outcome"] in ("failed", "error") for o in parity.outcomes.values())
    if failed:
        lines.append(f"{failed} test(s) failed: each shows its last requests and the instance "
                     f"that answered; the logs stay in {running.run_dir}")
    return lines


def report_data(parity: Any) -> dict[str, Any]:
    """The JSON report: the settings that matter, every test's outcome, the kill."""
    settings = parity.settings
    running = parity.instances
    return {
        "app": settings.app,
        "instances": settings.instances,
        "policy": settings.policy,
        "kill_one": settings.kill_one,
        "started": running is not None,
        "run_dir": str(running.run_dir) if running is not None else None,
        "kills": [vars(k) for k in running.kills] if running is not None else [],
        "tests": list(parity.outcomes.values()),
    }
