"""The after-app's session interface: Flask-Session's Redis interface, for any Redis.

After-app (stateless)::

    from migrate.sessions.interface import RedisSessionInterface
    app.session_interface = RedisSessionInterface.from_config(app, redis_client)

It reads and writes exactly what ``Session(app)`` with ``SESSION_TYPE='redis'`` does, and adds:

- Redis Cluster: the client is used as given (Flask-Session 0.8 silently swaps anything but a
  ``redis.Redis`` for one on localhost);
- read-through: a session ``migrate export-sessions`` took from a FileSystemCache folder sits
  under its file digest, since the file never said its sid. On a miss, it is found by the
  digest of ``legacy_key_prefix + sid`` (sha256, then md5) and moved to ``key_prefix + sid`` in
  one atomic step; its legacy key is left as an empty tombstone, so neither a second instance
  nor a re-run of the export can bring the old record back;
- one round trip per request: the session's GET carries the reads the page will make
  (``prefetch=``: a callable from the request to ``Read``s, even a key named by a session field,
  such as ``cart:<user_id>``; the app takes them with ``take_prefetched``), with
  ``SESSION_REFRESH_EACH_REQUEST`` the TTL is extended in that same round trip and an unchanged
  session is not written back, and the writes an app ``defer``s go in one pipeline with the
  session's own write at the end of the request. A prefetched reply is the key as it was at
  the session's read: code that changes such a key before the page reads it takes the reply out
  of the way first (``take_prefetched``). On a Redis Cluster the keys live in different slots:
  there the session is read alone, and every app read falls back to its own round trip.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from flask import Flask, Request, Response, has_request_context, request
from flask.sessions import SessionMixin

from migrate.sessions.compat import redis_interface_base
from migrate.sessions.record import DEFAULT_PREFIX, LEGACY_PREFIX

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

# The session (read through as _PROMOTE does), its TTL extended when asked, and the app's reads,
# in one call. KEYS: the session, its legacy keys, then the fixed reads' keys. ARGV: the number
# of legacy keys, the TTL to extend to in ms (0: none), the serialization format, the number of
# fixed reads, their commands, then (command, key prefix, session field) per read whose key a
# session field completes. A read that fails (a key of another type) answers its error in its
# place, and the app's own read of that key meets the error as it would have.
# A field-named key cannot be declared in KEYS (it is known only here): standalone Redis and a
# Sentinel primary allow that; a Redis Cluster never runs this script.
_LOAD = """
local nlegacy, ttl, fmt, nfixed = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local value = redis.call('GET', KEYS[1])
if not value then
  for i = 2, 1 + nlegacy do
    local old = redis.call('GET', KEYS[i])
    if old and old ~= '' then
      local left = redis.call('PTTL', KEYS[i])
      if left > 0 then redis.call('SET', KEYS[1], old, 'PX', left)
      else redis.call('SET', KEYS[1], old) end
      redis.call('SET', KEYS[i], '', 'KEEPTTL')
      value = old
      break
    end
  end
