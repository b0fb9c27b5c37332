"""An embedded Redis Sentinel set on 127.0.0.1: a primary, replicas and sentinels that really
fail over (tests kill the primary and watch a replica take its place).

A leaf beside ``migrate.embedded`` (whose servers and helpers it reuses): every process binds
127.0.0.1 on a free port, has its own folder under ``run_dir`` and is stopped by its pid.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from migrate.embedded import (
    START_TIMEOUT,
    EmbeddedRedis,
    free_port,
    log_tail,
    private_file,
    redis_server_binary,
    spawn,
    stop_group,
)
from migrate.errors import ConnectionFailure


class EmbeddedSentinel:
    """A real Sentinel set on 127.0.0.1: a primary, ``replicas`` replicas (``REPLICAOF``) and
    ``sentinels`` sentinels (``redis-server --sentinel``) that fail over within seconds.

    One password for every server and sentinel (random, as EmbeddedRedis's): the sentinels
    use it to reach the servers and each other, and any local user could otherwise promote a
    server of their choosing. ``url`` is the ``redis+sentinel://`` URL clients take.
    """

    def __init__(self, run_dir: Path, *, service: str = "shop", replicas: int = 1,
                 sentinels: int = 3, quorum: int = 2, down_after_ms: int = 1000,
                 failover_timeout_ms: int = 5000, password: str | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.service = service
        self.password = password or secrets.token_hex(24)
        self.quorum, self.down_after_ms = quorum, down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.servers = [EmbeddedRedis(self.run_dir, password=self.password)
                        for _ in range(1 + replicas)]
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.sentinels: list[subprocess.Popen | None] = [None] * sentinels

    @property
    def url(self) -> str:
        """``redis+sentinel://`` with every sentinel, the password included (redact.url to
        print it). The form Flask-Limiter reads as well: one password, the path the service."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://:{self.password}@{hosts}/{self.service}"

    def client(self, port: int) -> Any:
        """A plain redis-py client for the server on ``port`` (a primary or a replica)."""
        import redis

        return redis.Redis(host="127.0.0.1", port=port, password=self.password,
                           socket_timeout=5, socket_connect_timeout=2)

    def start(self) -> EmbeddedSentinel:
        """Start the servers, link the replicas, start the sentinels; wait until the sentinels
        know every server and each other (a failover needs both)."""
        self.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            primary = self.servers[0]
            for server in self.servers:
                client = self.client(server.start().port)
                # Any server may be a replica after a failover: each can authenticate upstream.
                client.config_set("masterauth", self.password)
                # A replica's first sync starts at once (diskless sync waits 5 s by default
                # for more replicas to share the transfer).
                client.config_set("repl-diskless-sync-delay", 0)
                if server is not primary:
                    client.replicaof("127.0.0.1", primary.port)
                client.close()
            self._until(lambda: all(self._replica_linked(s) for s in self.servers[1:]),
                        "the replicas to sync with the primary")
            for i in range(len(self.sentinels)):
                self._start_sentinel(i, primary.port)
            self._until(self._sentinels_ready, "the sentinels to find the replicas and "
                        "each other")
        except BaseException:
            self.stop()
            raise
        return self

    def _start_sentinel(self, i: int, primary_port: int) -> None:
        folder = self.run_dir / f"sentinel-{i + 1}"
        folder.mkdir(mode=0o700, exist_ok=True)
        for _attempt in range(2):  # a second port if another process took the first one
            port, name = self.sentinel_ports[i], self.service
            with private_file(folder / "sentinel.conf", "w") as conf:  # the sentinel rewrites it
                conf.write(f"port {port}\nbind 127.0.0.1\ndir {folder}\n"
                           f"logfile {folder / 'sentinel.log'}\nrequirepass {self.password}\n"
                           f"sentinel sentinel-pass {self.password}\n"
                           f"sentinel monitor {name} 127.0.0.1 {primary_port} {self.quorum}\n"
                           f"sentinel auth-pass {name} {self.password}\n"
                           f"sentinel down-after-milliseconds {name} {self.down_after_ms}\n"
                           f"sentinel failover-timeout {name} {self.failover_timeout_ms}\n"
                           f"sentinel parallel-syncs {name} 1\n")
            process = spawn([redis_server_binary(), str(folder / "sentinel.conf"),
                             "--sentinel"], None)
            self.sentinels[i] = process
            probe = EmbeddedRedis(self.run_dir, port=port, password=self.password)
            deadline = time.monotonic() + START_TIMEOUT
            while process.poll() is None and time.monotonic() < deadline:
                if probe._pongs():
                    return
                time.sleep(0.05)
            stop_group(process, signal.SIGKILL, 5)
            self.sentinel_ports[i] = free_port()
        log = folder / "sentinel.log"
        raise ConnectionFailure(f"embedded sentinel on 127.0.0.1:{port} did not start (see "
                                f"{log}: {log_tail(log)})")

    def _sentinel(self, port: int) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=port, password=self.password,
                           socket_timeout=2, socket_connect_timeout=1, decode_responses=True)

    def _replica_linked(self, server: EmbeddedRedis) -> bool:
        client = self.client(server.port)
        try:
            return client.info("replication").get("master_link_status") == "up"
        finally:
            client.close()

    def _sentinels_ready(self) -> bool:
        others, replicas = len(self.sentinels) - 1, len(self.servers) - 1
        for port in self.sentinel_ports:
            client = self._sentinel(port)
            try:
                state = client.sentinel_master(self.service)
            finally:
                client.close()
            if (state.get("num-other-sentinels", 0) < others
                    or state.get("num-slaves", 0) < replicas):
                return False
        return True

    def _until(self, check: Any, what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise ConnectionFailure(f"embedded Sentinel set: timed out after {timeout:.0f} s "
                                        f"waiting for {what} (see the logs in {self.run_dir})")
            time.sleep(0.1)

    def primary_port(self) -> int | None:
        """The primary's port, as the first sentinel that answers names it."""
        import redis

        for port in self.sentinel_ports:
            client = self._sentinel(port)
            try:
                address = client.sentinel_get_master_addr_by_name(self.service)
                return int(address[1]) if address else None
            except redis.exceptions.RedisError:
                continue
            finally:
                client.close()
        return None

    def server(self, port: int) -> EmbeddedRedis:
        """The server listening on ``port``."""
        return next(s for s in self.servers if s.port == port)

    def kill_primary(self) -> EmbeddedRedis:
        """SIGKILL the current primary by its pid (a crash); return it."""
        port = self.primary_port()
        if port is None:
            raise ConnectionFailure("embedded Sentinel set: no sentinel names a primary")
        server = self.server(port)
        server.kill()
        return server

    def wait_for_failover(self, old_port: int, timeout: float = 30.0) -> int:
        """Wait until a replica has been promoted in ``old_port``'s place; its port."""
        def promoted() -> bool:
            port = self.primary_port()
            if port in (None, old_port):
                return False
            client = self.client(port)
            try:
                return client.info("replication").get("role") == "master"
            finally:
                client.close()

        self._until(promoted, f"a replica to replace the primary on port {old_port}", timeout)
        return self.primary_port() or 0

    def stop(self) -> None:
        """Stop the sentinels (first: they would fail over a stopping primary), then the
        servers, each by its pid."""
        for process in self.sentinels:
            if process is not None:
                stop_group(process, signal.SIGTERM, 10)
        for server in self.servers:
            server.stop()
