"""N gunicorn instances of either shop (one worker each), optionally behind a real HAProxy.

One worker per instance makes an in-memory store truly per instance, as on N hosts. Each
instance runs in its own process group, so ``kill(i)`` takes the master and its worker down at
once (a SIGKILLed gunicorn master would otherwise leave its worker serving on the port).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from migrate.embedded import stop_group as _stop_group
from migrate.errors import ConnectionFailure, UsageError
from migrate.harness.stores import free_port, log_tail, spawn
from migrate.procs import gunicorn_command

APPS = {
    "stateful": "sample_stateful_app:create_app()",
    "stateless": "sample_stateless_app:create_app()",
}
HEALTH_TIMEOUT = 30.0

def _read_from(path: Path, offset: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read()
    except OSError:
        return b""


def haproxy_available() -> bool:
    """Whether an ``haproxy`` binary is on PATH."""
    return shutil.which("haproxy") is not None


@dataclass
class InstanceInfo:
    """One instance of a cluster, as the caller sees it."""

    index: int
    name: str
    app: str
    url: str
    pid: int | None
    alive: bool
    log: str


@dataclass
class _Instance:
    app: str
    port: int
    name: str = ""
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Cluster:
    """``instances`` gunicorn processes of ``app`` on 127.0.0.1, each on its own port.

    ``app`` is "stateful", "stateless", or an explicit gunicorn app spec ("module:app"),
    for which no database is prepared and no RQ worker is started.
    """

    def __init__(self, app: str, instances: int, env: dict[str, str], run_dir: Path, *,
                 haproxy: bool = False, worker: bool = True) -> None:
        if app not in APPS and ":" not in app:
            raise UsageError(f"unknown app {app!r}: use one of {', '.join(APPS)} "
                             "or a gunicorn spec module:app")
        if instances < 1:
            raise UsageError(f"--instances must be at least 1, not {instances}")
        if haproxy and not haproxy_available():
            raise UsageError("haproxy is not installed: `apt-get install haproxy` "
                             "(or leave --haproxy out; the journey client balances itself)")
        self.app = app
        self.env = dict(env)
        self.run_dir = Path(run_dir)
        self.use_haproxy = haproxy
        self.use_worker = worker
        self._instances = [_Instance(app, free_port()) for _ in range(instances)]
        self.worker: subprocess.Popen | None = None
        self.haproxy: subprocess.Popen | None = None
        self.proxy_port: int | None = None
        self._prepared: set[str] = set()

    # --- public API ----------------------------------------------------------------------

    @property
    def urls(self) -> list[str]:
        """The instances' base URLs, in order."""
        return [inst.url for inst in self._instances]

    @property
    def proxy_url(self) -> str | None:
        """HAProxy's URL in front of all instances (None without --haproxy)."""
        return f"http://127.0.0.1:{self.proxy_port}" if self.proxy_port else None

    def __len__(self) -> int:
        return len(self._instances)

    def instance(self, i: int) -> InstanceInfo:
        inst = self._instances[i]
        name = inst.name or self._name(inst.app, i)
        process = inst.process
        return InstanceInfo(i, name, inst.app, inst.url, process.pid if process else None,
                            process is not None and process.poll() is None,
                            str(self.run_dir / f"{name}.log"))

    def start(self) -> Cluster:
        """Prepare the database once, start every instance (and worker, proxy); wait healthy."""
        self.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # logs, uploads: private
        try:
            self._prepare(self.app)
            for i in range(len(self._instances)):
                self._spawn(i)
            for i in range(len(self._instances)):  # started in parallel, awaited in turn
                if not self._wait_healthy(i, port_race=True):
                    # Another process took the free port between free_port() and the bind.
                    # SIGKILL: it serves nothing, and gunicorn sleeps through SIGTERM here.
                    _stop_group(self._instances[i].process, signal.SIGKILL, 5)
                    self._instances[i].port = free_port()
                    self._spawn(i)
                    self._wait_healthy(i)
            self._ensure_worker()
            if self.use_haproxy:
                self._start_haproxy()
        except BaseException:
            self.stop_all()
            raise
        return self

    def start_instance(self, i: int, app: str | None = None) -> InstanceInfo:
        """(Re)start instance ``i`` on its port, optionally as the other app (a rolling switch).

        Switching to "stateless" does not migrate the database: run ``migrate db upgrade``
        first. Its RQ worker is started if none runs yet.
        """
        inst = self._instances[i]
        if inst.process is not None and inst.process.poll() is None:
            self.stop(i)
        if app is not None:
            if app not in APPS and ":" not in app:
                raise UsageError(f"unknown app {app!r}: use one of {', '.join(APPS)}")
            inst.app = app
        try:
            self._spawn(i)
            self._wait_healthy(i)
            self._ensure_worker()
        except BaseException:
            self._reap(inst)
            raise
        return self.instance(i)

    def stop(self, i: int) -> None:
        """SIGTERM instance ``i`` (gunicorn finishes in-flight requests) and wait."""
        inst = self._instances[i]
        if inst.process is not None:
            _stop_group(inst.process, signal.SIGTERM, 10)

    def kill(self, i: int) -> None:
        """SIGKILL instance ``i``'s whole process group and wait: its URL refuses connections."""
        inst = self._instances[i]
        if inst.process is not None:
            _stop_group(inst.process, signal.SIGKILL, 10)

    def stop_all(self) -> None:
        """Stop everything this cluster started, by pid: proxy, instances, worker."""
        if self.haproxy is not None:
            _stop_group(self.haproxy, signal.SIGTERM, 5)
        for inst in self._instances:
            if inst.process is not None and inst.process.poll() is None:
                try:
                    os.kill(inst.process.pid, signal.SIGTERM)  # all at once, then wait
                except ProcessLookupError:
                    pass
        for inst in self._instances:
            self._reap(inst)
        if self.worker is not None:
            _stop_group(self.worker, signal.SIGTERM, 10)

    def pids(self) -> list[int]:
        """Every pid this cluster started that is still running (for checks and the CLI)."""
        processes = [inst.process for inst in self._instances] + [self.worker, self.haproxy]
        return [p.pid for p in processes if p is not None and p.poll() is None]

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop_all()

    # --- internals -----------------------------------------------------------------------

    def _name(self, app: str, i: int) -> str:
        base = app if app in APPS else app.split(":")[0].rsplit(".", 1)[-1]
        return f"{base}-{i + 1}"

    def _child_env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, **self.env, **extra}

    def _prepare(self, app: str) -> None:
        """Create the shop's tables once, before any instance starts (no create-table races)."""
        if app in self._prepared or app not in APPS:
            return
        url = self.env.get("DATABASE_URL") or os.environ.get("DATABASE_URL")
        if not url:
            raise UsageError(f"no DATABASE_URL for the {app} shop: pass it in the cluster env")
        if app == "stateful":
            from sample_stateful_app.db import init_db

            init_db(url)
        else:
            from sample_stateless_app.db import upgrade

            upgrade(url)
        self._prepared.add(app)

    def _popen(self, command: list[str], log_name: str, env: dict[str, str]) -> subprocess.Popen:
        # Own session (see stores.spawn): kill(i) can take the whole process group down.
        return spawn(command, self.run_dir / log_name, env)

    def _spawn(self, i: int) -> None:
        inst = self._instances[i]
        inst.name = self._name(inst.app, i)
        folder = self.run_dir / inst.name
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        spec = APPS.get(inst.app, inst.app)
        # gthread: a live-updates stream holds a thread, the others serve pages meanwhile; no
        # keep-alive, as with the sync worker: a stopping instance has no idle connection to wait
        # for (gthread lingers 2 s on one).
        command = gunicorn_command(spec, f"127.0.0.1:{inst.port}", "--graceful-timeout", "5",
                                   "--timeout", "60", "--worker-class", "gthread", "--threads", "8",
                                   "--keep-alive", "0")
        env = self._child_env(INSTANCE_NAME=inst.name, INSTANCE_PATH=str(folder))
        inst.process = self._popen(command, f"{inst.name}.log", env)

    def _wait_healthy(self, i: int, port_race: bool = False) -> bool:
        """Wait for GET /healthz 200; False (with ``port_race``) when the port was taken."""
        import requests

        inst = self._instances[i]
        log = self.run_dir / f"{inst.name}.log"
        start = log.stat().st_size if log.exists() else 0
        deadline = time.monotonic() + HEALTH_TIMEOUT
        while True:
            if port_race and b"Connection in use" in _read_from(log, start):
                return False
            try:
                # Short: a squatter on the port may accept and never answer; we retry anyway.
                response = requests.get(inst.url + "/healthz", timeout=1)
                if response.headers.get("X-Instance", inst.name) != inst.name and port_race:
                    return False  # someone else's server holds the port
                if response.status_code == 200:
                    return True
            except requests.RequestException:
                pass
            assert inst.process is not None
            exited = inst.process.poll() is not None
            if exited or time.monotonic() > deadline:
                why = "exited" if exited else f"did not answer GET /healthz within " \
                                             f"{HEALTH_TIMEOUT:.0f} s"
                raise ConnectionFailure(f"instance {inst.name} on {inst.url} {why}; see {log}: "
                                        f"{log_tail(log)}")
            time.sleep(0.1)

    def _reap(self, inst: _Instance) -> None:
        if inst.process is not None:
            _stop_group(inst.process, signal.SIGTERM, 10)

    def _ensure_worker(self) -> None:
        """One RQ worker while any instance runs the stateless shop (it sends the mail jobs)."""
        if not self.use_worker or not any(inst.app == "stateless" for inst in self._instances):
            return
        if self.worker is not None and self.worker.poll() is None:
            return
        env = self._child_env(INSTANCE_NAME="worker", INSTANCE_PATH=str(self.run_dir / "worker"))
        (self.run_dir / "worker").mkdir(mode=0o700, exist_ok=True)
        self.worker = self._popen([sys.executable, "-m", "sample_stateless_app.worker"],
                                  "worker.log", env)
        time.sleep(0.2)
        if self.worker.poll() is not None:
            log = self.run_dir / "worker.log"
            raise ConnectionFailure(f"the RQ worker exited at start; see {log}: {log_tail(log)}")

    def _haproxy_config(self) -> str:
        servers = "\n".join(
            f"    server instance-{i + 1} 127.0.0.1:{inst.port} check inter 200ms fall 3 rise 1"
            for i, inst in enumerate(self._instances))
        return f"""# written by migrate.harness.cluster; removed with its run dir
global
    maxconn 256

defaults
    mode http
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    # A slow /healthz on a busy host must not take the last good instance out: a dead one
    # fails its checks at once (refused), and redispatch covers the requests until then.
    timeout check 3s
    retries 3
    # a refused connection is retried on another server, not returned as a 503
    option redispatch 1

frontend shop
    bind 127.0.0.1:{self.proxy_port}
    default_backend instances

backend instances
    balance roundrobin
    option httpchk GET /healthz
{servers}
"""

    def _start_haproxy(self) -> None:
        import requests

        self.proxy_port = free_port()
        config = self.run_dir / "haproxy.cfg"
        config.write_text(self._haproxy_config(), encoding="utf-8")
        binary = shutil.which("haproxy") or "haproxy"
        # Foreground (-db, no -D): we hold its pid and stop it by that pid.
        self.haproxy = self._popen([binary, "-db", "-f", str(config)], "haproxy.log",
                                   dict(os.environ))
        log = self.run_dir / "haproxy.log"
        deadline = time.monotonic() + HEALTH_TIMEOUT
        while True:
            try:
                if requests.get(f"{self.proxy_url}/healthz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if self.haproxy.poll() is not None or time.monotonic() > deadline:
                raise ConnectionFailure(f"haproxy on {self.proxy_url} did not start; see {log}: "
                                        f"{log_tail(log)}")
            time.sleep(0.05)
