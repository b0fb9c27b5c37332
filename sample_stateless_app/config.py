"""Configuration: one table of defaults, then `.env`, then the environment (12-factor)."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from typing import Any

from dotenv import dotenv_values

DEFAULTS: dict[str, Any] = {
    "SECRET_KEY": None,  # required: every instance must sign with the same key
    "DATABASE_URL": None,  # required: the shared database
    "REDIS_URL": None,  # required: sessions, carts, counters, upload state, the mail queue
    "S3_ENDPOINT_URL": None,  # None: AWS S3 itself
    "S3_BUCKET": "shop",
    "SESSION_TYPE": "redis",
    "SESSION_PERMANENT": True,
    # Save a session when it changes, not on every request: a page view writes nothing.
    "SESSION_REFRESH_EACH_REQUEST": False,
    "PERMANENT_SESSION_LIFETIME": 7 * 24 * 3600,
    # No session cookie on a cross-site POST: a first defence against forged form posts.
    "SESSION_COOKIE_SAMESITE": "Lax",
    # Every form carries a per-session token (auth.check_csrf); False only to debug a client.
    "CSRF_ENABLED": True,
    # Ask clients that are not browsers (no Origin, no Sec-Fetch-Site) for the token as well.
    "CSRF_STRICT": False,
    "MAX_CONTENT_LENGTH": 6 * 1024 * 1024,  # one 5 MiB chunk plus headers
    "AVATAR_MAX_BYTES": 1024 * 1024,
    # How long an API client stays logged in without sending its password again (api.py).
    "API_TOKEN_LIFETIME": 7 * 24 * 3600,
    # A signed access token is never looked up, so it must be short-lived (tokens.py).
    "API_ACCESS_LIFETIME": 15 * 60,
    # The keys that sign API tokens, "kid:key,kid:key"; None: one derived from SECRET_KEY.
    # Rotate by listing a new key first: tokens signed by the others verify while listed.
    "JWT_KEYS": None,
    "JWT_SIGNING_KID": None,  # None: the first of JWT_KEYS
    "INSTANCE_NAME": None,
}
SECRET_HELP = ("set one shared random value in the environment or .env "
               "(python -c 'import secrets; print(secrets.token_hex(32))')")
REQUIRED = {
    "SECRET_KEY": SECRET_HELP,
    "REDIS_URL": "point it at the shared Redis, e.g. redis://127.0.0.1:6379/0",
    "DATABASE_URL": "point it at the shared database, e.g. postgresql+psycopg://host/shop",
}
DEV_SECRETS = {"dev", "development", "secret", "changeme", "change-me", "secret-key",
               "secret_key", "your-secret-key", "super-secret", "supersecret"}
MIN_SECRET_LENGTH = 32
INTS = {"PERMANENT_SESSION_LIFETIME", "MAX_CONTENT_LENGTH", "AVATAR_MAX_BYTES",
        "API_TOKEN_LIFETIME", "API_ACCESS_LIFETIME"}


def load_config() -> dict[str, Any]:
    """Defaults, overridden by `.env` (or the file in ENV_FILE), overridden by the environment."""
    file_values = dotenv_values(os.environ.get("ENV_FILE", ".env"))
    config: dict[str, Any] = {}
    for key, default in DEFAULTS.items():
        value = os.environ.get(key, file_values.get(key, default))
        if isinstance(default, bool) and isinstance(value, str):
            # From the environment every value is text: "false" must not read as True.
            value = value.strip().lower() in ("1", "true", "yes", "on")
        config[key] = int(value) if key in INTS and value is not None else value
    return config


def check_required(config: dict[str, Any]) -> None:
    """Refuse to start without shared settings: a per-process default would split the cluster."""
    for key, why in REQUIRED.items():
        if not config.get(key):
            raise RuntimeError(f"{key} is not set: {why}")
    weak = weak_secret_key(config["SECRET_KEY"])
    if weak:
        # Anyone who guesses the key signs a session cookie of their choosing: refuse to start.
        raise RuntimeError(f"SECRET_KEY {weak}: {SECRET_HELP}")
    jwt_keys(config)  # the same for the keys that sign API tokens


KID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def jwt_keys(config: dict[str, Any]) -> tuple[dict[str, str], str]:
    """({kid: key}, the kid that signs) from JWT_KEYS and JWT_SIGNING_KID; a RuntimeError that
    names the kid, never the key, for a weak key or a signing kid that is not listed."""
    given = config.get("JWT_KEYS")
    if not given:
        # As strong as SECRET_KEY (checked above), and not SECRET_KEY itself.
        derived = hmac.new(config["SECRET_KEY"].encode(), b"api-tokens", hashlib.sha256)
        return {"secret-key": derived.hexdigest()}, "secret-key"
    if isinstance(given, str):
        pairs = [item.strip().partition(":") for item in given.split(",") if item.strip()]
        given = {kid.strip(): key.strip() for kid, _, key in pairs}
    keys = dict(given)
    if not keys:
        raise RuntimeError("JWT_KEYS lists no key: write it as kid:key,kid:key, or leave it "
                           "unset to derive one from SECRET_KEY")
    for kid, key in keys.items():
        if not KID.fullmatch(kid):
            raise RuntimeError(f"JWT_KEYS: kid {kid[:64]!r} is not 1-64 letters, digits or ._-: "
                               "write JWT_KEYS as kid:key,kid:key")
        weak = weak_secret_key(key or "")
        if weak:
            raise RuntimeError(f"JWT_KEYS: the key of kid {kid!r} {weak}: {SECRET_HELP}")
    signing = config.get("JWT_SIGNING_KID") or next(iter(keys), "")
    if signing not in keys:
        raise RuntimeError(f"JWT_SIGNING_KID {signing[:64]!r} is not one of the kids in "
                           "JWT_KEYS: list its key there, or leave JWT_SIGNING_KID unset")
    return keys, signing


def weak_secret_key(key: str) -> str | None:
    """What makes ``key`` unfit to sign sessions with (anyone could guess it), or None."""
    if key.strip().lower() in DEV_SECRETS:
        return "is a development value"
    if len(key) < MIN_SECRET_LENGTH:
        return f"is too short ({len(key)} of at least {MIN_SECRET_LENGTH} characters)"
    if len(set(key)) < 8:
        return "repeats too few characters to be random"
    return None
