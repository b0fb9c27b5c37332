"""A tiny WSGI app for the cluster tests: answers every path with 200 and X-Instance."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable


def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
    name = os.environ.get("INSTANCE_NAME", "?")
    body = f"{name} {environ.get('PATH_INFO', '/')}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Instance", name),
                              ("Content-Length", str(len(body)))])
    return [body]
