"""Configuration: one table of defaults, then `.env`, then the environment (12-factor)."""

from __future__ import annotations

import logging
import os
from typing import Any

from dotenv import dotenv_values

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "SECRET_KEY": "dev",
    "DATABASE_URL": None,  # None: SQLite in the instance folder
    "UPLOAD_FOLDER": None,  # None: uploads/ in the instance folder
    "SESSION_TYPE": "cachelib",
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
    "INSTANCE_NAME": None,
    "MIGRATE_BRIDGE_TOKEN": None,
    "MIGRATE_BRIDGE_REDIS_URL": None,
}
SECRET_HELP = ("set one shared random value in the environment or .env "
               "(python -c 'import secrets; print(secrets.token_hex(32))')")
DEV_SECRETS = {"dev", "development", "secret", "changeme", "change-me", "secret-key",
               "secret_key", "your-secret-key", "super-secret", "supersecret"}
MIN_SECRET_LENGTH = 32
INTS = {"PERMANENT_SESSION_LIFETIME", "MAX_CONTENT_LENGTH", "AVATAR_MAX_BYTES",
        "API_TOKEN_LIFETIME", "API_ACCESS_LIFETIME"}


def load_config(instance_path: str) -> dict[str, Any]:
    """Defaults, overridden by `.env` (or the file in ENV_FILE), overridden by the environment."""
    file_values = dotenv_values(os.environ.get("ENV_FILE", ".env"))
    config: dict[str, Any] = {}
    for key, default in DEFAULTS.items():
        value = os.environ.get(key, file_values.get(key, default))
        if isinstance(default, bool) and isinstance(value, str):
            # From the environment every value is text: "false" must not read as True.
            value = value.strip().lower() in ("1", "true", "yes", "on")
        config[key] = int(value) if key in INTS and value is not None else value
    config["DATABASE_URL"] = config["DATABASE_URL"] or (
        "sqlite:///" + os.path.join(instance_path, "shop.db")
    )
    config["UPLOAD_FOLDER"] = config["UPLOAD_FOLDER"] or os.path.join(instance_path, "uploads")
    return config


def check_required(config: dict[str, Any]) -> None:
    """Nothing is required of the before-shop: it starts on one host with its defaults, and a
    weak SECRET_KEY (its default "dev" included) only earns a warning."""
    weak = weak_secret_key(config["SECRET_KEY"] or "")
    if weak:
        log.warning("SECRET_KEY %s: fine on a laptop, never in production; %s", weak, SECRET_HELP)


def weak_secret_key(key: str) -> str | None:
    """What makes ``key`` unfit to sign sessions with (anyone could guess it), or None."""
    if key.strip().lower() in DEV_SECRETS:
        return "is a development value"
    if len(key) < MIN_SECRET_LENGTH:
        return f"is too short ({len(key)} of at least {MIN_SECRET_LENGTH} characters)"
    if len(set(key)) < 8:
        return "repeats too few characters to be random"
    return None
