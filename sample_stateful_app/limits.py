"""The login rate limit (Flask-Limiter)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Attach the limiter to the app (its storage is where the two shops differ)."""
