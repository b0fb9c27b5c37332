"""The login rate limit: failed log-ins per client address and user name, then a 429 that says
when to retry. On two instances the before-shop (counts in memory) allows twice the limit, the
after-shop (counts in Redis) exactly the limit."""

from __future__ import annotations

import pytest
import requests

LIMIT = 5  # the shops' default LOGIN_RATE_LIMIT: "5 per minute"


def error_line(response) -> str:
    return response.get_data(as_text=True).split('id="error">', 1)[1].split("<", 1)[0]


def test_failed_log_ins_past_the_limit_get_a_429_that_says_when_to_retry(client, auth):
    assert [auth.login(password="guess").status_code for _ in range(LIMIT)] == [401] * LIMIT
    refused = auth.login(password="guess")
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 61
    assert error_line(refused) == ("Too many failed log-ins for this user name from your "
                                   f"address: try again in {refused.headers['Retry-After']} "
                                   "seconds.")
    # Past the limit even the right password waits; another user is not held up.
    assert auth.login().status_code == 429
    assert auth.login("bob", "builder").status_code == 302
    as_json = client.post("/login", data={"username": "alice", "password": "guess"},
                          headers={"Accept": "application/json"})
    assert as_json.status_code == 429 and "Retry-After" in as_json.headers
    assert as_json.json["error"].startswith("Too many failed log-ins")


def test_the_api_token_request_shares_the_count(client, auth):
    # Both check alice's password: a guesser gets the limit once, not once per door.
    def token(password: str):
        return client.post("/api/token", json={"username": "alice", "password": password})

    statuses = [(auth.login(password="guess") if i % 2 == 0 else token("guess")).status_code
                for i in range(LIMIT + 1)]
    assert statuses == [401] * LIMIT + [429], statuses
    refused = token("wonderland")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert refused.json["error"].startswith("Too many failed log-ins for this user name")


def test_log_ins_that_succeed_do_not_count(auth):
    for _ in range(2 * LIMIT):
        assert auth.login().status_code == 302
        auth.logout()
    assert auth.login(password="guess").status_code == 401


def test_ratelimit_enabled_false_turns_it_off(client, auth):
    client.application.config["RATELIMIT_ENABLED"] = False
    assert {auth.login(password="guess").status_code for _ in range(2 * LIMIT)} == {401}


@pytest.mark.slow
@pytest.mark.parametrize(("shop", "allowed"), [("stateful", 2 * LIMIT), ("stateless", LIMIT)])
def test_failed_log_ins_alternating_between_two_instances(start_cluster, shop, allowed):
    cluster = start_cluster(shop, 2)
    statuses = []
    for attempt in range(3 * LIMIT):  # one guesser, each attempt on the next instance
        base = cluster.urls[attempt % 2]
        response = requests.post(f"{base}/login", data={"username": "alice", "password": "x"},
                                 allow_redirects=False, timeout=30)
        statuses.append(response.status_code)
    # Before: each instance counts in its own memory, so two instances allow twice the limit.
    # After: both count in Redis, so the limit is the limit, whichever instance answers.
    assert statuses == [401] * allowed + [429] * (3 * LIMIT - allowed), statuses


@pytest.mark.slow
def test_on_a_redis_cluster_two_apps_share_the_limit(tmp_path):
    from tests import test_sessions_support as support

    cluster = support.RedisClusterProcesses(tmp_path / "cluster")
    try:
        clients = [support.after_app(tmp_path / f"after-{i}", cluster.url).test_client()
                   for i in range(2)]
        statuses = [clients[attempt % 2].post("/login", data={"username": "alice",
                                                              "password": "x"}).status_code
                    for attempt in range(2 * LIMIT)]
    finally:
        cluster.stop()
    assert statuses == [401] * LIMIT + [429] * LIMIT, statuses
