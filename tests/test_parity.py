"""The five journey cases of DESIGN.md on real gunicorn instances, Redis and S3 over HTTP.

before x1 passes (the baseline); before x2 fails where the user appears logged out; after x2
passes with the baseline's pages; after x2 with one instance SIGKILLed mid-journey passes with
nothing lost; the same through a real HAProxy. Plus 20 concurrent cart adds over two instances.
"""

from __future__ import annotations

import concurrent.futures
import re

import pytest
import requests

from migrate.harness.cluster import haproxy_available
from migrate.harness.journey import Journey, run_journey

pytestmark = pytest.mark.slow


def test_before_one_instance_passes(start_cluster):
    cluster = start_cluster("stateful", 1)
    result = run_journey(cluster.urls)
    assert result.ok, result.failed
    assert result.finished
    assert {s.instance for s in result.steps} == {"stateful-1"}


def test_before_two_instances_fails_where_the_user_appears_logged_out(start_cluster):
    cluster = start_cluster("stateful", 2)
    result = run_journey(cluster.urls)
    assert not result.ok
    login, failed = result.steps[1], result.failed
    assert login.name == "log in" and login.ok
    # The very next request goes to the other instance, which has never seen the session.
    assert failed.name == "add product 1"
    assert failed.instance != login.instance
    assert failed.status == 302
    assert "appears logged out" in failed.detail


def test_after_two_instances_pass_with_the_baselines_pages(start_cluster):
    baseline = run_journey(start_cluster("stateful", 1).urls)
    assert baseline.ok, baseline.failed
    cluster = start_cluster("stateless", 2)
    result = run_journey(cluster.urls)
    assert result.ok, result.failed
    assert {s.instance for s in result.steps} == {"stateless-1", "stateless-2"}
    # Requests really alternated: each instance served about half of the steps.
    served = [s.instance for s in result.steps]
    assert min(served.count("stateless-1"), served.count("stateless-2")) >= len(served) // 2 - 2
    for (name, before), (_, after) in zip(baseline.pages(), result.pages(), strict=True):
        assert before == after, f"step {name!r} differs from the baseline"


def test_after_survives_an_instance_killed_mid_journey(start_cluster):
    cluster = start_cluster("stateless", 2)
    trip = Journey(cluster.urls)

    def kill_during_upload(number: int, name: str) -> None:
        if name == "send chunk 2":
            cluster.kill(0)

    result = trip.run(before_step=kill_during_upload)
    assert result.ok, result.failed
    assert result.finished
    after_kill = result.steps[[s.name for s in result.steps].index("send chunk 2"):]
    assert {s.instance for s in after_kill} == {"stateless-2"}
    assert sum(s.retries for s in after_kill) >= 1  # refused connections went to the survivor
    assert not cluster.instance(0).alive


@pytest.mark.skipif(not haproxy_available(), reason="haproxy not installed (.ci/run installs it)")
def test_after_through_haproxy_with_a_kill(start_cluster):
    cluster = start_cluster("stateless", 2, haproxy=True)
    trip = Journey([cluster.proxy_url])

    def kill_midway(number: int, name: str) -> None:
        if name == "view product":
            cluster.kill(1)

    result = trip.run(before_step=kill_midway)
    assert result.ok, result.failed
    before_kill = result.steps[: [s.name for s in result.steps].index("view product")]
    assert {s.instance for s in before_kill} == {"stateless-1", "stateless-2"}


def test_twenty_concurrent_cart_adds_over_two_instances_lose_nothing(start_cluster):
    cluster = start_cluster("stateless", 2)
    http = requests.Session()
    login = http.post(cluster.urls[0] + "/login", data={"username": "bob", "password": "builder"},
                      allow_redirects=False)
    assert login.status_code == 302
    cookie = http.cookies.get("session")

    def add(i: int) -> int:
        response = requests.post(
            cluster.urls[i % 2] + "/cart/add", data={"product_id": 1 + i % 3},
            cookies={"session": cookie}, allow_redirects=False, timeout=30,
        )
        return response.status_code

    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        statuses = list(pool.map(add, range(20)))
    assert statuses == [302] * 20
    page = http.get(cluster.urls[1] + "/cart").text
    quantities = [int(q) for q in re.findall(r'data-quantity="(\d+)"', page)]
    assert sum(quantities) == 20
