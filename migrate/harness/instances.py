"""``verify instances``: the journey, and optionally the kill test, against a set of instances.

Against a user's own running instances it runs the journey (each request to the next URL in
turn) and reports, step by step, which instance served what. The kill test SIGKILLs an
instance, which this tool only does to processes it started: with ``start`` it starts the
embedded stores and a Cluster itself, runs the journey, and SIGKILLs one instance at the
chunked upload; the journey must still pass.
"""

from __future__ import annotations

import dataclasses
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from migrate.errors import ConnectionFailure, UsageError
from migrate.harness.journey import MIB, Journey, JourneyResult, RoundRobin, StepResult

OnStep = Callable[[StepResult], None]
Narrate = Callable[[str], None]


@dataclass
class Kill:
    """The instance SIGKILLed mid-journey, and what came of it."""

    instance: str  # its name (the X-Instance header it sent)
    url: str
    pid: int | None
    before_step: int  # the step about to run when it was killed
    step_name: str
    dead_after: bool = False  # its URL refused connections afterwards (checked)
    retries_after: int = 0  # refused connections the journey skipped after the kill


@dataclass
class InstancesResult:
    """The journey over the instances; with a kill, the journey after it too."""

    urls: list[str]
    journey: JourneyResult
    started: str | None = None  # "stateless"/"stateful" when this tool started the instances
    instances: list[str] = dataclasses.field(default_factory=list)  # names that served steps
    kill: Kill | None = None

    @property
    def ok(self) -> bool:
        if not self.journey.ok or not self.journey.finished:
            return False
        return self.kill is None or self.kill.dead_after

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "urls": self.urls,
            "started": self.started,
            "instances": self.instances,
            "kill": dataclasses.asdict(self.kill) if self.kill else None,
            "journey": self.journey.to_dict(),
        }


def check_instances(urls: list[str], timeout: float = 3.0) -> list[str]:
    """The normalized URLs; ConnectionFailure naming every URL whose /healthz does not answer."""
    client = RoundRobin(urls)  # validates the URLs (UsageError: one line)
    down = []
    for url in client.urls:
        try:
            requests.get(url + "/healthz", timeout=timeout)
        except requests.RequestException as exc:
            down.append(f"{url} ({type(exc).__name__})")
    if down:
        raise ConnectionFailure(
            f"no answer from {', '.join(down)}: start the instance(s) or leave the URL out; "
            "or let migrate start a shop: `migrate verify instances --start stateless "
            "--instances 2`"
        )
    return client.urls


def verify_instances(
    urls: list[str], *, user: str = "alice", password: str | None = None,
    file_size: int = 12 * MIB, on_step: OnStep | None = None,
) -> InstancesResult:
    """Run the journey against the user's own running instances (nothing is killed)."""
    urls = check_instances(urls)
    trip = Journey(urls, user=user, password=password, file_size=file_size)
    result = trip.run(on_step=on_step)
    return InstancesResult(urls, result, instances=_served(result))


def verify_started(
    app: str, instances: int = 2, *, kill_one: bool = False, user: str = "alice",
    password: str | None = None, file_size: int = 12 * MIB, on_step: OnStep | None = None,
    narrate: Narrate = lambda _: None, run_dir: Path | None = None,
) -> InstancesResult:
    """Start embedded stores and ``instances`` instances of ``app``, run the journey, stop all.

    With ``kill_one`` the instance that served the previous step is SIGKILLed just before the
    second chunk of the chunked upload (the first when there is only one): the journey goes on
    on the survivors, as behind a health-checked balancer.
    """
    from migrate.harness.cluster import APPS, Cluster
    from migrate.harness.stores import start_stores

    if app not in APPS:
        raise UsageError(f"--start takes one of {', '.join(APPS)}, not {app!r}")
    if kill_one and instances < 2:
        raise UsageError("--kill-one needs at least 2 instances (one is killed, another must "
                         "carry on): add --instances 2")
    with tempfile.TemporaryDirectory(prefix="migrate-verify-") as tmp:
        base = Path(run_dir) if run_dir else Path(tmp)
        narrate("starting embedded Redis and S3 on 127.0.0.1")
        # A fresh SQLite database in the run dir: the kill test never touches the user's data.
        local = f"sqlite:///{base / 'shop.db'}"  # migrate: ignore[sqlite-local]
        with start_stores(base / "stores", database_url=local) as s:
            key = secrets.token_hex(32)  # migrate: ignore[secret-key-per-process]
            env = {**s.stores.app_env(), "SECRET_KEY": key}
            narrate(f"starting {instances} {app} instance(s)")
            with Cluster(app, instances, env, base / app) as cluster:
                trip = Journey(cluster.urls, user=user, password=password, file_size=file_size)
                names = trip.step_names()
                target = "send chunk 2" if "send chunk 2" in names else "send chunk 1"
                kill: Kill | None = None

                def before_step(number: int, name: str) -> None:
                    nonlocal kill
                    if not kill_one or kill is not None or name != target:
                        return
                    index = _index_of(cluster, trip.results[-1].instance if trip.results
                                      else None)
                    info = cluster.instance(index)
                    narrate(f"SIGKILL {info.name} (pid {info.pid}) before step {number} "
                            f"({name})")
                    cluster.kill(index)
                    kill = Kill(info.name, info.url, info.pid, number, name)

                result = trip.run(before_step=before_step, on_step=on_step)
                if kill is not None:
                    kill.dead_after = not cluster.instance(_index_of(cluster, kill.instance)
                                                           ).alive and _refuses(kill.url)
                    kill.retries_after = sum(s.retries for s in result.steps
                                             if s.number >= kill.before_step)
                urls = list(cluster.urls)
    return InstancesResult(urls, result, started=app, instances=_served(result), kill=kill)


def _served(result: JourneyResult) -> list[str]:
    return sorted({s.instance for s in result.steps if s.instance})


def _index_of(cluster: Any, name: str | None) -> int:
    for i in range(len(cluster)):
        if cluster.instance(i).name == name:
            return i
    return 0


def _refuses(url: str) -> bool:
    try:
        requests.get(url + "/healthz", timeout=2)
    except requests.ConnectionError:
        return True
    except requests.RequestException:
        return False
    return False
