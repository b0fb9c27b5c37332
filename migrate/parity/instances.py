"""N gunicorn instances of any app on shared stores: start, kill, restart, stop by pid.

Each instance is one gunicorn master with one worker (so in-process state is truly per
instance, as on N hosts), in its own session and its own folder (its "host's disk": relative
paths such as ``uploads/`` or ``flask_session/`` are its own), on a free port of 127.0.0.1.
The first instance starts alone (an app that creates its tables at start-up does so without a
race), the others together. Side processes (``--app-worker``: an RQ or Celery worker) run on the
same environment; ``--app-prepare`` commands (a schema upgrade, ...) run once before all.
"""

from __future__ import annotations

import http.client
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from migrate.embedded import free_port, log_tail, spawn
from migrate.embedded import stop_group as _stop_group
from migrate.errors import ConnectionFailure, UsageError
from migrate.procs import gunicorn_command

from .settings import ParitySettings, render
from .stores import SharedStores, start_shared_stores

_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)\b.*)$")
_GUNICORN_LOAD = re.compile(r"^(Failed to (?:find|parse) .*)$")


@dataclass
class InstanceInfo:
    """One instance as a test sees it."""

    index: int
    name: str
    url: str
    port: int
    pid: int | None
    alive: bool
    log: Path
    folder: Path


@dataclass
class Kill:
    """An instance SIGKILLed by the run (``--instances-kill-one``)."""

    instance: str
    pid: int | None
    test: str
    after_request: str  # "POST /login -> 302"
    restarted: bool = False


