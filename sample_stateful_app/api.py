"""The JSON API for non-browser clients (``/api/...``), identified by a token in the request."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api")
