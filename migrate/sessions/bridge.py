"""The migration window, in the before-app: export live sessions and mirror their changes.

Before-app (stateful), for the migration window only::

    from migrate.sessions.bridge import MigrationBridge
    Session(app)                 # first: the bridge wraps Flask-Session's interface
    MigrationBridge(app)         # reads MIGRATE_BRIDGE_TOKEN and MIGRATE_BRIDGE_REDIS_URL

- ``GET /_migrate/sessions`` with ``Authorization: Bearer <token>`` streams every live session
  as NDJSON (``migrate.sessions.record`` documents the lines). Without a token configured the
  route does not exist (404); a missing or wrong token gets 401 (compared in constant time).
- With a Redis URL, every session save and delete is mirrored to Redis in Flask-Session's
  format, so a session that changes during or after the export is current there. A delete
  leaves an empty session under the key, so an export still running cannot bring it back.
  ``GET /_migrate/status`` (same token) counts mirrored saves, deletes and errors; the app
  keeps serving while Redis is away, and a later export copies what the mirror missed.

A ``SimpleCache`` lives in one process: the stream holds the sessions of the worker process
that answers it, so run one worker per instance (as the sample shop does) while migrating.

Sessions in a store other than cachelib's SimpleCache/FileSystemCache: pass ``source=`` any
object with ``iter_sessions()`` yielding ``migrate.sessions.record.Record`` (sid, expires, and
data as a JSON-able dict or pickle bytes); see ``SessionSource``.

API tokens: an app that gives API clients opaque bearer tokens from its own memory hands
the bridge a callable yielding the live ones, ``(token, user id, expires at)``: as
``MigrationBridge(tokens=...)`` or, from anywhere during start-up, as
``app.extensions["migrate_tokens"]``. ``GET /_migrate/tokens`` (same token) streams them
hashed (sha256, never the token itself) for ``migrate export-sessions``, and with a Redis URL
the app calls ``token_saved`` / ``token_revoked`` on ``app.extensions["migrate_bridge"]`` as it
issues and revokes them. ``migrate.sessions.tokens`` documents the Redis layout.

Per-user hashes (e.g. an API client's cart): an app that keeps them in its memory, where the
after-app keeps Redis hashes it increments, hands the bridge a callable yielding ``(key,
{field: value})`` for each (``MigrationBridge(hashes=...)`` or ``app.extensions
["migrate_hashes"]``); ``GET /_migrate/hashes`` (same token) streams them for ``migrate
export-sessions``, and with a Redis URL the app calls ``hash_incremented(key, field, total)``
on ``app.extensions["migrate_bridge"]`` as it increments one. Each increment reaches Redis
once, whichever of the two brings it: ``migrate.sessions.hashes`` says how.

Live updates: an app that keeps its event history in the process calls ``event_raised(stream,
fields)`` on ``app.extensions["migrate_bridge"]`` as it raises each one; the bridge appends it
to the Redis stream the after-app reads, so a client resuming there misses nothing.

The after-app's side is ``migrate.sessions.interface`` (and ``migrate.sessions.tokens``).
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any, Protocol

import msgspec
from flask import Blueprint, Flask, Response, abort, current_app, request, stream_with_context

from migrate.sessions import compat, hashes, tokens
from migrate.sessions.record import DEFAULT_PREFIX, Record, Serializer, iter_dump_lines, short_id
from migrate.sessions.sources import directory_records

MIN_TOKEN_LENGTH = 16
log = logging.getLogger("migrate.sessions.bridge")


class SessionSource(Protocol):
    """The adapter for a custom session store: yield one ``Record`` per stored session.

    ``Record(sid=..., expires=<epoch seconds or 0>, data=<dict>)`` or ``pickle=<bytes>``; use
    ``digest=`` instead of ``sid`` when the store only knows a hash of ``"session:" + sid``.
    """

    def iter_sessions(self) -> Iterable[Record]: ...


class CacheLibSource:
    """Flask-Session's cachelib store: a ``SimpleCache`` (this process) or ``FileSystemCache``."""

    def __init__(self, cache: Any, key_prefix: str = DEFAULT_PREFIX) -> None:
        from cachelib import FileSystemCache, SimpleCache

        if not isinstance(cache, (SimpleCache, FileSystemCache)):
            raise TypeError(
                f"{type(cache).__name__} is not SimpleCache or FileSystemCache: pass "
                "MigrationBridge(source=...) with an adapter (see SessionSource)"
            )
        self.cache = cache
        self.key_prefix = key_prefix

    def iter_sessions(self) -> Iterator[Record]:
        for _, record in self.page(None):
            yield record

    def page(self, after: str | None) -> Iterator[tuple[str, Record]]:
        """(cursor, record) in cursor order, from just after ``after``. The cursor is the
        sha256 of the cache key, which is what FileSystemCache names its files: it orders
        both stores alike and says nothing about the sid, so it may appear in access logs."""
        from cachelib import SimpleCache

        if not isinstance(self.cache, SimpleCache):
            for record in directory_records(compat.filesystem_cache_dir(self.cache)):
                if after is None or (record.digest or "") > after:
                    yield record.digest or "", record
            return
        # A snapshot: a list of references, copied in microseconds, so requests are not held
        # up while the stream is sent.
        prefix, cut = self.key_prefix, len(self.key_prefix)
        keyed = sorted(
            (hashlib.sha256(key.encode()).hexdigest(), key, entry)
            for key, entry in compat.simple_cache_entries(self.cache)
            if key.startswith(prefix) and entry[1] is not None
        )
        start = bisect.bisect_right([k[0] for k in keyed], after) if after else 0
        for digest, key, (expires, pickled) in keyed[start:]:
            yield digest, Record(sid=key[cut:], expires=float(expires), pickle=pickled)


