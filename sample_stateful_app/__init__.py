"""The demo shop, before: state lives in this process's memory and on this host's disk."""

from __future__ import annotations

import os

from cachelib import SimpleCache
from flask import Flask
from flask_session import Session

from . import api, auth, db, errors, events, health, limits, shop, uploads
from .config import check_required, load_config


def create_app(test_config: dict | None = None) -> Flask:
    """Build the shop; ``test_config`` overrides the environment (Flask tutorial style)."""
    app = Flask(
        __name__,
        instance_path=os.environ.get("INSTANCE_PATH") or None,
        instance_relative_config=True,
    )
    app.config.from_mapping(load_config(app.instance_path))
    if test_config:
        app.config.from_mapping(test_config)
    check_required(app.config)
    os.makedirs(app.config["UPLOAD_FOLDER"], exist_ok=True)

    # Sessions live in this process's memory: another instance has never heard of them.
    app.config["SESSION_CACHELIB"] = SimpleCache(
        threshold=10_000, default_timeout=app.config["PERMANENT_SESSION_LIFETIME"]
    )
    Session(app)
    if app.config["MIGRATE_BRIDGE_TOKEN"]:
        # Migration window only: export these sessions, mirror their changes to Redis.
        from migrate.sessions.bridge import MigrationBridge

        MigrationBridge(app)

    db.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(shop.bp)
    app.register_blueprint(uploads.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(events.bp)
    limits.init_app(app)
    errors.init_app(app)
    app.before_request(auth.check_csrf)  # last: after errors' own checks
    return app
