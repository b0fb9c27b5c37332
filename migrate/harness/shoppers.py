"""Simulated shoppers: each logs in once, then shops without pause and counts what it loses.

A user notices being logged out, cart items gone, their avatar gone or different, and a request
that failed after the client's retry of a refused connection; as an API client, its token
refused or its API cart's items gone; as a reader of its orders' live updates, an order whose
event never came. Each ``Shopper`` counts exactly those in its ``Tally``. The ``Router`` plays
the balancer: sticky before the cut-over, round-robin after.
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, field

import requests

from migrate.harness.http import cart_lines, error_cause, sse_events

PASSWORD = "shopper-pass"
HOLD_SECONDS = 30.0  # how long a user's request waits for a refused instance to come back
PRODUCTS = 5
# What each user counts, named as in CutoverResult, which sums them.
COUNTS = ("requests", "failed_requests", "logouts", "lost_cart_items", "lost_files",
          "api_logouts", "events_missed", "rounds")
CHECKOUT_EVERY = 4  # rounds between check-outs (each raises an order event)
EVENTS_EVERY = 8  # rounds between reads of the live updates: an order waits a while to be heard
API_CART_EVERY = 2  # rounds between the API client's cart adds (its cart is checked every round)


@dataclass
class Tally:
    """What one simulated user noticed."""

    requests: int = 0
    failed_requests: int = 0
    logouts: int = 0
    lost_cart_items: int = 0
    lost_files: int = 0
    api_logouts: int = 0  # the API answered 401 to a token it had issued
    events_missed: int = 0  # orders whose 'placed' event never reached the user's stream
    rounds: int = 0
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        if len(self.problems) < 5:
            self.problems.append(text)


class Router:
    """Which instance a user's request goes to: sticky before the cut-over, round-robin after."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = list(urls)
        self.sticky = True
        self._turn = 0
        self._lock = threading.Lock()

    def pick(self, user: int, refused: str | None = None) -> str:
        """The instance for ``user``'s request; ``refused``: the one that just refused it."""
        if self.sticky:
            # A sticky balancer holds a user's request until their instance answers again.
            return self.urls[user % len(self.urls)]
        if refused in self.urls:
            # A health-checked balancer sends the retry to another instance.
            return self.urls[(self.urls.index(refused) + 1) % len(self.urls)]
        with self._lock:
            self._turn += 1
            return self.urls[self._turn % len(self.urls)]


def _refused(exc: requests.ConnectionError) -> bool:
    """Nothing reached the app: connection refused, or reset before any byte of a reply."""
    text = repr(exc)
    return any(s in text for s in ("NewConnectionError", "Connection refused",
                                   "ConnectionResetError", "RemoteDisconnected"))


