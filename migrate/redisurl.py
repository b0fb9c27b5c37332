"""Redis URLs, parsed in one place: a plain Redis, a Redis Cluster or a Redis Sentinel set.

The forms (``rediss`` instead of ``redis`` for TLS)::

    redis://[[user]:password@]host[:6379][/db]             redis-py's own URL
    redis+cluster://[[user]:password@]host[:6379][/0]      any node of a Redis Cluster
    redis+sentinel://[[user]:password@]host1[:26379][,host2[:26379]...]/service[/db]
                     [?sentinel_password=...&sentinel_username=...]

In a Sentinel URL the hosts are the sentinels, ``service`` is the name they monitor (``sentinel
monitor <service> ...``) and the userinfo is the password of the Redis servers and of the
sentinels alike, as Flask-Limiter (``limits``) reads the same URL; ``sentinel_password``
overrides it for the sentinels (empty: they have none). Flask-Limiter takes the whole path as
the service name: leave ``/db`` out of a URL it shares. The client asks the sentinels for the
current primary and asks again after a failover (``Sentinel(...).master_for(service)``, the
client Flask-Session accepts as is).

Two query parameters are migrate's own, for the exporters, on any form but a Cluster:
``wait_replicas=N`` (after each batch, ``WAIT N`` replicas) and ``wait_timeout=MS`` (default
1000). They never reach redis-py.

A leaf: the session target, the parity plugin and the after-shop build their clients here.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from migrate import redact
from migrate.errors import UsageError

SENTINEL_PORT = 26379
SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster", "redis+sentinel",
           "rediss+sentinel")
SENTINEL_PARAMS = ("sentinel_password", "sentinel_username")
WAIT_PARAMS = ("wait_replicas", "wait_timeout")
SENTINEL_FORM = "redis+sentinel://[:PASSWORD@]HOST1:26379,HOST2:26379,HOST3:26379/SERVICE[/DB]"
# How long a Sentinel client waits out a failover (no primary, or the old one refusing) before
# the error reaches the caller (the shop answers 503): a failover takes down-after-milliseconds
# plus an election, a few seconds with the usual settings.
FAILOVER_BUDGET = 15.0


@dataclass(frozen=True)
class RedisURL:
    """A parsed Redis URL: what kind of deployment, and how to reach it."""

    kind: str  # "redis", "cluster" or "sentinel"
    tls: bool
    url: str = field(repr=False)  # for redis and cluster: the URL redis-py's from_url takes
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    wait_replicas: int = 0  # exporters: WAIT for this many replicas after each batch
    wait_timeout_ms: int = 1000

    @property
    def shown(self) -> str:
        """The URL as it may be printed (passwords masked)."""
        return redact.url(self.url)


def _bad(url: str, problem: str, fix: str) -> UsageError:
    return UsageError(f"Redis URL {redact.url(url)}: {problem}; {fix}")


def parse(url: str, cluster: bool = False) -> RedisURL:
    """Parse ``url``; ``cluster`` (``--redis-cluster``) makes a plain URL a Cluster's.

    A malformed URL is a UsageError naming the problem and the fix (passwords masked).
    """
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        raise UsageError("the Redis URL cannot be parsed: use redis://HOST:6379/0, "
                         f"redis+cluster://HOST:6379 or {SENTINEL_FORM}") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise _bad(url, f"{scheme + '://' if scheme else 'no scheme'} is not a Redis URL",
                   f"use redis://HOST:6379/0, rediss://, redis+cluster://HOST:6379 or "
                   f"{SENTINEL_FORM}")
    base, _, flavour = scheme.partition("+")
    query = parse_qsl(parts.query, keep_blank_values=True)
    wait = {k: v for k, v in query if k in WAIT_PARAMS}
    replicas, timeout = _wait_params(url, wait)
    if flavour == "sentinel":
        if cluster:
            raise _bad(url, "a Cluster (--redis-cluster, REDIS_CLUSTER=1) cannot be a Sentinel "
                       "set", "leave that setting out (the sentinels name one primary)")
        return _parse_sentinel(url, parts, base == "rediss", query, replicas, timeout)
    if flavour == "cluster" or cluster:
        if replicas:
            raise _bad(url, "wait_replicas is not supported on a Redis Cluster",
                       "leave it (or --wait-replicas) out, or export to one Redis or Sentinel")
        cluster = True
    plain = url
    if flavour or wait:  # rebuilt only when needed: urlunsplit can mangle e.g. unix:// paths
        rest = urlencode([(k, v) for k, v in query if k not in WAIT_PARAMS])
        plain = urlunsplit((base, parts.netloc, parts.path, rest, parts.fragment))
    return RedisURL("cluster" if cluster else "redis", base == "rediss", plain,
                    wait_replicas=replicas, wait_timeout_ms=timeout)


def _wait_params(url: str, wait: dict[str, str]) -> tuple[int, int]:
    try:
        replicas = int(wait.get("wait_replicas", "0"))
        timeout = int(wait.get("wait_timeout", "1000"))
    except ValueError:
        replicas = timeout = -1
    if replicas < 0 or timeout < 1:  # WAIT's timeout 0 would wait forever: an export hangs
        raise _bad(url, "wait_replicas must be a whole number >= 0 and wait_timeout >= 1",
                   "e.g. ?wait_replicas=1&wait_timeout=1000 (milliseconds)")
    return replicas, timeout


def _parse_sentinel(url: str, parts: Any, tls: bool, query: list[tuple[str, str]],
                    replicas: int, timeout: int) -> RedisURL:
    userinfo, at, hosts = parts.netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = tuple(_host_port(url, h) for h in hosts.split(","))
    segments = [s for s in parts.path.split("/") if s]
    if not segments:
        raise _bad(url, "no service name", f"add the name the sentinels monitor: {SENTINEL_FORM}")
    if len(segments) > 2 or (len(segments) == 2 and not segments[1].isdigit()):
        raise _bad(url, f"the path {parts.path!r} is not /SERVICE or /SERVICE/DB",
                   f"use {SENTINEL_FORM}")
    unknown = sorted({k for k, _ in query} - set(SENTINEL_PARAMS) - set(WAIT_PARAMS))
    if unknown:
        raise _bad(url, f"unknown parameter {', '.join(unknown)}",
                   f"a Sentinel URL takes {', '.join(SENTINEL_PARAMS + WAIT_PARAMS)}")
    params = dict(query)
    # The sentinels share the servers' password unless the URL gives them their own.
    sentinel_password = params.get("sentinel_password", password)
    return RedisURL("sentinel", tls, url, sentinels, unquote(segments[0]),
                    int(segments[1]) if len(segments) == 2 else 0, username, password,
                    params.get("sentinel_username", username) or None,
                    sentinel_password or None, replicas, timeout)


def _host_port(url: str, entry: str) -> tuple[str, int]:
    if entry.startswith("["):  # [IPv6]:port
        host, _, rest = entry[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = entry.partition(":")
    try:
        port = int(port_text) if port_text else SENTINEL_PORT
    except ValueError:
        port = -1
    if not host or not 0 < port < 65536:
        raise _bad(url, f"{entry!r} is not a sentinel HOST:PORT",
                   f"list the sentinels comma-separated: {SENTINEL_FORM}")
    return host, port


def with_wait(url: str, replicas: int, timeout_ms: int = 1000) -> str:
    """``url`` with migrate's ``wait_replicas`` and ``wait_timeout`` set (``--wait-replicas``)."""
    if not replicas:
        return url
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if k not in WAIT_PARAMS]
    query += [("wait_replicas", str(replicas)), ("wait_timeout", str(timeout_ms))]
    return urlunsplit(parts._replace(query=urlencode(query)))


