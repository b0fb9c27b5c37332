"""HTTP for the journey and the shoppers: a round-robin client and how a user reads a response."""

from __future__ import annotations

import hashlib
import html
import json
import re
import time
from dataclasses import dataclass
from typing import Any

import requests

from migrate.errors import UsageError

HEX_ID = re.compile(r"\b[0-9a-f]{32}\b")


class StepFailed(Exception):
    """A step's response is not what a user expects; the message says what they would see."""


class NoInstanceAnswers(Exception):
    """Every instance refused the connection."""


class RoundRobin:
    """An HTTP client that sends each request to the next instance, skipping refusals."""

    def __init__(self, urls: list[str], timeout: float = 30.0) -> None:
        if not urls:
            raise UsageError("no instance URL given: pass at least one, e.g. http://127.0.0.1:8001")
        for url in urls:
            if not re.match(r"^https?://[^/\s]+", url):
                raise UsageError(f"{url!r} is not an instance URL: use http://HOST:PORT")
        self.urls = [u.rstrip("/") for u in urls]
        self.timeout = timeout
        self.http = requests.Session()
        self._next = 0

    def request(self, method: str, path: str, **kwargs: Any) -> tuple[requests.Response, str, int]:
        """Send one request; returns (response, base URL that served it, refusals skipped)."""
        kwargs.setdefault("allow_redirects", False)
        kwargs.setdefault("timeout", self.timeout)
        cause = ""
        # One URL (a balancer in front) still gets a second try: a kept-alive connection it
        # closed as an instance died fails at once, and a browser sends the request again.
        for attempt in range(max(2, len(self.urls))):
            base = self.urls[self._next % len(self.urls)]
            self._next += 1
            try:
                return self.http.request(method, base + path, **kwargs), base, attempt
            except requests.ConnectionError as exc:
                # Nothing was received: the instance is down. Rewind a streamed body and go on.
                cause = error_cause(exc)
                for value in (kwargs.get("files") or {}).values():
                    value[1].seek(0)
                time.sleep(0.05 * attempt)
                continue
        raise NoInstanceAnswers(f"no instance answered {method} {path} "
                                f"({', '.join(self.urls)}): {cause}")


def error_cause(exc: BaseException) -> str:
    """The innermost reason for a connection error, in one short line."""
    while exc.__context__ is not None and not isinstance(exc, OSError):
        exc = exc.__context__
    return f"{type(exc).__name__}: {str(exc)[:120]}"


def normalize(response: requests.Response) -> str:
    """The part of a response a user sees, with run-specific ids blanked, to compare runs."""
    location = response.headers.get("Location", "")
    kind = response.headers.get("Content-Type", "")
    if "html" in kind:
        main = re.search(r"<main>(.*)</main>", response.text, re.S)
        nav = re.search(r"<nav>(.*?)</nav>", response.text, re.S)
        text = " ".join(m.group(1) for m in (nav, main) if m)
        body = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", text))).strip()
    elif "json" in kind:
        body = _json_seen(response)
    elif "event-stream" in kind:
        # What a page shows of a stream: its events, not the ids (each shop numbers its own).
        body = " | ".join(f"{e.kind}: {e.data}" for e in sse_events(response.text))
    else:
        digest = hashlib.sha256(response.content).hexdigest()
        body = f"{len(response.content)} bytes sha256={digest}"
    return HEX_ID.sub("<id>", f"{response.status_code} {location} {body}")


@dataclass
class Event:
    """One Server-Sent Event as a browser's EventSource delivers it."""

    id: str | None
    kind: str
    data: str


def sse_events(text: str) -> list[Event]:
    """The events of a Server-Sent Events body (comments and ``retry:`` lines left out)."""
    events = []
    for block in re.split(r"\r?\n\r?\n", text):
        fields: dict[str, list[str]] = {}
        for line in block.splitlines():
            name, sep, value = line.partition(":")
            if name and sep:
                fields.setdefault(name, []).append(value.removeprefix(" "))
        if "data" in fields:
            ids = fields.get("id")
            events.append(Event(ids[-1] if ids else None, (fields.get("event") or ["message"])[-1],
                                "\n".join(fields["data"])))
    return events


def _json_seen(response: requests.Response) -> str:
    """A JSON answer with its tokens blanked (each run signs its own) and the token lifetime and
    refresh fields left out: the after-shop's access tokens are short-lived and come with a
    refresh token (the lesson), which a client of the old API does not read."""
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()
    if isinstance(data, dict):
        data = {k: ("<token>" if k.endswith("token") and isinstance(v, str) else v)
                for k, v in data.items() if not k.startswith("refresh_") and k != "expires_in"}
    return json.dumps(data, sort_keys=True)


def marker(text: str, element_id: str) -> str | None:
    found = re.search(rf'id="{element_id}">([^<]*)<', text)
    return html.unescape(found.group(1)) if found else None


def cart_lines(text: str) -> dict[int, int]:
    return {
        int(p): int(q)
        for p, q in re.findall(r'class="line" data-product="(\d+)" data-quantity="(\d+)"', text)
    }


def expect_redirect(response: requests.Response, target: str, what: str) -> None:
    location = response.headers.get("Location", "")
    if response.status_code in (301, 302, 303) and location.startswith("/login"):
        raise StepFailed(
            f"{what}: the user appears logged out (redirected to {location}); this instance "
            "does not know the session, which lives only where it was created"
        )
    if response.status_code not in (301, 302, 303) or not location.startswith(target):
        raise StepFailed(f"{what}: expected a redirect to {target}, got {describe(response)}")


def expect_ok(response: requests.Response, what: str) -> None:
    if response.status_code in (301, 302, 303) and response.headers.get(
        "Location", ""
    ).startswith("/login"):
        raise StepFailed(
            f"{what}: the user appears logged out (asked to log in again); this instance "
            "does not know the session, which lives only where it was created"
        )
    if response.status_code >= 300:
        raise StepFailed(f"{what}: got {describe(response)}")


def describe(response: requests.Response) -> str:
    error = marker(response.text, "error") if "html" in response.headers.get(
        "Content-Type", ""
    ) else None
    if error is None and "json" in response.headers.get("Content-Type", ""):
        error = (response.json() or {}).get("error")
    where = response.headers.get("Location")
    return f"HTTP {response.status_code}" + (f" to {where}" if where else "") + (
        f" ({error})" if error else ""
    )
