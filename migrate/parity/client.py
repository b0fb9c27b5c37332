"""A Flask test client whose requests go over HTTP to N instances, one after another.

``InstanceClient`` is Werkzeug's test client, so everything a suite written against
``app.test_client()`` relies on behaves the same: the request is built by Werkzeug's
``EnvironBuilder`` (``data=``, ``json=``, multipart file tuples, ``query_string=``,
``headers=``, ``content_type=``), cookies live in the client's own jar (``get_cookie``,
``set_cookie``, ``delete_cookie``), ``follow_redirects=True`` follows redirects with
``response.history``, and responses are Flask's test responses (``status_code``, ``data``,
``get_data(as_text=True)``, ``text``, ``json``, ``headers``, ``location``, ``mimetype``).
Like Flask's client it sends ``Host: localhost`` and a ``Werkzeug/...`` user agent and no
``Origin``; a test sends the headers a browser would add itself.

Only the application differs: ``InstanceProxy`` is a WSGI app that forwards the request to the
next instance on 127.0.0.1 (round-robin, seeded random, or sticky), retries a refused
connection on the next instance (what a health-checked balancer does) and returns the answer
whole. Each request is recorded with the instance that answered, for failure messages.
"""

from __future__ import annotations

import collections
import copy
import http.client
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import flask
import flask.json
from werkzeug.test import Client, EnvironBuilder, TestResponse

from migrate.errors import ConnectionFailure, UsageError

MAX_BODY = 512 * 1024 * 1024  # an answer larger than this is refused, not read into memory
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
               "proxy-connection"}


class NotAcrossInstances(UsageError):
    """Something a test did that works inside one process only (one clear line)."""


class _NotHere(NotAcrossInstances, AttributeError):
    """An attribute of the in-process app asked of the client's application."""


class Targets(Protocol):
    """What the client needs of the instances: how many, and where each is."""

    def __len__(self) -> int: ...

    def target(self, i: int) -> tuple[str, int]: ...


@dataclass
class RequestRecord:
    """One request as sent, and who answered it."""

    method: str
    path: str
    instance: str | None  # None: no instance answered
    status: int | None
    ms: float
    refused: tuple[str, ...] = ()  # instances that refused the connection first
    error: str | None = None

    def line(self) -> str:
        answer = f"{self.status}" if self.status is not None else f"no answer ({self.error})"
        where = f"from {self.instance}" if self.instance else ""
        skipped = f" (refused by {', '.join(self.refused)}, sent on)" if self.refused else ""
        return f"{self.method} {self.path} -> {answer} {where}{skipped}".rstrip()


class Balancer:
    """Which instance gets the next request: round-robin, random with a seed, or sticky."""

    def __init__(self, count: int, policy: str = "round-robin", seed: int | str = 0) -> None:
        self.count = count
        self.policy = policy
        self._next = 0
        self._random = random.Random(str(seed))
        self._home = 0  # sticky: one instance until it refuses

    def order(self) -> list[int]:
        """The instances to try for one request, the chosen one first, then the others."""
        if self.policy == "sticky":
            first = self._home
        elif self.policy == "random":
            first = self._random.randrange(self.count)
        else:
            first = self._next % self.count
            self._next += 1
        return [(first + k) % self.count for k in range(self.count)]

    def answered(self, index: int) -> None:
        self._home = index  # sticky: after a failover the user stays on the new instance


class InstanceProxy:
    """A WSGI app that forwards each request to one instance over HTTP on 127.0.0.1."""

    def __init__(self, targets: Targets, balancer: Balancer, timeout: float = 30.0,
                 history: int = 50) -> None:
        self.targets = targets
        self.balancer = balancer
        self.timeout = timeout
        self.records: collections.deque[RequestRecord] = collections.deque(maxlen=history)
        self.on_response: list[Callable[[RequestRecord, int], None]] = []
        self.count = 0

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise _NotHere(
            f"client.application.{name}: the app runs in {len(self.targets)} gunicorn "
            "instances, not in the test's process; assert on what the responses show, or set "
            "configuration with --app-env KEY=VALUE")

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        path = _path_of(environ)  # (Werkzeug's RAW_URI leaves the query string out)
        headers = _headers_of(environ)
        body = _body_of(environ)
        started = time.perf_counter()
        refused: list[str] = []
        for index in self.balancer.order():
            name, port = self.targets.target(index)
            try:
                status, reason, answer_headers, data = self._send(port, method, path, headers,
                                                                  body)
            except ConnectionRefusedError:
                refused.append(name)
                continue
            except (OSError, http.client.HTTPException, TimeoutError) as exc:
                self._record(method, path, name, None, started, refused, type(exc).__name__)
                raise ConnectionFailure(
                    f"{name} gave no complete answer to {method} {_short(path)} "
                    f"({type(exc).__name__}: {exc}); it may have been killed mid-request, or "
                    "answer slower than --instances-request-timeout") from None
            self.balancer.answered(index)
            record = self._record(method, path, name, status, started, refused, None)
            for hook in list(self.on_response):
                hook(record, index)
            start_response(f"{status} {reason}", answer_headers)
            return [data]
        self._record(method, path, None, None, started, refused, "refused")
        raise ConnectionFailure(
            f"every instance refused {method} {_short(path)} ({', '.join(refused)}): they are "
            "down; see their logs in the run folder")

    def _send(self, port: int, method: str, path: str, headers: list[tuple[str, str]],
              body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        deadline = time.monotonic() + self.timeout
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=self.timeout)
        try:
            try:
                conn.request(method, path, body=body if body or method not in ("GET", "HEAD")
                             else None, headers=dict(_merge(headers)))
            except (BrokenPipeError, ConnectionResetError):
                # The server answered before reading the whole body (a 413, say) and closed:
                # its answer is still there to read, as urllib3 reads it too.
                pass
            response = conn.getresponse()
            chunks, size = [], 0
            while chunk := response.read1(1 << 16) if method != "HEAD" else b"":
                size += len(chunk)
                if size > MAX_BODY:
                    raise http.client.HTTPException(f"answer larger than {MAX_BODY} bytes")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the answer took longer than {self.timeout:g} s")
                chunks.append(chunk)
            answer_headers = [(k, v) for k, v in response.getheaders()
                              if k.lower() not in _HOP_BY_HOP]
            return response.status, response.reason, answer_headers, b"".join(chunks)
        finally:
            conn.close()

    def _record(self, method: str, path: str, name: str | None, status: int | None,
                started: float, refused: list[str], error: str | None) -> RequestRecord:
        self.count += 1
        record = RequestRecord(method, _short(path), name, status,
                               (time.perf_counter() - started) * 1000, tuple(refused), error)
        self.records.append(record)
        return record


