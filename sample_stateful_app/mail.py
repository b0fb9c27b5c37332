"""The order confirmation e-mail."""

from __future__ import annotations

import datetime as dt
import logging
import threading

from flask import current_app
from sqlalchemy.orm import Session

from . import events
from .db import Order

log = logging.getLogger(__name__)


def send_confirmation(order_id: int) -> None:
    """'Send' the confirmation (the demo logs it) and record when it went out."""
    with Session(current_app.extensions["db_engine"]) as db, db.begin():
        order = db.get(Order, order_id)
        if order is None or order.confirmation_sent_at is not None:
            return  # sent already: sending twice would spam the customer
        log.info("confirmation e-mail sent for order %s", order_id)
        order.confirmation_sent_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        # Before the commit: if publishing fails, so does the job, and its retry sends both
        # (a live page may hear "confirmed" twice, never not at all).
        events.publish(order.user_id, order_id, "confirmed")


def queue_confirmation(order_id: int) -> None:
    """Send the e-mail from a thread of this web process: it dies with the instance."""
    app = current_app._get_current_object()

    def run() -> None:
        with app.app_context():
            send_confirmation(order_id)

    threading.Thread(target=run, daemon=True).start()
