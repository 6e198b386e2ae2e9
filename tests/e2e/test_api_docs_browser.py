"""The API docs page (/api/docs) in a real headless Chromium at 360 px and 1280 px, with every
request outside the Yuchi server refused: the page shows every section and operation without
fetching anything from elsewhere, does not scroll sideways, and its links to the schemas and
to the OpenAPI document work. Screenshots go to var/screenshots/api-docs-*.png."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from wxsim.testing import ServerThread

playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed"),
]
SHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def server(settings) -> Iterator[str]:
    from bot.app import create_app

    yuchi = ServerThread(create_app(settings))
    try:
        yield yuchi.url
    finally:
        yuchi.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.mark.parametrize("width", [360, 1280])
def test_docs_page_offline(server, browser, width):
    context = browser.new_context(viewport={"width": width, "height": 800}, locale="zh-CN")
    elsewhere: list[str] = []

    def only_yuchi(route):
        if route.request.url.startswith(server):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", only_yuchi)
    page = context.new_page()
    try:
        assert page.goto(f"{server}/api/docs").status == 200
        assert elsewhere == []
        assert page.locator("h1").inner_text().startswith("Yuchi API")
        ops = page.locator("article.op")
        assert ops.count() > 80
        assert page.locator("#tag-contacts article.op").count() >= 3
        # no sideways scrolling: long paths and tables wrap or scroll inside their box
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"api-docs-{width}.png"), full_page=False)

        listing = page.locator("#op-tags\\.tagged_contacts")
        listing.scroll_into_view_if_needed()
        assert "at_least" in listing.inner_text() and "date-time" in listing.inner_text()
        listing.screenshot(path=str(SHOTS / f"api-docs-{width}-query.png"))

        page.locator("#op-api\\.create_reply a[href='#schema-ReplyRuleIn']").first.click()
        assert page.evaluate("location.hash") == "#schema-ReplyRuleIn"
        assert page.locator("#schema-ReplyRuleIn").is_visible()
        page.screenshot(path=str(SHOTS / f"api-docs-{width}-schema.png"), full_page=False)

        page.get_by_role("link", name="/api/openapi.json").click()
        page.wait_for_url("**/api/openapi.json")
        assert '"openapi"' in page.content()
        assert elsewhere == []
    finally:
        context.close()
