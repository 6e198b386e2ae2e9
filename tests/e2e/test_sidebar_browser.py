"""The sidebar in a real headless Chromium (Debian's, driven by Playwright), against a real
Yuchi server and the simulator, whose JS-SDK stub plays the WeCom client: a rep opens the
sidebar in a customer chat, sees the timeline and the score's reasons, adds a tag (synced to
WeCom), writes a note, sets a follow-up reminder and puts a quick reply into the chat
(sendChatMessage, recorded by the simulator); a rep without access is refused; the lead
card's link is opened and the lead accepted, or returned with a reason; outside WeCom the page
says so. Screenshots at 360 px go to
var/screenshots/ (``./scripts/screenshots`` regenerates them)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from support import run_worker

from bot.core import db, wechat
from bot.core.models import (
    Contact,
    Enrollment,
    Event,
    FollowUser,
    Identity,
    Journey,
    LeadAssignment,
    Message,
    QuickReply,
    QuickReplyGroup,
    Rep,
    ScoreEntry,
    utcnow,
)
from wxsim.app import SimConfig
from wxsim.entities import CorpTag, CorpTagGroup, ExternalContact
from wxsim.entities import FollowUser as SimFollowUser
from wxsim.testing import ServerThread, SimHandle, running_simulator

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
PHONE = {"width": 360, "height": 740}


@pytest.fixture(scope="module")
def stack(settings) -> Iterator[tuple[SimHandle, str, object]]:
    """The simulator and a Yuchi server whose public URL is its own address."""
    from bot.app import create_app

    with running_simulator(SimConfig.from_settings(settings)) as sim:
        app = create_app(sim.point(settings))
        yuchi = ServerThread(app)
        app.config["SETTINGS"] = sim.point(settings).replace(public_url=yuchi.url)
        saved = dict(os.environ)
        os.environ.update(sim.env)  # background jobs read the environment
        try:
            yield sim, yuchi.url, app.config["SETTINGS"]
        finally:
            os.environ.clear()
            os.environ.update(saved)
            yuchi.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def world(clean, stack):
    sim, url, settings = stack
    sim.reset()
    wechat.reset_clients()
    return sim, url, settings


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=PHONE, device_scale_factor=1, locale="zh-CN")
    page = context.new_page()
    yield page
    context.close()


def shot(page, name: str, full_page: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


def seed(sim: SimHandle, settings) -> int:
    """alice and bob on the staff; alice's customer 王女士 with a history and a score."""
    for userid, name in (("alice", "李娜"), ("bob", "赵强")):
        sim.add_rep(userid, name=name)
    with sim.state.lock:
        sim.state.contacts["wmWANG"] = ExternalContact(
            external_userid="wmWANG",
            name="王女士",
            follow={"alice": SimFollowUser(userid="alice", createtime=1)},
        )
        sim.state.tag_groups.append(
            CorpTagGroup("g1", "意向", 1, tags=[CorpTag("t1", "高意向", 1)])
        )
    now = utcnow()
    with db.session_scope(settings.database_url) as s:
        for userid, name in (("alice", "李娜"), ("bob", "赵强")):
            s.add(Rep(userid=userid, name=name, team="east", synced_at=now))
        c = Contact(
            first_seen_at=now - timedelta(days=9),
            last_seen_at=now,
            name="王女士",
            score=18.0,
            stage="mql",
            owner_userid="alice",
            fields={"company": "上海明达贸易"},
        )
        s.add(c)
        s.flush()
        s.add(
            Identity(
                contact_id=c.id,
                kind="external_userid",
                app_id=settings.wecom_corp_id,
                value="wmWANG",
            )
        )
        s.add(FollowUser(contact_id=c.id, userid="alice", external_userid="wmWANG"))
        history = [
            (9, "oa.subscribe", {"channel": "展会海报"}),
            (3, "oa.click", {"key": "产品价格"}),
            (1, "journey.answer", {"attribute": "预算", "value": "五万左右"}),
            (0, "oa.text", {"content": "能发一份报价单吗？"}),
        ]
        from bot.scoring.versions import active

        version = active(s).version
        for days, type_, props in history:
            s.add(
                Event(
                    contact_id=c.id,
                    type=type_,
                    source="oa",
                    properties=props,
                    occurred_at=now - timedelta(days=days, minutes=5),
                )
            )
        for rule, pts, why, days in (
            ("budget", 10, "回答了预算问题：五万左右", 1),
            ("price_menu", 5, "点击菜单「产品价格」", 3),
            ("subscribe", 3, "关注了公众号", 9),
        ):
            s.add(
                ScoreEntry(
                    contact_id=c.id,
                    rule_id=rule,
                    ruleset_version=version,
                    points=pts,
                    reason=why,
                    occurred_at=now - timedelta(days=days),
                )
            )
        s.add(
            ScoreEntry(
                contact_id=c.id,
                rule_id="@ledger",
                ruleset_version=version,
                points=0,
                occurred_at=now,
            )
        )
        return c.id


