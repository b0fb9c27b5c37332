"""The shared stores this shop keeps its state in: one Redis and one S3 bucket."""

from __future__ import annotations

import os

import boto3
import botocore.exceptions
import redis
from botocore.config import Config
from flask import Flask, current_app

from migrate import redisurl
from migrate.sessions.interface import defer, take_prefetched

# Errors that mean "a shared store is unreachable right now" (a 503, not a bug).
UNAVAILABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ReadTimeoutError,
)


def init_app(app: Flask) -> None:
    """Create the clients once per process; every instance points at the same stores."""
    # A plain Redis, a Redis Cluster (a redis+cluster:// URL or REDIS_CLUSTER=1) or a Sentinel
    # set's primary (redis+sentinel://HOST:26379,.../SERVICE: it waits out a failover).
    cluster = str(app.config.get("REDIS_CLUSTER", os.environ.get("REDIS_CLUSTER", ""))) in (
        "1", "true")
    app.extensions["redis"] = redisurl.client(
        app.config["REDIS_URL"], cluster=cluster, socket_timeout=5, socket_connect_timeout=2
    )
    # A fresh boto3 session per app: boto3.client() reuses the default session, which keeps the
    # first credentials it ever found, even after the environment changes.
    app.extensions["s3"] = boto3.session.Session().client(
        "s3",
        endpoint_url=app.config["S3_ENDPOINT_URL"],
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=2,
            read_timeout=30,
        ),
    )


def redis_client(app: Flask | None = None) -> redis.Redis:
    return (app or current_app).extensions["redis"]


def s3_client():
    return current_app.extensions["s3"]


def bucket() -> str:
    return current_app.config["S3_BUCKET"]


# Atomic, so two instances adopting the same session at once add the cart only once. The marker
# key's hash tag puts it in the cart's slot, so this runs on a Redis Cluster too.
_ADOPT_CART = """
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then
  for i = 2, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
"""


def adopt_cart(session) -> None:
    """Move the cart a migrated before-shop session carries into ``cart:<user_id>``."""
    cart = session.pop("cart") or {}
    if session.get("user_id") is None or not cart:
        return
    key = f"cart:{session['user_id']}"
    args = [int(current_app.permanent_session_lifetime.total_seconds())]
    for product_id, quantity in cart.items():
        args += [str(product_id), int(quantity)]
    redis_client().eval(_ADOPT_CART, 2, key, f"{{{key}}}:adopted:{session.sid}", *args)
    take_prefetched("HGETALL", key)  # read with the session, before the adoption: stale now


# One round trip per request: the session interface reads what a page needs with the session
# (shop.prefetch names it); these take it from there, or ask Redis when it was not read.


def read(command: str, key: str):
    """``GET``/``HGETALL`` ``key``: the reply the session's round trip got, else from Redis."""
    found, reply = take_prefetched(command, key)
    return reply if found else getattr(redis_client(), command.lower())(key)


def write_later(method: str, *args, **kwargs) -> None:
    """A write whose reply the page does not need: sent with the session's write, at the end."""
    defer(method, *args, **kwargs)
