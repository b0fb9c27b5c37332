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
or different, a request that failed after the client's retry of a refused connection.
"""

from __future__ import annotations

import contextlib
import os
import random
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
from migrate.harness.journey import Journey, JourneyResult, cart_lines, error_cause
from migrate.harness.stores import Stores, start_stores

if TYPE_CHECKING:
    from migrate.files import ExportResult as FilesExport

PASSWORD = "shopper-pass"
HOLD_SECONDS = 30.0  # how long a user's request waits for a refused instance to come back
PRODUCTS = 5
# What each user counts, named as in CutoverResult, which sums them.
COUNTS = ("requests", "failed_requests", "logouts", "lost_cart_items", "lost_files", "rounds")
Narrate = Callable[[str], None]


@dataclass
class Stage:
    """One step of the cut-over, with what it did."""

    name: str
    seconds: float
    detail: str


@dataclass
class Tally:
    """What one simulated user noticed."""

    requests: int = 0
    failed_requests: int = 0
    logouts: int = 0
    lost_cart_items: int = 0
    lost_files: int = 0
    rounds: int = 0
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        if len(self.problems) < 5:
            self.problems.append(text)


@dataclass
class CutoverResult:
    """The counts a cut-over is judged by: every loss figure must be 0."""

    users: int
    requests: int = 0
    failed_requests: int = 0
    logouts: int = 0
    lost_cart_items: int = 0
    lost_files: int = 0
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
        lost = self.failed_requests + self.logouts + self.lost_cart_items + self.lost_files
        journey_ok = self.journey is None or (self.journey.ok and self.journey.finished)
        return lost == 0 and self.rounds > 0 and journey_ok


class Router:
    """Which instance a user's request goes to: sticky before the cut-over, round-robin after."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = list(urls)
        self.sticky = True
        self._turn = 0
        self._lock = threading.Lock()

    def pick(self, user: int, refused: str | None = None) -> str:
        """The instance for ``user``'s request; ``refused``: the one that just refused it."""
        if self.sticky:
            # A sticky balancer holds a user's request until their instance answers again.
            return self.urls[user % len(self.urls)]
        if refused in self.urls:
            # A health-checked balancer sends the retry to another instance.
            return self.urls[(self.urls.index(refused) + 1) % len(self.urls)]
        with self._lock:
            self._turn += 1
            return self.urls[self._turn % len(self.urls)]


def _refused(exc: requests.ConnectionError) -> bool:
    """Nothing reached the app: connection refused, or reset before any byte of a reply."""
    text = repr(exc)
    return any(s in text for s in ("NewConnectionError", "Connection refused",
                                   "ConnectionResetError", "RemoteDisconnected"))


