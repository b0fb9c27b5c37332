"""The order confirmation e-mail."""

from __future__ import annotations

import datetime as dt
import logging

from flask import current_app
from rq import Queue, Retry
from sqlalchemy.orm import Session

from . import events
from .db import Order
from .stores import redis_client

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
    """Queue the e-mail as a job in Redis: a worker process sends it, whatever happens here."""
    queue = Queue("mail", connection=redis_client())
    queue.enqueue(send_confirmation, order_id, retry=Retry(max=3))