class _Builder(EnvironBuilder):
    json_dumps = staticmethod(flask.json.dumps)  # as Flask's test client encodes json=


class InstanceClient(Client):
    """Flask's test client API; each request goes to the next of N real instances."""

    def __init__(self, targets: Targets, policy: str = "round-robin", seed: int | str = 0,
                 timeout: float = 30.0) -> None:
        self.proxy = InstanceProxy(targets, Balancer(len(targets), policy, seed), timeout)
        super().__init__(self.proxy, flask.Response, use_cookies=True)
        from flask.testing import _get_werkzeug_version

        self.environ_base = {"REMOTE_ADDR": "127.0.0.1",
                             "HTTP_USER_AGENT": f"Werkzeug/{_get_werkzeug_version()}"}

    @property
    def records(self) -> list[RequestRecord]:
        """The last requests this client sent, oldest first, with the instance that answered."""
        return list(self.proxy.records)

    def open(self, *args: Any, buffered: bool = False, follow_redirects: bool = False,
             **kwargs: Any) -> TestResponse:
        if args and isinstance(args[0], EnvironBuilder | dict | flask.Request):
            first = args[0]
            if isinstance(first, EnvironBuilder):
                first = copy.copy(first)  # the caller's builder stays as it was (as Flask's)
                first.environ_base = {**self.environ_base, **(first.environ_base or {})}
            elif isinstance(first, dict):
                first = _Builder.from_environ(first, environ_base=dict(self.environ_base))
            request = first
        else:
            kwargs["environ_base"] = {**self.environ_base, **kwargs.get("environ_base", {})}
            builder = _Builder(*args, **kwargs)
            try:
                request = builder.get_request()
            finally:
                builder.close()
        response = super().open(request, buffered=buffered, follow_redirects=follow_redirects)
        response.json_module = flask.json  # type: ignore[assignment]
        return response

    def session_transaction(self, *args: Any, **kwargs: Any) -> Any:
        raise NotAcrossInstances(
            "client.session_transaction() edits the session inside the test's process, but the "
            "session lives where the instances keep it: put it there through the app's own "
            "routes (e.g. client.post('/login', data=...)) instead")

    def __enter__(self) -> InstanceClient:
        raise NotAcrossInstances(
            "`with client:` keeps the request context (flask.request, flask.session, g) in the "
            "test's process, but the request ran in an instance: assert on the response instead")

    def __exit__(self, *exc: object) -> None:
        return None


def _path_of(environ: dict[str, Any]) -> str:
    from urllib.parse import quote

    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    quoted = quote(path.encode("latin-1"), safe="/:@!$&'()*+,;=-._~")
    query = environ.get("QUERY_STRING", "")
    return quoted + (f"?{query}" if query else "")


def _headers_of(environ: dict[str, Any]) -> list[tuple[str, str]]:
    headers = []
    for key, value in environ.items():
        if key.startswith("HTTP_") and key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
            name = key[5:].replace("_", "-").title()
            if name.lower() not in _HOP_BY_HOP:
                headers.append((name, value))
    if environ.get("CONTENT_TYPE"):
        headers.append(("Content-Type", environ["CONTENT_TYPE"]))
    return headers


def _merge(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    seen: dict[str, tuple[str, str]] = {}
    for name, value in headers:
        low = name.lower()
        seen[low] = (name, f"{seen[low][1]}, {value}") if low in seen else (name, value)
    return list(seen.values())


def _body_of(environ: dict[str, Any]) -> bytes:
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length:
        return stream.read(int(length))
    if environ.get("wsgi.input_terminated"):
        return stream.read()
    return b""


def _short(path: str, limit: int = 120) -> str:
    return path if len(path) <= limit else path[:limit] + "..."