class Shopper(threading.Thread):
    """One simulated user: logs in once, then adds to the cart, checks it, changes the avatar."""

    def __init__(self, index: int, username: str, router: Router, stop: threading.Event) -> None:
        super().__init__(name=f"shopper-{index}", daemon=True)
        self.index = index
        self.username = username
        self.router = router
        self.stop_event = stop
        self.http = requests.Session()
        self.tally = Tally()
        self.cart: dict[int, int] = {}
        self.avatar: bytes | None = None
        self.rng = random.Random(index)
        self.error: BaseException | None = None
        self._recovering = False

    # --- requests ------------------------------------------------------------------------

    def send(self, method: str, path: str, **kwargs: object) -> requests.Response | None:
        """One request, retried while its instance refuses; None (counted) if it still fails."""
        deadline = time.monotonic() + HOLD_SECONDS
        refused: str | None = None
        while True:
            base = self.router.pick(self.index, refused)
            try:
                response = self.http.request(method, base + path, allow_redirects=False,
                                             timeout=30, **kwargs)  # type: ignore[arg-type]
            except requests.ConnectionError as exc:
                # A balancer retries an idempotent request on any connection error, others
                # only when nothing reached the app.
                if (method == "GET" or _refused(exc)) and time.monotonic() < deadline:
                    refused = base
                    time.sleep(0.05)
                    continue
                self.fail(f"{method} {path} on {base}: {error_cause(exc)}")
                return None
            self.tally.requests += 1
            if response.status_code >= 500:
                self.fail(f"{method} {path}: HTTP {response.status_code} from "
                          f"{response.headers.get('X-Instance', base)}")
                return None
            return response

    def fail(self, text: str) -> None:
        self.tally.requests += 1
        self.tally.failed_requests += 1
        self.tally.problem(text)

    def logged_out(self, response: requests.Response) -> bool:
        """A redirect to the login page: the user lost their session. Log back in."""
        if response.status_code == 302 and "/login" in response.headers.get("Location", ""):
            self.tally.logouts += 1
            self.tally.problem(f"logged out on {response.headers.get('X-Instance', '?')}")
            if self.login() and not self._recovering:
                # Count what came back after signing in again, once, before anything changes it.
                self._recovering = True
                try:
                    self.check_cart()
                    self.check_avatar()
                finally:
                    self._recovering = False
            return True
        return False

    # --- the user's actions ----------------------------------------------------------------

    def login(self) -> bool:
        r = self.send("POST", "/login", data={"username": self.username, "password": PASSWORD})
        if r is None:
            return False
        if r.status_code != 302:
            self.fail(f"log in: HTTP {r.status_code}")
            return False
        return True

    def add(self) -> None:
        product = 1 + self.rng.randrange(PRODUCTS)
        r = self.send("POST", "/cart/add", data={"product_id": product, "quantity": 1})
        if r is None or self.logged_out(r):
            return
        if r.status_code != 302:
            self.fail(f"add to cart: HTTP {r.status_code}")
            return
        self.cart[product] = self.cart.get(product, 0) + 1

    def check_cart(self) -> None:
        r = self.send("GET", "/cart")
        if r is None or self.logged_out(r):
            return
        if r.status_code != 200:
            self.fail(f"view cart: HTTP {r.status_code}")
            return
        shown = cart_lines(r.text)
        missing = sum(max(0, n - shown.get(p, 0)) for p, n in self.cart.items())
        if missing:
            self.tally.lost_cart_items += missing
            self.tally.problem(f"{missing} cart items missing on "
                               f"{r.headers.get('X-Instance', '?')}")
        self.cart = shown  # count a loss once

    def upload_avatar(self) -> None:
        data = b"\x89PNG\r\n\x1a\n" + self.rng.randbytes(2048)
        name = f"me-{self.tally.rounds}.png"
        r = self.send("POST", "/account/avatar", files={"avatar": (name, data, "image/png")})
        if r is None or self.logged_out(r):
            return
        if r.status_code != 302:
            self.fail(f"upload avatar: HTTP {r.status_code}")
            return
        self.avatar = data

    def check_avatar(self) -> None:
        if self.avatar is None:
            return
        r = self.send("GET", "/account/avatar")
        if r is None or self.logged_out(r):  # (signing in again checks the avatar)
            return
        if r.status_code != 200 or r.content != self.avatar:
            self.tally.lost_files += 1
            self.tally.problem(f"avatar {'differs' if r.status_code == 200 else 'missing'} on "
                               f"{r.headers.get('X-Instance', '?')} (HTTP {r.status_code})")
            self.avatar = None  # count a loss once; the next upload starts afresh

    def one_round(self) -> None:
        self.add()
        self.check_cart()
        if self.tally.rounds % 4 == 0:
            self.upload_avatar()
        self.check_avatar()
        self.tally.rounds += 1

    def run(self) -> None:
        try:
            if not self.login():
                return
            while not self.stop_event.is_set():
                self.one_round()
            self.check_cart()  # the last look: everything still there?
            self.check_avatar()
        except BaseException as exc:  # noqa: BLE001 - reported in the result, never lost
            self.error = exc
            self.tally.problem(f"{type(exc).__name__}: {exc}")


# --- the cut-over ------------------------------------------------------------------------------


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


