"""The JSON API for non-browser clients (``/api/...``), identified by a token in the request.

- ``POST /api/token`` ``{"username", "password"}`` -> ``{"access_token", "token_type":
  "Bearer", "expires_in"}`` (seconds); the password is checked as the login page checks it.
- With ``Authorization: Bearer <access_token>``: ``GET /api/me``, ``GET /api/cart``,
  ``POST /api/cart`` ``{"product_id", "quantity"}`` (adds, answers the cart), ``POST
  /api/logout`` (the token stops working).
- A missing, malformed, unknown, revoked or expired token: 401 with a one-line JSON reason,
  ``{"error": "..."}``, that says what to do.

Here the tokens are signed JWTs (tokens.py) that any instance verifies with no lookup, so
an access token is short-lived: POST /api/token also answers ``refresh_token`` and
``refresh_expires_in``, and ``POST /api/token/refresh`` ``{"refresh_token"}`` answers a new
access token. Logout denylists the login in Redis, so the tokens stop working everywhere.

Migrated clients: a token the before-shop issued (opaque, no dots) that the migration copied
to Redis (hashed, ``migrate.sessions.tokens``) works until it expires; every answer to it
carries ``X-Token-Upgrade: POST /api/token/refresh``, and ``POST /api/token/refresh``
``{"refresh_token": <that token>}`` answers a signed pair for the rest of its lifetime (the
same JSON as POST /api/token). No API client is logged out by the migration.
"""

from __future__ import annotations

import time

from flask import Blueprint, abort, current_app, g, request
from sqlalchemy import select
from werkzeug.exceptions import HTTPException
from werkzeug.security import check_password_hash

from migrate.sessions.tokens import denylist_key, is_revoked, lookup
from migrate.sessions.tokens import revoke as revoke_login

from . import stores, tokens
from .auth import dummy_password_hash
from .db import Product, User, get_db
from .stores import redis_client

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


# --- where the tokens and API carts live: signed tokens, carts in Redis ----------------------

# Nothing in this process: a signed token says whom it is for, and the API cart is the Redis
# hash the shop's pages use, so any instance answers any client.


def store_unavailable(error: Exception):
    return {"error": "the shop's storage is unreachable: retry shortly"}, 503, {"Retry-After": "2"}


for _unavailable in stores.UNAVAILABLE:  # JSON here too, not the shop's HTML page
    bp.register_error_handler(_unavailable, store_unavailable)


def issue(user_id: int) -> dict:
    """A new login for ``user_id``: a signed access token and refresh token."""
    now = time.time()
    return tokens.pair(user_id, tokens.new_sid(), now + current_app.config["API_TOKEN_LIFETIME"],
                       now)


def authenticate(with_cart: bool = False) -> tuple[int, dict[int, int] | None]:
    """The user id the request's token stands for (and their cart), or a 401.

    A valid access token costs one Redis EXISTS, the denylist (was this login logged out?),
    and nothing else: no token or session lookup. When the route needs the cart too, both go
    in one pipeline: one round trip, as a session read would cost."""
    token = bearer_token()
    if "." not in token:
        return migrated(token, with_cart)
    try:
        claims = tokens.verify(token, "access")
    except tokens.TokenError as exc:
        unauthorized(str(exc))
    pipe = redis_client().pipeline(transaction=False)
    pipe.exists(denylist_key(claims.sid))
    if with_cart:
        pipe.hgetall(f"cart:{claims.user_id}")
    replies = pipe.execute()
    if replies[0]:
        unauthorized("token revoked (logged out): ask POST /api/token for a new one")
    g.api_login = (claims.sid, claims.login_expires)
    return claims.user_id, (as_cart(replies[1]) if with_cart else None)


def migrated(token: str, with_cart: bool) -> tuple[int, dict[int, int] | None]:
    """A token the before-shop issued, migrated to Redis: good until it would have expired."""
    found = lookup(redis_client(), token)
    if found is None or not found.user_id.isdigit():
        unauthorized("unknown or revoked token: ask POST /api/token for a new one")
    g.api_login = (found.digest, time.time() + found.seconds_left)
    g.api_token_upgrade = True
    user_id = int(found.user_id)
    return user_id, (as_cart(redis_client().hgetall(f"cart:{user_id}")) if with_cart else None)


@bp.after_request
def offer_upgrade(response):
    if g.get("api_token_upgrade"):  # the client should trade its old token for a signed pair
        response.headers["X-Token-Upgrade"] = "POST /api/token/refresh"
    return response


def revoke() -> None:
    """Denylist the request's login until it would have ended: every instance refuses its
    tokens from the next request on (one Redis round trip)."""
    sid, login_expires = g.api_login
    revoke_login(redis_client(), sid, login_expires - time.time())


def add_to_cart(user_id: int, product_id: int, quantity: int) -> dict[int, int]:
    # HINCRBY is atomic: two instances adding at once both count.
    pipe = redis_client().pipeline(transaction=False)
    pipe.hincrby(f"cart:{user_id}", str(product_id), quantity)
    pipe.hgetall(f"cart:{user_id}")
    return as_cart(pipe.execute()[1])


def as_cart(stored: dict) -> dict[int, int]:
    return {int(k): int(v) for k, v in stored.items()}


@bp.post("/token/refresh")
def token_refresh():
    """A new access token for a refresh token; a signed pair for a migrated token."""
    given = json_body().get("refresh_token")
    if not isinstance(given, str) or not given:
        abort(400, 'send {"refresh_token": "<the refresh_token POST /api/token gave you>"}')
    now = time.time()
    if "." not in given:  # the before-shop's token: the upgrade, for the rest of its life
        found = lookup(redis_client(), given)
        if found is None or not found.user_id.isdigit():
            unauthorized("unknown or revoked token: log in again with POST /api/token")
        return tokens.pair(int(found.user_id), found.digest, now + found.seconds_left, now)
    try:
        claims = tokens.verify(given, "refresh")
    except tokens.TokenError as exc:
        unauthorized(str(exc))
    if is_revoked(redis_client(), claims.sid):
        unauthorized("token revoked (logged out): log in again with POST /api/token")
    access = tokens.mint(claims.user_id, "access", claims.sid, claims.login_expires, now)
    return {"access_token": access, "token_type": "Bearer",
            "expires_in": current_app.config["API_ACCESS_LIFETIME"]}


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
