"""The Redis, Redis Cluster or Sentinel primary that sessions go to: a client for a URL, and
batched writes."""

from __future__ import annotations

from typing import Any

import msgspec

from migrate import redact, redisurl
from migrate.errors import ConnectionFailure
from migrate.sessions.compat import socket_of
from migrate.sessions.record import short_id


def redis_client(url: str, cluster: bool = False, **options: Any) -> Any:
    """A redis-py client for ``url`` (a plain Redis, a Redis Cluster for ``redis+cluster://``
    or ``cluster``, a Sentinel set's primary for ``redis+sentinel://``: see migrate.redisurl).

    A malformed URL is a UsageError; a client that cannot be made, a ConnectionFailure.
    """
    import redis

    options.setdefault("socket_connect_timeout", 3)
    options.setdefault("socket_timeout", 30)
    parsed = redisurl.parse(url, cluster)
    try:
        return redisurl.client(parsed, **options)
    except (redis.exceptions.RedisError, ValueError, OSError) as exc:
        raise ConnectionFailure(
            f"cannot reach {_kind(parsed)} at {redact.url(url)} "
            f"({type(exc).__name__}): start it, or fix --redis"
        ) from None


def _kind(parsed: redisurl.RedisURL) -> str:
    return {"cluster": "Redis Cluster", "sentinel": "Redis Sentinel"}.get(parsed.kind, "Redis")


class Item(msgspec.Struct, gc=False):
    """One record ready to write (a Struct: made 100,000s of times, in C, not GC-tracked)."""

    key: bytes
    value: bytes
    ttl_ms: int
    overwrite: bool
    ident: str | None  # sid or digest: only ever shown as short_id(ident)
    duplicate: bool = False

    @property
    def label(self) -> str:
        return short_id(self.ident)


class Target:
    """Where sessions go. ``send`` a batch, later ``receive`` its outcomes ('written',
    'exists' or Redis's refusal, one per item, in order), so Redis works on one batch while
    the next is being prepared."""

    def __init__(self, client: Any, label: str) -> None:
        self.client = client
        self.label = label

    def send(self, items: list[Item]) -> None:
        raise NotImplementedError

    def receive(self, items: list[Item]) -> list[str]:
        raise NotImplementedError

    def exists(self, keys: list[bytes]) -> list[bool]:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.exists(key)
        return [bool(n) for n in pipe.execute()]

    def read(self, keys: list[bytes]) -> list[tuple[bytes | None, int]]:
        """(value, PTTL) per key."""
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.get(key)
            pipe.pttl(key)
        flat = pipe.execute()
        return list(zip(flat[::2], flat[1::2], strict=True))

    def close(self) -> None:
        self.client.close()


def _set_commands(items: list[Item]) -> bytes:
    """SET key value PX ttl [NX] for each item, in RESP."""
    parts = []
    for it in items:
        ttl = b"%d" % it.ttl_ms
        if it.overwrite:
            parts.append(b"*5\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n$2\r\nPX\r\n$%d\r\n%b\r\n"
                         % (len(it.key), it.key, len(it.value), it.value, len(ttl), ttl))
        else:
            parts.append(
                b"*6\r\n$3\r\nSET\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n$2\r\nPX\r\n$%d\r\n%b\r\n$2\r\nNX\r\n"
                % (len(it.key), it.key, len(it.value), it.value, len(ttl), ttl))
    return b"".join(parts)


class RedisTarget(Target):
    """Batched writes to one Redis server over one connection (one round trip per batch).

    redis-py's pipeline spends more CPU per command than Redis does; building RESP here and
    counting one-line replies is what makes the export far faster than a SET loop.
    """

    def __init__(self, client: Any, label: str) -> None:
        super().__init__(client, label)
        self._conn: Any = None
        self._buf = bytearray()  # replies received and not yet accounted for

    def _connection(self) -> Any:
        if self._conn is None:
            # A connection of our own, with the client's settings (TLS, AUTH, database).
            pool = self.client.connection_pool
            self._conn = pool.connection_class(**pool.connection_kwargs)
            self._conn.connect()
        return self._conn

    def send(self, items: list[Item]) -> None:
        self._connection().send_packed_command([_set_commands(items)], check_health=False)

    def receive(self, items: list[Item]) -> list[str]:
        """The outcomes of the oldest batch sent and not yet received."""
        sock = socket_of(self._connection())
        count = len(items)
        buf = self._buf  # may already hold replies to the next batch: keep them
        # Every reply to SET is one line: +OK, a nil ($-1 or _), or -ERROR.
        while buf.count(b"\r\n") < count:
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("connection closed")
            buf += chunk
        ok = b"+OK\r\n" * count
        if buf.startswith(ok):  # the usual case: every SET done, no need to look line by line
            self._buf = buf[len(ok):]
            return ["written"] * count
        lines = bytes(buf).split(b"\r\n", count)
        self._buf = bytearray(lines.pop())
        outcomes = []
        for line in lines:
            if line == b"+OK":
                outcomes.append("written")
            elif line in (b"$-1", b"_"):
                outcomes.append("exists")
            else:
                outcomes.append("redis refused it: " + line[1:].decode(errors="replace")[:80])
        return outcomes

    def close(self) -> None:
        if self._conn is not None:
            self._conn.disconnect()
            self._conn = None
        self.client.close()


