"""Which instance answered, and errors a user understands."""

from __future__ import annotations

import os
import socket

from flask import Flask, render_template, request
from werkzeug.exceptions import HTTPException


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
