"""The after-shop in a real browser: Debian's chromium, driven by Playwright, through HAProxy.

Two stateless instances on the embedded stores behind the cluster's HAProxy (round-robin, no
stickiness): the browser sees one origin while HAProxy sends each request to the next instance.
A user logs in, adds two products, views the cart, uploads an avatar and sees it on the account
page. Every response through the balancer carries ``X-Instance``: successive requests must come
from different instances, and the user must stay signed in with the cart intact all along.

The stylesheet is answered inside the browser (the same file both instances serve) and the
favicon is refused there, so the only requests that reach HAProxy are the pages, their form
posts and redirects, and the avatar image: their order is then the order HAProxy sees, and
round-robin makes it alternate. A screenshot of the account page is kept in
``artifacts/browser/shop.png``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from migrate.harness.cluster import Cluster, haproxy_available
from tests.conftest import SECRET

CHROMIUM = shutil.which("chromium")
REPO = Path(__file__).resolve().parents[1]
SCREENSHOT = REPO / "artifacts" / "browser" / "shop.png"
STYLESHEET = REPO / "sample_stateless_app" / "static" / "style.css"
TAG = "MIGRATE_BROWSER_TEST"  # in the browser's environment: finds its processes afterwards

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None,
                       reason="Debian chromium not installed: .ci/run installs it"),
    pytest.mark.skipif(not haproxy_available(),
                       reason="haproxy not installed: .ci/run installs it"),
]


def png(width: int = 48, height: int = 48) -> bytes:
    """A small, valid RGB PNG (a diagonal gradient), made without an imaging library."""
    rows = b"".join(
        b"\x00" + b"".join(bytes((200, (x * 5) % 256, (y * 5) % 256)) for x in range(width))
        for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def tagged_pids(tag: str) -> list[int]:
    """Processes whose environment holds ``TAG=tag``: the browser and every child it started."""
    marker = f"{TAG}={tag}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


@pytest.fixture
def cluster(stores, tmp_path: Path) -> Iterator[Cluster]:
    env = {**stores.app_env(), "SECRET_KEY": SECRET}  # stores: fresh database, empty Redis
    with Cluster("stateless", 2, env, tmp_path / "cluster", haproxy=True) as started:
        yield started


def test_shop_in_a_browser_through_haproxy(cluster: Cluster, tmp_path: Path,
                                           record_property: Callable[[str, object], None]
                                           ) -> None:
    from playwright.sync_api import Request, Response, Route, expect, sync_playwright

    base = cluster.proxy_url
    assert base is not None
    avatar = tmp_path / "avatar.png"
    avatar.write_bytes(png())
    tag = secrets.token_hex(8)
    served: list[tuple[str, str, int, str]] = []  # (method, path, status, X-Instance)

    def on_response(response: Response) -> None:
        instance = response.headers.get("x-instance")
        if instance and response.url.startswith(base):
            path = response.url[len(base):]
            served.append((response.request.method, path, response.status, instance))

    def local_asset(route: Route, request: Request) -> None:
        if request.url.endswith("/static/style.css"):
            route.fulfill(path=STYLESHEET, content_type="text/css")
        else:
            route.fulfill(status=404, body="")

    def signed_in_with(cart_count: int) -> None:
        expect(page.locator("#user")).to_have_text("alice")
        expect(page.locator("#cart-count")).to_have_text(str(cart_count))

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    env={**os.environ, TAG: tag})
        try:
            assert tagged_pids(tag), "the browser's processes are not found by their tag"
            context = browser.new_context(viewport={"width": 1000, "height": 700})
            context.set_default_timeout(15_000)
            context.route("**/static/**", local_asset)
            context.route("**/favicon.ico", local_asset)
            page = context.new_page()
            page.on("response", on_response)

            # Anonymous catalog, then log in.
            page.goto(base + "/")
            expect(page.locator("li.product").first).to_be_visible()
            assert page.locator("li.product").count() >= 5
            expect(page.locator("#user")).to_have_count(0)
            page.get_by_role("link", name="Log in").click()
            page.locator("input[name=username]").fill("alice")
            page.locator("input[name=password]").fill("wonderland")
            with page.expect_navigation():
                page.locator("form.login button").click()
            signed_in_with(0)

            # Two products into the cart, each from its product page.
            page.locator("li.product[data-product='1'] a").click()
            with page.expect_navigation():
                page.get_by_role("button", name="Add to cart").click()
            expect(page).to_have_url(base + "/cart")
            signed_in_with(1)
            page.goto(base + "/product/2")
            page.locator("input[name=quantity]").fill("2")
            with page.expect_navigation():
                page.get_by_role("button", name="Add to cart").click()
            lines = page.locator("tr.line")
            expect(lines).to_have_count(2)
            signed_in_with(3)
            cart = {line.get_attribute("data-product"): line.get_attribute("data-quantity")
                    for line in lines.all()}
            assert cart == {"1": "1", "2": "2"}

            # The avatar: uploaded on one instance, shown by whichever serves the image.
            page.get_by_role("link", name="Signed in as alice").click()
            expect(page.locator("#username")).to_have_text("alice")
            page.locator("input[name=avatar]").set_input_files(avatar)
            with page.expect_response(lambda r: r.url == base + "/account/avatar"
                                      and r.request.method == "GET") as image_info:
                with page.expect_navigation():
                    page.get_by_role("button", name="Upload avatar").click()
            image = image_info.value
            assert image.status == 200 and image.body() == avatar.read_bytes()
            img = page.get_by_role("img", name="avatar")
            expect(img).to_be_visible()
            page.wait_for_load_state("load")
            assert img.evaluate("i => i.complete && i.naturalWidth") == 48
            signed_in_with(3)
            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=SCREENSHOT, full_page=True)

            # Back to the cart: still signed in, nothing lost.
            page.get_by_role("link", name="Cart").click()
            expect(page.locator("tr.line")).to_have_count(2)
            signed_in_with(3)
            context.close()
        finally:
            browser.close()
    record_property("screenshot", str(SCREENSHOT))
    print(f"screenshot: {SCREENSHOT}")
    print("served:", " ".join(f"{m} {path} {status} {inst};" for m, path, status, inst in served))

    assert SCREENSHOT.stat().st_size > 0
    assert tagged_pids(tag) == [], "chromium processes outlived the test"
    # Every request that went through HAProxy came from the other instance than the one before.
    instances = [inst for *_, inst in served]
    assert set(instances) == {"stateless-1", "stateless-2"}
    assert len(served) >= 15, served
    same = [(a, b) for a, b in zip(served, served[1:], strict=False) if a[3] == b[3]]
    assert not same, f"successive requests served by the same instance: {same}"
    # The redirects after each form post were pages served by the other instance.
    posts = [i for i, (method, *_) in enumerate(served) if method == "POST"]
    assert len(posts) == 4 and all(served[i][2] == 302 for i in posts)
