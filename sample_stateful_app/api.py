"""The JSON API for non-browser clients (``/api/...``), identified by a token in the request.

- ``POST /api/token`` ``{"username", "password"}`` -> ``{"access_token", "token_type":
  "Bearer", "expires_in"}`` (seconds); the password is checked as the login page checks it.
- With ``Authorization: Bearer <access_token>``: ``GET /api/me``, ``GET /api/cart``,
  ``POST /api/cart`` ``{"product_id", "quantity"}`` (adds, answers the cart), ``POST
  /api/logout`` (the token stops working).
- A missing, malformed, unknown, revoked or expired token: 401 with a one-line JSON reason,
  ``{"error": "..."}``, that says what to do.

Here the token is an opaque random string that this process looks up in its memory.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

from flask import Blueprint, abort, current_app, request
from sqlalchemy import select
from werkzeug.exceptions import HTTPException
from werkzeug.security import check_password_hash

from .auth import dummy_password_hash
from .db import Product, User, get_db

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.errorhandler(HTTPException)
def json_error(error: HTTPException):
    """The API speaks JSON, errors included: one line that says what to do."""
    headers = {"WWW-Authenticate": 'Bearer realm="api"'} if error.code == 401 else {}
    return {"error": error.description}, error.code, headers


def unauthorized(reason: str):
    abort(401, reason)


def bearer_token() -> str:
    """The token of ``Authorization: Bearer <token>``, or a 401 that says what is wrong."""
    header = request.headers.get("Authorization")
    if header is None:
        unauthorized("missing Authorization header: send 'Authorization: Bearer <token>' "
                     "with a token from POST /api/token")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip() or " " in token.strip():
        unauthorized("malformed Authorization header: send 'Authorization: Bearer <token>'")
    return token.strip()


def json_body() -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        abort(400, "send a JSON object with Content-Type: application/json")
    return body


def check_password(username: object, password: object) -> User | None:
    """The user whose password this is, checked as the login page checks it, else None."""
    if not isinstance(username, str) or not isinstance(password, str):
        return None
    user = get_db().scalar(select(User).where(User.username == username))
    # An unknown user costs a hash check too: the time taken says nothing about user names.
    stored = user.password_hash if user is not None else dummy_password_hash()
    return user if check_password_hash(stored, password) and user is not None else None


# --- where the tokens and API carts live: this process's memory ----------------------------

# Another instance has never heard of these tokens, and a restart forgets them all.
TOKENS: dict[str, tuple[int, float]] = {}  # token -> (user id, expires at)
CARTS: dict[int, dict[int, int]] = {}  # user id -> {product id: quantity}


@bp.record_once
def offer_tokens_to_the_bridge(state) -> None:
    # The migration window: MigrationBridge exports the live tokens (hashed) to Redis.
    state.app.extensions["migrate_tokens"] = live_tokens
    state.app.extensions["migrate_hashes"] = live_carts


def live_tokens() -> Iterator[tuple[str, int, float]]:
    """(token, user id, expires at) of every token still good."""
    now = time.time()
    for token, (user_id, expires) in list(TOKENS.items()):
        if expires > now:
            yield token, user_id, expires


def live_carts() -> Iterator[tuple[str, dict[str, int]]]:
    """Every API cart, as the after-shop's Redis hash ``cart:<user id>`` holds it."""
    for user_id, cart in list(CARTS.items()):
        yield f"cart:{user_id}", {str(p): q for p, q in list(cart.items())}


def issue(user_id: int) -> dict:
    """A new token for ``user_id``, remembered here until it expires."""
    lifetime = current_app.config["API_TOKEN_LIFETIME"]
    now = time.time()
    for token, (_, expires) in list(TOKENS.items()):  # forget the expired ones
        if expires <= now:
            TOKENS.pop(token, None)
    token = secrets.token_urlsafe(32)
    TOKENS[token] = (user_id, now + lifetime)
    bridge = current_app.extensions.get("migrate_bridge")
    if bridge is not None:  # the migration window: Redis learns of it at once
        bridge.token_saved(token, user_id, now + lifetime)
    return {"access_token": token, "token_type": "Bearer", "expires_in": lifetime}


def authenticate(with_cart: bool = False) -> tuple[int, dict[int, int] | None]:
    """The user id the request's token stands for (and their cart), or a 401."""
    entry = TOKENS.get(bearer_token())
    if entry is None:
        unauthorized("unknown or revoked token: ask POST /api/token for a new one")
    user_id, expires = entry
    if expires <= time.time():
        unauthorized("token expired: ask POST /api/token for a new one")
    return user_id, (dict(CARTS.get(user_id, {})) if with_cart else None)


def revoke() -> None:
    """Forget the request's token: it stops working at once (on this instance)."""
    token = bearer_token()
    _, expires = TOKENS.pop(token, (None, 0.0))
    bridge = current_app.extensions.get("migrate_bridge")
    if bridge is not None and expires:  # the migration window: the after-shop refuses it too
        bridge.token_revoked(token, expires)


def add_to_cart(user_id: int, product_id: int, quantity: int) -> dict[int, int]:
    cart = CARTS.setdefault(user_id, {})
    cart[product_id] = cart.get(product_id, 0) + quantity
    bridge = current_app.extensions.get("migrate_bridge")
    if bridge is not None:  # the migration window: the after-shop's cart gets it at once
        bridge.hash_incremented(f"cart:{user_id}", str(product_id), cart[product_id])
    return dict(cart)


# --- the routes: the same in both shops ------------------------------------------------------


@bp.post("/token")
def token():
    body = json_body()
    user = check_password(body.get("username"), body.get("password"))
    if user is None:
        unauthorized("wrong user name or password")
    return issue(user.id), 201


@bp.get("/me")
def me():
    user_id, _ = authenticate()
    user = get_db().get(User, user_id)
    if user is None:
        unauthorized("this token's user no longer exists: ask POST /api/token")
    return {"id": user.id, "username": user.username}


@bp.get("/cart")
def cart():
    _, items = authenticate(with_cart=True)
    return cart_json(items or {})


@bp.post("/cart")
def cart_add():
    user_id, _ = authenticate()
    body = json_body()
    product_id, quantity = body.get("product_id"), body.get("quantity", 1)
    if type(product_id) is not int or type(quantity) is not int:
        abort(400, 'send {"product_id": <whole number>, "quantity": <whole number>}')
    if not 1 <= quantity <= 99:
        abort(400, "quantity must be between 1 and 99")
    if get_db().get(Product, product_id) is None:
        abort(404, f"no product {product_id}")
    return cart_json(add_to_cart(user_id, product_id, quantity))


@bp.post("/logout")
def logout():
    authenticate()
    revoke()
    return {"logged_out": True}


def cart_json(items: dict[int, int]) -> dict:
    """The cart as the API shows it: lines with name and price, and the total."""
    products = {p.id: p for p in get_db().scalars(select(Product).where(Product.id.in_(items)))}
    lines = [{"product_id": i, "name": products[i].name, "quantity": q,
              "price_cents": products[i].price_cents}
             for i, q in sorted(items.items()) if i in products]
    return {"items": lines, "total_cents": sum(x["price_cents"] * x["quantity"] for x in lines)}
