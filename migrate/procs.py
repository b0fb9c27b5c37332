"""Worker processes that die with the command that started them.

A SIGKILLed `migrate export-files` or `export-sessions` gets no chance to stop its pool, and
orphaned workers would go on uploading queued batches behind the user's back. On Linux the
kernel can signal a child when its parent dies (prctl PR_SET_PDEATHSIG); elsewhere this is a
no-op and the pools' own shutdown is all there is.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """Call first thing in a worker: SIGKILL this process when ``parent_pid`` is gone."""
    if sys.platform != "linux":
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def gunicorn_command(app: str, bind: str, *options: str) -> list[str]:
    """``python -m gunicorn`` for one worker of ``app`` on ``bind``, safe to run N times per host.

    gunicorn 27 opens a control socket at one fixed path under the home folder by default, so
    N instances on a host would share (and fight over) it: it is turned off where the installed
    gunicorn has the setting.
    """
    command = [sys.executable, "-m", "gunicorn", "--workers", "1", "--bind", bind, *options]
    if _gunicorn_has_control_socket():
        command.append("--no-control-socket")
    return [*command, app]


def _gunicorn_has_control_socket() -> bool:
    try:
        from gunicorn import config
    except ImportError:
        return False
    return any(getattr(s, "name", "") == "control_socket_disable"
               for s in vars(config).values() if isinstance(s, type))