def in_chat(
    sim: SimHandle, userid: str, external: str = "wmWANG", entry: str = "single_chat_tools"
):
    sim.browser(userid=userid)
    sim.jssdk_context(entry=entry, userid=userid, external_userid=external)


def test_a_rep_opens_the_sidebar_in_a_customer_chat(world, page):
    sim, url, settings = world
    cid = seed(sim, settings)
    in_chat(sim, "alice")
    page.goto(f"{url}/sidebar/")
    page.wait_for_url(f"{url}/sidebar/contacts/{cid}")
    assert page.locator("h1").inner_text() == "王女士"
    reasons = page.locator("#reasons li").all_inner_texts()
    assert [r.split(" ")[0] for r in reasons] == [
        "回答了预算问题：五万左右",
        "点击菜单「产品价格」",
        "关注了公众号",
    ]
    events = page.locator("#timeline .ev").all_inner_texts()
    assert any("3天前 点击菜单「产品价格」" in e for e in events)
    assert any("昨天" in e and "回答了预算问题：五万左右" in e for e in events)
    assert any("关注了公众号（渠道：展会海报）" in e for e in events)
    shot(page, "sidebar-contact")

    page.fill("#tags input[name=tag]", "高意向")
    page.click("#tags button.btn")
    page.wait_for_selector("#tags .chip:has-text('高意向')")
    run_worker(settings)
    with sim.state.lock:
        assert sim.state.contacts["wmWANG"].follow["alice"].tag_ids == ["t1"]

    page.fill("#notes textarea", "电话沟通：下周二上门演示")
    page.click("#notes button.primary")
    page.wait_for_selector("#notes li:has-text('电话沟通：下周二上门演示')")
    timeline = page.locator("#timeline").inner_text()
    assert "李娜 记录：电话沟通：下周二上门演示" in timeline
    assert "获得标签「高意向」（李娜 手动添加）" in timeline  # the tag event says who and why
    shot(page, "sidebar-contact-after-edits")


def test_a_rep_without_access_sees_the_refusal(world, page):
    sim, url, settings = world
    cid = seed(sim, settings)
    in_chat(sim, "bob")
    page.goto(f"{url}/sidebar/")
    page.wait_for_selector("#refusal:not([hidden])")
    assert "没有权限查看这位客户" in page.locator("#refusal").inner_text()
    assert page.locator("#refusal a").get_attribute("href") == "/sidebar/leads"
    response = page.goto(f"{url}/sidebar/contacts/{cid}")
    assert response.status == 403 and "没有权限" in page.inner_text("body")
    shot(page, "sidebar-refused")


def test_the_lead_card_link_opens_the_lead_and_it_is_accepted(world, page):
    sim, url, settings = world
    cid = seed(sim, settings)
    with db.session_scope(settings.database_url) as s:
        lead = LeadAssignment(
            contact_id=cid,
            userid="alice",
            reason="became an MQL",
            escalate_at=utcnow() + timedelta(hours=4),
        )
        s.add(lead)
        s.flush()
        lid = lead.id
    sim.browser(userid="alice")
    page.goto(f"{url}/sidebar/leads")
    assert "王女士" in page.locator("#leads").inner_text()
    shot(page, "sidebar-my-leads")
    page.goto(f"{url}/sidebar/leads/{lid}")
    page.wait_for_selector("#lead button.primary")
    shot(page, "sidebar-lead")
    page.click("#lead button.primary")
    page.wait_for_selector("#lead-status:has-text('跟进中')")
    with db.session_scope(settings.database_url) as s:
        assert s.get(LeadAssignment, lid).status == "accepted"


def test_outside_a_customer_chat_the_page_says_so_and_send_chat_message_is_recorded(world, page):
    sim, url, settings = world
    seed(sim, settings)
    in_chat(sim, "alice", entry="group_chat_tools")
    page.goto(f"{url}/sidebar/")
    page.wait_for_selector("#refusal:not([hidden])")
    assert "请在与客户的单聊中打开侧边栏" in page.locator("#refusal").inner_text()
    shot(page, "sidebar-not-in-chat")
    sent = page.evaluate(
        """() => new Promise((resolve) => wx.invoke("sendChatMessage",
             {msgtype: "text", enterChat: true, text: {content: "您好，报价单已发送"}}, resolve))"""
    )
    assert sent["err_msg"] == "sendChatMessage:ok"
    [msg] = sim.chat_messages()
    assert (msg["userid"], msg["external_userid"]) == ("alice", "wmWANG")
    assert msg["content"] == {"content": "您好，报价单已发送"}