class Shopper(threading.Thread):
    """One simulated user: logs in once, then adds to the cart, checks it, changes the avatar."""

    def __init__(self, index: int, username: str, router: Router, stop: threading.Event) -> None:
        super().__init__(name=f"shopper-{index}", daemon=True)
        self.index = index
        self.username = username
        self.router = router
        self.stop_event = stop
        self.http = requests.Session()
        self.tally = Tally()
        self.cart: dict[int, int] = {}
        self.avatar: bytes | None = None
        self.rng = random.Random(index)
        self.error: BaseException | None = None
        self._recovering = False
        self.token: str | None = None  # the user's API token
        self.api_cart: dict[int, int] = {}  # what the API client put in its cart
        self.unheard: set[int] = set()  # orders placed whose event the stream has not brought
        self.last_event_id: str | None = None

    # --- requests ------------------------------------------------------------------------

    def send(self, method: str, path: str, **kwargs: object) -> requests.Response | None:
        """One request, retried while its instance refuses; None (counted) if it still fails."""
        deadline = time.monotonic() + HOLD_SECONDS
        refused: str | None = None
        while True:
            base = self.router.pick(self.index, refused)
            try:
                response = self.http.request(method, base + path, allow_redirects=False,
                                             timeout=30, **kwargs)  # type: ignore[arg-type]
            except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                # A balancer retries an idempotent request on any connection error, others
                # only when nothing reached the app.
                if (method == "GET" or _refused(exc)) and time.monotonic() < deadline:
                    refused = base
                    time.sleep(0.05)
                    continue
                self.fail(f"{method} {path} on {base}: {error_cause(exc)}")
                return None
            self.tally.requests += 1
            if response.status_code >= 500:
                self.fail(f"{method} {path}: HTTP {response.status_code} from "
                          f"{response.headers.get('X-Instance', base)}")
                return None
            return response

    def fail(self, text: str) -> None:
        self.tally.requests += 1
        self.tally.failed_requests += 1
        self.tally.problem(text)

    def logged_out(self, response: requests.Response) -> bool:
        """A redirect to the login page: the user lost their session. Log back in."""
        if response.status_code == 302 and "/login" in response.headers.get("Location", ""):
            self.tally.logouts += 1
            self.tally.problem(f"logged out on {response.headers.get('X-Instance', '?')}")
            if self.login() and not self._recovering:
                # Count what came back after signing in again, once, before anything changes it.
                self._recovering = True
                try:
                    self.check_cart()
                    self.check_avatar()
                finally:
                    self._recovering = False
            return True
        return False

    # --- the user's actions ----------------------------------------------------------------

    def login(self) -> bool:
        r = self.send("POST", "/login", data={"username": self.username, "password": PASSWORD})
        if r is None:
            return False
        if r.status_code != 302:
            self.fail(f"log in: HTTP {r.status_code}")
            return False
        return True

    def api_login(self) -> None:
        r = self.send("POST", "/api/token", json={"username": self.username, "password": PASSWORD})
        if r is not None and r.status_code == 201:
            self.token = r.json()["access_token"]
        elif r is not None:
            self.fail(f"API token: HTTP {r.status_code}")

    def check_api(self) -> None:
        """The API client's call; a 401 means it was logged out. A token the shop asks to trade
        (``X-Token-Upgrade``: a migrated opaque one) is traded for a JWT, as a client would."""
        if self.token is None:
            return self.api_login()
        r = self.send("GET", "/api/me", headers={"Authorization": f"Bearer {self.token}"})
        if r is None:
            return None
        if r.status_code == 401:
            self.tally.api_logouts += 1
            self.tally.problem(f"API token refused on {r.headers.get('X-Instance', '?')}")
            self.token = None
            return self.api_login()
        if r.status_code != 200:
            return self.fail(f"API: HTTP {r.status_code}")
        if r.headers.get("X-Token-Upgrade"):
            traded = self.send("POST", "/api/token/refresh", json={"refresh_token": self.token})
            if traded is not None and traded.status_code in (200, 201):
                self.token = traded.json()["access_token"]
        return self.check_api_cart()

    def check_api_cart(self) -> None:
        """Every few rounds an API cart add; every round the API cart, each item still there?

        The after-shop keeps one cart per user (the pages' and the API's): a check-out, the
        round before this look, buys the API's items too, so that look only takes the cart as
        it is."""
        auth = {"Authorization": f"Bearer {self.token}"}
        if self.tally.rounds % API_CART_EVERY == 0:
            product = 1 + self.rng.randrange(PRODUCTS)
            r = self.send("POST", "/api/cart", headers=auth,
                          json={"product_id": product, "quantity": 1})
            if r is None or r.status_code == 401:  # refused: /api/me counts it next round
                return
            if r.status_code != 200:
                return self.fail(f"API cart add: HTTP {r.status_code}")
            self.api_cart[product] = self.api_cart.get(product, 0) + 1
        r = self.send("GET", "/api/cart", headers=auth)
        if r is None or r.status_code == 401:
            return
        if r.status_code != 200:
            return self.fail(f"API cart: HTTP {r.status_code}")
        shown = {line["product_id"]: line["quantity"] for line in r.json()["items"]}
        checked_out = (self.tally.rounds - 1) % CHECKOUT_EVERY == 1
        missing = 0 if checked_out else sum(max(0, n - shown.get(p, 0))
                                            for p, n in self.api_cart.items())
        if missing:
            self.tally.lost_cart_items += missing
            self.tally.problem(f"{missing} API cart items missing on "
                               f"{r.headers.get('X-Instance', '?')}")
        self.api_cart = shown  # count a loss once
        return None

    def checkout(self) -> None:
        if not self.cart:
            return
        r = self.send("POST", "/checkout")
        if r is None or self.logged_out(r):
            return
        if r.status_code == 409:
            return  # sold out: the user sees why; not a loss
        if r.status_code != 302 or "/orders/" not in r.headers.get("Location", ""):
            self.fail(f"check out: HTTP {r.status_code}")
            return
        self.unheard.add(int(r.headers["Location"].rsplit("/", 1)[1]))
        self.cart = {}

    def check_events(self, last_look: bool = False) -> None:
        """Read the live updates kept since the last one heard (``?seconds=0``: no waiting)."""
        headers = {"Last-Event-ID": self.last_event_id} if self.last_event_id else {}
        r = self.send("GET", "/orders/events?seconds=0", headers=headers)
        if r is None or self.logged_out(r):
            return
        if r.status_code != 200:
            self.fail(f"order events: HTTP {r.status_code}")
            return
        for event in sse_events(r.text):
            if event.kind == "status":
                self.unheard.discard(json.loads(event.data).get("order_id"))
                self.last_event_id = event.id or self.last_event_id
        if last_look and self.unheard:
            self.tally.events_missed += len(self.unheard)
            self.tally.problem(f"{len(self.unheard)} orders' events never heard")

    def add(self) -> None:
        product = 1 + self.rng.randrange(PRODUCTS)
        r = self.send("POST", "/cart/add", data={"product_id": product, "quantity": 1})
        if r is None or self.logged_out(r):
            return
        if r.status_code != 302:
            self.fail(f"add to cart: HTTP {r.status_code}")
            return
        self.cart[product] = self.cart.get(product, 0) + 1

    def check_cart(self) -> None:
        r = self.send("GET", "/cart")
        if r is None or self.logged_out(r):
            return
        if r.status_code != 200:
            self.fail(f"view cart: HTTP {r.status_code}")
            return
        shown = cart_lines(r.text)
        missing = sum(max(0, n - shown.get(p, 0)) for p, n in self.cart.items())
        if missing:
            self.tally.lost_cart_items += missing
            self.tally.problem(f"{missing} cart items missing on "
                               f"{r.headers.get('X-Instance', '?')}")
        self.cart = shown  # count a loss once

    def upload_avatar(self) -> None:
        data = b"\x89PNG\r\n\x1a\n" + self.rng.randbytes(2048)
        name = f"me-{self.tally.rounds}.png"
        r = self.send("POST", "/account/avatar", files={"avatar": (name, data, "image/png")})
        if r is None or self.logged_out(r):
            return
        if r.status_code != 302:
            self.fail(f"upload avatar: HTTP {r.status_code}")
            return
        self.avatar = data

    def check_avatar(self) -> None:
        if self.avatar is None:
            return
        r = self.send("GET", "/account/avatar")
        if r is None or self.logged_out(r):  # (signing in again checks the avatar)
            return
        if r.status_code != 200 or r.content != self.avatar:
            self.tally.lost_files += 1
            self.tally.problem(f"avatar {'differs' if r.status_code == 200 else 'missing'} on "
                               f"{r.headers.get('X-Instance', '?')} (HTTP {r.status_code})")
            self.avatar = None  # count a loss once; the next upload starts afresh

    def one_round(self) -> None:
        self.add()
        self.check_cart()
        if self.tally.rounds % 4 == 0:
            self.upload_avatar()
        self.check_avatar()
        self.check_api()
        if self.tally.rounds % CHECKOUT_EVERY == 1:
            self.checkout()
        if self.tally.rounds % EVENTS_EVERY == 0:
            self.check_events()
        self.tally.rounds += 1

    def run(self) -> None:
        try:
            if not self.login():
                return
            self.api_login()
            while not self.stop_event.is_set():
                self.one_round()
            self.check_cart()  # the last look: everything still there?
            self.check_avatar()
            self.check_events(last_look=True)
        except BaseException as exc:  # noqa: BLE001 - reported in the result, never lost
            self.error = exc
            self.tally.problem(f"{type(exc).__name__}: {exc}")


def create_shoppers(database_url: str, count: int) -> list[str]:
    """Add ``count`` shop users (the before schema) and return their names."""
    from sqlalchemy import select, update
    from sqlalchemy.orm import Session
    from werkzeug.security import generate_password_hash

    from sample_stateful_app.db import Product, User, init_db, make_engine

    init_db(database_url)
    names = [f"shopper{n:02d}" for n in range(1, count + 1)]
    engine = make_engine(database_url)
    digest = generate_password_hash(PASSWORD)  # one hash for all: scrypt is slow on purpose
    with Session(engine) as s, s.begin():
        have = set(s.scalars(select(User.username)))
        s.add_all(User(username=n, password_hash=digest) for n in names if n not in have)
        # Enough of what the users buy that a sold-out product is rare (the last-items rush
        # tests the scarce one on purpose).
        s.execute(update(Product).where(Product.id <= PRODUCTS).values(stock=1_000_000))
    engine.dispose()
    return names


def wait_for_rounds(shoppers: list[Shopper], rounds: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(s.tally.rounds >= rounds or not s.is_alive() for s in shoppers):
            return
        time.sleep(0.05)
