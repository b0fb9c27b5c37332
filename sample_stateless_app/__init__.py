"""The demo shop, after: any instance serves any request; state lives in shared stores."""

from __future__ import annotations

import os
import socket

import botocore.exceptions
from flask import Flask, Request, jsonify, render_template, request, session
from flask.sessions import SessionMixin
from werkzeug.exceptions import HTTPException, InternalServerError

from migrate.sessions.bridge import RedisSessionInterface

from . import auth, db, health, shop, stores, uploads
from .config import check_required, load_config


def create_app(test_config: dict | None = None) -> Flask:
    """Build the shop; ``test_config`` overrides the environment (Flask tutorial style)."""
    app = Flask(__name__)
    app.config.from_mapping(load_config())
    if test_config:
        app.config.from_mapping(test_config)
    check_required(app.config)

    # Sessions live in Redis, shared by every instance; the cookie and serializer are unchanged.
    stores.init_app(app)
    # Flask-Session's Redis interface as migrate.sessions extends it: it keeps a Redis
    # Cluster client (Session(app) would swap it for localhost) and finds sessions migrated
    # from files.
    app.session_interface = _Sessions.from_config(app, stores.redis_client(app))

    @app.before_request
    def session_store_down():
        # Redis was down when the session was to be read: a 503, not a user shown as logged out.
        # The probes still answer (/healthz: alive; /readyz: 503 with what is down).
        if request.environ.get(_SESSION_DOWN) and request.endpoint not in (
            "health.healthz", "health.readyz"
        ):
            return store_unavailable(None)

    @app.before_request
    def adopt_migrated_cart():
        # A session migrated from the before-shop still holds its cart: move it to Redis, once.
        if "cart" in session:
            stores.adopt_cart(session)

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

    def store_unavailable(error: Exception | None):
        # A store that is down is a clear 503 that a balancer and a user understand, not a crash.
        # A plain page: the shop's template reads the session, which may be down too.
        if request.path.startswith(("/uploads", "/files")):  # the upload API speaks JSON
            response = jsonify(error="The shop's storage is unreachable. Retry shortly.")
            return response, 503, {"Retry-After": "2"}
        page = (
            "<!doctype html><title>Back in a moment</title><h1>Back in a moment</h1>"
            "<p id='error'>The shop's storage is unreachable. Please try again shortly.</p>"
        )
        return page, 503, {"Retry-After": "2"}

    # Registered per exception class so it applies in TESTING too (500s propagate there).
    for unavailable in stores.UNAVAILABLE:
        app.register_error_handler(unavailable, store_unavailable)

    @app.errorhandler(botocore.exceptions.ClientError)
    def upload_gone(error: botocore.exceptions.ClientError):
        # The storage no longer knows a multipart upload (aborted, expired, or an S3 server
        # that keeps them in memory was restarted): the client must start over, say so.
        if error.response.get("Error", {}).get("Code") != "NoSuchUpload":
            raise error
        message = "The storage no longer has this upload: start it again with POST /uploads."
        return {"error": message}, 410

    @app.errorhandler(InternalServerError)
    def server_error(error: InternalServerError):
        return render_template("error.html", message="Something went wrong on our side."), 500

    return app


_SESSION_DOWN = "sample_stateless_app.session_store_down"


class _Sessions(RedisSessionInterface):
    """Sessions in Redis; while Redis is unreachable, an empty session and a marked request
    (Flask would otherwise fail before any error handler runs: a bare 500)."""

    def open_session(self, app: Flask, request: Request) -> SessionMixin | None:
        try:
            return super().open_session(app, request)
        except stores.UNAVAILABLE:
            request.environ[_SESSION_DOWN] = True
            return self.make_null_session(app)
