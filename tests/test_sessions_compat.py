"""migrate/sessions/compat.py against the installed redis-py, Flask-Session and cachelib.

Each use of a dependency's internals is checked here. Any failure, an assertion or an error,
names the dependency, its version and the function to adapt, so an upgrade that breaks one
says so at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import pickle
import socket
import time
import warnings
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import msgspec
import pytest
import redis
from cachelib import FileSystemCache, SimpleCache
from flask import Flask, request, session

from migrate.sessions import compat
from migrate.sessions.sources import COUNT_FILES, TMP_SUFFIX, directory_records
from tests import test_sessions_support as support

redis_server = support.redis_server


@contextlib.contextmanager
def relied_on(dependency: str, what: str, function: str) -> Iterator[None]:
    """Turn any failure inside into one line naming the dependency and what to adapt."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - whatever broke, the message says where to look
        pytest.fail(f"{dependency} {version(dependency)} changed {what}: adapt {function} "
                    f"(migrate/sessions), or pin the last version that works "
                    f"[{type(exc).__name__}: {exc}]")


# --- redis-py ------------------------------------------------------------------------------------


def test_redis_py_connection_socket(redis_server):
    pool = redis.Redis.from_url(redis_server.url).connection_pool
    with relied_on("redis", "Connection._sock (the connected socket)", "compat.socket_of"):
        connection = pool.connection_class(**pool.connection_kwargs)
        connection.connect()
        try:
            sock = compat.socket_of(connection)
            assert isinstance(sock, socket.socket)
            connection.send_packed_command([b"*1\r\n$4\r\nPING\r\n"], check_health=False)
            assert sock.recv(64) == b"+PONG\r\n"
        finally:
            connection.disconnect()
    with pytest.raises(ConnectionError):
        compat.socket_of(connection)


# --- Flask-Session -------------------------------------------------------------------------------


def test_flask_session_storage_hooks_keep_their_signatures():
    expected = {
        "_retrieve_session_data": ["self", "store_id"],
        "_upsert_session": ["self", "session_lifetime", "session", "store_id"],
        "_delete_session": ["self", "store_id"],
    }
    with relied_on("flask-session", "its storage hooks",
                   "compat.wrap_storage_writes and compat.redis_interface_base"):
        from flask_session.base import ServerSideSessionInterface

        for name, parameters in expected.items():
            hook = getattr(ServerSideSessionInterface, name)
            assert list(inspect.signature(hook).parameters) == parameters, name
        init = list(inspect.signature(ServerSideSessionInterface.__init__).parameters)
        assert init[:7] == ["self", "app", "key_prefix", "use_signer", "permanent",
                            "sid_length", "serialization_format"], init


def test_flask_session_writes_pass_through_the_wrapped_hooks():
    from flask_session import Session

    app = Flask("compat")
    app.config.update(SESSION_TYPE="cachelib", SESSION_CACHELIB=SimpleCache())
    Session(app)
    interface = app.session_interface
    calls: list[tuple[str, str]] = []

    @app.post("/login")
    def login():
        interface.regenerate(session)
        session["user_id"] = 1
        return session.sid

    @app.post("/logout")
    def logout():
        session.clear()
        return ""

    with relied_on("flask-session", "when save_session and regenerate call the storage hooks",
                   "compat.wrap_storage_writes"):
        assert compat.has_storage_hooks(interface)
        compat.wrap_storage_writes(
            interface, lambda lifetime, s, store_id: calls.append(("upserted", store_id)),
            lambda store_id: calls.append(("deleted", store_id)))
        client = app.test_client()
        first = client.post("/login").text
        second = client.post("/login").text
        client.post("/logout")
        assert calls == [("upserted", f"session:{first}"), ("deleted", f"session:{first}"),
                         ("upserted", f"session:{second}"), ("deleted", f"session:{second}")]
        assert interface.cache.get(f"session:{second}") is None  # the store was written too


def test_flask_session_redis_interface_keeps_any_client_and_reads_through_load():
    class Client:  # not a redis.Redis: Flask-Session's own __init__ would swap it for localhost
        def get(self, key):
            return msgspec.msgpack.encode({"user_id": 7}) if key == "session:known" else None

    app = Flask("compat")
    with relied_on("flask-session", "its Redis interface (constructor, how open_session reads)",
                   "compat.redis_interface_base"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # Flask-Session warns as it replaces a client
            interface = compat.redis_interface_base()(app, Client(), "session:", False, True,
                                                      32, "msgpack")
        assert isinstance(interface.client, Client)
        with app.test_request_context(headers={"Cookie": "session=known"}):
            assert dict(interface.open_session(app, request)) == {"user_id": 7}


@pytest.mark.parametrize("fmt", ["msgpack", "json"])
def test_flask_session_codecs_are_the_ones_its_serializer_uses(fmt):
    from flask_session.base import MsgSpecSerializer

    app = Flask("compat")
    value = {"_permanent": True, "pair": (1, 2)}
    with relied_on("flask-session", "MsgSpecSerializer (encoder, decoder, alternate_decoder)",
                   "compat.flask_session_codecs"):
        encoder, decoders = compat.flask_session_codecs(fmt)
        theirs = MsgSpecSerializer(app, fmt)
        stored = theirs.encode(value)
        assert encoder.encode(value) == stored
        assert decoders[0].decode(stored) == theirs.decode(stored) == {"_permanent": True,
                                                                       "pair": [1, 2]}
        other = (msgspec.json if fmt == "msgpack" else msgspec.msgpack).encode(value)
        assert decoders[1].decode(other) == theirs.decode(other)  # its fallback decoder


# --- cachelib ------------------------------------------------------------------------------------


def test_cachelib_simple_cache_entries():
    cache = SimpleCache()
    cache.set("session:abc", {"user_id": 3}, timeout=60)
    with relied_on("cachelib", "SimpleCache._cache (key -> (expires, pickle))",
                   "compat.simple_cache_entries"):
        entries = compat.simple_cache_entries(cache)
        assert [key for key, _ in entries] == ["session:abc"]
        expires, pickled = entries[0][1]
        assert time.time() < expires <= time.time() + 60
        assert pickle.loads(pickled) == {"user_id": 3}


def test_cachelib_filesystem_cache_folder_and_files(tmp_path: Path):
    cache = FileSystemCache(str(tmp_path), threshold=10)
    cache.set("session:abc", {"user_id": 3}, timeout=60)
    with relied_on("cachelib", "FileSystemCache._path", "compat.filesystem_cache_dir"):
        assert compat.filesystem_cache_dir(cache) == tmp_path
    # The file format sources.directory_records reads: cachelib's names and layout, not ours.
    with relied_on("cachelib", "FileSystemCache's files (names, 4-byte expiry, pickle)",
                   "sources.directory_records"):
        assert FileSystemCache._fs_transaction_suffix == TMP_SUFFIX
        names = {p.name for p in tmp_path.iterdir()}
        assert names - COUNT_FILES == {hashlib.sha256(b"session:abc").hexdigest()}, names
        (record,) = directory_records(tmp_path)
        assert pickle.loads(record.pickle) == {"user_id": 3}
        assert time.time() < record.expires <= time.time() + 60