def test_when_the_js_sdk_refuses_the_page_offers_my_leads(world, page):
    sim, url, settings = world
    seed(sim, settings)
    in_chat(sim, "alice")
    page.goto(f"{url}/sidebar/leads")  # signed in
    sim.configure(wecom_agent_id=1)  # now the client rejects the app's agentConfig
    page.goto(f"{url}/sidebar/")
    page.wait_for_selector("#refusal:not([hidden])")
    assert "拒绝了应用的 JS-SDK 签名" in page.locator("#refusal").inner_text()
    page.click("#refusal a")
    page.wait_for_url(f"{url}/sidebar/leads")


def test_a_manager_sees_the_team_customer_and_pauses_their_journey(world, page):
    sim, url, settings = world
    cid = seed(sim, settings)
    sim.add_rep("boss", name="周经理")
    with db.session_scope(settings.database_url) as s:
        s.add(Rep(userid="boss", name="周经理", role="manager", team="east", synced_at=utcnow()))
        j = Journey(name="新客培育", definition={}, status="published")
        s.add(j)
        s.flush()
        s.add(
            Enrollment(
                journey_id=j.id,
                contact_id=cid,
                status="waiting",
                step="等待3天",
                wake_at=utcnow() + timedelta(days=2),
            )
        )
    sim.browser(userid="boss")
    page.goto(f"{url}/sidebar/contacts/{cid}")
    journeys = page.locator("#journeys")
    assert "新客培育" in journeys.inner_text() and "当前步骤 等待3天" in journeys.inner_text()
    journeys.locator("button:has-text('暂停')").click()
    page.wait_for_selector("#journeys:has-text('已暂停')")
    shot(page, "sidebar-manager-journeys")
    with db.session_scope(settings.database_url) as s:
        assert s.execute(sa.select(Enrollment.status)).scalars().all() == ["paused"]


def quick_replies(settings) -> None:
    with db.session_scope(settings.database_url) as s:
        price = QuickReplyGroup(name="报价", position=0)
        intro = QuickReplyGroup(name="产品介绍", position=1)
        s.add_all([price, intro])
        s.flush()
        s.add_all(
            [
                QuickReply(
                    group_id=price.id,
                    kind="text",
                    title="报价单已发送",
                    content="您好，报价单已经发到您的邮箱，有任何问题随时联系我。",
                ),
                QuickReply(
                    group_id=price.id,
                    kind="link",
                    title="年度套餐价格说明（含企业版、旗舰版与定制服务的详细对比）",
                    content="三种套餐的功能与价格对比，适合采购前比较。",
                    url="https://example.com/pricing",
                ),
                QuickReply(
                    group_id=intro.id,
                    kind="text",
                    title="产品一句话介绍",
                    content="我们帮企业把公众号和企业微信里的客户统一管理起来。",
                ),
            ]
        )


def test_a_rep_puts_a_quick_reply_into_the_chat_and_sets_a_reminder(world, page):
    sim, url, settings = world
    cid = seed(sim, settings)
    quick_replies(settings)
    in_chat(sim, "alice")
    page.goto(f"{url}/sidebar/")
    page.wait_for_url(f"{url}/sidebar/contacts/{cid}")
    panel = page.locator("#quick-replies")
    panel.locator(".qr").first.wait_for()
    assert panel.locator(".qr b").all_inner_texts()[0] == "报价单已发送"
    page.fill("#qr-search input[name=q]", "报价 邮箱")
    page.click("#qr-search button")
    page.wait_for_function("document.querySelectorAll('#qr-list .qr').length === 1")
    page.fill("#qr-search input[name=q]", "")
    page.click("#qr-search button")
    page.wait_for_function("document.querySelectorAll('#qr-list .qr').length === 3")
    panel.scroll_into_view_if_needed()
    shot(page, "sidebar-quick-replies")
    panel.locator(".qr:has-text('报价单已发送')").click()
    page.wait_for_selector("#msg:has-text('已发送到聊天')")
    [msg] = sim.chat_messages()
    assert (msg["userid"], msg["external_userid"], msg["msgtype"]) == ("alice", "wmWANG", "text")
    assert msg["content"] == {"content": "您好，报价单已经发到您的邮箱，有任何问题随时联系我。"}
    panel.locator(".qr:has-text('年度套餐价格说明')").click()
    page.wait_for_function("document.querySelector('#msg').textContent.includes('年度套餐')")
    news = sim.chat_messages()[1]
    assert news["msgtype"] == "news" and news["content"]["link"] == "https://example.com/pricing"

    page.click("#reminder-slot summary")
    page.fill("#rem-text", "回电话确认预算")
    shot(page, "sidebar-reminder-form")
    page.click("#reminder-slot button:has-text('设置提醒')")
    page.wait_for_selector("#reminder-slot button:has-text('取消提醒')")
    assert "回电话确认预算" in page.locator("#reminder-slot").inner_text()
    assert "设置跟进提醒" in page.locator("#timeline").inner_text()
    shot(page, "sidebar-reminder")
    page.once("dialog", lambda d: d.accept())
    page.click("#reminder-slot button:has-text('取消提醒')")
    page.wait_for_selector("#reminder-slot summary")


