"""The shop's user journey, runnable against any list of instance URLs.

Each request goes to the next instance in turn (deterministic round-robin) and a refused
connection is retried on the next instance, as a health-checked balancer does. Every step
records the instance that served it (the ``X-Instance`` header), so a failure says where and why.

A ``Journey`` can be run in parts (``run(until=...)`` then ``run()``) with its cookies kept, and
its ``urls`` changed in between: that is how a user "mid-journey" crosses a migration.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from migrate.errors import UsageError
from migrate.harness.http import (  # noqa: F401 (re-exported: the journey's public helpers)
    NoInstanceAnswers,
    RoundRobin,
    StepFailed,
    cart_lines,
    error_cause,
    normalize,
    sse_events,
)
from migrate.harness.http import describe as _describe
from migrate.harness.http import expect_ok as _expect_ok
from migrate.harness.http import expect_redirect as _expect_redirect
from migrate.harness.http import marker as _marker

MIB = 1024 * 1024
LAST_ITEMS = 6  # the shop's product with only a few left (the seed's apron)


@dataclass
class StepResult:
    """One request of the journey and what came of it."""

    number: int
    name: str
    method: str
    path: str
    ok: bool
    status: int | None = None
    instance: str | None = None  # the X-Instance header of the response
    url: str | None = None  # the base URL the request went to
    retries: int = 0  # refused connections skipped before an instance answered
    seconds: float = 0.0
    detail: str = ""
    page: str = field(default="", repr=False)  # normalized response, to compare runs


@dataclass
class JourneyResult:
    """The whole journey: passed, or the first step that failed and why."""

    urls: list[str]
    user: str
    ok: bool
    steps: list[StepResult]
    seconds: float
    finished: bool  # every step ran (False when stopped by ``until`` or a failure)

    @property
    def failed(self) -> StepResult | None:
        return next((s for s in self.steps if not s.ok), None)

    def pages(self) -> list[tuple[str, str]]:
        """(step name, normalized response) for comparing two runs page by page."""
        return [(s.name, s.page) for s in self.steps]

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for step in data["steps"]:
            step.pop("page")
        return data


@dataclass
class Step:
    name: str
    method: str
    path: str
    run: Callable[[Journey], tuple[requests.Response, str]]  # -> (response, detail)


class Journey:
    """The scripted shop journey of one user, resumable across instance changes."""

    def __init__(
        self,
        urls: list[str],
        *,
        user: str = "alice",
        password: str | None = None,
        file_size: int = 12 * MIB,
        chunk_size: int = 5 * MIB,
        seed: int = 7,
        confirm_timeout: float = 20.0,
        timeout: float = 30.0,
    ) -> None:
        self.client = RoundRobin(urls, timeout=timeout)
        self.user = user
        self.password = password or {"alice": "wonderland", "bob": "builder"}.get(user, user)
        rng = random.Random(seed)
        self.avatar = b"\x89PNG\r\n\x1a\n" + rng.randbytes(48 * 1024)
        self.file = rng.randbytes(file_size)
        self.chunk_size = chunk_size
        self.confirm_timeout = confirm_timeout
        self.ctx: dict[str, Any] = {"cart": {}}
        self.steps = self._plan()
        self.results: list[StepResult] = []
        self.started = time.monotonic()

    @property
    def urls(self) -> list[str]:
        return self.client.urls

    @urls.setter
    def urls(self, urls: list[str]) -> None:
        self.client.urls = [u.rstrip("/") for u in urls]

    @property
    def position(self) -> int:
        """How many steps have passed so far."""
        return len(self.results)

    def step_names(self) -> list[str]:
        return [s.name for s in self.steps]

    # --- the steps ------------------------------------------------------------------------

    def _plan(self) -> list[Step]:
        chunks = max(1, -(-len(self.file) // self.chunk_size))
        plan = [
            Step("catalog", "GET", "/", Journey._catalog),
            Step("log in", "POST", "/login", Journey._login),
            Step("add product 1", "POST", "/cart/add", lambda j: j._add(1, 1)),
            Step("add product 2", "POST", "/cart/add", lambda j: j._add(2, 2)),
            Step("view cart", "GET", "/cart", Journey._view_cart),
            Step("API token", "POST", "/api/token", Journey._api_token),
            Step("API token on another instance", "GET", "/api/me", Journey._api_me),
            Step("upload avatar", "POST", "/account/avatar", Journey._upload_avatar),
            Step("download avatar", "GET", "/account/avatar", Journey._download_avatar),
            Step("start chunked upload", "POST", "/uploads", Journey._start_upload),
        ]
        plan += [
            Step(f"send chunk {n}", "PUT", f"/uploads/<id>/chunks/{n}", _chunk_step(n))
            for n in range(1, chunks + 1)
        ]
        plan += [
            Step("complete upload", "POST", "/uploads/<id>/complete", Journey._complete_upload),
            Step("download file", "GET", "/files/<id>", Journey._download_file),
            Step("view product", "GET", "/product/3", lambda j: j._view_product(first=True)),
            Step("view product again", "GET", "/product/3", lambda j: j._view_product(False)),
            Step("check out", "POST", "/checkout", Journey._checkout),
            Step("order event on another instance", "GET", "/orders/events",
                 Journey._order_event),
            Step("order confirmed", "GET", "/orders/<id>", Journey._order_confirmed),
            Step("order listed", "GET", "/account", Journey._order_listed),
            Step("buy the last items", "POST", "/checkout", Journey._buy_last_items),
            Step("sold out", "GET", f"/product/{LAST_ITEMS}", Journey._sold_out),
            Step("log out", "POST", "/logout", Journey._logout),
            Step("account asks for login", "GET", "/account", Journey._account_after_logout),
        ]
        return plan

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        response, base, retries = self.client.request(method, path, **kwargs)
        self._last = (base, retries)
        self._last_response: requests.Response | None = response
        return response

    def _catalog(self) -> tuple[requests.Response, str]:
        r = self._send("GET", "/")
        _expect_ok(r, "catalog")
        count = r.text.count('class="product"')
        if count < 5:
            raise StepFailed(f"catalog: expected at least 5 products, found {count}")
        if _marker(r.text, "user"):
            raise StepFailed("catalog: an anonymous visitor is shown as signed in")
        return r, f"{count} products"

    def _login(self) -> tuple[requests.Response, str]:
        r = self._send("POST", "/login", data={"username": self.user, "password": self.password})
        if r.status_code == 401:
            raise StepFailed(f"log in: {self.user}'s password was refused (HTTP 401)")
        _expect_redirect(r, "/", "log in")
        return r, f"signed in as {self.user}"

    def _add(self, product_id: int, quantity: int) -> tuple[requests.Response, str]:
        r = self._send("POST", "/cart/add", data={"product_id": product_id, "quantity": quantity})
        _expect_redirect(r, "/cart", f"add product {product_id}")
        cart = self.ctx["cart"]
        cart[product_id] = cart.get(product_id, 0) + quantity
        return r, f"{quantity} x product {product_id}"

    def _view_cart(self) -> tuple[requests.Response, str]:
        r = self._send("GET", "/cart")
        _expect_ok(r, "view cart")
        lines = cart_lines(r.text)
        if lines != self.ctx["cart"]:
            raise StepFailed(f"view cart: expected {self.ctx['cart']}, the page shows {lines}")
        return r, f"{sum(lines.values())} items, as added"

    def _api_token(self) -> tuple[requests.Response, str]:
        r = self._send("POST", "/api/token",
                       json={"username": self.user, "password": self.password})
        _expect_ok(r, "API token")
        self.ctx["token"] = r.json()["access_token"]
        return r, "a bearer token for the API"

    def _api_me(self) -> tuple[requests.Response, str]:
        r = self._send("GET", "/api/me", headers={"Authorization": f"Bearer {self.ctx['token']}"})
        if r.status_code == 401:
            raise StepFailed(
                f"API token on another instance: {_describe(r)}; the API client appears logged "
                "out: its token lives only in the process that issued it")
        _expect_ok(r, "API token on another instance")
        if r.json().get("username") != self.user:
            raise StepFailed(f"API token on another instance: it names {r.json()!r}")
        return r, f"the token is {self.user}'s here too"

    def _upload_avatar(self) -> tuple[requests.Response, str]:
        files = {"avatar": ("avatar.png", io.BytesIO(self.avatar), "image/png")}
        r = self._send("POST", "/account/avatar", files=files)
        _expect_redirect(r, "/account", "upload avatar")
        return r, f"{len(self.avatar)} bytes"

    def _download_avatar(self) -> tuple[requests.Response, str]:
        r = self._send("GET", "/account/avatar")
        _expect_ok(r, "download avatar")
        if r.content != self.avatar:
            raise StepFailed(
                f"download avatar: got {len(r.content)} bytes that differ from the upload"
            )
        return r, "same bytes"

    def _start_upload(self) -> tuple[requests.Response, str]:
        r = self._send("POST", "/uploads", json={"filename": "catalogue.bin"})
        _expect_ok(r, "start chunked upload")
        self.ctx["upload_id"] = r.json()["upload_id"]
        return r, f"{len(self.file)} bytes in chunks of {self.chunk_size}"

    def _send_chunk(self, n: int) -> tuple[requests.Response, str]:
        data = self.file[(n - 1) * self.chunk_size : n * self.chunk_size]
        r = self._send("PUT", f"/uploads/{self.ctx['upload_id']}/chunks/{n}", data=data)
        if r.status_code == 404:
            raise StepFailed(
                f"send chunk {n}: the upload is unknown here ({_describe(r)}); its chunks "
                "wait on another instance's disk"
            )
        _expect_ok(r, f"send chunk {n}")
        return r, f"{len(data)} bytes"

    def _complete_upload(self) -> tuple[requests.Response, str]:
        chunks = -(-len(self.file) // self.chunk_size)
        r = self._send(
            "POST", f"/uploads/{self.ctx['upload_id']}/complete", json={"chunks": chunks}
        )
        _expect_ok(r, "complete upload")
        body = r.json()
        if body.get("size") != len(self.file):
            raise StepFailed(f"complete upload: size {body.get('size')}, sent {len(self.file)}")
        self.ctx["file_id"] = body["file_id"]
        return r, f"{body['size']} bytes"

    def _download_file(self) -> tuple[requests.Response, str]:
        r = self._send("GET", f"/files/{self.ctx['file_id']}")
        _expect_ok(r, "download file")
        got, want = hashlib.sha256(r.content).hexdigest(), hashlib.sha256(self.file).hexdigest()
        if got != want:
            raise StepFailed(f"download file: sha256 {got[:12]}, uploaded {want[:12]}")
        return r, f"sha256 {got[:12]} matches"

    def _view_product(self, first: bool) -> tuple[requests.Response, str]:
        r = self._send("GET", "/product/3")
        _expect_ok(r, "view product")
        views = int(_marker(r.text, "views") or 0)
        if first:
            self.ctx["views"] = views
            return r, f"viewed {views} times"
        before = self.ctx["views"]
        if views <= before:
            raise StepFailed(
                f"view product again: the counter went from {before} to {views}; "
                "each instance counts on its own"
            )
        return r, f"counter rose from {before} to {views}"

    def _checkout(self) -> tuple[requests.Response, str]:
        r = self._send("POST", "/checkout")
        _expect_redirect(r, "/orders/", "check out")
        self.ctx["order_id"] = int(r.headers["Location"].rsplit("/", 1)[1])
        self.ctx["cart"] = {}
        return r, f"order {self.ctx['order_id']}"

    def _order_event(self) -> tuple[requests.Response, str]:
        # ?seconds=0: the events kept so far, then the stream ends (no thread held open).
        r = self._send("GET", "/orders/events?seconds=0")
        _expect_ok(r, "order event on another instance")
        seen = [json.loads(e.data) for e in sse_events(r.text) if e.kind == "status"]
        order = self.ctx["order_id"]
        if not any(e.get("order_id") == order and e.get("status") == "placed" for e in seen):
            raise StepFailed(
                f"order event on another instance: order {order}'s 'placed' event is not in "
                f"this instance's stream ({len(seen)} events); it reached only the instance "
                "that raised it")
        # Whether 'confirmed' is in yet depends on the mail job's timing: not part of the page.
        self._page = f"{r.status_code} order {order} placed"
        return r, f"order {order} placed, heard here"

    def _buy_last_items(self) -> tuple[requests.Response, str]:
        r = self._send("GET", f"/product/{LAST_ITEMS}")
        _expect_ok(r, "buy the last items")
        left = int(_marker_attr(r.text, "data-stock") or 0)
        self.ctx["left"] = left
        if left == 0:
            return r, "already sold out (an earlier journey bought them)"
        r = self._send("POST", "/cart/add", data={"product_id": LAST_ITEMS, "quantity": left})
        _expect_redirect(r, "/cart", "buy the last items")
        r = self._send("POST", "/checkout")
        if r.status_code == 409:
            raise StepFailed(f"buy the last items: {_describe(r)}; the page said {left} left")
        _expect_redirect(r, "/orders/", "buy the last items")
        return r, f"the last {left} bought"

    def _sold_out(self) -> tuple[requests.Response, str]:
        r = self._send("GET", f"/product/{LAST_ITEMS}")
        _expect_ok(r, "sold out")
        left = _marker_attr(r.text, "data-stock")
        if left != "0":
            raise StepFailed(f"sold out: the page says {left} left after the last were bought")
        return r, "sold out"

    def _order_confirmed(self) -> tuple[requests.Response, str]:
        deadline = time.monotonic() + self.confirm_timeout
        while True:
            r = self._send("GET", f"/orders/{self.ctx['order_id']}")
            _expect_ok(r, "order confirmed")
            state = _marker(r.text, "confirmation")
            if state == "sent":
                return r, "confirmation e-mail sent"
            if time.monotonic() > deadline:
                raise StepFailed(
                    f"order confirmed: the confirmation e-mail is still {state!r} after "
                    f"{self.confirm_timeout:.0f} s"
                )
            time.sleep(0.2)

    def _order_listed(self) -> tuple[requests.Response, str]:
        r = self._send("GET", "/account")
        _expect_ok(r, "order listed")
        if f'data-order="{self.ctx["order_id"]}"' not in r.text:
            raise StepFailed(f"order listed: order {self.ctx['order_id']} is not on the account")
        return r, f"order {self.ctx['order_id']} listed"

    def _logout(self) -> tuple[requests.Response, str]:
        r = self._send("POST", "/logout")
        _expect_redirect(r, "/", "log out")
        return r, "signed out"

    def _account_after_logout(self) -> tuple[requests.Response, str]:
        r = self._send("GET", "/account")
        location = r.headers.get("Location", "")
        if r.status_code != 302 or not location.startswith("/login"):
            raise StepFailed(f"account after log out: expected the login page, got {_describe(r)}")
        return r, "asks for login"

    # --- running --------------------------------------------------------------------------

    def run(
        self,
        until: str | int | None = None,
        *,
        before_step: Callable[[int, str], None] | None = None,
        on_step: Callable[[StepResult], None] | None = None,
    ) -> JourneyResult:
        """Run the pending steps, up to and including ``until`` (a step name or count).

        ``before_step(number, name)`` is called before each request (the kill test uses it);
        ``on_step(result)`` after each (the CLI's progress uses it). Stops at the first failure.
        """
        stop = len(self.steps)
        if isinstance(until, int):
            stop = until
        elif until is not None:
            names = self.step_names()
            if until not in names:
                raise UsageError(f"no journey step {until!r}: choose one of {', '.join(names)}")
            stop = names.index(until) + 1
        while self.position < stop and (not self.results or self.results[-1].ok):
            step = self.steps[self.position]
            number = self.position + 1
            if before_step:
                before_step(number, step.name)
            started = time.monotonic()
            result = StepResult(number, step.name, step.method, step.path, ok=False)
            self._last, self._last_response = (None, 0), None
            self._page: str | None = None  # a step whose answer depends on timing says what counts
            try:
                _, result.detail = step.run(self)
                result.ok = True
            except (StepFailed, NoInstanceAnswers) as exc:
                result.detail = str(exc)
            except requests.RequestException as exc:
                result.detail = f"{step.name}: {type(exc).__name__}: {exc}"
            result.url, result.retries = self._last
            if self._last_response is not None:
                result.status = self._last_response.status_code
                result.instance = self._last_response.headers.get("X-Instance")
                result.page = self._page or normalize(self._last_response)
            result.seconds = round(time.monotonic() - started, 4)
            self.results.append(result)
            if on_step:
                on_step(result)
        return self.result()

    def result(self) -> JourneyResult:
        finished = self.position == len(self.steps) and all(s.ok for s in self.results)
        return JourneyResult(
            urls=list(self.urls),
            user=self.user,
            ok=all(s.ok for s in self.results),
            steps=list(self.results),
            seconds=round(time.monotonic() - self.started, 3),
            finished=finished,
        )


def _marker_attr(text: str, attribute: str) -> str | None:
    found = re.search(rf'{attribute}="([^"]*)"', text)
    return found.group(1) if found else None


def _chunk_step(n: int) -> Callable[[Journey], tuple[requests.Response, str]]:
    return lambda j: j._send_chunk(n)


def run_journey(urls: list[str], **options: Any) -> JourneyResult:
    """Run the whole journey once against ``urls``; see ``Journey`` for the options."""
    before_step = options.pop("before_step", None)
    on_step = options.pop("on_step", None)
    return Journey(urls, **options).run(before_step=before_step, on_step=on_step)


def preflight(urls: list[str], timeout: float = 3.0) -> list[str]:
    """The URLs whose ``/healthz`` answers; ConnectionFailure when none does."""
    from migrate.errors import ConnectionFailure

    client = RoundRobin(urls)
    alive = []
    for url in client.urls:
        try:
            requests.get(url + "/healthz", timeout=timeout)
            alive.append(url)
        except requests.RequestException:
            continue
    if not alive:
        raise ConnectionFailure(
            f"no instance answers at {', '.join(client.urls)}: start them first, "
            "e.g. `migrate cluster up stateless --instances 2`"
        )
    return alive