class _Instance:
    def __init__(self, index: int, run_dir: Path) -> None:
        self.index = index
        self.name = f"instance-{index + 1}"
        self.port = free_port()
        self.folder = run_dir / self.name
        self.log = run_dir / f"{self.name}.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Instances:
    """The shared stores, the prepare commands, N instances and the side processes.

    A context manager: everything it started is stopped, by pid, on the way out (and by the
    atexit cleanup of ``migrate.embedded`` should the interpreter end first).
    """

    def __init__(self, settings: ParitySettings, run_dir: Path) -> None:
        self.settings = settings.check()
        self.run_dir = Path(run_dir)
        self.stores: SharedStores | None = None
        self._instances = [_Instance(i, self.run_dir) for i in range(settings.instances)]
        self._workers: list[subprocess.Popen] = []
        self.kills: list[Kill] = []

    # --- what a test sees ----------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._instances)

    def __getitem__(self, i: int) -> InstanceInfo:
        inst = self._instances[i]
        process = inst.process
        return InstanceInfo(i, inst.name, inst.url, inst.port, process.pid if process else None,
                            inst.alive, inst.log, inst.folder)

    @property
    def urls(self) -> list[str]:
        return [inst.url for inst in self._instances]

    @property
    def names(self) -> list[str]:
        return [inst.name for inst in self._instances]

    def target(self, i: int) -> tuple[str, int]:
        """(name, port) of instance ``i``: where the client sends a request."""
        inst = self._instances[i]
        return inst.name, inst.port

    def pids(self) -> list[int]:
        """Every process this run started that still runs (instances, workers, stores)."""
        processes = [inst.process for inst in self._instances] + self._workers
        if self.stores is not None:
            processes += [s.process for s in (self.stores.redis, self.stores.s3) if s]
        return [p.pid for p in processes if p is not None and p.poll() is None]

    def log_offsets(self) -> list[int]:
        """Where each instance's log ends now (to show what a failing test wrote)."""
        return [inst.log.stat().st_size if inst.log.exists() else 0
                for inst in self._instances]

    def log_since(self, offsets: list[int], limit: int = 4000) -> dict[str, str]:
        """What each instance logged since ``offsets``, the last ``limit`` characters each."""
        out = {}
        for inst, offset in zip(self._instances, offsets, strict=False):
            try:
                with open(inst.log, "rb") as handle:
                    handle.seek(offset)
                    text = handle.read().decode("utf-8", "replace")
            except OSError:
                continue
            if text.strip():
                out[inst.name] = text[-limit:]
        return out

    # --- start and stop ------------------------------------------------------------------

    def start(self) -> Instances:
        """Stores, prepare commands, the first instance, the others, the side processes."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.stores = start_shared_stores(self.settings, self.run_dir)
            for command in self.settings.prepare:
                self._prepare(command)
            self._start_instance(self._instances[0])
            for inst in self._instances[1:]:
                self._spawn(inst)
            for inst in self._instances[1:]:
                self._wait_ready(inst, port_race=True)
            for k, command in enumerate(self.settings.workers):
                self._start_worker(k, command)
        except BaseException:
            self.stop()
            raise
        return self

    def kill(self, i: int) -> None:
        """SIGKILL instance ``i`` and its worker (its process group) and reap it: a crash."""
        _stop_group(self._instances[i].process, signal.SIGKILL, 10)
        _wait_port_closed(self._instances[i].port)

    def restart(self, i: int) -> InstanceInfo:
        """Start instance ``i`` again on its port (stopping it first if it runs); wait ready."""
        inst = self._instances[i]
        if inst.alive:
            _stop_group(inst.process, signal.SIGTERM, 10)
        self._start_instance(inst)
        return self[i]

    def stop(self) -> None:
        """Stop everything started here, by pid: instances (all at once), workers, stores."""
        for inst in self._instances:
            if inst.alive:
                try:
                    os.kill(inst.process.pid, signal.SIGTERM)  # type: ignore[union-attr]
                except ProcessLookupError:
                    pass
        for process in [inst.process for inst in self._instances] + self._workers:
            if process is not None:  # an instance after a failed start never spawned
                _stop_group(process, signal.SIGTERM, 10)
        if self.stores is not None:
            self.stores.stop()

    def __enter__(self) -> Instances:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- internals -----------------------------------------------------------------------

    def env_for(self, name: str, folder: Path, port: int = 0) -> dict[str, str]:
        """The environment of one process of the run (secrets: never print it)."""
        assert self.stores is not None
        env = dict(os.environ)
        if self.stores.s3 is not None:
            env.pop("AWS_CA_BUNDLE", None)  # the embedded endpoint is plain HTTP
        env.update(self.stores.env())
        paths = [str(self.settings.app_dir.resolve()), env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        # `python`, `migrate`, `rq`, ... in commands: this interpreter's, as in its venv.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        values = self._placeholders(name, folder, port)
        for key, template in self.settings.app_env.items():
            env[key] = render(template, values)
        return env

    def _placeholders(self, name: str, folder: Path, port: int = 0) -> dict[str, str]:
        """The stores' placeholders and this process's own (an instance, a worker, prepare)."""
        assert self.stores is not None
        values = self.stores.placeholders(self.run_dir, sys.executable)
        values.update(instance=name, instance_dir=str(folder), port=str(port))
        return values

    def _prepare(self, template: str) -> None:
        folder = self.run_dir / "prepare"
        folder.mkdir(parents=True, exist_ok=True)
        command = render(template, self._placeholders("prepare", folder))
        log = self.run_dir / "prepare.log"
        with open(log, "ab") as out:
            try:
                done = subprocess.run(
                    _split(command, "--app-prepare"), cwd=self.settings.app_dir,
                    env=self.env_for("prepare", folder), stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, timeout=max(60.0, self.settings.start_timeout * 4))
            except FileNotFoundError:
                raise UsageError(f"--app-prepare {template!r}: no such program; give a command "
                                 "on PATH (this interpreter's folder is first)") from None
            except subprocess.TimeoutExpired:
                raise ConnectionFailure(f"--app-prepare {template!r} did not finish; see {log}: "
                                        f"{log_tail(log)}") from None
        if done.returncode != 0:
            raise UsageError(f"--app-prepare {template!r} exited with {done.returncode}: "
                             f"{_cause(log) or log_tail(log)} (see {log}); fix the command")

    def _spawn(self, inst: _Instance) -> None:
        inst.folder.mkdir(parents=True, exist_ok=True)
        options = ["--worker-class", self.settings.worker_class, "--timeout", "60",
                   "--graceful-timeout", "5"]
        command = gunicorn_command(self.settings.app.strip(), f"127.0.0.1:{inst.port}",
                                   *options)
        env = self.env_for(inst.name, inst.folder, inst.port)
        inst.process = spawn(command, inst.log, env, cwd=inst.folder)

    def _start_instance(self, inst: _Instance) -> None:
        self._spawn(inst)
        self._wait_ready(inst, port_race=True)

    def _wait_ready(self, inst: _Instance, port_race: bool = False) -> None:
        """Until the app answers any HTTP at all on the health path; one line when it never does."""
        start = inst.log.stat().st_size if inst.log.exists() else 0
        deadline = time.monotonic() + self.settings.start_timeout
        while True:
            assert inst.process is not None
            if _answers(inst.port, self.settings.health_path):
                return
            if inst.process.poll() is not None:
                if port_race and b"Connection in use" in _read_from(inst.log, start):
                    inst.port = free_port()  # taken since free_port(): once more, elsewhere
                    self._spawn(inst)
                    return self._wait_ready(inst)
                raise self._start_error(inst, start)
            if time.monotonic() > deadline:
                _stop_group(inst.process, signal.SIGKILL, 5)
                raise ConnectionFailure(
                    f"{inst.name} of --app {self.settings.app!r} on 127.0.0.1:{inst.port} did "
                    f"not answer GET {self.settings.health_path} within "
                    f"{self.settings.start_timeout:g} s (see {inst.log}: {log_tail(inst.log)}): "
                    "find what the app waits for at start-up, or raise "
                    "--instances-start-timeout")
            time.sleep(0.05)

    def _start_error(self, inst: _Instance, start: int) -> Exception:
        text = _read_from(inst.log, start).decode("utf-8", "replace")
        cause = _cause_in(text)
        spec = self.settings.app
        where = f"(see {inst.log})"
        if cause is None:
            return ConnectionFailure(f"{inst.name} of --app {spec!r} exited with code "
                                     f"{inst.process.returncode if inst.process else '?'} "
                                     f"{where}: {log_tail(inst.log)}")
        if cause.startswith(("ModuleNotFoundError", "ImportError")):
            fix = (f"the app must import from {self.settings.app_dir.resolve()}: fix the module "
                   "in --app 'package.module:create_app()' or set --app-dir to its folder")
        elif cause.startswith("Failed to"):
            fix = ("--app names a module and its app or factory as gunicorn takes it, e.g. "
                   "'package:create_app()' or 'package.wsgi:app'")
        else:
            fix = ("the factory raised while starting: give the configuration it asks for with "
                   "--app-env KEY=VALUE (the stores' URLs are set for you), or fix the app")
        return UsageError(f"{inst.name} of --app {spec!r} did not start: {cause} {where}; {fix}")

    def _start_worker(self, k: int, template: str) -> None:
        name = f"worker-{k + 1}"
        folder = self.run_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        command = _split(render(template, self._placeholders(name, folder)), "--app-worker")
        log = self.run_dir / f"{name}.log"
        try:
            process = spawn(command, log, self.env_for(name, folder), cwd=folder)
        except FileNotFoundError:
            raise UsageError(f"--app-worker {template!r}: no such program; give a command on "
                             "PATH (this interpreter's folder is first)") from None
        self._workers.append(process)
        time.sleep(0.3)
        if process.poll() is not None:
            raise UsageError(f"--app-worker {template!r} exited at start with "
                             f"{process.returncode}: {_cause(log) or log_tail(log)} "
                             f"(see {log})")


def _split(command: str, option: str) -> list[str]:
    try:
        parts = shlex.split(command)
    except ValueError as exc:
        raise UsageError(f"{option} {command!r}: {exc}") from None
    if not parts:
        raise UsageError(f"{option} is empty: give a command")
    return parts


def _wait_port_closed(port: int, timeout: float = 5.0) -> None:
    """Until nothing listens on ``port``: a killed worker still holding the socket for a few ms
    would accept the next request and reset it, where a crashed host refuses it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            probe.settimeout(0.2)
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return
        time.sleep(0.02)


def _answers(port: int, path: str) -> bool:
    """Whether anything answers HTTP on ``port`` (any status: the app is loaded)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", path, headers={"Host": "localhost"})
        conn.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _cause_in(text: str) -> str | None:
    """The last exception line (or gunicorn's own load error) in a log, if any."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        found = _EXCEPTION_LINE.match(line) or _GUNICORN_LOAD.match(line)
        if found:
            return found.group(1)[:300]
    return None


def _cause(log: Path) -> str | None:
    return _cause_in(_read_from(log, 0).decode("utf-8", "replace"))


def _read_from(path: Path, offset: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read()
    except OSError:
        return b""
