"""Stock: the product page shows what is left, an order for more is a clear 409 that takes
nothing, and many buyers of the last items on two instances: the before-shop (check, then write,
under a per-process lock) sells more than it has, the after-shop (one conditional UPDATE)
exactly what it has."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from werkzeug.security import generate_password_hash

from migrate.harness.rush import last_items_rush

APRON = 6  # the seed's product with the fewest left (3)
MANY = 1  # the seed's Espresso cup: plenty left


def sql(url: str, statement: str, **params) -> list[tuple]:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(statement), params)
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()


def set_stock(url: str, product_id: int, stock: int) -> None:
    sql(url, "UPDATE products SET stock = :s WHERE id = :i", s=stock, i=product_id)


def stock(url: str, product_id: int) -> int:
    return sql(url, "SELECT stock FROM products WHERE id = :i", i=product_id)[0][0]


def sold(url: str, product_id: int) -> int:
    """How many of a product the orders hold (what the shop promised to ship)."""
    rows = sql(url, "SELECT COALESCE(SUM(quantity), 0) FROM order_items WHERE product_id = :i",
               i=product_id)
    return int(rows[0][0])


def shown_stock(client, product_id: int) -> str:
    page = client.get(f"/product/{product_id}").get_data(as_text=True)
    return page.split('id="stock">', 1)[1].split("<", 1)[0]


# --- one instance, Flask's test client: both shops --------------------------------------------

def test_the_product_page_shows_what_is_left(app, client):
    url = app.config["DATABASE_URL"]
    assert shown_stock(client, APRON) == "3 left"
    set_stock(url, APRON, 0)
    page = client.get(f"/product/{APRON}").get_data(as_text=True)
    assert shown_stock(client, APRON) == "Sold out" and "<button disabled>" in page


def test_buying_more_than_is_left_is_a_409_that_takes_nothing(app, client, auth):
    url = app.config["DATABASE_URL"]
    auth.login()
    client.post("/cart/add", data={"product_id": MANY, "quantity": 2})
    client.post("/cart/add", data={"product_id": APRON, "quantity": 4})
    before = stock(url, MANY)

    page = client.post("/checkout")
    assert page.status_code == 409
    message = page.get_data(as_text=True).split('id="error">', 1)[1].split("<", 1)[0]
    assert message == ("Not enough stock: only 3 of Barista apron left and your cart asks for "
                       "4; your order was not placed and nothing was charged: remove it from "
                       "your cart (or add fewer) and check out again.")
    # All or nothing: the cup, which was there, was not taken either; no order; the cart stays.
    assert (stock(url, MANY), stock(url, APRON), sold(url, MANY)) == (before, 3, 0)
    assert 'data-product="6" data-quantity="4"' in client.get("/cart").get_data(as_text=True)

    as_json = client.post("/checkout", headers={"Accept": "application/json"})
    assert as_json.status_code == 409 and as_json.json["available"] == 3
    assert (as_json.json["product_id"], as_json.json["requested"]) == (APRON, 4)
    assert "Barista apron" in as_json.json["error"]

    # The way out the message names: take the apron out, add fewer, check out.
    assert client.post("/cart/remove", data={"product_id": APRON}).status_code == 302
    assert 'data-product="6"' not in client.get("/cart").get_data(as_text=True)
    client.post("/cart/add", data={"product_id": APRON, "quantity": 3})
    assert client.post("/checkout").status_code == 302
    assert (stock(url, APRON), sold(url, APRON), sold(url, MANY)) == (0, 3, 2)
    assert client.post("/cart/remove", data={"product_id": "x"}).status_code == 400


def test_the_last_items_can_be_bought_and_then_it_is_sold_out(app, client, auth):
    url = app.config["DATABASE_URL"]
    auth.login()
    client.post("/cart/add", data={"product_id": APRON, "quantity": 3})
    assert client.post("/checkout").status_code == 302
    assert (stock(url, APRON), sold(url, APRON)) == (0, 3)
    assert shown_stock(client, APRON) == "Sold out"
    client.post("/cart/add", data={"product_id": APRON, "quantity": 1})
    sold_out = client.post("/checkout")
    assert sold_out.status_code == 409 and b"Barista apron is sold out" in sold_out.data


# --- two real instances, many buyers at once ------------------------------------------------

LAST = 10  # items left
BUYERS = 30  # each wants one; half on each instance
PASSWORD = "buyer-password"


def buyers(url: str, count: int) -> list[str]:
    """``count`` users, each with one of the last items in a cart of their own."""
    digest = generate_password_hash(PASSWORD)  # one hash for all: scrypt is slow on purpose
    names = [f"buyer{n:02d}" for n in range(count)]
    for name in names:
        sql(url, "INSERT INTO users (username, password_hash) VALUES (:u, :h)", u=name, h=digest)
    return names


@pytest.mark.slow
@pytest.mark.parametrize("shop", ["stateful", "stateless"])
def test_many_buyers_of_the_last_items_on_two_instances(start_cluster, shop):
    cluster = start_cluster(shop, 2)
    url = cluster.env["DATABASE_URL"]
    # Each buyer logs in and fills a cart on their instance, then all check out at once: the
    # same rush the cut-over's "items oversold" counter comes from.
    result = last_items_rush(cluster.urls, url, buyers(url, BUYERS), stock=LAST,
                             product=APRON, password=PASSWORD)

    assert (result.failed, result.bought + result.sold_out) == (0, BUYERS)  # never a 500
    assert result.bought == sold(url, APRON) and stock(url, APRON) >= 0
    if shop == "stateful":
        # The trap: each instance's lock keeps only its own buyers apart. Both read the same
        # stock and write their own new level: more orders than items, a lost update.
        assert result.oversold > 0, f"sold {result.bought} of {LAST}: no lost update this time"
    else:
        assert (result.bought, result.oversold, stock(url, APRON)) == (LAST, 0, 0)
