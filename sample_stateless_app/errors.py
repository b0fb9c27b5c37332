"""Which instance answered, and errors a user and a balancer understand."""

from __future__ import annotations

import os
import socket

import botocore.exceptions
from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, InternalServerError

from . import stores

# Set on a request whose session could not be read because Redis was down.
SESSION_DOWN = "sample_stateless_app.session_store_down"


def wants_json() -> bool:
    """The APIs (uploads, files, /api) answer in JSON, and so does a client that asks for it."""
    if request.path.startswith(("/uploads", "/files", "/api")):
        return True
    html_or_json = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return html_or_json == "application/json"


def init_app(app: Flask) -> None:
    """Tag every response with the instance; register the error pages."""
    instance = app.config["INSTANCE_NAME"] or f"{socket.gethostname()}-{os.getpid()}"

    @app.after_request
    def tag_instance(response):
        # Every response says which instance served it, so a journey can show the route.
        response.headers["X-Instance"] = instance
        return response

    @app.errorhandler(HTTPException)
    def client_error(error: HTTPException):
        # The APIs speak JSON; pages get the shop's error page. Both say what to do.
        message = "That file is too large." if error.code == 413 else error.description
        if wants_json():
            # A 409 for stock also says which product and how many are left.
            return {"error": message, **getattr(error, "details", {})}, error.code
        return render_template("error.html", message=message), error.code

    @app.before_request
    def session_store_down():
        # Redis was down when the session was to be read: a 503, not a user shown as logged out.
        # The probes still answer (/healthz: alive; /readyz: 503 with what is down).
        if request.environ.get(SESSION_DOWN) and request.endpoint not in (
            "health.healthz", "health.readyz"
        ):
            return store_unavailable(None)

    # Registered per exception class so it applies in TESTING too (500s propagate there).
    for unavailable in stores.UNAVAILABLE:
        app.register_error_handler(unavailable, store_unavailable)
    app.register_error_handler(botocore.exceptions.ClientError, upload_gone)
    app.register_error_handler(InternalServerError, server_error)


def store_unavailable(error: Exception | None):
    """A store that is down is a clear 503 that a balancer and a user understand, not a crash."""
    # A plain page: the shop's template reads the session, which may be down too.
    if wants_json():
        response = jsonify(error="The shop's storage is unreachable. Retry shortly.")
        return response, 503, {"Retry-After": "2"}
    page = (
        "<!doctype html><title>Back in a moment</title><h1>Back in a moment</h1>"
        "<p id='error'>The shop's storage is unreachable. Please try again shortly.</p>"
    )
    return page, 503, {"Retry-After": "2"}


def upload_gone(error: botocore.exceptions.ClientError):
    """The storage no longer knows a multipart upload: the client must start over, say so."""
    # Aborted, expired, or an S3 server that keeps them in memory was restarted.
    if error.response.get("Error", {}).get("Code") != "NoSuchUpload":
        raise error
    message = "The storage no longer has this upload: start it again with POST /uploads."
    return {"error": message}, 410


def server_error(error: InternalServerError):
    return render_template("error.html", message="Something went wrong on our side."), 500
