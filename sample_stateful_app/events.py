"""Live order updates: a page and a Server-Sent Events stream of order status changes."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("events", __name__)
