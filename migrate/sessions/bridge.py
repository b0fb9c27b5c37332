"""The migration window, in the app: export live sessions, mirror changes, read them through.

Before-app (stateful), for the migration window only::

    from migrate.sessions.bridge import MigrationBridge
    Session(app)                 # first: the bridge wraps Flask-Session's interface
    MigrationBridge(app)         # reads MIGRATE_BRIDGE_TOKEN and MIGRATE_BRIDGE_REDIS_URL

- ``GET /_migrate/sessions`` with ``Authorization: Bearer <token>`` streams every live session
  as NDJSON (``migrate.sessions`` documents the lines). Without a token configured the route
  does not exist (404); a missing or wrong token gets 401 (compared in constant time).
- With a Redis URL, every session save and delete is mirrored to Redis in Flask-Session's
  format, so a session that changes during or after the export is current there. A delete
  leaves an empty session under the key, so an export still running cannot bring it back.
  ``GET /_migrate/status`` (same token) counts mirrored saves, deletes and errors; the app
  keeps serving while Redis is away, and a later export copies what the mirror missed.

A ``SimpleCache`` lives in one process: the stream holds the sessions of the worker process
that answers it, so run one worker per instance (as the sample shop does) while migrating.

Sessions in a store other than cachelib's SimpleCache/FileSystemCache: pass ``source=`` any
object with ``iter_sessions()`` yielding ``migrate.sessions.Record`` (sid, expires, and data as
a JSON-able dict or pickle bytes); see ``SessionSource``.

After-app (stateless): ``RedisSessionInterface`` is Flask-Session's Redis interface that accepts a
Redis Cluster client (Flask-Session would silently use localhost instead) and, on a miss, finds
a session exported from a FileSystemCache directory under its file digest and promotes it.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import msgspec
from flask import Blueprint, Flask, Response, abort, request, stream_with_context

from migrate.sessions import (
    DEFAULT_PREFIX,
    LEGACY_PREFIX,
    Record,
    Serializer,
    directory_records,
    iter_dump_lines,
    short_id,
)

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

        if isinstance(self.cache, SimpleCache):
            # A snapshot under the cache's own lock: a dict of references, copied in
            # microseconds, so requests are not held up while the stream is sent.
            with self.cache._lock:
                items = list(self.cache._cache.items())
            prefix, cut = self.key_prefix, len(self.key_prefix)
            keyed = sorted(
                (hashlib.sha256(key.encode()).hexdigest(), key, entry)
                for key, entry in items if key.startswith(prefix) and entry[1] is not None
            )
            start = bisect.bisect_right([k[0] for k in keyed], after) if after else 0
            for digest, key, (expires, pickled) in keyed[start:]:
                yield digest, Record(sid=key[cut:], expires=float(expires), pickle=pickled)
        else:
            for record in directory_records(Path(self.cache._path)):
                if after is None or (record.digest or "") > after:
                    yield record.digest or "", record


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
    ) -> None:
        self.token = token
        self.redis_url = redis_url
        self.redis = redis_client
        self.source = source
        self.target_prefix = target_prefix
        self.serializer = Serializer(serializer)
        self.url_prefix = url_prefix
        self.page_seconds = page_seconds
        self.stats = {"mirrored": 0, "deleted": 0, "unconvertible": 0, "errors": 0}
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
            app.register_blueprint(self._blueprint(token))
        if self.redis is None and redis_url:
            from migrate.sessions import redis_client

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
            # Mirror errors mean Redis missed changes: run export-sessions again afterwards.
            with self._lock:
                stats = dict(self.stats)
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

        return bp

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

    def _target_key(self, interface: Any, store_id: str) -> str:
        if self.target_prefix is None:
            return store_id
        source_prefix = getattr(interface, "key_prefix", "")
        return self.target_prefix + store_id[len(source_prefix):]

    def _mirror(self, app: Flask, interface: Any) -> None:
        """Wrap Flask-Session's upsert and delete so every change also lands in Redis."""
        if not hasattr(interface, "_upsert_session"):
            raise TypeError("dual-write needs a Flask-Session interface: call Session(app) first")
        upsert, delete = interface._upsert_session, interface._delete_session

        def _upsert_session(lifetime: timedelta, session: Any, store_id: str) -> None:
            upsert(lifetime, session, store_id)
            key = self._target_key(interface, store_id)
            seconds = max(1, int(lifetime.total_seconds()))
            try:
                value = self.serializer.encode(dict(session))
            except (TypeError, OverflowError, ValueError) as exc:
                # The new app could not store it either; a stale copy in Redis would be wrong.
                self._count("unconvertible")
                log.warning("session %s cannot be mirrored (%s)", short_id(session.sid), exc)
                self._redis_call(lambda: self.redis.delete(key), session.sid)
                return
            if self._redis_call(lambda: self.redis.set(key, value, ex=seconds), session.sid):
                self._count("mirrored")

        def _delete_session(store_id: str) -> None:
            delete(store_id)
            key = self._target_key(interface, store_id)
            seconds = max(1, int(app.permanent_session_lifetime.total_seconds()))
            # An empty session, not DEL: an export's SET NX that read the session before the
            # user logged out then finds the key taken, and the user stays logged out.
            empty = self.serializer.encode({"_permanent": True})
            sid = store_id[len(getattr(interface, "key_prefix", "")):]
            if self._redis_call(lambda: self.redis.set(key, empty, ex=seconds), sid):
                self._count("deleted")

        interface._upsert_session = _upsert_session
        interface._delete_session = _delete_session

    def _count(self, name: str) -> None:
        with self._lock:
            self.stats[name] += 1

    def _redis_call(self, call: Any, sid: str | None) -> bool:
        # The stateful app keeps serving while Redis is away: its own store is still the truth,
        # and `migrate export-sessions` run afterwards copies what the mirror missed.
        try:
            call()
            return True
        except Exception as exc:  # noqa: BLE001 - never fail the user's request over the mirror
            self._count("errors")
            log.warning("session %s not mirrored to Redis (%s)", short_id(sid),
                        type(exc).__name__)
            return False


