"""The last items: many users at once buy a product with only a few left; who got one.

Two instances that each check the stock under their own lock sell more than there is; shared
state (one conditional UPDATE) sells exactly what is left. ``oversold`` is what a shop owner
would notice: orders for items that did not exist.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import requests

from migrate.harness.journey import LAST_ITEMS
from migrate.harness.shoppers import PASSWORD


@dataclass
class RushResult:
    """How a rush on the last items ended."""

    stock: int  # how many were left when the rush began
    buyers: int
    bought: int = 0  # check-outs that placed an order
    sold_out: int = 0  # check-outs refused with a 409
    failed: int = 0  # anything else (a 5xx, no answer)
    stock_left: int = 0  # what the database says is left afterwards

    @property
    def oversold(self) -> int:
        return max(0, self.bought - self.stock)


def last_items_rush(urls: list[str], database_url: str, users: list[str], stock: int = 5,
                    product: int = LAST_ITEMS, password: str = PASSWORD,
                    timeout: float = 60.0) -> RushResult:
    """``stock`` of ``product`` left; each user logs in, puts one in the cart, and all check
    out at the same moment (a barrier), spread over ``urls``."""
    from sqlalchemy import select, update
    from sqlalchemy.orm import Session

    from sample_stateful_app.db import Product, make_engine

    engine = make_engine(database_url)
    with Session(engine) as s, s.begin():
        s.execute(update(Product).where(Product.id == product).values(stock=stock))
    result = RushResult(stock=stock, buyers=len(users))
    ready = threading.Barrier(len(users), timeout=timeout)
    lock = threading.Lock()

    def buy(index: int, name: str) -> None:
        # One instance per buyer, as a sticky balancer would (the before-shop's sessions stay
        # where they were made); a refused connection moves the buyer to the next instance.
        web, turn = requests.Session(), index

        def post(path: str, **data: object) -> requests.Response:
            nonlocal turn
            for _ in range(len(urls)):
                try:
                    return web.post(urls[turn % len(urls)] + path, data=data,
                                    allow_redirects=False, timeout=timeout)
                except requests.ConnectionError:
                    turn += 1
            raise requests.ConnectionError(f"no instance answered POST {path}")

        outcome = "failed"
        try:
            post("/login", username=name, password=password)
            ready_to_buy = post("/cart/add", product_id=product, quantity=1).status_code == 302
        except Exception:  # noqa: BLE001 - counted as failed, never raised
            ready_to_buy = False
        try:
            ready.wait()  # every buyer waits here, so all check out at once
            if ready_to_buy:
                r = post("/checkout")
                if r.status_code == 302 and "/orders/" in r.headers.get("Location", ""):
                    outcome = "bought"
                elif r.status_code == 409:
                    outcome = "sold_out"
        except Exception:  # noqa: BLE001 - counted as failed: the figures are the result
            outcome = "failed"
        finally:
            web.close()
        with lock:
            setattr(result, outcome, getattr(result, outcome) + 1)

    threads = [threading.Thread(target=buy, args=(i, n), daemon=True)
               for i, n in enumerate(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 5)
    with Session(engine) as s:
        result.stock_left = s.scalar(select(Product.stock).where(Product.id == product)) or 0
    engine.dispose()
    return result
