"""Both shops as examples worth copying: each test here reproduces an attack that once worked
(issue 10, items 7-12), and both shops must refuse it the same way."""

from __future__ import annotations

import pytest

ALICE = {"username": "alice", "password": "wonderland"}


# --- 7. open redirect at login ------------------------------------------------------------

# ``next`` as it appears in the query string. A browser drops tabs and newlines inside a URL,
# trims leading spaces and control characters, and reads a backslash as a slash: every one
# of these leads it to another host if the shop sends it back in ``Location``.
OFFSITE_NEXT = [
    "//evil.example",
    "///evil.example",
    "/%09/evil.example",
    "/%0A/evil.example",
    "/%0D%0A/evil.example",
    "%09//evil.example",
    "%20//evil.example",
    "%2F%2Fevil.example",
    "%5C%5Cevil.example",
    "/%5Cevil.example",
    "%5C/evil.example",
    "/%09%5Cevil.example",
    "https://evil.example/",
    "https:evil.example",
    "HTTPS://evil.example",
    "javascript:alert(1)",
    "evil.example",
    "/%252F%252Fevil.example",  # decoded once more by a proxy or a later redirect
    "/%255Cevil.example",
]


@pytest.mark.parametrize("raw_next", OFFSITE_NEXT)
def test_login_never_redirects_off_site(client, raw_next):
    response = client.post(f"/login?next={raw_next}", data=ALICE)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


@pytest.mark.parametrize(
    "raw_next,location",
    [
        ("/cart", "/cart"),
        ("/orders/3", "/orders/3"),
        ("/product/2%3Fx%3D1", "/product/2?x=1"),
        ("/caf%C3%A9", "/caf%C3%A9"),  # sent on as ASCII, never as raw UTF-8 in a header
    ],
)
def test_login_goes_on_to_a_local_page(client, raw_next, location):
    response = client.post(f"/login?next={raw_next}", data=ALICE)
    assert response.headers["Location"] == location


def test_login_returns_to_the_page_that_asked_for_it(client):
    asked = client.get("/account").headers["Location"]
    assert client.post(asked, data=ALICE).headers["Location"] == "/account"


# --- 8. session fixation ------------------------------------------------------------------


def test_a_session_id_planted_before_login_is_worthless_after_it(app, client):
    client.get("/product/1")  # the attacker's anonymous session (a recently-viewed list)
    planted = client.get_cookie("session").value
    victim = app.test_client()
    victim.set_cookie("session", planted)  # e.g. through a cookie-tossing sibling subdomain
    assert victim.post("/login", data=ALICE).status_code == 302
    assert victim.get_cookie("session").value != planted
    assert victim.get("/account").status_code == 200
    # The attacker still holds the planted id: it must not be alice's session now.
    account = client.get("/account")
    assert account.status_code == 302 and account.headers["Location"].startswith("/login")
