"""Photo notes: sign in, keep photos with a caption.

One codebase for both sides of the move to shared state, chosen by configuration only (what a
team runs during a rolling migration):

===============  ======================================  ====================================
state            before (one host)                       after (any instance, any request)
===============  ======================================  ====================================
sessions         Flask-Session ``filesystem``            ``SESSION_TYPE=redis``: migrate's
                 (``SESSION_FILE_DIR``)                  read-through interface on REDIS_URL
cache            Flask-Caching ``SimpleCache``           ``RedisCache`` (``CACHE_REDIS_URL``)
photos           files under ``UPLOAD_FOLDER``           objects in ``PHOTO_BUCKET``
photos.<where>   ``path`` (relative to the folder)       ``key`` (migrations 0002/0003)
===============  ======================================  ====================================
"""

from __future__ import annotations

import os

import redis
from dotenv import dotenv_values
from flask import Flask
from flask_session import Session

from . import auth, db, photos, storage
from .extensions import cache, login_manager

DEFAULTS = {
    "SECRET_KEY": None,
    "DATABASE_URL": None,
    "SESSION_TYPE": "filesystem",
    "SESSION_FILE_DIR": "flask_session",
    "REDIS_URL": None,
    "CACHE_TYPE": "SimpleCache",
    "CACHE_REDIS_URL": None,
    "CACHE_DEFAULT_TIMEOUT": 300,
    "UPLOAD_FOLDER": "uploads",
    "PHOTO_BUCKET": None,
    "PHOTO_PREFIX": "",  # objects go under this key prefix
    "S3_ENDPOINT_URL": None,  # None: AWS itself
    "MAX_CONTENT_LENGTH": 8 * 1024 * 1024,
}
INTS = {"CACHE_DEFAULT_TIMEOUT", "MAX_CONTENT_LENGTH"}


def load_config() -> dict:
    """The defaults, overridden by ``.env`` (python-dotenv), overridden by the environment."""
    from_file = dotenv_values(os.environ.get("GALLERY_ENV_FILE", ".env"))
    config = {key: os.environ.get(key, from_file.get(key, default))
              for key, default in DEFAULTS.items()}
    return {key: int(v) if key in INTS else v for key, v in config.items()}


def create_app(test_config: dict | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_mapping(load_config())
    app.config.update(SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_HTTPONLY=True)
    if test_config:
        app.config.from_mapping(test_config)
    if not app.config["SECRET_KEY"] or len(app.config["SECRET_KEY"]) < 16:
        raise RuntimeError("SECRET_KEY must be set to a long random value, the same everywhere")
    if not app.config["DATABASE_URL"]:
        raise RuntimeError("DATABASE_URL is not set")

    if app.config["SESSION_TYPE"] == "redis":
        # Shared sessions. migrate's interface is Flask-Session's Redis one that also finds a
        # session exported from the old session folder, so nobody is logged out by the move.
        from migrate.sessions.interface import RedisSessionInterface

        client = redis.Redis.from_url(app.config["REDIS_URL"], socket_timeout=5)
        app.session_interface = RedisSessionInterface.from_config(app, client)
    else:
        Session(app)
    cache.init_app(app)
    login_manager.init_app(app)
    db.init_app(app)
    storage.init_app(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(photos.bp)

    @app.get("/healthz")
    def healthz():
        return {"ok": True}

    return app
