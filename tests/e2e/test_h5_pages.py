"""Campaign pages on a phone (headless Chromium, 375 px, WeChat's user agent) against the
simulator's OAuth and JS-SDK: an employee's link, the form with a bad then a good phone
number, a share, the shared link opened by a second visitor, an event sign-up and check-in,
then the chain, the points and the stats. Screenshots of each page kind go to var/screenshots/."""

from __future__ import annotations

import time

import h5_browser
import pytest
from h5_browser import Stack, shot

pytestmark = pytest.mark.slow
# The browser fixtures live in h5_browser (shared with no one else's e2e tests).
h5_servers, chromium = h5_browser.h5_servers, h5_browser.chromium
h5_stack, phone = h5_browser.h5_stack, h5_browser.phone

FORM = {
    "fields": [
        {"name": "name", "required": True},
        {"name": "phone", "required": True},
        {"name": "company"},
        {
            "name": "q_size",
            "type": "single",
            "label": "公司规模",
            "options": ["1-50人", "50人以上"],
        },
    ]
}
COMMON = {
    "body": "<p>三月，与<strong>500+</strong>品牌一起聊私域增长。</p><ul><li>案例拆解</li><li>工具演示</li></ul>",
    "cover_url": "/h5/static/covers/sample.jpg",
    "form": FORM,
    "reward": {"points_per_form": 10, "depth": 3},
}


def campaign(stack: Stack, **spec) -> dict:
    return stack.api("POST", "/api/campaigns", json={**COMMON, **spec})


def open_as(stack: Stack, page, openid: str, url: str) -> None:
    """Open ``url`` in WeChat as ``openid``: the silent OAuth round trip, then the page."""
    stack.sim.browser(openid=openid)
    page.goto(url)
    page.wait_for_selector("#title")
    assert "/h5/c/" in page.url


def fill(page, name: str, phone_number: str) -> None:
    page.fill("#f-name", name)
    page.fill("#f-phone", phone_number)
    page.check("text=50人以上")
    page.click("#submit")


def wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_employee_link_form_share_second_visitor_points_and_stats(h5_stack, phone):
    stack = h5_stack
    camp = campaign(
        stack,
        slug="spring",
        name="春季私域大会",
        title="2026 春季私域增长大会",
        kind="landing",
        follow=True,
    )
    link = stack.api("GET", f"/api/campaigns/{camp['id']}/links?userid=zhangsan")
    first = phone()
    open_as(stack, first, "o_first", link["url"])
    shot(first, "landing")
    fill(first, "李雷", "12345")
    first.wait_for_selector("#err-phone:has-text('手机号')")
    assert first.locator("#f-name").input_value() == "李雷"  # what was typed stays
    shot(first, "form-error")
    first.fill("#f-phone", "13912345678")
    first.click("#submit")
    first.wait_for_selector("#done")
    first.wait_for_function("document.querySelector('#follow img').naturalWidth > 0")
    shot(first, "landing-done")
    first.wait_for_function("document.documentElement.dataset.wx === 'ready'")
    shared = first.evaluate("wx.__sim.triggerShare('appMessage')")
    assert "?r=" in shared["link"] and shared["title"] == camp["title"]
    wait_for(lambda: stack.api("GET", f"/api/campaigns/{camp['id']}/stats")["shares"] == 1)

    second = phone()
    open_as(stack, second, "o_second", shared["link"])
    fill(second, "韩梅梅", "13700001111")
    second.wait_for_selector("#done")

    first.goto(f"{stack.url}/h5/points")
    assert first.locator("#balance").inner_text() == "10"
    shot(first, "points")
    first.goto(f"{stack.url}/h5/c/spring/friends")
    assert first.locator("#people").inner_text() == "1"
    assert "韩梅梅" in first.inner_text("#friends")
    shot(first, "friends")
    first.goto(link["poster"])
    shot(first, "poster")
    figures = stack.api("GET", f"/api/campaigns/{camp['id']}/stats")
    assert (figures["unique_visitors"], figures["forms"], figures["shares"]) == (2, 2, 1)
    assert figures["per_depth"]["2"]["forms"] == 1
    assert figures["leaderboard"]["employees"][0] == {
        "holder": "u:zhangsan",
        "points": 20,
        "credits": 2,
    }
    tree = stack.api("GET", f"/api/campaigns/{camp['id']}/chain?userid=zhangsan")
    assert tree["people"] == 2 and tree["children"][0]["children"][0]["depth"] == 2


def test_event_sign_up_and_check_in(h5_stack, phone):
    stack = h5_stack
    camp = campaign(
        stack,
        slug="live-0320",
        name="直播",
        title="私域运营实战直播",
        kind="event",
        cta="立即报名",
        event={"starts_at": "2026-12-20T19:30:00+08:00", "place": "线上直播", "live_url": ""},
    )
    page = phone()
    open_as(stack, page, "o_event", f"{stack.url}/h5/c/{camp['slug']}")
    shot(page, "event")
    fill(page, "王芳", "13600002222")
    page.wait_for_selector("#pass")
    page.wait_for_function("document.getElementById('pass').naturalWidth > 0")
    shot(page, "event-pass")
    token = page.get_attribute("#pass", "src").split("/h5/pass/")[1].removesuffix(".png")
    scan = stack.api(
        "POST", f"/api/campaigns/{camp['id']}/checkins", json={"pass": token, "by": "lisi"}
    )
    assert scan["first"] is True
    page.reload()
    assert "已签到" in page.inner_text("#done")
    figures = stack.api("GET", f"/api/campaigns/{camp['id']}/stats")
    assert (figures["signups"], figures["checkins"]) == (1, 1)


def test_gated_resource_download(h5_stack, phone):
    stack = h5_stack
    camp = campaign(
        stack,
        slug="whitepaper",
        name="白皮书",
        title="2026 私域运营白皮书",
        kind="resource",
        cta="免费领取",
        resource={"url": "/h5/static/covers/sample.jpg", "filename": "白皮书.pdf"},
    )
    page = phone()
    open_as(stack, page, "o_reader", f"{stack.url}/h5/c/{camp['slug']}")
    shot(page, "resource")
    fill(page, "赵敏", "13500003333")
    page.wait_for_selector("#download")
    shot(page, "resource-done")
    with page.expect_response(lambda r: "/h5/static/covers/" in r.url) as got:
        page.click("#download")
    assert got.value.status == 200
    assert stack.api("GET", f"/api/campaigns/{camp['id']}/stats")["downloads"] == 1
