"""Faults on real processes: Redis restarted mid-journey, S3 unreachable, an export SIGKILLed.

Each test that stops or restarts a store runs its own embedded stores (never the session's), two
real gunicorn instances of the after-shop, and checks what a user would notice: a clear 503
while a store is down, and, once it is back, no instance restart and nothing lost.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from migrate.harness.cluster import Cluster
from migrate.harness.journey import MIB, Journey
from migrate.harness.stores import StoreSet, start_stores
from tests.conftest import SECRET

CART = 'class="line" data-product="(\\d+)" data-quantity="(\\d+)"'


@pytest.fixture
def own_stores(tmp_path: Path, database_url: str) -> Iterator[StoreSet]:
    """Embedded Redis (append-only, fsync always, as a user's persistent Redis) and S3."""
    with start_stores(tmp_path / "stores", persist_redis=True,
                      database_url=database_url) as started:
        yield started


@pytest.fixture
def shop(own_stores: StoreSet, tmp_path: Path) -> Iterator[Cluster]:
    """Two instances of the after-shop (and its RQ worker) on those stores."""
    env = {**own_stores.stores.app_env(), "SECRET_KEY": SECRET}
    with Cluster("stateless", 2, env, tmp_path / "shop") as cluster:
        yield cluster


def cart_of(response: requests.Response) -> dict[int, int]:
    assert response.status_code == 200, (response.status_code, response.headers)
    return {int(p): int(q) for p, q in re.findall(CART, response.text)}


def wait_ready(urls: list[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    for url in urls:
        while requests.get(url + "/readyz", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, f"{url} did not become ready again"
            time.sleep(0.1)


def wait_worker_listening(redis_url: str, timeout: float = 30.0) -> None:
    """Until the RQ worker has registered in Redis (it takes a moment to import the shop)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    while not client.smembers("rq:workers"):
        assert time.monotonic() < deadline, "the RQ worker did not start listening"
        time.sleep(0.1)
    client.close()


def assert_clear_503(response: requests.Response) -> None:
    """What a user (and a balancer) sees while a store is down: a 503 that says so."""
    assert response.status_code == 503, (response.status_code, response.text[:200])
    assert response.headers.get("Retry-After")
    assert "unreachable" in response.text
    assert "Traceback" not in response.text and "Error" not in response.text


# --- 1. Redis restarted mid-journey ---------------------------------------------------------


@pytest.mark.slow
def test_redis_restart_mid_journey_is_a_503_then_resumes_logged_in_with_the_cart(
        own_stores: StoreSet, shop: Cluster) -> None:
    wait_worker_listening(own_stores.stores.redis_url)  # the steady state of a running shop
    trip = Journey(shop.urls, file_size=6 * MIB)
    first = trip.run(until="view cart")
    assert first.ok, first.failed
    pids = [shop.instance(i).pid for i in range(2)]
    http = trip.client.http  # the user's browser: their session cookie

    redis = own_stores.redis
    assert redis is not None
    import redis as redis_py

    redis_py.Redis.from_url(own_stores.stores.redis_url).save()  # as a user's Redis persists
    redis.stop()
    try:
        for url in shop.urls:
            ready = requests.get(url + "/readyz", timeout=10)
            assert ready.status_code == 503
            assert ready.json()["redis"].startswith("failed")
            assert requests.get(url + "/healthz", timeout=10).status_code == 200  # alive
            for path in ("/", "/cart", "/product/3"):
                assert_clear_503(http.get(url + path, allow_redirects=False, timeout=10))
            assert_clear_503(http.post(url + "/cart/add", data={"product_id": 4},
                                       allow_redirects=False, timeout=10))
    finally:
        redis.start()  # same port, same folder: the append-only file is read back

    wait_ready(shop.urls)  # by itself: no instance was restarted
    assert [shop.instance(i).pid for i in range(2)] == pids
    assert all(shop.instance(i).alive for i in range(2))
    for url in shop.urls:  # still logged in on both instances, the cart as it was
        assert cart_of(http.get(url + "/cart", allow_redirects=False, timeout=10)) == {1: 1, 2: 2}
    # The add refused during the outage was not counted; the journey goes on to its end:
    # uploads, the shared view counter, check out with its confirmation (the RQ worker
    # reconnected by itself), log out.
    rest = trip.run()
    assert rest.ok, rest.failed
    assert rest.finished


# --- 2. S3 unreachable -----------------------------------------------------------------------


@pytest.mark.slow
def test_s3_down_is_a_clear_503_and_nothing_is_lost(own_stores: StoreSet, shop: Cluster) -> None:
    a, b = shop.urls
    http = requests.Session()
    login = http.post(a + "/login", data={"username": "alice", "password": "wonderland"},
                      allow_redirects=False, timeout=10)
    assert login.status_code == 302
    assert http.post(b + "/cart/add", data={"product_id": 2, "quantity": 3},
                     allow_redirects=False, timeout=10).status_code == 302
    avatar = b"\x89PNG\r\n\x1a\n" + random.Random(1).randbytes(30_000)
    up = http.post(a + "/account/avatar", files={"avatar": ("me.png", avatar, "image/png")},
                   allow_redirects=False, timeout=10)
    assert up.status_code == 302
    chunks = [random.Random(2).randbytes(5 * MIB), random.Random(3).randbytes(300_000)]
    upload_id = http.post(b + "/uploads", json={"filename": "talk.bin"},
                          timeout=10).json()["upload_id"]
    assert http.put(f"{a}/uploads/{upload_id}/chunks/1", data=chunks[0], timeout=30).ok

    s3 = own_stores.s3
    assert s3 is not None
    s3.stop()
    try:
        for url in shop.urls:
            ready = requests.get(url + "/readyz", timeout=20)
            assert ready.status_code == 503 and ready.json()["s3"].startswith("failed")
            assert_clear_503(http.get(url + "/account/avatar", allow_redirects=False, timeout=20))
            other = b"\x89PNG\r\n\x1a\n" + b"a different picture"
            assert_clear_503(http.post(url + "/account/avatar", allow_redirects=False,
                                       files={"avatar": ("new.png", other, "image/png")},
                                       timeout=20))
            for response in (http.post(url + "/uploads", json={"filename": "x.bin"}, timeout=20),
                             http.put(f"{url}/uploads/{upload_id}/chunks/2", data=chunks[1],
                                      timeout=20)):
                assert_clear_503(response)
                assert response.json()["error"]  # the upload API answers in JSON
            # The cart and the session live in Redis: untouched by the S3 outage.
            assert cart_of(http.get(url + "/cart", allow_redirects=False, timeout=20)) == {2: 3}
    finally:
        s3.start()  # same port, same folder, same keys

    wait_ready(shop.urls)
    for url in shop.urls:  # the avatar from before the outage, same bytes; the refused one lost
        again = http.get(url + "/account/avatar", allow_redirects=False, timeout=10)
        assert again.status_code == 200 and again.content == avatar
        assert cart_of(http.get(url + "/cart", allow_redirects=False, timeout=10)) == {2: 3}
    # The embedded S3 (rclone serve s3) keeps multipart uploads in progress in memory: the one
    # started before its restart is gone. The shop says so (not a 500) and a new one completes.
    gone = http.put(f"{b}/uploads/{upload_id}/chunks/2", data=chunks[1], timeout=30)
    if gone.status_code != 200:  # a server that keeps them (AWS, MinIO) simply goes on
        assert gone.status_code == 410 and "start it again" in gone.json()["error"]
        upload_id = http.post(a + "/uploads", json={"filename": "talk.bin"},
                              timeout=10).json()["upload_id"]
        assert http.put(f"{b}/uploads/{upload_id}/chunks/1", data=chunks[0], timeout=30).ok
        assert http.put(f"{a}/uploads/{upload_id}/chunks/2", data=chunks[1], timeout=30).ok
    done = http.post(f"{b}/uploads/{upload_id}/complete", json={"chunks": 2}, timeout=30)
    assert done.status_code == 200, done.text
    file_id = done.json()["file_id"]
    got = http.get(f"{a}/files/{file_id}", timeout=30)
    assert hashlib.sha256(got.content).digest() == hashlib.sha256(b"".join(chunks)).digest()


# --- 3. An export SIGKILLed mid-run resumes ----------------------------------------------------


def _migrate(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "migrate"), *args]


def _count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _group_members(pgid: int) -> list[int]:
    """Live pids in process group ``pgid`` (the command and any worker it started)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[2]) == pgid:
                members.append(int(entry))
    return members


def _kill_when(process: subprocess.Popen, ready, timeout: float = 60.0) -> None:
    """SIGKILL ``process`` (only it, as `kill -9 PID` does) once ``ready()`` is true."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, "the command finished before it could be killed"
        assert time.monotonic() < deadline, "the command made no progress"
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def _reap_group(pgid: int, wait: float = 0.0) -> list[int]:
    """What the killed command left in its group after ``wait`` s; then SIGKILLed (ours)."""
    deadline = time.monotonic() + wait
    left = _group_members(pgid)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = _group_members(pgid)
    if left:
        os.killpg(pgid, signal.SIGKILL)
        while _group_members(pgid):
            time.sleep(0.05)
    return left


def _small_files(folder: Path, count: int, seed: int) -> dict[str, bytes]:
    rng = random.Random(seed)
    files: dict[str, bytes] = {}
    for i in range(count):
        rel = f"avatars/{i % 50}/file-{i}.bin"
        files[rel] = rng.randbytes(rng.randint(10, 3000))
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(files[rel])
    return files


@pytest.fixture
def user_env(store_set, tmp_path: Path) -> dict[str, str]:
    """The environment of a user exporting to the embedded S3 (credentials, private cache)."""
    stores = store_set.stores
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    env.update(AWS_ACCESS_KEY_ID=stores.s3_access_key,
               AWS_SECRET_ACCESS_KEY=stores.s3_secret_key, AWS_DEFAULT_REGION="us-east-1",
               XDG_CACHE_HOME=str(tmp_path / "cache"), COLUMNS="200")
    return env


@pytest.mark.slow
def test_export_files_killed_mid_run_resumes_without_uploading_twice(
        store_set, user_env: dict[str, str], tmp_path: Path) -> None:
    stores = store_set.stores
    source = tmp_path / "uploads"
    files = _small_files(source, 3000, seed=11)
    prefix = f"fault-{os.getpid()}-{time.monotonic_ns()}"
    target = f"s3://{stores.s3_bucket}/{prefix}"
    state = tmp_path / "export-state.ndjson"
    command = _migrate("export-files", str(source), "--to", target, "--endpoint-url",
                       stores.s3_endpoint_url, "--state-file", str(state), "--jobs", "4",
                       "--json")
    log = open(tmp_path / "first-run.log", "wb")  # noqa: SIM115 - closed below
    first = subprocess.Popen(command, env=user_env, stdout=log, stderr=subprocess.STDOUT,
                             start_new_session=True)
    try:
        _kill_when(first, lambda: _count_lines(state) >= 300)
    finally:
        _reap_group(first.pid)  # its worker processes too (see the test below)
        log.close()
    remembered = _count_lines(state)
    s3 = store_set.s3.client()
    listed = sum(page.get("KeyCount", 0) for page in s3.get_paginator("list_objects_v2")
                 .paginate(Bucket=stores.s3_bucket, Prefix=prefix + "/"))
    assert 300 <= remembered <= listed < len(files), "the kill did not land mid-run"

    second = subprocess.run(command, env=user_env, capture_output=True, text=True, timeout=180)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    report = json.loads(second.stdout)
    assert report["files"] == len(files) and report["failed"] == 0
    # What the killed run had finished is reported as skipped, not sent again.
    assert report["skipped"] + report["duplicates"] >= remembered
    assert report["uploaded"] + report["skipped"] + report["duplicates"] == len(files)
    assert report["uploaded"] <= len(files) - remembered

    # Every file is there with its bytes: the real CLI's deep check, then a sample by hand.
    check = subprocess.run(_migrate("verify", "files", str(source), "--to", target,
                                    "--endpoint-url", stores.s3_endpoint_url, "--deep"),
                           env=user_env, capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]
    assert f"{len(files):,} of {len(files):,} match" in check.stdout
    for rel in random.Random(5).sample(sorted(files), 25):
        body = s3.get_object(Bucket=stores.s3_bucket, Key=f"{prefix}/{rel}")["Body"].read()
        assert body == files[rel]
    # A re-run now has nothing to do.
    third = subprocess.run(command, env=user_env, capture_output=True, text=True, timeout=180)
    assert third.returncode == 0 and json.loads(third.stdout)["uploaded"] == 0


@pytest.mark.slow
def test_a_killed_export_leaves_no_worker_processes(store_set, user_env: dict[str, str],
                                                     tmp_path: Path) -> None:
    stores = store_set.stores
    source = tmp_path / "uploads"
    _small_files(source, 1500, seed=12)
    state = tmp_path / "export-state.ndjson"
    command = _migrate("export-files", str(source), "--to",
                       f"s3://{stores.s3_bucket}/orphans-{time.monotonic_ns()}",
                       "--endpoint-url", stores.s3_endpoint_url, "--state-file", str(state),
                       "--jobs", "4", "--json")
    export = subprocess.Popen(command, env=user_env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _kill_when(export, lambda: _count_lines(state) >= 50)
    finally:
        # Its workers notice the kill by themselves (a deadline only bounds a busy machine).
        leftovers = _reap_group(export.pid, wait=30.0)  # then killed: never left running
    assert not leftovers, f"processes outlived the killed export: {leftovers}"


@pytest.mark.slow
def test_export_sessions_killed_mid_run_resumes_and_every_session_is_there(
        stores, tmp_path: Path) -> None:
    import msgspec
    import redis

    count = 200_000
    now = time.time()
    dump = tmp_path / "sessions.ndjson"
    with open(dump, "wb") as handle:
        for i in range(count):
            handle.write(msgspec.json.encode({
                "sid": f"sid-{i:07d}", "expires": now + 3600,
                "data": {"_permanent": True, "user_id": i, "recent": [i % 7]}}) + b"\n")
    client = redis.Redis.from_url(stores.redis_url)  # emptied for this test by the fixture
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    command = _migrate("export-sessions", "--from", str(dump), "--redis", stores.redis_url,
                       "--json")
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _kill_when(first, lambda: client.dbsize() >= 20_000)
    finally:
        _reap_group(first.pid)
    written_before = client.dbsize()
    assert 20_000 <= written_before < count, "the kill did not land mid-run"

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    report = json.loads(second.stdout)
    assert report["read"] == count and report["failed"] == 0
    # What the killed run wrote is skipped, not written again; the rest is written now.
    assert report["skipped"] == written_before
    assert report["written"] == count - written_before
    assert client.dbsize() == count

    check = subprocess.run(_migrate("verify", "sessions", "--from", str(dump), "--redis",
                                    stores.redis_url, "--json"),
                           env=env, capture_output=True, text=True, timeout=180)
    assert check.returncode == 0, check.stdout[-2000:] + check.stderr[-2000:]
    for i in random.Random(3).sample(range(count), 20):  # as the after-app reads them
        data = msgspec.msgpack.decode(client.get(f"session:sid-{i:07d}"))
        assert data == {"_permanent": True, "user_id": i, "recent": [i % 7]}
        # The expiry written in the dump, less the time since: however slow the machine.
        assert 3600 - (time.time() - now) - 1 <= client.ttl(f"session:sid-{i:07d}") <= 3600
    client.close()