def test_a_lead_is_returned_with_a_reason(world, page):
    sim, url, settings = world
    cid = seed(sim, settings)
    with db.session_scope(settings.database_url) as s:
        lead = LeadAssignment(
            contact_id=cid,
            userid="alice",
            reason="became an MQL",
            escalate_at=utcnow() + timedelta(hours=4),
        )
        s.add(lead)
        s.flush()
        lid = lead.id
    sim.browser(userid="alice")
    page.goto(f"{url}/sidebar/leads/{lid}")
    page.click("#lead button:has-text('退回')")
    dialog = page.locator("#return-dialog")
    dialog.wait_for()
    labels = dialog.locator(".pick span").all_inner_texts()
    assert labels[:3] == ["预算不足", "时机未到", "联系不上"] and "其他" in labels
    page.click("#return-form button.primary")
    assert dialog.locator(".err").inner_text() == "请选择退回原因"
    dialog.locator(".pick:has-text('其他')").click()
    assert dialog.locator("textarea").get_attribute("placeholder") == "请说明原因（必填）"
    page.click("#return-form button.primary")
    assert dialog.locator(".err").inner_text() == "这个原因需要填写说明"
    dialog.locator(".pick:has-text('联系不上')").click()
    page.fill("#return-form textarea", "电话一直无人接听")
    shot(page, "sidebar-return-dialog", full_page=False)  # what the phone shows
    page.click("#return-form button.primary")
    page.wait_for_selector("#lead-status:has-text('线索已退回')")
    assert dialog.is_hidden()
    assert "转给下一位销售" in page.locator("#lead-status").inner_text()
    shot(page, "sidebar-lead-returned")
    with db.session_scope(settings.database_url) as s:
        returned = s.get(LeadAssignment, lid)
        assert (returned.status, returned.return_reason) == ("returned", "联系不上")
        assert returned.return_note == "电话一直无人接听"
        [nxt] = s.execute(sa.select(LeadAssignment).filter_by(status="assigned")).scalars()
        assert nxt.userid == "bob"  # the next rep; alice is left out


def test_a_rep_gets_their_campaign_link_and_sends_it_to_their_wecom(world, page):
    from bot.campaigns.spec import CampaignSpec
    from bot.campaigns.store import create

    sim, url, settings = world
    seed(sim, settings)
    spec = CampaignSpec.model_validate(
        {
            "slug": "spring-growth",
            "name": "春季私域增长大会",
            "title": "2026 春季私域增长大会",
            "kind": "landing",
            "cover_url": "/h5/static/covers/sample.jpg",
            "form": {"fields": [{"name": "name", "required": True}]},
        }
    )
    with db.session_scope(settings.database_url) as s:
        create(s, spec)
    sim.browser(userid="alice")
    page.goto(f"{url}/sidebar/leads")
    page.click("text=我的推广链接")
    page.wait_for_selector(".campaign")
    assert "2026 春季私域增长大会" in page.locator(".campaign").inner_text()
    link = page.locator("input.link").input_value()
    assert "/h5/c/spring-growth?r=" in link
    page.click("text=发到我的企业微信")
    page.wait_for_selector("#msg:has-text('已发送到你的企业微信')")
    shot(page, "sidebar-campaign-links")
    with db.session_scope(settings.database_url) as s:
        [msg] = s.execute(sa.select(Message).where(Message.channel == "wecom")).scalars()
        assert msg.to_user == "alice" and msg.payload["url"] == link
