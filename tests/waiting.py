"""Waiting for a condition, never for a fixed time: on a busy machine anything can take longer.

Each wait polls its condition and returns as soon as it holds; the deadline only bounds how
long a test may hang when the condition never comes, and its failure names what was awaited.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable
from typing import IO, TypeVar

T = TypeVar("T")


def wait_until(condition: Callable[[], T], what: str, timeout: float = 60.0,
               interval: float = 0.05) -> T:
    """Poll ``condition`` until it returns something true (returned); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"waited {timeout:g} s for {what}"
        time.sleep(interval)


def read_until(stream: IO[str] | IO[bytes], marker: str, timeout: float = 60.0) -> str:
    """What a child process wrote to ``stream`` (a pipe) so far, once a whole line holding
    ``marker`` is in it; fails after ``timeout`` or at the end of the output without it.

    Reads the pipe's file descriptor directly, so ``communicate()`` can read the rest later.
    """
    fd = stream.fileno()
    deadline = time.monotonic() + timeout
    seen = b""
    wanted = marker.encode()
    while True:
        at = seen.find(wanted)
        if at >= 0:
            end = seen.find(b"\n", at)
            if end >= 0:
                return seen.decode(errors="replace")
        left = deadline - time.monotonic()
        assert left > 0, f"waited {timeout:g} s for {marker!r}; got: {seen[-2000:]!r}"
        ready, _, _ = select.select([fd], [], [], min(left, 1.0))
        if ready:
            chunk = os.read(fd, 65536)
            assert chunk, f"the output ended without {marker!r}: {seen[-2000:]!r}"
            seen += chunk


def half_closed(port: int) -> list[str]:
    """The server-side connections on 127.0.0.1:``port`` whose client has gone (CLOSE_WAIT):
    requests the server is still finishing for a client that was killed. Linux (/proc)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as handle:
                rows = handle.read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            fields = row.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if int(local.rsplit(":", 1)[1], 16) == port and state == "08":  # TCP_CLOSE_WAIT
                found.append(remote)
    return found
