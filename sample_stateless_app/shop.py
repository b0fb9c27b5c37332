"""The catalog, product pages, the cart and check-out."""

from __future__ import annotations

import datetime as dt
import json
import re

from flask import Blueprint, Request, abort, g, redirect, render_template, request, session, url_for
from sqlalchemy import select

from migrate.sessions.interface import Read

from . import events
from .auth import current_user, login_required
from .db import Order, OrderItem, Product, get_db, take_stock
from .mail import queue_confirmation
from .stores import read, redis_client, write_later

bp = Blueprint("shop", __name__)

CATALOG_TTL = 30  # seconds a cached catalog stays fresh

# Counters and caches in Redis: every instance counts and caches in one place.


def catalog_rows() -> list[dict]:
    """The product list, cached for CATALOG_TTL seconds."""
    hit = read("GET", "cache:catalog")
    if hit is not None:
        return json.loads(hit)
    rows = [
        {"id": p.id, "name": p.name, "price_cents": p.price_cents}
        for p in get_db().scalars(select(Product).order_by(Product.id))
    ]
    write_later("set", "cache:catalog", json.dumps(rows), ex=CATALOG_TTL)
    return rows


def cart_key() -> str:
    return f"cart:{session['user_id']}"


def cart_items() -> dict[int, int]:
    """The signed-in user's cart: product id -> quantity."""
    # One Redis round trip per request, however often the page and the header ask.
    if "cart" not in g:
        g.cart = {int(k): int(v) for k, v in read("HGETALL", cart_key()).items()}
    return g.cart


def add_to_cart(product_id: int, quantity: int) -> None:
    # HINCRBY is atomic: two instances adding at once both count (no session rewrite race).
    redis_client().hincrby(cart_key(), str(product_id), quantity)
    g.pop("cart", None)


def remove_from_cart(product_id: int) -> None:
    redis_client().hdel(cart_key(), str(product_id))
    g.pop("cart", None)


def clear_cart() -> None:
    redis_client().delete(cart_key())
    g.pop("cart", None)


def view_count(product_id: int) -> int:
    """Count one more view of a product and return the total (as read, plus this view)."""
    # INCR keeps the total exact; it goes with the session's write, in the last round trip.
    write_later("incr", f"views:{product_id}")
    return int(read("GET", f"views:{product_id}") or 0) + 1


def prefetch(req: Request) -> list[Read]:
    """What a page with the header will read from Redis: read with the session, in the
    request's one round trip (migrate.sessions.interface); ``read`` takes it from there."""
    if req.method != "GET":
        return []
    reads = [Read("HGETALL", "cart:", field="user_id")]  # the header's cart count
    product_page = re.fullmatch(r"/product/(\d{1,9})", req.path, re.ASCII)
    if req.path == "/":
        reads.append(Read("GET", "cache:catalog"))
    elif product_page:
        reads.append(Read("GET", f"views:{int(product_page[1])}"))
    elif req.path not in ("/cart", "/account") and not req.path.startswith("/orders/"):
        return []
    return reads


@bp.app_context_processor
def nav():
    """The header shows who is signed in and how many items the cart holds."""
    if "user_id" not in session:
        return {"nav_user": None, "cart_count": 0}
    return {"nav_user": session.get("username"), "cart_count": sum(cart_items().values())}


@bp.get("/")
def catalog():
    recent_ids = session.get("recent", [])
    rows = catalog_rows()
    by_id = {row["id"]: row for row in rows}
    recent = [by_id[i] for i in recent_ids if i in by_id]
    return render_template("catalog.html", products=rows, recent=recent)


@bp.get("/product/<int:product_id>")
def product(product_id: int):
    item = get_db().get(Product, product_id)
    if item is None:
        abort(404, f"No product {product_id}.")
    views = view_count(product_id)
    recent = [product_id] + [i for i in session.get("recent", []) if i != product_id]
    session["recent"] = recent[:5]
    return render_template("product.html", product=item, views=views)


@bp.get("/cart")
@login_required
def cart():
    items = cart_items()
    products = {p.id: p for p in get_db().scalars(select(Product).where(Product.id.in_(items)))}
    lines = [(products[i], q) for i, q in sorted(items.items()) if i in products]
    total = sum(p.price_cents * q for p, q in lines)
    return render_template("cart.html", lines=lines, total=total)


@bp.post("/cart/add")
@login_required
def cart_add():
    try:
        product_id = int(request.form["product_id"])
        quantity = int(request.form.get("quantity", 1))
    except (KeyError, ValueError):
        abort(400, "Send product_id and a whole-number quantity.")
    if not 1 <= quantity <= 99:
        abort(400, "Quantity must be between 1 and 99.")
    if get_db().get(Product, product_id) is None:
        abort(404, f"No product {product_id}.")
    add_to_cart(product_id, quantity)
    return redirect(url_for("shop.cart"))


@bp.post("/cart/remove")
@login_required
def cart_remove():
    """Take a product out of the cart (all of it): the way out of a 409 for short stock."""
    try:
        product_id = int(request.form["product_id"])
    except (KeyError, ValueError):
        abort(400, "Send the product_id to remove.")
    remove_from_cart(product_id)
    return redirect(url_for("shop.cart"))


@bp.post("/checkout")
@login_required
def checkout():
    items = cart_items()
    if not items:
        abort(400, "Your cart is empty.")
    db = get_db()
    products = {p.id: p for p in db.scalars(select(Product).where(Product.id.in_(items)))}
    take_stock(db, items)  # all or nothing: a 409 (OutOfStock) when any item is short
    order = Order(
        user_id=current_user().id,
        created_at=dt.datetime.now(dt.UTC).replace(tzinfo=None),
        total_cents=sum(products[i].price_cents * q for i, q in items.items()),
    )
    db.add(order)
    db.flush()
    db.add_all(
        OrderItem(order_id=order.id, product_id=i, quantity=q, price_cents=products[i].price_cents)
        for i, q in items.items()
    )
    db.commit()
    clear_cart()
    events.publish(order.user_id, order.id, "placed")  # before the job that confirms it
    queue_confirmation(order.id)
    return redirect(url_for("shop.order", order_id=order.id))


@bp.get("/orders/<int:order_id>")
@login_required
def order(order_id: int):
    db = get_db()
    item = db.get(Order, order_id)
    if item is None or item.user_id != session["user_id"]:
        abort(404, f"No order {order_id}.")
    lines = db.execute(
        select(OrderItem, Product)
        .join(Product, Product.id == OrderItem.product_id)
        .where(OrderItem.order_id == order_id)
    ).all()
    return render_template("order.html", order=item, lines=lines)