end
if value and ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
local read = redis.pcall
local out = {value or false}
for i = 1, nfixed do out[#out + 1] = read(ARGV[4 + i], KEYS[1 + nlegacy + i]) end
local data = nil
if value and #ARGV > 4 + nfixed then
  local ok, decoded = pcall(fmt == 'json' and cjson.decode or cmsgpack.unpack, value)
  if ok and type(decoded) == 'table' then data = decoded end
end
for i = 5 + nfixed, #ARGV - 2, 3 do
  local field = data and data[ARGV[i + 2]]
  if type(field) == 'number' and field == math.floor(field) and math.abs(field) < 2^53 then
    field = string.format('%d', field)
  end
  if type(field) == 'string' then
    out[#out + 1] = {ARGV[i + 1] .. field, read(ARGV[i], ARGV[i + 1] .. field)}
  else
    out[#out + 1] = false
  end
end
return out
"""

# What one request keeps in its WSGI environ (never in the process: any thread, any instance).
_PREFETCHED = "migrate.sessions.prefetched"  # {(COMMAND, key): reply} not yet taken
_LOADED = "migrate.sessions.loaded"  # (store id, the bytes read, TTL extended at load)
_DEFERRED = "migrate.sessions.deferred"  # [(method, args, kwargs)] for the last round trip
_PIPELINE = "migrate.sessions.pipeline"  # the pipeline save_session is filling
READS = {"GET", "HGETALL", "SMEMBERS", "EXISTS"}


@dataclass(frozen=True)
class Read:
    """A read to make with the session: ``command`` of ``key``, or when ``field`` is set, of
    ``key`` + the session's value of ``field`` (``Read("HGETALL", "cart:", "user_id")``)."""

    command: str
    key: str
    field: str | None = None

    def __post_init__(self) -> None:
        if self.command.upper() not in READS:
            raise ValueError(f"prefetch {self.command!r}: use one of {', '.join(sorted(READS))}")


Prefetch = Callable[[Request], Sequence[Read]]


def take_prefetched(command: str, key: str) -> tuple[bool, Any]:
    """(True, reply) for a read this request's session round trip already made, once; after
    that, or outside a request, (False, None): the caller asks Redis itself."""
    if not has_request_context():
        return False, None
    found = request.environ.get(_PREFETCHED)
    if not found or (command.upper(), key) not in found:
        return False, None
    return True, found.pop((command.upper(), key))


def defer(method: str, *args: Any, **kwargs: Any) -> None:
    """Send ``client.method(*args, **kwargs)`` in the request's last round trip, with the
    session's write: for a write whose reply the page does not need. Only within a request
    whose session this interface saves (where Redis was unreachable at the session's read,
    nothing is saved: neither is this)."""
    if not has_request_context():
        raise RuntimeError("defer() needs a request: outside one, send the command directly")
    request.environ.setdefault(_DEFERRED, []).append((method, args, kwargs))


def _failed(reply: Any) -> bool:
    """Whether a script's reply in a list is the error one command met (redis-py returns such
    an error in place, as an exception object)."""
    return isinstance(reply, Exception)


def _decoded(command: str, reply: Any) -> Any:
    """A reply as redis-py would give it for ``command`` (a script returns raw lists)."""
    if command == "HGETALL":
        items = iter(reply or [])
        return dict(zip(items, items, strict=True))
    if command == "SMEMBERS":
        return set(reply or [])
    return None if reply is False else reply


def legacy_digests(sid: str, key_prefix: str = DEFAULT_PREFIX) -> list[str]:
    """The FileSystemCache file names a session could have had: sha256 (cachelib >= 0.16), md5."""
    raw = (key_prefix + sid).encode()
    return [hashlib.sha256(raw).hexdigest(), hashlib.md5(raw).hexdigest()]


@functools.lru_cache(maxsize=1024)
def _legacy_keys(sid: str, key_prefix: str, legacy_prefix: str) -> tuple[str, ...]:
    # Every request of a session sends its legacy keys (the script promotes on a miss): two
    # digests per request, the same ones each time, so they are kept for the busiest sessions
    # (at most 1024 sids: a few MB even if every cookie were a forged 4 KB one).
    return tuple(legacy_prefix + d for d in legacy_digests(sid, key_prefix))


class RedisSessionInterface(redis_interface_base()):  # type: ignore[misc]
    """Flask-Session's Redis interface, plus Redis Cluster and read-through of legacy records.

    ``client`` may be ``redis.Redis``, a Sentinel master or ``redis.cluster.RedisCluster``.
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
        prefetch: Prefetch | None = None,
    ) -> None:
        from redis.cluster import RedisCluster

        super().__init__(app, client, key_prefix, use_signer, permanent, sid_length,
                         serialization_format)
        self.read_through = read_through
        self.legacy_prefix = legacy_prefix
        self.legacy_key_prefix = key_prefix if legacy_key_prefix is None else legacy_key_prefix
        self.is_cluster = isinstance(client, RedisCluster)
        self.promote_script = None if self.is_cluster else client.register_script(_PROMOTE)
        self.prefetch = prefetch
        self.load_script = None if self.is_cluster else client.register_script(_LOAD)

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

    def load(self, store_id: str) -> bytes | None:
        """The stored session, or on a miss the legacy record it was exported as, promoted."""
        if self.load_script is not None and has_request_context():
            return self._load_with_reads(store_id)
        if not self.read_through:
            return self.client.get(store_id)
        sid = store_id[len(self.key_prefix):]
        legacy = [self.legacy_prefix + d for d in legacy_digests(sid, self.legacy_key_prefix)]
        if self.promote_script is not None:
            return self.promote_script(keys=[store_id, *legacy])
        return self.client.get(store_id) or self._promote_cluster(store_id, legacy)

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

    def _load_with_reads(self, store_id: str) -> bytes | None:
        """The session, its TTL extended if asked, and the request's reads: one round trip."""
        legacy: tuple[str, ...] = ()
        if self.read_through:
            legacy = _legacy_keys(store_id[len(self.key_prefix):], self.legacy_key_prefix,
                                  self.legacy_prefix)
        reads = list(self.prefetch(request)) if self.prefetch is not None else []
        fixed = [r for r in reads if r.field is None]
        named = [r for r in reads if r.field is not None]
        config = self.app.config
        ttl_ms = 0
        if config.get("SESSION_REFRESH_EACH_REQUEST", True):
            ttl_ms = int(self.app.permanent_session_lifetime.total_seconds() * 1000)
        args: list[Any] = [len(legacy), ttl_ms, config.get("SESSION_SERIALIZATION_FORMAT",
                                                             "msgpack"), len(fixed)]
        args += [r.command.upper() for r in fixed]
        for r in named:
            args += [r.command.upper(), r.key, r.field]
        reply = self.load_script(keys=[store_id, *legacy, *(r.key for r in fixed)], args=args)
        value = reply[0] or None
        found = {(r.command.upper(), r.key): _decoded(r.command.upper(), answer)
                 for r, answer in zip(fixed, reply[1:1 + len(fixed)], strict=True)
                 if not _failed(answer)}
        for r, answer in zip(named, reply[1 + len(fixed):], strict=True):
            # [the key the session's field completed, its reply], or nothing without the field
            if answer and not _failed(answer[1]):
                key = answer[0].decode() if isinstance(answer[0], bytes) else answer[0]
                found[(r.command.upper(), key)] = _decoded(r.command.upper(), answer[1])
        environ = request.environ
        environ[_PREFETCHED] = found
        environ[_LOADED] = (store_id, value, bool(value and ttl_ms))
        return value

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        """Flask-Session's save, with the session's write (if any) and the request's deferred
        writes in one pipeline: one round trip, or none when nothing changed."""
        deferred = request.environ.pop(_DEFERRED, [])
        pipe = self.client.pipeline(transaction=False)
        request.environ[_PIPELINE] = pipe
        try:
            super().save_session(app, session, response)
        finally:
            request.environ.pop(_PIPELINE, None)
        for method, args, kwargs in deferred:
            getattr(pipe, method)(*args, **kwargs)
        if len(pipe):
            pipe.execute()

    def _upsert_session(self, session_lifetime: Any, session: SessionMixin, store_id: str) -> None:
        # Flask-Session writes the session back on every request when SESSION_REFRESH_EACH_REQUEST
        # is on, only to extend its TTL: the load already did that, so bytes equal to what it
        # read are not sent again. (Equal bytes, not `modified`: a value changed in place, which
        # Flask cannot see, is still written.)
        loaded = request.environ.get(_LOADED) if has_request_context() else None
        encoded = self.serializer.encode(session)
        if loaded and loaded[0] == store_id and loaded[2] and loaded[1] == encoded:
            return
        pipe = request.environ.get(_PIPELINE) if has_request_context() else None
        target = pipe if pipe is not None else self.client
        target.set(name=store_id, value=encoded,
                   ex=int(session_lifetime.total_seconds()))

    def _delete_session(self, store_id: str) -> None:
        pipe = request.environ.get(_PIPELINE) if has_request_context() else None
        (pipe if pipe is not None else self.client).delete(store_id)
