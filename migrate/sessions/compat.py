"""Where migrate.sessions reaches inside its dependencies, because they offer no public way.

Every such use sits here, and tests/test_sessions_compat.py checks each one against the installed
versions: when a dependency changes, that test fails naming the dependency and the function here.

- redis-py: a connection's socket. ``RedisTarget`` counts one-line replies straight off it;
  ``Connection.read_response`` costs more CPU per reply than the rest of the export together.
- Flask-Session 0.8: the storage hooks its backends implement (``_retrieve_session_data``,
  ``_upsert_session``, ``_delete_session``), and its serializer's codecs (``verify sessions``
  reads Redis with them). The bridge wraps the two writes to mirror them; the
  after-app's interface replaces the read. Its Redis interface's constructor is skipped: it
  swaps any client but ``redis.Redis`` (a Redis Cluster) for one on localhost.
- cachelib: the entries of a ``SimpleCache`` (it cannot list them) and a ``FileSystemCache``'s
  folder.

Imports happen inside the functions: the export, which needs only redis-py, loads no Flask.
"""

from __future__ import annotations

import contextlib
import functools
import socket
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

# --- redis-py ------------------------------------------------------------------------------------


def socket_of(connection: Any) -> socket.socket:
    """The socket of a connected redis-py ``Connection``."""
    sock = getattr(connection, "_sock", None)
    if sock is None:
        raise ConnectionError("the Redis connection is closed")
    return sock


# --- Flask-Session -------------------------------------------------------------------------------

Upserted = Callable[[timedelta, Any, str], None]  # (lifetime, session, store id)
Deleted = Callable[[str], None]  # (store id)


def has_storage_hooks(interface: Any) -> bool:
    """Whether ``interface`` is a Flask-Session server-side interface (it has the hooks)."""
    return hasattr(interface, "_upsert_session") and hasattr(interface, "_delete_session")


def wrap_storage_writes(interface: Any, upserted: Upserted, deleted: Deleted) -> None:
    """After ``interface`` stores or deletes a session, call ``upserted`` or ``deleted``.

    Flask-Session calls these hooks from ``save_session`` and from ``regenerate`` (which
    deletes the old id at login), so every change to the store passes through them.
    """
    upsert, delete = interface._upsert_session, interface._delete_session

    def _upsert_session(lifetime: timedelta, session: Any, store_id: str) -> None:
        upsert(lifetime, session, store_id)
        upserted(lifetime, session, store_id)

    def _delete_session(store_id: str) -> None:
        delete(store_id)
        deleted(store_id)

    interface._upsert_session = _upsert_session
    interface._delete_session = _delete_session


@functools.cache
def redis_interface_base() -> type:
    """Flask-Session's ``RedisSessionInterface`` that keeps any client and reads through
    ``load(store_id)``, a method a subclass may replace."""
    from flask_session.base import ServerSideSessionInterface
    from flask_session.redis import RedisSessionInterface

    class FlaskSessionRedis(RedisSessionInterface):
        def __init__(self, app: Any, client: Any, key_prefix: str, use_signer: bool,
                     permanent: bool, sid_length: int, serialization_format: str) -> None:
            self.client = client
            ServerSideSessionInterface.__init__(self, app, key_prefix, use_signer, permanent,
                                                sid_length, serialization_format)

        def load(self, store_id: str) -> bytes | None:
            """The stored value of ``store_id``, as Flask-Session's Redis backend reads it."""
            return self.client.get(store_id)

        def _retrieve_session_data(self, store_id: str) -> dict | None:
            value = self.load(store_id)
            return self.serializer.decode(value) if value else None

    return FlaskSessionRedis


def flask_session_codecs(fmt: str) -> tuple[Any, tuple[Any, ...]]:
    """(encoder, decoders in the order it tries them) of Flask-Session's ``MsgSpecSerializer``
    for ``SESSION_SERIALIZATION_FORMAT`` ``fmt``. Its last resort, ``pickle.loads``, is left
    out: ``verify sessions`` never unpickles what Redis holds, it reports such a value."""
    from flask_session.base import MsgSpecSerializer

    serializer = MsgSpecSerializer(None, fmt)  # the app is used for its logger only
    return serializer.encoder, (serializer.decoder, serializer.alternate_decoder)


# --- cachelib ------------------------------------------------------------------------------------


def simple_cache_entries(cache: Any) -> list[tuple[str, tuple[float, bytes | None]]]:
    """A snapshot of a ``SimpleCache``: (key, (expires, pickled value)), in microseconds.

    Under the cache's own lock where it has one (cachelib >= 0.17); before that, a list of a
    dict's items is built in one step the interpreter does not interrupt.
    """
    lock = getattr(cache, "_lock", None)
    with lock if lock is not None else contextlib.nullcontext():
        return list(cache._cache.items())


def filesystem_cache_dir(cache: Any) -> Path:
    """The folder a ``FileSystemCache`` keeps its files in."""
    return Path(cache._path)
