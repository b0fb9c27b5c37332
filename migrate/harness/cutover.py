"""The live cut-over: simulated users keep shopping while a before-deployment becomes an after one.

The sequence, with the users' traffic running throughout:

1. two before-instances (sticky: a user stays on the instance that holds their session), the
   migration bridge deployed in them, mirroring every session save to Redis (dual-write);
2. export sessions (over the bridge), export files (both instances' upload folders, in-progress
   chunked uploads carried into S3 multipart uploads), ``db upgrade --revision 0002`` (expand:
   the before-app keeps working, triggers copy its writes into the new columns);
3. switch the configuration file to the after-app (every store probed first);
4. roll the instances one at a time: SIGTERM (in-flight requests finish), a last export of that
   instance's folder, the after-app started on the same port. Its users wait for the port,
   as a balancer holding requests for a restarting backend does, and come back logged in;
5. every instance is an after-instance: ``db upgrade`` (contract), stickiness off (round-robin),
   one instance SIGKILLed, and the users carry on.

Each user counts what they would notice: being logged out, cart items gone, their avatar gone
or different, a request that failed after the client's retry of a refused connection, their API
token refused, an order whose live update never came. At the end, every user at once buys the
last few of a scarce product: ``oversold`` counts orders for items that did not exist.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import requests

from migrate.harness.cluster import Cluster
from migrate.harness.journey import Journey, JourneyResult
from migrate.harness.rush import last_items_rush
from migrate.harness.shoppers import (
    COUNTS,
    HOLD_SECONDS,
    Router,
    Shopper,
    create_shoppers,
    wait_for_rounds,
)
from migrate.harness.stores import Stores, start_stores

if TYPE_CHECKING:
    from migrate.files import ExportResult as FilesExport

Narrate = Callable[[str], None]


@dataclass
class Stage:
    """One step of the cut-over, with what it did."""

    name: str
    seconds: float
    detail: str


@dataclass
class CutoverResult:
    """The counts a cut-over is judged by: every loss figure must be 0."""

    users: int
    requests: int = 0
    failed_requests: int = 0
    logouts: int = 0
    lost_cart_items: int = 0
    lost_files: int = 0
    api_logouts: int = 0  # API clients whose token was refused
    events_missed: int = 0  # orders whose 'placed' event never reached the user's stream
    oversold: int = 0  # the last-items rush: orders beyond the stock
    rounds: int = 0
    sessions_exported: int = 0
    files_exported: int = 0
    uploads_carried: int = 0
    cutover_seconds: float = 0.0  # first export to the last instance rolled
    seconds: float = 0.0
    stages: list[Stage] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # the first few; never session contents
    journey: JourneyResult | None = None  # the user paused mid chunked upload (the demo's)

    @property
    def ok(self) -> bool:
        lost = (self.failed_requests + self.logouts + self.lost_cart_items + self.lost_files
                + self.api_logouts + self.events_missed + self.oversold)
        journey_ok = self.journey is None or (self.journey.ok and self.journey.finished)
        return lost == 0 and self.rounds > 0 and journey_ok


@contextlib.contextmanager
def _aws_env(stores: Stores) -> Iterator[None]:
    """The S3 credentials in this process's environment, as an operator's shell has them."""
    env = stores.app_env()
    keys = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    saved = {k: os.environ.get(k) for k in (*keys, "AWS_CA_BUNDLE")}
    os.environ.update({k: env[k] for k in keys})
    os.environ.pop("AWS_CA_BUNDLE", None)  # the embedded endpoint is plain HTTP
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def run_cutover(
    users: int = 20,
    narrate: Narrate = lambda _: None,
    *,
    run_dir: Path | None = None,
    warmup_rounds: int = 3,
    dwell: float = 1.5,
    kill: bool = True,
    paused_journey: bool = False,
    migrate_state: bool = True,
    on_before: Callable[[Cluster], None] | None = None,
    keep_running: Callable[[Cluster], None] | None = None,
) -> CutoverResult:
    """Migrate a running two-instance before-deployment while ``users`` keep shopping.

    ``paused_journey`` adds the demo's user who stops halfway through a chunked upload on a
    before-instance and finishes it on the after-instances. ``dwell`` is how long traffic
    runs between stages. ``migrate_state=False`` is the plain redeploy a team does without
    this tool (no bridge, no exports: same config switch, schema change and roll), the baseline
    the benchmark compares with. ``on_before`` is called with the before-cluster up, before the
    users start (the demo runs its journey there); ``keep_running`` with the after-cluster up.
    """
    started = time.monotonic()
    result = CutoverResult(users=users)
    with tempfile.TemporaryDirectory(prefix="migrate-cutover-") as tmp:
        base = Path(run_dir or tmp)
        narrate("Starting embedded Redis and S3 (rclone serve s3) on 127.0.0.1")
        with start_stores(base / "stores") as store_set, _aws_env(store_set.stores):
            run = _Migration(result, narrate, store_set.stores, base, dwell, migrate_state)
            names = create_shoppers(run.database_url, users)
            narrate("Two before-instances, sticky sessions"
                    + (", the migration bridge deployed" if migrate_state else ""))
            with Cluster("stateful", 2, run.before_env(), base / "cluster") as cluster:
                if on_before is not None:
                    on_before(cluster)
                router = Router(cluster.urls)
                stop = threading.Event()
                shoppers = [Shopper(i, n, router, stop) for i, n in enumerate(names)]
                for s in shoppers:
                    s.start()
                try:
                    narrate(f"{users} users shopping (log in, add to cart, check the cart, "
                            "change and fetch their avatar)")
                    wait_for_rounds(shoppers, warmup_rounds)
                    run.migrate(cluster, router, kill=kill, paused_journey=paused_journey)
                finally:
                    stop.set()
                    for s in shoppers:
                        s.join(timeout=HOLD_SECONDS + 30)
                _add_tallies(result, shoppers)
                rush = last_items_rush(cluster.urls, run.database_url, names)
                result.oversold = rush.oversold
                narrate(f"Last-items rush: {rush.buyers} users at once for the last {rush.stock}:"
                        f" {rush.bought} bought, {rush.sold_out} told sold out, "
                        f"{rush.failed} failed; {rush.stock_left} left")
                if rush.failed:
                    result.problems.append(f"last-items rush: {rush.failed} check-outs failed")
                if keep_running:
                    if kill:
                        cluster.start_instance(0)
                    keep_running(cluster)
    result.seconds = round(time.monotonic() - started, 1)
    return result


def _add_tallies(result: CutoverResult, shoppers: list[Shopper]) -> None:
    """The users' tallies add up to the run's; the first few problems are kept."""
    for name in COUNTS:
        setattr(result, name, sum(getattr(s.tally, name) for s in shoppers))
    for s in shoppers:
        result.problems += [f"{s.username}: {p}" for p in s.tally.problems]
    result.problems = result.problems[:20]


@dataclass
class _Migration:
    """The migration of one running deployment, stage by stage, each recorded in the result."""

    result: CutoverResult
    narrate: Narrate
    stores: Stores
    base: Path
    dwell: float
    migrate_state: bool
    token: str = field(default_factory=lambda: secrets.token_hex(16))

    def __post_init__(self) -> None:
        self.database_url = self.stores.database_url
        self.env_file = self.base / "shop.env"
        # It holds the secret key: owner-only from the first byte, whatever folder it is in.
        self.env_file.touch(mode=0o600)
        self.env_file.chmod(0o600)  # (a file left by an earlier run keeps its old mode)
        self.env_file.write_text(
            "# The shop's configuration (the before-app's)\n"
            f"SECRET_KEY={secrets.token_hex(32)}\n"
            f"DATABASE_URL={self.database_url}\n"
            "SESSION_TYPE=cachelib\n"
        )
        self.common = {"ENV_FILE": str(self.env_file), "DATABASE_URL": self.database_url,
                       **{k: v for k, v in self.stores.app_env().items()
                          if k.startswith("AWS_")}}
        self.state_file = self.base / "export-files.state"
        self.target = f"s3://{self.stores.s3_bucket}"

    def before_env(self) -> dict[str, str]:
        """The before-instances' environment: with the bridge when state is migrated."""
        env = dict(self.common)
        if self.migrate_state:
            env.update(MIGRATE_BRIDGE_TOKEN=self.token,
                       MIGRATE_BRIDGE_REDIS_URL=self.stores.redis_url)
        return env

    def stage(self, name: str, began: float, detail: str) -> None:
        self.result.stages.append(Stage(name, round(time.monotonic() - began, 2), detail))
        self.narrate(f"  {name}: {detail}")

    def migrate(self, cluster: Cluster, router: Router, *, kill: bool,
                paused_journey: bool) -> None:
        """Every stage in order, the users' traffic running throughout."""
        journey: Journey | None = None
        if paused_journey:
            journey = Journey([cluster.urls[0]], user="alice")
            journey.run(until="send chunk 1")
            self.narrate("alice pauses halfway through a chunked upload on "
                         f"{cluster.instance(0).name}")
        folders = [cluster.run_dir / cluster.instance(i).name / "uploads"
                   for i in range(len(cluster))]
        cutover_began = time.monotonic()
        if self.migrate_state:
            self.export_state(cluster, folders)
        self.expand()
        self.switch()
        time.sleep(self.dwell)
        self.roll(cluster, folders)
        self.result.cutover_seconds = round(time.monotonic() - cutover_began, 2)
        self.contract(router)
        if journey is not None:
            journey.urls = cluster.urls
            journey.run(until="download file")
        time.sleep(self.dwell)
        if kill:
            began = time.monotonic()
            victim = cluster.instance(0).name
            cluster.kill(0)
            time.sleep(self.dwell)
            self.stage("SIGKILL", began, f"{victim} killed; the users carry on")
        if journey is not None:
            journey.run()
            self.result.journey = journey.result()

    def export_state(self, cluster: Cluster, folders: list[Path]) -> None:
        """Bridge check, then sessions and files exported while the before-instances serve."""
        from migrate.files import export_files
        from migrate.sessions import export_sessions

        began = time.monotonic()
        mirrored = sum(_bridge_status(u, self.token).get("mirrored", 0) for u in cluster.urls)
        self.stage("bridge dual-write", began,
                   f"on: {mirrored} session saves mirrored to Redis so far")

        began = time.monotonic()
        sessions = export_sessions(cluster.urls, self.stores.redis_url, token=self.token)
        self.result.sessions_exported = sessions.written + sessions.skipped
        self.stage("export sessions", began, f"{sessions.read} read, {sessions.written} "
                   f"written, {sessions.skipped} already mirrored, {sessions.failed} failed; "
                   f"API tokens: {sessions.tokens_written} written, {sessions.tokens_skipped} "
                   f"already mirrored; API carts: {sessions.hashes_written} added to")
        if not sessions.ok:
            self.result.problems.append("export-sessions: some sessions, tokens or carts failed")

        began = time.monotonic()
        files = export_files([str(f) for f in folders], self.target,
                             endpoint_url=self.stores.s3_endpoint_url,
                             redis_url=self.stores.redis_url, state_file=self.state_file)
        self.count_files(files)
        self.stage("export files", began, f"{files.uploaded} uploaded, {files.skipped} "
                   f"unchanged, {len(files.uploads)} chunked uploads carried, "
                   f"{files.failed} failed")

    def expand(self) -> None:
        from migrate.runbook.db import DbConfig, upgrade
        from sample_stateless_app.db import BASELINE, MIGRATIONS

        database_url = self.database_url
        began = time.monotonic()
        db = upgrade(DbConfig(database_url, str(MIGRATIONS), baseline=BASELINE), revision="0002")
        self.stage("db upgrade --revision 0002", began,
                   f"expand: {db.before or '0001 (stamped)'} -> {db.after}; "
                   "the before-app still works")

    def switch(self) -> None:
        from migrate.runbook.switch import switch_config

        env_file, stores = self.env_file, self.stores
        began = time.monotonic()
        switched = switch_config(env_file, "stateless", redis_url=stores.redis_url,
                                 s3_url=f"{stores.s3_endpoint_url}/{stores.s3_bucket}",
                                 # the shop's own keys (the repo's [tool.migrate.switch])
                                 set_keys={"REDIS_URL": "{redis}", "S3_BUCKET": "{bucket}",
                                           "S3_ENDPOINT_URL": "{s3}",
                                           "DATABASE_URL": "{database_url}"})
        probes = ", ".join(p.target for p in switched.probes)
        self.stage("switch config", began, f"{env_file.name} rewritten "
                   f"({len(switched.changed)} keys), {probes} probed")

    def roll(self, cluster: Cluster, folders: list[Path]) -> None:
        """Each instance in turn: stopped, its folder exported once more, the after-app started."""
        from migrate.files import export_files

        for i in range(len(cluster)):
            began = time.monotonic()
            before_name = cluster.instance(i).name
            cluster.stop(i)
            last = ""
            if self.migrate_state:
                delta = export_files([str(folders[i])], self.target,
                                     endpoint_url=self.stores.s3_endpoint_url,
                                     redis_url=self.stores.redis_url,
                                     state_file=self.state_file)
                self.count_files(delta)
                last = f"; last export: {delta.uploaded} new files"
            cluster.env = self.common
            after = cluster.start_instance(i, app="stateless")
            self.stage(f"roll {before_name}", began, f"-> {after.name} on the same port{last}")
            time.sleep(self.dwell)

    def contract(self, router: Router) -> None:
        from migrate.runbook.db import DbConfig, upgrade
        from sample_stateless_app.db import BASELINE, MIGRATIONS

        database_url = self.database_url
        began = time.monotonic()
        db = upgrade(DbConfig(database_url, str(MIGRATIONS), baseline=BASELINE))
        router.sticky = False
        self.stage("db upgrade", began, f"contract: {db.before} -> {db.after}; "
                   "stickiness off, requests round-robin")

    def count_files(self, export: FilesExport) -> None:
        self.result.files_exported += export.uploaded
        # A re-run reports an upload it carried before as "already-carried": count each once.
        self.result.uploads_carried += sum(u.status == "carried" for u in export.uploads)
        if export.failed:
            self.result.problems.append(f"export-files: {export.failed} files failed")


def _bridge_status(url: str, token: str) -> dict:
    r = requests.get(url + "/_migrate/status", headers={"Authorization": f"Bearer {token}"},
                     timeout=10)
    r.raise_for_status()
    return r.json()