def create_shoppers(database_url: str, count: int) -> list[str]:
    """Add ``count`` shop users (the before schema) and return their names."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session
    from werkzeug.security import generate_password_hash

    from sample_stateful_app.db import User, init_db, make_engine

    init_db(database_url)
    names = [f"shopper{n:02d}" for n in range(1, count + 1)]
    engine = make_engine(database_url)
    digest = generate_password_hash(PASSWORD)  # one hash for all: scrypt is slow on purpose
    with Session(engine) as s, s.begin():
        have = set(s.scalars(select(User.username)))
        s.add_all(User(username=n, password_hash=digest) for n in names if n not in have)
    engine.dispose()
    return names


def _wait_for_rounds(shoppers: list[Shopper], rounds: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(s.tally.rounds >= rounds or not s.is_alive() for s in shoppers):
            return
        time.sleep(0.05)


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
    from migrate.files import export_files
    from migrate.runbook.db import upgrade
    from migrate.runbook.switch import switch_config

    started = time.monotonic()
    result = CutoverResult(users=users)

    def stage(name: str, began: float, detail: str) -> None:
        result.stages.append(Stage(name, round(time.monotonic() - began, 2), detail))
        narrate(f"  {name}: {detail}")

    with tempfile.TemporaryDirectory(prefix="migrate-cutover-") as tmp:
        base = Path(run_dir or tmp)
        narrate("Starting embedded Redis and S3 (rclone serve s3) on 127.0.0.1")
        with start_stores(base / "stores") as store_set, _aws_env(store_set.stores):
            stores = store_set.stores
            database_url = stores.database_url
            names = create_shoppers(database_url, users)
            token = secrets.token_hex(16)
            env_file = base / "shop.env"
            env_file.write_text(
                "# The shop's configuration (the before-app's)\n"
                f"SECRET_KEY={secrets.token_hex(32)}\n"
                f"DATABASE_URL={database_url}\n"
                "SESSION_TYPE=cachelib\n"
            )
            common = {"ENV_FILE": str(env_file), "DATABASE_URL": database_url,
                      **{k: v for k, v in stores.app_env().items() if k.startswith("AWS_")}}
            before_env = dict(common)
            if migrate_state:
                before_env.update(MIGRATE_BRIDGE_TOKEN=token,
                                  MIGRATE_BRIDGE_REDIS_URL=stores.redis_url)
            state_file = base / "export-files.state"
            target = f"s3://{stores.s3_bucket}"

            narrate("Two before-instances, sticky sessions"
                    + (", the migration bridge deployed" if migrate_state else ""))
            with Cluster("stateful", 2, before_env, base / "cluster") as cluster:
                if on_before is not None:
                    on_before(cluster)
                folders = [cluster.run_dir / cluster.instance(i).name / "uploads"
                           for i in range(len(cluster))]
                router = Router(cluster.urls)
                stop = threading.Event()
                shoppers = [Shopper(i, n, router, stop) for i, n in enumerate(names)]
                for s in shoppers:
                    s.start()
                journey: Journey | None = None
                try:
                    narrate(f"{users} users shopping (log in, add to cart, check the cart, "
                            "change and fetch their avatar)")
                    _wait_for_rounds(shoppers, warmup_rounds)
                    if paused_journey:
                        journey = Journey([cluster.urls[0]], user="alice")
                        journey.run(until="send chunk 1")
                        narrate("alice pauses halfway through a chunked upload on "
                                f"{cluster.instance(0).name}")

                    cutover_began = time.monotonic()
                    if migrate_state:
                        _export_state(result, stage, cluster, stores, token, folders, target,
                                      state_file)
                    began = time.monotonic()
                    db = upgrade(database_url, revision="0002")
                    stage("db upgrade --revision 0002", began,
                          f"expand: {db.before or '0001 (stamped)'} -> {db.after}; "
                          "the before-app still works")

                    began = time.monotonic()
                    switched = switch_config(env_file, "stateless", redis_url=stores.redis_url,
                                             s3_url=f"{stores.s3_endpoint_url}/{stores.s3_bucket}")
                    probes = ", ".join(p.target for p in switched.probes)
                    stage("switch config", began, f"{env_file.name} rewritten "
                          f"({len(switched.changed)} keys), {probes} probed")
                    time.sleep(dwell)

                    for i in range(len(cluster)):
                        began = time.monotonic()
                        before_name = cluster.instance(i).name
                        cluster.stop(i)
                        last = ""
                        if migrate_state:
                            delta = export_files([str(folders[i])], target,
                                                 endpoint_url=stores.s3_endpoint_url,
                                                 redis_url=stores.redis_url,
                                                 state_file=state_file)
                            _count_files(result, delta)
                            last = f"; last export: {delta.uploaded} new files"
                        cluster.env = common
                        after = cluster.start_instance(i, app="stateless")
                        stage(f"roll {before_name}", began,
                              f"-> {after.name} on the same port{last}")
                        time.sleep(dwell)
                    result.cutover_seconds = round(time.monotonic() - cutover_began, 2)

                    began = time.monotonic()
                    db = upgrade(database_url)
                    router.sticky = False
                    stage("db upgrade", began, f"contract: {db.before} -> {db.after}; "
                          "stickiness off, requests round-robin")
                    if journey is not None:
                        journey.urls = cluster.urls
                        journey.run(until="download file")
                    time.sleep(dwell)

                    if kill:
                        began = time.monotonic()
                        victim = cluster.instance(0).name
                        cluster.kill(0)
                        time.sleep(dwell)
                        stage("SIGKILL", began, f"{victim} killed; the users carry on")
                    if journey is not None:
                        journey.run()
                        result.journey = journey.result()
                finally:
                    stop.set()
                    for s in shoppers:
                        s.join(timeout=HOLD_SECONDS + 30)
                for name in COUNTS:  # the users' tallies add up to the run's
                    setattr(result, name, sum(getattr(s.tally, name) for s in shoppers))
                for s in shoppers:
                    result.problems += [f"{s.username}: {p}" for p in s.tally.problems]
                result.problems = result.problems[:20]
                if keep_running:
                    if kill:
                        cluster.start_instance(0)
                    keep_running(cluster)
    result.seconds = round(time.monotonic() - started, 1)
    return result


def _export_state(result: CutoverResult, stage: Callable[[str, float, str], None],
                  cluster: Cluster, stores: Stores, token: str, folders: list[Path],
                  target: str, state_file: Path) -> None:
    """Bridge check, then sessions and files exported while the before-instances serve."""
    from migrate.files import export_files
    from migrate.sessions import export_sessions

    began = time.monotonic()
    mirrored = sum(_bridge_status(u, token).get("mirrored", 0) for u in cluster.urls)
    stage("bridge dual-write", began, f"on: {mirrored} session saves mirrored to Redis so far")

    began = time.monotonic()
    sessions = export_sessions(cluster.urls, stores.redis_url, token=token)
    result.sessions_exported = sessions.written + sessions.skipped
    stage("export sessions", began, f"{sessions.read} read, {sessions.written} written, "
          f"{sessions.skipped} already mirrored, {sessions.failed} failed")

    began = time.monotonic()
    files = export_files([str(f) for f in folders], target, endpoint_url=stores.s3_endpoint_url,
                         redis_url=stores.redis_url, state_file=state_file)
    _count_files(result, files)
    stage("export files", began, f"{files.uploaded} uploaded, {files.skipped} unchanged, "
          f"{len(files.uploads)} chunked uploads carried, {files.failed} failed")


def _count_files(result: CutoverResult, export: FilesExport) -> None:
    result.files_exported += export.uploaded
    # A re-run reports an upload it carried before as "already-carried": count each once.
    result.uploads_carried += sum(u.status == "carried" for u in export.uploads)
    if export.failed:
        result.problems.append(f"export-files: {export.failed} files failed")


def _bridge_status(url: str, token: str) -> dict:
    r = requests.get(url + "/_migrate/status", headers={"Authorization": f"Bearer {token}"},
                     timeout=10)
    r.raise_for_status()
    return r.json()
