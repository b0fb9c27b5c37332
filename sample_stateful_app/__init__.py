"""The demo shop, before: state lives in this process's memory and on this host's disk."""

from __future__ import annotations

import os
import socket

from cachelib import SimpleCache
from flask import Flask, render_template, request
from flask_session import Session
from werkzeug.exceptions import HTTPException

from . import auth, db, health, shop, uploads
from .config import load_config


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

    instance = app.config["INSTANCE_NAME"] or f"{socket.gethostname()}-{os.getpid()}"

    @app.after_request
    def tag_instance(response):
        # Every response says which instance served it, so a journey can show the route.
        response.headers["X-Instance"] = instance
        return response

    @app.errorhandler(HTTPException)
    def client_error(error: HTTPException):
        # The upload API speaks JSON; pages get the shop's error page. Both say what to do.
        message = "That file is too large." if error.code == 413 else error.description
        if request.path.startswith(("/uploads", "/files")):
            return {"error": message}, error.code
        return render_template("error.html", message=message), error.code

    return app