@dataclass
class MirrorStats:
    """What the mirror did since the app started (``GET /_migrate/status``)."""

    mirrored: int = 0
    deleted: int = 0
    unconvertible: int = 0  # the new app could not store these either: removed from Redis
    errors: int = 0  # Redis missed these changes: run export-sessions again afterwards
    tokens_mirrored: int = 0  # API tokens written to Redis as they were issued
    tokens_revoked: int = 0  # API tokens marked revoked in Redis as they were revoked
    events_mirrored: int = 0  # live-update events appended to the after-app's Redis streams
    hashes_mirrored: int = 0  # hash increments (e.g. API cart adds) added to Redis


class MigrationBridge:
    """Flask extension for the stateful app during the migration window (see module docs)."""

    def __init__(
        self,
        app: Flask | None = None,
        *,
        token: str | None = None,
        redis_url: str | None = None,
        redis_client: Any = None,
        source: SessionSource | None = None,
        target_prefix: str | None = None,
        serializer: str = "msgpack",
        url_prefix: str = "/_migrate",
        page_seconds: float = 10.0,
        tokens: tokens.LiveTokens | None = None,
        hashes: hashes.LiveHashes | None = None,
    ) -> None:
        self.token = token
        self.redis_url = redis_url
        self.redis = redis_client
        self.source = source
        self.target_prefix = target_prefix
        self.serializer = Serializer(serializer)
        self.url_prefix = url_prefix
        self.page_seconds = page_seconds
        self.live_tokens = tokens
        self.live_hashes = hashes
        self._origin = ("", 0)  # (id, pid): the hashes' origin, new in a forked process
        self.stats = MirrorStats()
        self._lock = threading.Lock()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register the export route (only with a token) and mirror saves (only with Redis)."""
        token = self.token or app.config.get("MIGRATE_BRIDGE_TOKEN")
        redis_url = self.redis_url or app.config.get("MIGRATE_BRIDGE_REDIS_URL")
        interface = app.session_interface
        if self.source is None and hasattr(interface, "cache"):
            self.source = CacheLibSource(interface.cache, getattr(interface, "key_prefix",
                                                                  DEFAULT_PREFIX))
        if token:
            if len(token) < MIN_TOKEN_LENGTH:
                # The token opens every live session: a short one is guessed (it is sent on
                # every export request, so it must also be long enough to never be typed).
                raise ValueError(f"MIGRATE_BRIDGE_TOKEN is {len(token)} characters: use at "
                                 f"least {MIN_TOKEN_LENGTH}, e.g. python -c 'import secrets; "
                                 "print(secrets.token_hex(16))'")
            app.register_blueprint(self._blueprint(token))
        if self.redis is None and redis_url:
            from migrate.sessions.target import redis_client

            self.redis = redis_client(redis_url, socket_timeout=2, socket_connect_timeout=1)
        if self.redis is not None:
            self._mirror(app, interface)
        app.extensions["migrate_bridge"] = self

    # --- export ----------------------------------------------------------------------------

    def _blueprint(self, token: str) -> Blueprint:
        bp = Blueprint("migrate_bridge", __name__, url_prefix=self.url_prefix)
        expected = token.encode()

        @bp.before_request
        def authorize() -> Response | None:
            given = request.headers.get("Authorization", "")
            scheme, _, value = given.partition(" ")
            # compare_digest: the time taken says nothing about how much of the token matched.
            if scheme.lower() != "bearer" or not hmac.compare_digest(value.encode(), expected):
                return Response("a valid bearer token is required\n", 401,
                                {"WWW-Authenticate": 'Bearer realm="migrate"'})
            return None

        @bp.get("/status")
        def status() -> Response:
            with self._lock:
                stats = asdict(self.stats)
            return Response(json.dumps({"mirror": self.redis is not None, **stats}),
                            mimetype="application/json", headers={"Cache-Control": "no-store"})

        @bp.get("/sessions")
        def sessions() -> Response:
            if self.source is None:
                abort(404)
            pager = getattr(self.source, "page", None)
            if pager is None:
                lines = iter_dump_lines(self.source.iter_sessions())
            else:
                lines = self._pages(pager, request.args.get("after") or None)
            return Response(stream_with_context(lines), mimetype="application/x-ndjson",
                            headers={"Cache-Control": "no-store"})

        @bp.get("/tokens")
        def api_tokens() -> Response:
            live = self.live_tokens or current_app.extensions.get("migrate_tokens")
            records = tokens.stream_lines(live() if live else (), time.time())
            lines = (json.dumps(record).encode() + b"\n" for record in records)
            return Response(stream_with_context(lines), mimetype="application/x-ndjson",
                            headers={"Cache-Control": "no-store"})

        @bp.get("/hashes")
        def live_hashes() -> Response:
            live = self.live_hashes or current_app.extensions.get("migrate_hashes")
            records = hashes.stream_lines(live() if live else (), self.origin)
            lines = (json.dumps(record).encode() + b"\n" for record in records)
            return Response(stream_with_context(lines), mimetype="application/x-ndjson",
                            headers={"Cache-Control": "no-store"})

        return bp

    @property
    def origin(self) -> str:
        """This process's id for its hashes: the mirror and the export of one process's
        hash share a marker in Redis; another process (instance) holds another part."""
        if self._origin[1] != os.getpid():
            self._origin = (secrets.token_hex(8), os.getpid())
        return self._origin[0]

    # --- per-user hashes: the app calls this as it increments a field -----------------------

    def hash_incremented(self, key: str, field: str, total: int) -> None:
        """``field`` of the app's hash ``key`` was just incremented and is now ``total``: add
        to the after-app's Redis hash what it has not received yet (the increment, or more
        when an earlier mirror failed; nothing when the export brought it already)."""
        if self.redis is not None and self._redis_call(
                lambda: hashes.add_once(self.redis, key, self.origin, {field: total}), None,
                "hash"):
            self._count("hashes_mirrored")

    # --- API tokens: the app calls these as it issues and revokes them ----------------------

    def token_saved(self, token: str, user_id: Any, expires: float) -> None:
        """Mirror a token just issued, so a client that got it after the export is not lost."""
        if self.redis is not None and self._redis_call(
                lambda: tokens.save(self.redis, token, user_id, expires, time.time()), token,
                "API token"):
            self._count("tokens_mirrored")

    def token_revoked(self, token: str, expires: float) -> None:
        """Mirror a revocation (logout): the after-app refuses the token from now on."""
        if self.redis is not None and self._redis_call(
                lambda: tokens.save_revoked(self.redis, token, expires, time.time()), token,
                "API token"):
            self._count("tokens_revoked")

    # --- live updates: the app calls this as it raises an event ---------------------------

    def event_raised(self, stream: str, fields: dict[str, Any], maxlen: int = 1000) -> None:
        """Append an event to the Redis stream the after-app reads (its own id there), so a
        client that reconnects to an after-instance still hears what a before-instance raised
        while it was away. Keep ``maxlen`` the after-app's (approximate trimming, as XADD's)."""
        if self.redis is not None and self._redis_call(
                lambda: self.redis.xadd(stream, fields, maxlen=maxlen, approximate=True), None,
                "event"):
            self._count("events_mirrored")

    def _pages(self, pager: Any, after: str | None) -> Iterator[bytes]:
        # A response lasts at most page_seconds: a sync worker's timeout (gunicorn: 30 s)
        # would kill the process mid-stream, and with it every session in its memory. The
        # trailer's "next" tells the client where to go on.
        encoder = msgspec.json.Encoder()
        deadline = time.monotonic() + self.page_seconds
        count, cursor = 0, None
        for cursor, record in pager(after):
            yield encoder.encode(record) + b"\n"
            count += 1
            if time.monotonic() > deadline:
                yield encoder.encode(Record(end=True, count=count, next=cursor)) + b"\n"
                return
        yield encoder.encode(Record(end=True, count=count)) + b"\n"

    # --- dual-write ------------------------------------------------------------------------

    def _mirror(self, app: Flask, interface: Any) -> None:
        """After Flask-Session stores or deletes a session, do the same in Redis."""
        if not compat.has_storage_hooks(interface):
            raise TypeError("dual-write needs a Flask-Session interface: call Session(app) first")
        source_prefix = getattr(interface, "key_prefix", "")

        def target_key(store_id: str) -> str:
            if self.target_prefix is None:
                return store_id
            return self.target_prefix + store_id[len(source_prefix):]

        def upserted(lifetime: timedelta, session: Any, store_id: str) -> None:
            key = target_key(store_id)
            seconds = max(1, int(lifetime.total_seconds()))
            try:
                value = self.serializer.encode(dict(session))
            except Exception as exc:  # noqa: BLE001 - never fail the user's request over it
                # The new app could not store it either (a type msgpack lacks, a value that
                # contains itself); a stale copy in Redis would be wrong.
                self._count("unconvertible")
                log.warning("session %s cannot be mirrored (%s)", short_id(session.sid), exc)
                self._redis_call(lambda: self.redis.delete(key), session.sid)
                return
            if self._redis_call(lambda: self.redis.set(key, value, ex=seconds), session.sid):
                self._count("mirrored")

        def deleted(store_id: str) -> None:
            key = target_key(store_id)
            seconds = max(1, int(app.permanent_session_lifetime.total_seconds()))
            # An empty session, not DEL: an export's SET NX that read the session before the
            # user logged out then finds the key taken, and the user stays logged out.
            empty = self.serializer.encode({"_permanent": True})
            if self._redis_call(lambda: self.redis.set(key, empty, ex=seconds),
                                store_id[len(source_prefix):]):
                self._count("deleted")

        compat.wrap_storage_writes(interface, upserted, deleted)

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self.stats, name, getattr(self.stats, name) + 1)

    def _redis_call(self, call: Callable[[], Any], sid: str | None, what: str = "session") -> bool:
        # The stateful app keeps serving while Redis is away: its own store is still the truth,
        # and `migrate export-sessions` run afterwards copies what the mirror missed.
        try:
            call()
            return True
        except Exception as exc:  # noqa: BLE001 - never fail the user's request over the mirror
            self._count("errors")
            log.warning("%s %s not mirrored to Redis (%s)", what, short_id(sid),
                        type(exc).__name__)
            return False
