"""``--instances-kill-one``: SIGKILL the instance that just answered, mid-test, mid-suite.

The test in the middle of the suite (among those using the instance client) loses the
instance that answered its first request, right after that answer: the rest of the test runs
on the survivors (a refused connection goes to the next instance, as behind a health-checked
balancer). After that test the instance is started again, so the rest of the suite runs on N.
"""

from __future__ import annotations

from typing import Any

from .instances import Instances, Kill


def kill_after_first_response(running: Instances, client: Any, test: str) -> None:
    """Arm ``client``: after its first answer, SIGKILL the instance that gave it."""

    def hook(record: Any, index: int) -> None:
        client.proxy.on_response.remove(hook)
        pid = running[index].pid
        running.kill(index)
        running.kills.append(Kill(record.instance, pid, test, record.line()))

    client.proxy.on_response.append(hook)


def restart_killed(running: Instances) -> None:
    """Start again every instance the run killed (after the test that lost it)."""
    for kill in running.kills:
        if kill.restarted:
            continue
        index = running.names.index(kill.instance)
        running.restart(index)
        kill.restarted = True
