"""Live order updates: a page and a Server-Sent Events stream of order status changes.

An order is "placed" at check-out and "confirmed" when its confirmation e-mail goes out; each
change is published here and pushed to the signed-in user's open streams. Every event carries
an id; a browser that reconnects sends the last one it saw (Last-Event-ID) and gets what it
missed. A stream ends after ``STREAM_SECONDS`` (the browser reconnects), so no request holds a
thread for long; comment lines keep an idle stream alive through proxies.

gunicorn: a stream holds a thread, so run each instance with the threaded worker,
``--worker-class gthread --threads 8``: one worker process, its threads serve streams and pages
at once (the sync worker would serve nothing else while a stream is open).
"""

from __future__ import annotations

import itertools
import json
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    render_template,
    request,
    session,
    stream_with_context,
)

from .auth import login_required
from .db import Order, get_db

bp = Blueprint("events", __name__)

STREAM_SECONDS = 25.0  # a stream's lifetime; the browser then reconnects with Last-Event-ID
HEARTBEAT_SECONDS = 5.0  # a comment line after this long without an event
POLL_SECONDS = 1.0  # the longest single wait for new events
RETRY_MS = 1000  # how long a browser waits before it reconnects
HISTORY_SIZE = 100  # events kept per user for clients that reconnect
EVENT_ID = re.compile(r"\d{1,19}")  # the ids this process gives out


@dataclass(frozen=True)
class Event:
    id: str
    order_id: int
    status: str


# Subscribers and history in module globals: an event reaches only this instance's clients,
# and a client that reconnects to another instance finds no history there.
_LOCK = threading.Lock()
_IDS = itertools.count(1)
_HISTORY: dict[int, deque[Event]] = {}
_SUBSCRIBERS: dict[int, list[queue.SimpleQueue[Event]]] = {}


def publish(user_id: int, order_id: int, status: str) -> str:
    """Tell ``user_id``'s open streams that ``order_id`` is now ``status``; the event's id."""
    with _LOCK:
        event = Event(str(next(_IDS)), order_id, status)
        _HISTORY.setdefault(user_id, deque(maxlen=HISTORY_SIZE)).append(event)
        for subscriber in _SUBSCRIBERS.get(user_id, []):
            subscriber.put(event)
    bridge = current_app.extensions.get("migrate_bridge")
    if bridge is not None:  # migration window only: the after-app's stream hears it too
        bridge.event_raised(f"events:{user_id}", {"order_id": order_id, "status": status},
                            maxlen=HISTORY_SIZE)
    return event.id


class Feed:
    """One stream's events: those kept after ``last_id`` first, then new ones as they come."""

    def __init__(self, user_id: int, last_id: str | None) -> None:
        self.user_id = user_id
        self.inbox: queue.SimpleQueue[Event] = queue.SimpleQueue()
        with _LOCK:  # subscribe and read the history at once: no event falls in between
            _SUBSCRIBERS.setdefault(user_id, []).append(self.inbox)
            kept = list(_HISTORY.get(user_id, ()))
        self.replay, self.notice = after(kept, last_id)

    def wait(self, timeout: float) -> list[Event]:
        """The events published since the last call, waiting up to ``timeout`` for one."""
        try:
            events = [self.inbox.get(timeout=timeout)]
        except queue.Empty:
            return []
        while not self.inbox.empty():
            events.append(self.inbox.get())
        return events

    def close(self) -> None:
        with _LOCK:
            _SUBSCRIBERS[self.user_id].remove(self.inbox)


def after(kept: list[Event], last_id: str | None) -> tuple[list[Event], str | None]:
    """The kept events after ``last_id``; all of them, with a notice, for an id not kept."""
    if last_id is None:
        return kept, None
    ids = [event.id for event in kept]
    if EVENT_ID.fullmatch(last_id) and last_id in ids:
        return kept[ids.index(last_id) + 1:], None
    start = ids[0] if ids else "the next event"
    return kept, f"Last-Event-ID is unknown or too old: history starts at {start}"


def order_status(order: Order) -> str:
    return "confirmed" if order.confirmation_sent_at else "placed"


@bp.get("/orders/<int:order_id>/live")
@login_required
def live(order_id: int):
    """The order's status, kept current by the page's EventSource."""
    order = get_db().get(Order, order_id)
    if order is None or order.user_id != session["user_id"]:
        abort(404, f"No order {order_id}.")
    return render_template("live.html", order=order, status=order_status(order))


@bp.get("/orders/events")
@login_required
def stream():
    """Server-Sent Events: the signed-in user's order changes (``?seconds=`` ends it sooner)."""
    config = current_app.config
    lifetime = config.get("EVENTS_STREAM_SECONDS", STREAM_SECONDS)
    try:
        lifetime = max(0.0, min(lifetime, float(request.args.get("seconds", lifetime))))
    except ValueError:
        abort(400, "seconds must be a number.")
    last_id = request.headers.get("Last-Event-ID")
    heartbeat = config.get("EVENTS_HEARTBEAT_SECONDS", HEARTBEAT_SECONDS)
    events = sse(session["user_id"], last_id, lifetime, heartbeat)
    return Response(stream_with_context(events), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def sse(user_id: int, last_id: str | None, lifetime: float, heartbeat: float) -> Iterator[str]:
    """The stream's text: retry, a notice if any, the replay, then events and heartbeats."""
    yield f"retry: {RETRY_MS}\n\n"
    # Subscribed here, in the generator: the server closes it however the stream ends.
    feed = Feed(user_id, last_id)
    try:
        if feed.notice:
            yield f"event: notice\ndata: {feed.notice}\n\n"
        yield from map(message, feed.replay)
        deadline = time.monotonic() + lifetime
        quiet_since = time.monotonic()
        while (left := deadline - time.monotonic()) > 0:
            events = feed.wait(min(left, POLL_SECONDS, heartbeat))
            yield from map(message, events)
            if events:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= heartbeat:
                yield ": heartbeat\n\n"
                quiet_since = time.monotonic()
    finally:  # also when the client goes away (the server closes the generator)
        feed.close()


def message(event: Event) -> str:
    data = json.dumps({"order_id": event.order_id, "status": event.status})
    return f"id: {event.id}\nevent: status\ndata: {data}\n\n"