# --- the after-app's side ------------------------------------------------------------------------

_PROMOTE = """
local found = redis.call('GET', KEYS[1])
if found then return found end
for i = 2, #KEYS do
  local old = redis.call('GET', KEYS[i])
  if old and old ~= '' then
    local ttl = redis.call('PTTL', KEYS[i])
    if ttl > 0 then redis.call('SET', KEYS[1], old, 'PX', ttl)
    else redis.call('SET', KEYS[1], old) end
    redis.call('SET', KEYS[i], '', 'KEEPTTL')
    return old
  end
end
return false
"""


def legacy_digests(sid: str, key_prefix: str = DEFAULT_PREFIX) -> list[str]:
    """The FileSystemCache file names a session could have had: sha256 (cachelib >= 0.16), md5."""
    raw = (key_prefix + sid).encode()
    return [hashlib.sha256(raw).hexdigest(), hashlib.md5(raw).hexdigest()]


def _flask_session_redis_interface() -> type:
    from flask_session.redis import RedisSessionInterface as Base

    return Base


class RedisSessionInterface(_flask_session_redis_interface()):  # type: ignore[misc]
    """Flask-Session's Redis interface, plus Redis Cluster and read-through of legacy records.

    - ``client`` may be ``redis.Redis``, a Sentinel master or ``redis.cluster.RedisCluster``:
      it is used as given (Flask-Session 0.8 swaps anything but ``Redis`` for localhost).
    - ``read_through``: on a miss, the record ``export-sessions`` wrote under the digest of
      ``legacy_key_prefix + sid`` (sha256, then md5) is moved to ``key_prefix + sid`` in one
      atomic step and its legacy key is left as an empty tombstone, so neither a second
      instance nor a re-run of the export can bring the old record back.
    """

    def __init__(
        self,
        app: Flask,
        client: Any,
        *,
        key_prefix: str = DEFAULT_PREFIX,
        use_signer: bool = False,
        permanent: bool = True,
        sid_length: int = 32,
        serialization_format: str = "msgpack",
        read_through: bool = True,
        legacy_prefix: str = LEGACY_PREFIX,
        legacy_key_prefix: str | None = None,
    ) -> None:
        from flask_session.base import ServerSideSessionInterface

        self.client = client
        # Skip Flask-Session's Redis __init__: its isinstance check is what drops the cluster.
        ServerSideSessionInterface.__init__(
            self, app, key_prefix, use_signer, permanent, sid_length, serialization_format
        )
        self.read_through = read_through
        self.legacy_prefix = legacy_prefix
        self.legacy_key_prefix = key_prefix if legacy_key_prefix is None else legacy_key_prefix
        self.is_cluster = type(client).__name__ == "RedisCluster"
        self._promote = None if self.is_cluster else client.register_script(_PROMOTE)

    @classmethod
    def from_config(cls, app: Flask, client: Any, **options: Any) -> RedisSessionInterface:
        """Built from the same ``SESSION_*`` settings Flask-Session's ``Session(app)`` reads."""
        config = app.config
        return cls(
            app,
            client,
            key_prefix=config.get("SESSION_KEY_PREFIX", DEFAULT_PREFIX),
            use_signer=config.get("SESSION_USE_SIGNER", False),
            permanent=config.get("SESSION_PERMANENT", True),
            sid_length=config.get("SESSION_ID_LENGTH", 32),
            serialization_format=config.get("SESSION_SERIALIZATION_FORMAT", "msgpack"),
            **options,
        )

    def _retrieve_session_data(self, store_id: str) -> dict | None:
        if not self.read_through:
            value = self.client.get(store_id)
        else:
            sid = store_id[len(self.key_prefix):]
            legacy = [self.legacy_prefix + d for d in legacy_digests(sid, self.legacy_key_prefix)]
            if self._promote is not None:
                value = self._promote(keys=[store_id, *legacy])
            else:
                value = self.client.get(store_id) or self._promote_cluster(store_id, legacy)
        return self.serializer.decode(value) if value else None

    def _promote_cluster(self, store_id: str, legacy: list[str]) -> bytes | None:
        # The keys live in different slots, so no script: claim the legacy record with one
        # atomic SET ... GET (only one instance wins), then create the session if still absent.
        for key in legacy:
            old = self.client.set(key, b"", xx=True, keepttl=True, get=True)
            if old:
                ttl = self.client.pttl(key)
                self.client.set(store_id, old, px=ttl if ttl and ttl > 0 else None, nx=True)
                return self.client.get(store_id)
        return None
