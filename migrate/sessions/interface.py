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
  nor a re-run of the export can bring the old record back.
"""

from __future__ import annotations

import hashlib
from typing import Any

from flask import Flask

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


def legacy_digests(sid: str, key_prefix: str = DEFAULT_PREFIX) -> list[str]:
    """The FileSystemCache file names a session could have had: sha256 (cachelib >= 0.16), md5."""
    raw = (key_prefix + sid).encode()
    return [hashlib.sha256(raw).hexdigest(), hashlib.md5(raw).hexdigest()]


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
    ) -> None:
        from redis.cluster import RedisCluster

        super().__init__(app, client, key_prefix, use_signer, permanent, sid_length,
                         serialization_format)
        self.read_through = read_through
        self.legacy_prefix = legacy_prefix
        self.legacy_key_prefix = key_prefix if legacy_key_prefix is None else legacy_key_prefix
        self.is_cluster = isinstance(client, RedisCluster)
        self.promote_script = None if self.is_cluster else client.register_script(_PROMOTE)

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
