"""The login rate limit (Flask-Limiter): failed log-ins per client address and user name."""

from __future__ import annotations

import hashlib
import math
import os
import time

from flask import Flask, current_app, request
from flask_limiter import Limiter
from redis.cluster import RedisCluster

from migrate import redisurl

from .stores import redis_client

# The default of LOGIN_RATE_LIMIT (Flask-Limiter's notation: "10 per hour", "5/minute").
LOGIN_RATE_LIMIT = "5 per minute"
# The views that check a password: the log-in form and the API's token request.
PASSWORD_CHECKS = ("auth.login", "api.token")


def init_app(app: Flask) -> None:
    """Attach the limiter to the app (its storage is where the two shops differ)."""
    # RATELIMIT_ENABLED=false turns it off (a test that fails one user's log-in many times).
    app.config["RATELIMIT_ENABLED"] = setting(app, "RATELIMIT_ENABLED", True)
    limiter = Limiter(
        key_func=client_and_user,
        app=app,
        **storage(app),
        strategy="moving-window",  # no burst of twice the limit across a window's edge
        key_prefix="login",
    )
    # Only a failed attempt counts: a user who logs in again and again is never locked out, a
    # password guesser is. Once over the limit, even the right password waits. The log-in form
    # and the API's token request check the same passwords: they share one count.
    limit = limiter.shared_limit(
        setting(app, "LOGIN_RATE_LIMIT", LOGIN_RATE_LIMIT),
        scope="login",
        methods=["POST"],
        exempt_when=lambda: not current_app.config["RATELIMIT_ENABLED"],  # read per request
        deduct_when=lambda response: response.status_code == 401,
        error_message=lambda: f"Too many failed log-ins for this user name from your address: "
                              f"try again in {retry_after()} seconds.",
    )
    for endpoint in PASSWORD_CHECKS:
        if endpoint in app.view_functions:
            app.view_functions[endpoint] = limit(app.view_functions[endpoint])
    app.extensions["login_limiter"] = limiter

    @app.after_request
    def say_when(response):
        # Whoever rendered the 429 (the error page, the API's JSON): it says when to retry.
        if response.status_code == 429 and "Retry-After" not in response.headers:
            response.headers["Retry-After"] = str(retry_after())
        return response


def storage(app: Flask) -> dict:
    """Where the attempts are counted."""
    # In the shared Redis: every instance counts against the one limit.
    client = redis_client(app)
    if isinstance(client, RedisCluster):  # limits makes its own Cluster client, from a URL
        parsed = redisurl.parse(app.config["REDIS_URL"], cluster=True)
        return {"storage_uri": "redis+cluster://" + parsed.url.split("://", 1)[1],
                "storage_options": {"ssl": parsed.tls, "socket_timeout": 5,
                                    "socket_connect_timeout": 2}}
    # One Redis, or a Sentinel set's primary: the shop's own connections (they follow a
    # failover), whatever the URL's form.
    return {"storage_uri": "redis://",
            "storage_options": {"connection_pool": client.connection_pool}}


def client_and_user() -> str:
    """Whose attempts count together: one client address trying one user name."""
    name = request.form.get("username")
    if name is None:  # the API sends JSON
        body = request.get_json(silent=True)
        name = body.get("username") if isinstance(body, dict) else None
    # Hashed: a user name of any length makes a key of one size (and is not kept as such).
    user = hashlib.sha256(str(name or "").encode()).hexdigest()[:32]
    return f"{request.remote_addr}/{user}"


def retry_after() -> int:
    """Seconds until this request's client may try again (at least 1)."""
    limiter = current_app.extensions.get("login_limiter")
    current = limiter.current_limit if limiter is not None else None
    if current is None:
        return 60
    return max(1, math.ceil(current.reset_at - time.time()))


def setting(app: Flask, key: str, default):
    """``key`` from the app's config, else the environment, else ``default``."""
    value = app.config.get(key, os.environ.get(key, default))
    if isinstance(default, bool) and isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return value
