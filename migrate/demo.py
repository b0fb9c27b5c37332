"""The demo: the same journey on the before-shop and the after-shop, on embedded real stores.

It shows the problem and the cure side by side: the before-shop passes on one instance and
fails on two (the user appears logged out); the after-shop passes on two, and still passes with
one of them SIGKILLed mid-journey.
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .cluster import Cluster
from .journey import Journey, JourneyResult
from .stores import start_stores


@dataclass
class Case:
    """One journey run of the demo."""

    title: str
    app: str
    instances: int
    expected_ok: bool
    result: JourneyResult
    killed: str | None = None  # the instance SIGKILLed mid-journey, if any

    @property
    def as_expected(self) -> bool:
        return self.result.ok == self.expected_ok


@dataclass
class DemoResult:
    cases: list[Case] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(c.as_expected for c in self.cases)


Narrate = Callable[[str], None]


def run_demo(
    narrate: Narrate = lambda _: None,
    *,
    run_dir: Path | None = None,
    keep_running: Callable[[list[Cluster]], None] | None = None,
) -> DemoResult:
    """Run the demo's cases; ``narrate`` receives one sentence per stage.

    ``keep_running``, when given, is called with the after-shop's cluster still up (the CLI
    uses it to leave the shop open in a browser until Ctrl-C).
    """
    import time

    started = time.monotonic()
    demo = DemoResult()
    with tempfile.TemporaryDirectory(prefix="migrate-demo-") as tmp:
        base = run_dir or Path(tmp)
        narrate("Starting embedded Redis and S3 (rclone serve s3) on 127.0.0.1")
        with start_stores(base / "stores") as store_set:
            env = {**store_set.stores.app_env(), "SECRET_KEY": secrets.token_hex(32)}

            def database(name: str) -> dict[str, str]:
                if store_set.stores.database_url.startswith("sqlite"):
                    return {**env, "DATABASE_URL": f"sqlite:///{base / (name + '.db')}"}
                return env

            narrate("Before, one instance: the baseline")
            with Cluster("stateful", 1, database("before1"), base / "before1") as one:
                demo.cases.append(
                    Case("before, 1 instance", "stateful", 1, True, Journey(one.urls).run())
                )
            narrate("Before, two instances behind round-robin: watch the user get logged out")
            with Cluster("stateful", 2, database("before2"), base / "before2") as two:
                demo.cases.append(
                    Case("before, 2 instances", "stateful", 2, False, Journey(two.urls).run())
                )
            narrate("After, two instances on shared Redis and S3")
            with Cluster("stateless", 2, database("after"), base / "after") as after:
                demo.cases.append(
                    Case("after, 2 instances", "stateless", 2, True, Journey(after.urls).run())
                )
                narrate("After, two instances, one SIGKILLed mid-journey")
                trip = Journey(after.urls, user="bob")

                def kill(number: int, name: str) -> None:
                    if name == "send chunk 2":
                        narrate(f"  SIGKILL {after.instance(0).name} during the chunked upload")
                        after.kill(0)

                case = Case("after, 2 instances, 1 killed", "stateless", 2, True,
                            trip.run(before_step=kill), killed=after.instance(0).name)
                demo.cases.append(case)
                if keep_running:
                    after.start_instance(0)
                    keep_running([after])
    demo.seconds = round(time.monotonic() - started, 1)
    return demo
