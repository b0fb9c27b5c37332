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

import json
import re
import time
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
from .stores import UNAVAILABLE, redis_client

bp = Blueprint("events", __name__)

STREAM_SECONDS = 25.0  # a stream's lifetime; the browser then reconnects with Last-Event-ID
HEARTBEAT_SECONDS = 5.0  # a comment line after this long without an event
POLL_SECONDS = 1.0  # the longest single wait for new events
RETRY_MS = 1000  # how long a browser waits before it reconnects
HISTORY_SIZE = 100  # events kept per user for clients that reconnect
EVENT_ID = re.compile(r"\d{1,19}-\d{1,19}")  # the ids Redis gives stream entries (< 2**64)


@dataclass(frozen=True)
class Event:
    id: str
    order_id: int
    status: str


# Events in one Redis stream per user, shared by every instance: a client on any instance sees
# every event, and one that reconnects anywhere resumes after its Last-Event-ID. One key per
# user, so a Redis Cluster keeps each stream whole in one slot.
def stream_key(user_id: int) -> str:
    return f"events:{user_id}"


def publish(user_id: int, order_id: int, status: str) -> str:
    """Tell ``user_id``'s open streams that ``order_id`` is now ``status``; the event's id."""
    event_id = redis_client().xadd(stream_key(user_id), {"order_id": order_id, "status": status},
                                   maxlen=HISTORY_SIZE, approximate=True)
    return event_id.decode()


class Feed:
    """One stream's events: those kept after ``last_id`` first, then new ones as they come."""

    def __init__(self, user_id: int, last_id: str | None) -> None:
        self.client, self.key = redis_client(), stream_key(user_id)
        kept: list[Event] = []
        if last_id is not None and EVENT_ID.fullmatch(last_id):
            # The client's event, if still kept (a trimmed one is unknown), and those after it.
            kept = self.range(last_id, HISTORY_SIZE + 1)
        if not kept or kept[0].id != last_id:
            kept = self.range("-", HISTORY_SIZE)
        self.replay, self.notice = after(kept, last_id)
        self.cursor = kept[-1].id if kept else "0-0"

    def range(self, start: str, count: int) -> list[Event]:
        return [read(entry) for entry in self.client.xrange(self.key, start, "+", count=count)]

    def wait(self, timeout: float) -> list[Event]:
        """The events published since the last call, waiting up to ``timeout`` for one."""
        # A short BLOCK, well inside the client's socket timeout.
        found = self.client.xread({self.key: self.cursor}, count=HISTORY_SIZE,
                                  block=max(1, int(timeout * 1000)))
        events = [read(entry) for _, entries in found for entry in entries]
        if events:
            self.cursor = events[-1].id
        return events


def read(entry: tuple[bytes, dict[bytes, bytes]]) -> Event:
    entry_id, fields = entry
    return Event(entry_id.decode(), int(fields[b"order_id"]), fields[b"status"].decode())


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
    try:
        feed = Feed(user_id, last_id)
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
    except UNAVAILABLE:
        return  # Redis is away: the stream ends and the browser retries with its Last-Event-ID


def message(event: Event) -> str:
    data = json.dumps({"order_id": event.order_id, "status": event.status})
    return f"id: {event.id}\nevent: status\ndata: {data}\n\n"
