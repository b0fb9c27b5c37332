"""The demo: the whole story on embedded real stores, narrated, in a couple of minutes.

Two before-instances, and the journey failing on them (the user appears logged out); users
shopping on them (sticky sessions) and one paused halfway through a chunked upload; then the
migration while they shop: bridge dual-write, export sessions and files, db upgrade, switch
config, the instances rolled to the after-app one at a time; the same users carry on logged in
with their carts and files; one instance SIGKILLed; still fine. See ``migrate.harness.cutover``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from migrate.harness.cluster import Cluster
from migrate.harness.cutover import CutoverResult, run_cutover
from migrate.harness.journey import Journey, JourneyResult


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
        return self.result.ok == self.expected_ok and (not self.expected_ok
                                                       or self.result.finished)


@dataclass
class DemoResult:
    cases: list[Case] = field(default_factory=list)
    cutover: CutoverResult | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (all(c.as_expected for c in self.cases) and self.cutover is not None
                and self.cutover.ok)


Narrate = Callable[[str], None]


def run_demo(
    narrate: Narrate = lambda _: None,
    *,
    users: int = 10,
    run_dir: Path | None = None,
    keep_running: Callable[[Cluster], None] | None = None,
) -> DemoResult:
    """Run the demo; ``narrate`` receives one sentence per stage.

    ``keep_running``, when given, is called with the after-shop's cluster still up (the CLI
    uses it to leave the shop open in a browser until Ctrl-C).
    """
    demo = DemoResult()

    def before_journey(cluster: Cluster) -> None:
        narrate("The journey on the two before-instances, round-robin (no sticky sessions):")
        result = Journey(cluster.urls, user="bob").run()
        failed = result.failed
        if failed is not None:
            narrate(f"  step {failed.number} ({failed.name}) on {failed.instance}: "
                    f"{failed.detail}")
        demo.cases.append(Case("before, 2 instances, round-robin", "stateful", 2, False, result))

    cutover = run_cutover(users, narrate, run_dir=run_dir, paused_journey=True,
                          on_before=before_journey, keep_running=keep_running)
    if cutover.journey is not None:
        demo.cases.append(Case("before -> migrate -> after, 1 killed", "stateless", 2, True,
                               cutover.journey, killed="stateless-1"))
    demo.cutover = cutover
    demo.seconds = cutover.seconds
    return demo