# --- clients ---------------------------------------------------------------------------------


def client(url: str | RedisURL, cluster: bool = False, **options: Any) -> Any:
    """A redis-py client for ``url``: ``Redis``, ``RedisCluster`` or a Sentinel primary's.

    ``options`` go to every connection (``socket_timeout``...). No connection is made yet.
    """
    import redis
    from redis.cluster import RedisCluster

    parsed = url if isinstance(url, RedisURL) else parse(url, cluster)
    if parsed.kind == "cluster":
        return RedisCluster.from_url(parsed.url, **options)
    if parsed.kind == "redis":
        return redis.Redis.from_url(parsed.url, **options)
    return _sentinel_primary(parsed, options)


def _sentinel_primary(parsed: RedisURL, options: dict[str, Any]) -> Any:
    from redis.backoff import NoBackoff
    from redis.retry import Retry
    from redis.sentinel import Sentinel

    sockets = {k: v for k, v in options.items() if k.startswith("socket_")}
    # No retry per sentinel (redis-py's default would retry a dead one 10 times): the next
    # sentinel is asked instead, and the primary's own retry asks them all again.
    sentinel_kwargs = {**sockets, "ssl": parsed.tls, "username": parsed.sentinel_username,
                       "password": parsed.sentinel_password, "retry": Retry(NoBackoff(), 0)}
    options.setdefault("retry", failover_retry())
    sentinel = Sentinel(list(parsed.sentinels), sentinel_kwargs=sentinel_kwargs)
    return sentinel.master_for(parsed.service, db=parsed.db, username=parsed.username,
                               password=parsed.password, ssl=parsed.tls, **options)


# redis-py nests its retries (a command's retry reconnects, and the reconnect retries as well),
# so a retry *count* multiplies: N retries can mean N x N attempts while no primary exists. A
# budget in seconds does not: it starts at the first failure of the outermost call (a command,
# a pipeline, a connect) in this thread and every nested retry spends from the same clock.
_calls = threading.local()


def failover_retry(budget: float = FAILOVER_BUDGET) -> Any:
    """A redis-py Retry that rides out a Sentinel failover: connection errors are retried with
    jittered backoff (0.1 s growing to 1 s) for ``budget`` seconds, then raised."""
    from redis.backoff import EqualJitterBackoff
    from redis.retry import Retry

    class _BudgetBackoff(EqualJitterBackoff):
        def compute(self, failures: int) -> float:
            import redis

            now = time.monotonic()
            first = getattr(_calls, "first_failure", None)
            if first is None:
                _calls.first_failure = now
            elif now - first > budget:
                # Raised inside redis-py's retry loop: the caller gets this ConnectionError
                # (a 503 in the shop), with the last real error as its context.
                raise redis.exceptions.ConnectionError(
                    f"no Redis primary answered for {budget:.0f} s (a Sentinel failover, "
                    "or the servers are down)")
            return super().compute(failures)

    class _BudgetRetry(Retry):
        def call_with_retry(self, *args: Any, **kwargs: Any) -> Any:
            depth = getattr(_calls, "depth", 0)
            if depth == 0:
                _calls.first_failure = None
            _calls.depth = depth + 1
            try:
                return super().call_with_retry(*args, **kwargs)
            finally:
                _calls.depth = depth

    # The count is only a backstop: the budget ends the retries first.
    return _BudgetRetry(_BudgetBackoff(cap=1.0, base=0.1), retries=1000)
