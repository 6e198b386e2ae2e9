"""The sidebar's sales operations over their real endpoints: returning a lead with a reason
from the database list, the quick-reply search (话术库) behind the rep session and the CSRF
token, the next-follow-up reminder (set, the same again, cancel; access rules), the JS-SDK
signatures a customer's page asks for before sendChatMessage, and the lead card's stage."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from test_sidebar import csrf, customer, lead_for, login, one, rows, staff

from bot.core import db
from bot.core.models import (
    Contact,
    Event,
    FollowUpReminder,
    FollowUser,
    LeadAssignment,
    LeadReturnReason,
    Message,
    QuickReply,
    QuickReplyGroup,
    utcnow,
)
from bot.sales import handoff, quick_replies
from wxsim.jssdk import verify


@pytest.fixture
def client(sim_settings):
    from bot.app import create_app

    app = create_app(sim_settings)
    app.config["TESTING"] = True
    return app.test_client()


# --- returning a lead ----------------------------------------------------------------------------


def reason_id(settings, label: str) -> int:
    with db.session_scope(settings.database_url) as s:
        return one(s, LeadReturnReason, label=label).id


def test_a_return_needs_a_known_reason_and_a_note_when_the_reason_asks(client, sim, sim_settings):
    staff(sim_settings, "alice")
    cid = customer(sim_settings, "wm1", "alice")
    lid = lead_for(sim_settings, cid, "alice")
    with db.session_scope(sim_settings.database_url) as s:
        one(s, LeadReturnReason, label="时机未到").active = False
    login(client, sim, "alice", f"/sidebar/leads/{lid}")
    page = client.get(f"/sidebar/leads/{lid}").get_data(as_text=True)
    assert 'id="return-dialog"' in page and "预算不足" in page and "联系不上" in page
    assert "时机未到" not in page  # inactive reasons are not offered
    headers, path = csrf(client, cid), f"/sidebar/api/leads/{lid}/return"

    def answer(body: dict) -> tuple[int, dict]:
        resp = client.post(path, json=body, headers=headers)
        return resp.status_code, resp.get_json()

    assert answer({}) == (409, {"error": "请选择退回原因"})
    assert answer({"reason": 424242}) == (409, {"error": "没有这个退回原因"})
    assert answer({"reason": "不存在的原因"}) == (409, {"error": "没有这个退回原因"})
    assert answer({"reason": "时机未到"}) == (409, {"error": "没有这个退回原因"})
    assert answer({"reason": "其他"}) == (409, {"error": "这个退回原因需要填写说明"})
    assert answer({"reason": "其他", "note": "   "})[0] == 409
    assert answer({"reason": [1]})[0] == 422
    assert answer({"reason": "预算不足", "extra": 1})[0] == 422
    with db.session_scope(sim_settings.database_url) as s:
        assert s.get(LeadAssignment, lid).status == "assigned"  # nothing half-written
        assert rows(s, Event, type="lead.returned") == []

    status, done = answer({"reason": reason_id(sim_settings, "预算不足"), "note": "明年再谈"})
    assert status == 200
    assert done["status"] == "returned" and done["reason"] == "预算不足"
    assert done["outcome"] == "nurture" and "回到培育" in done["message"]
    assert answer({"reason": "预算不足"}) == (409, {"error": "这条线索已经处理过了"})
    with db.session_scope(sim_settings.database_url) as s:
        a = s.get(LeadAssignment, lid)
        assert (a.return_reason, a.return_note) == ("预算不足", "明年再谈")
    timeline = client.get(f"/sidebar/api/contacts/{cid}/timeline?kind=lead", headers=headers)
    texts = [e["text"] for e in timeline.get_json()["events"]]
    assert "销售alice 退回了线索（原因：预算不足；回到培育）：明年再谈" in texts


def test_a_return_that_disqualifies_says_so(client, sim, sim_settings):
    staff(sim_settings, "alice")
    cid = customer(sim_settings, "wm1", "alice")
    lid = lead_for(sim_settings, cid, "alice")
    login(client, sim, "alice", f"/sidebar/leads/{lid}")
    resp = client.post(
        f"/sidebar/api/leads/{lid}/return", json={"reason": "非目标客户"}, headers=csrf(client, cid)
    )
    assert resp.status_code == 200 and "不再发送营销消息" in resp.get_json()["message"]
    with db.session_scope(sim_settings.database_url) as s:
        assert s.get(Contact, cid).stage == "disqualified"


# --- quick replies -------------------------------------------------------------------------------


def library(settings) -> dict[str, int]:
    with db.session_scope(settings.database_url) as s:
        price, intro = QuickReplyGroup(name="报价", position=0), QuickReplyGroup(name="介绍")
        s.add_all([price, intro])
        s.flush()
        replies = [
            QuickReply(group_id=price.id, kind="text", title="报价单", content="报价单已发送"),
            QuickReply(
                group_id=price.id,
                kind="link",
                title="价格说明",
                content="三种套餐",
                url="https://example.com/p",
            ),
            QuickReply(group_id=intro.id, kind="image", title="产品图", media_id="MEDIA1"),
            QuickReply(group_id=intro.id, kind="text", title="介绍", content="100%_好用"),
        ]
        s.add_all(replies)
        s.flush()
        return {"price": price.id, "intro": intro.id, "text": replies[0].id}


def test_quick_reply_search_answers_only_with_a_session_and_the_csrf_token(
    client, sim, sim_settings
):
    staff(sim_settings, "alice")
    cid = customer(sim_settings, "wm1", "alice")
    ids = library(sim_settings)
    path = "/sidebar/api/quick-replies"
    assert client.get(path).status_code == 401
    login(client, sim, "alice")
    assert client.get(path).status_code == 403  # no token
    assert client.get(path, headers={"X-CSRF-Token": "forged"}).status_code == 403
    headers = csrf(client, cid)
    other_site = client.get(path, headers={**headers, "Origin": "https://evil.example"})
    assert other_site.status_code == 403

    every = client.get(path, headers=headers).get_json()
    assert [g["name"] for g in every["groups"]] == ["报价", "介绍"]
    assert [r["title"] for r in every["replies"]] == ["报价单", "价格说明", "产品图", "介绍"]
    found = client.get(f"{path}?q=报价", headers=headers).get_json()["replies"]
    assert [r["title"] for r in found] == ["报价单"]
    with db.session_scope(sim_settings.database_url) as s:
        expected = quick_replies.chat_message(s.get(QuickReply, ids["text"]))
    assert (
        found[0]["message"] == expected == {"msgtype": "text", "text": {"content": "报价单已发送"}}
    )
    assert found[0]["group"] == "报价" and found[0]["kind_label"] == "文字"
    by_group = client.get(f"{path}?group={ids['intro']}", headers=headers).get_json()["replies"]
    assert [(r["title"], r["message"]["msgtype"]) for r in by_group] == [
        ("产品图", "image"),
        ("介绍", "text"),
    ]
    literal = client.get(f"{path}?q=%25_", headers=headers).get_json()["replies"]
    assert [r["title"] for r in literal] == ["介绍"]  # % and _ are searched as text
    assert client.get(f"{path}?group=abc", headers=headers).status_code == 422
    assert client.get(f"{path}?group=-1", headers=headers).status_code == 422


# --- reminders -------------------------------------------------------------------------------------


def tomorrow_at_ten(settings) -> tuple[str, datetime]:
    zone = ZoneInfo(settings.timezone)
    day = utcnow().astimezone(zone).date() + timedelta(days=1)
    return f"{day.isoformat()}T10:00", datetime(day.year, day.month, day.day, 10, tzinfo=zone)


def test_reminders_are_set_once_cancelled_and_kept_to_the_rep(client, sim, sim_settings):
    for userid in ("alice", "bob", "carol"):
        staff(sim_settings, userid)
    cid = customer(sim_settings, "wm1", "alice")
    with db.session_scope(sim_settings.database_url) as s:  # carol follows the customer too
        s.add(FollowUser(contact_id=cid, userid="carol", external_userid="wm1"))
    due, at = tomorrow_at_ten(sim_settings)
    path = f"/sidebar/api/contacts/{cid}/reminders"
    login(client, sim, "alice")
    headers = csrf(client, cid)

    def post(body: dict) -> tuple[int, dict]:
        resp = client.post(path, json=body, headers=headers)
        return resp.status_code, resp.get_json()

    status, made = post({"due_at": due, "text": " 回电话确认预算 "})
    assert status == 201 and made["created"] is True
    rid = made["reminder"]["id"]
    assert datetime.fromisoformat(made["reminder"]["due_at"]) == at
    assert made["reminder"]["text"] == "回电话确认预算" and made["reminder"]["status"] == "pending"
    again = post({"due_at": due, "text": "回电话确认预算"})
    assert again[0] == 200 and again[1]["created"] is False  # a double tap changes nothing
    page = client.get(f"/sidebar/contacts/{cid}").get_data(as_text=True)
    assert 'class="row pending"' in page and "回电话确认预算" in page
    assert f"/reminders/{rid}" in page  # its cancel button

    assert post({"due_at": "2020-01-01T10:00", "text": "x"}) == (
        422,
        {"error": "提醒时间已经过去，请选择以后的时间"},
    )
    assert post({"due_at": "明天上午十点", "text": "x"}) == (422, {"error": "提醒时间格式不正确"})
    assert post({"due_at": "2026-13-45T10:00", "text": "x"})[0] == 422
    far = (utcnow() + timedelta(days=400)).strftime("%Y-%m-%dT%H:%M")
    assert post({"due_at": far, "text": "x"})[1] == {"error": "提醒时间最多设在一年以内"}
    assert post({"due_at": due, "text": ""})[0] == 422
    assert post({"due_at": due})[0] == 422
    with db.session_scope(sim_settings.database_url) as s:
        assert len(rows(s, FollowUpReminder)) == 1
        assert len(rows(s, Event, type="sales.reminder_set")) == 1

    for other, expected in (("bob", 403), ("carol", 403)):  # no access; not hers to cancel
        client.delete_cookie("yuchi_rep", path="/sidebar")
        login(client, sim, other, "/sidebar/leads")
        theirs = csrf(client)
        set_by_bob = client.post(path, json={"due_at": due, "text": "x"}, headers=theirs)
        assert set_by_bob.status_code == (403 if other == "bob" else 201)
        cancel = client.delete(f"{path}/{rid}", headers=theirs)
        assert cancel.status_code == expected, other
    guessed = client.delete(f"/sidebar/api/contacts/{cid}/reminders/424242", headers=theirs)
    assert guessed.status_code == 403

    client.delete_cookie("yuchi_rep", path="/sidebar")
    login(client, sim, "alice", "/sidebar/leads")
    headers = csrf(client, cid)
    done = client.delete(f"{path}/{rid}", headers=headers)
    assert done.status_code == 200 and done.get_json()["status"] == "cancelled"
    assert client.delete(f"{path}/{rid}", headers=headers).get_json()["status"] == "cancelled"
    with db.session_scope(sim_settings.database_url) as s:
        statuses = {(r.userid, r.status) for r in rows(s, FollowUpReminder)}
    assert statuses == {("alice", "cancelled"), ("carol", "pending")}
    page = client.get(f"/sidebar/contacts/{cid}").get_data(as_text=True)
    assert 'class="row pending"' not in page and "设置下次跟进提醒" in page


# --- the JS-SDK on a customer's page, the lead card ------------------------------------------------


def test_a_customer_page_gets_signatures_for_itself_only(client, sim, sim_settings):
    staff(sim_settings, "alice")
    cid = customer(sim_settings, "wm1", "alice")
    login(client, sim, "alice")
    headers = csrf(client, cid)
    url = f"{sim_settings.public_url}/sidebar/contacts/{cid}"
    resp = client.post("/sidebar/api/jssdk", json={"url": f"{url}#top"}, headers=headers)
    assert resp.status_code == 200
    signed = resp.get_json()["signed"]
    corp = {"kind": "config", "appId": signed["corpid"], "url": url, **signed["config"]}
    agent = {"kind": "agentConfig", "corpid": signed["corpid"], "agentid": signed["agentid"]}
    assert verify(sim.state, sim.config, corp)["ok"]
    assert verify(sim.state, sim.config, {**agent, "url": url, **signed["agent"]})["ok"]
    for bad in ("https://evil.example/sidebar/", f"{sim_settings.public_url}/api/x", ""):
        refused = client.post("/sidebar/api/jssdk", json={"url": bad}, headers=headers)
        assert refused.status_code == 422, bad
    assert client.post("/sidebar/api/jssdk", json={"url": url}).status_code == 403


def test_the_lead_card_says_the_contacts_real_stage(sim_settings, clean):
    staff(sim_settings, "alice")
    cid = customer(sim_settings, "wm1", "alice")
    with db.session_scope(sim_settings.database_url) as s:
        s.get(Contact, cid).stage = "sql"
    handoff.notify(sim_settings, lead_for(sim_settings, cid, "alice"))
    with db.session_scope(sim_settings.database_url) as s:
        description = s.execute(sa.select(Message.payload)).scalar_one()["description"]
    assert "阶段 SQL" in description and "阶段 MQL" not in description
