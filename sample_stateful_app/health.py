"""Liveness and readiness probes for a load balancer."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, current_app
from sqlalchemy import text

bp = Blueprint("health", __name__)


def _probe(check: Callable[[], object]) -> str:
    try:
        check()
    except Exception as exc:  # a probe reports any failure instead of raising
        return f"failed: {type(exc).__name__}"
    return "ok"


def _database() -> None:
    with current_app.extensions["db_engine"].connect() as conn:
        conn.execute(text("SELECT 1"))


@bp.get("/healthz")
def healthz():
    """Alive: the process answers."""
    return {"status": "ok"}


@bp.get("/readyz")
def readyz():
    """Ready: every store this instance needs answers (503 otherwise)."""
    checks = {"database": _probe(_database)}
    ready = all(v == "ok" for v in checks.values())
    return {"status": "ready" if ready else "unavailable", **checks}, 200 if ready else 503