class ClusterTarget(Target):
    """Batched writes to a Redis Cluster: redis-py groups the batch by node and slot."""

    def __init__(self, client: Any, label: str) -> None:
        super().__init__(client, label)
        self._outcomes: list[list[str]] = []

    def send(self, items: list[Item]) -> None:
        pipe = self.client.pipeline()
        for it in items:
            pipe.set(it.key, it.value, px=it.ttl_ms, nx=not it.overwrite)
        outcomes = []
        for reply in pipe.execute(raise_on_error=False):
            if isinstance(reply, Exception):
                if _is_connection_error(reply):
                    raise reply
                outcomes.append(f"redis refused it: {str(reply)[:80]}")
            else:
                outcomes.append("written" if reply else "exists")
        self._outcomes.append(outcomes)

    def receive(self, items: list[Item]) -> list[str]:
        return self._outcomes.pop(0)


def _is_connection_error(exc: BaseException) -> bool:
    import redis

    return isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                            ConnectionError, OSError))


def open_target(url: str, cluster: bool = False) -> Target:
    """Connect (and PING) the Redis, Redis Cluster or Sentinel primary at ``url``;
    ConnectionFailure if down. ``wait_replicas`` in the URL: see ``WaitingTarget``."""
    import redis

    parsed = redisurl.parse(url, cluster)
    client = redis_client(url, cluster)
    try:
        client.ping()
    except (redis.exceptions.RedisError, OSError) as exc:
        raise ConnectionFailure(
            f"cannot reach {_kind(parsed)} at {redact.url(url)} "
            f"({type(exc).__name__}): start it, or fix --redis"
        ) from None
    if parsed.kind == "cluster":
        return ClusterTarget(client, redact.url(url))
    if parsed.wait_replicas:
        return WaitingTarget(client, redact.url(url), parsed.wait_replicas,
                             parsed.wait_timeout_ms)
    return RedisTarget(client, redact.url(url))


class WaitingTarget(RedisTarget):
    """A RedisTarget that sends ``WAIT replicas timeout`` after each batch and refuses to call
    the batch done until that many replicas have it.

    Replication is asynchronous: a write the primary acknowledged and then lost in a crash,
    before any replica had it, is gone after the failover. WAIT bounds that: an export that
    ends without an error has every session on ``replicas`` replicas as well.
    """

    def __init__(self, client: Any, label: str, replicas: int, timeout_ms: int) -> None:
        super().__init__(client, label)
        self.replicas, self.timeout_ms = replicas, timeout_ms
        args = [b"WAIT", b"%d" % replicas, b"%d" % timeout_ms]
        self._wait = b"*3\r\n" + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in args)

    def send(self, items: list[Item]) -> None:
        # Behind the batch on the same connection: WAIT covers every write sent before it.
        self._connection().send_packed_command([_set_commands(items) + self._wait],
                                               check_health=False)

    def receive(self, items: list[Item]) -> list[str]:
        outcomes = super().receive(items)
        reply = self._line()
        acked = int(reply[1:]) if reply[:1] == b":" else -1
        if acked < self.replicas:
            got = f"{acked}" if acked >= 0 else reply.decode(errors="replace")[:80]
            raise ConnectionFailure(
                f"only {got} of {self.replicas} replicas of {self.label} confirmed a batch "
                f"within {self.timeout_ms} ms (WAIT): check the replicas (INFO replication), "
                "then re-run; the export is idempotent"
            )
        return outcomes

    def _line(self) -> bytes:
        """The next one-line reply (the WAIT's), from what is buffered or the socket."""
        sock = socket_of(self._connection())
        while b"\r\n" not in self._buf:
            chunk = sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("connection closed")
            self._buf += chunk
        line, _, rest = bytes(self._buf).partition(b"\r\n")
        self._buf = bytearray(rest)
        return line
