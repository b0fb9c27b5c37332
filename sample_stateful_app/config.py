"""Configuration: one table of defaults, then `.env`, then the environment (12-factor)."""

from __future__ import annotations

import os
from typing import Any

from dotenv import dotenv_values

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
    "INSTANCE_NAME": None,
    "MIGRATE_BRIDGE_TOKEN": None,
    "MIGRATE_BRIDGE_REDIS_URL": None,
}
INTS = {"PERMANENT_SESSION_LIFETIME", "MAX_CONTENT_LENGTH", "AVATAR_MAX_BYTES"}


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
