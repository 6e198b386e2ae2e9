"""Simulated people against real Yuchi over real HTTP: the simulator signs and encrypts each
callback as WeChat does, Yuchi stores it and answers, the simulator opens the passive reply."""

from __future__ import annotations

import time

import pytest
import requests
import sqlalchemy as sa

from bot.core import db
from bot.core.models import Event
from wxsim.actors import ActorError


def rows(settings, model, *where):
    with db.session_scope(settings.database_url) as s:
        return list(s.execute(sa.select(model).where(*where).order_by(model.id)).scalars())


def add_rule(yuchi_server, settings, **body):
    resp = requests.post(
        f"{yuchi_server}/api/replies",
        json=body,
        headers={"Authorization": f"Bearer {settings.api_token}"},
        timeout=10,
    )
    assert resp.status_code == 201, resp.text


@pytest.mark.parametrize(
    "mode, yuchi_mode", [("safe", "safe"), ("compat", "compatible"), ("plain", "plaintext")]
)
def test_follow_with_scene_stores_event_and_records_welcome(
    sim, yuchi_server, yuchi_message_mode, clean, mode, yuchi_mode
):
    sim.configure(callback_mode=mode)
    yuchi_message_mode(yuchi_mode)
    add_rule(yuchi_server, clean, name="欢迎", trigger="subscribe", reply="欢迎关注鱼池！")
    result = sim.follow("oFollow1", scene="spring_fair")
    assert result.status == 200 and result.error is None
    assert result.reply["Content"] == "欢迎关注鱼池！" and result.text == "欢迎关注鱼池！"
    assert result.reply["ToUserName"] == "oFollow1"
    [passive] = sim.inbox("oFollow1", kind="passive")
    assert passive["text"] == "欢迎关注鱼池！"
    [ev] = rows(clean, Event)
    assert ev.type == "oa.subscribe" and ev.properties["scene"] == "spring_fair"
    assert ev.properties["ticket"].startswith("gQ")
    user = sim.state.user("oFollow1")
    assert user.subscribe and user.qr_scene_str == "spring_fair"


def test_follow_through_an_api_made_qr_code_carries_its_ticket(sim, yuchi_server, clean):
    token = requests.get(
        f"{sim.base_url}/cgi-bin/token",
        params={
            "grant_type": "client_credential",
            "appid": clean.oa_appid,
            "secret": clean.oa_secret,
        },
        timeout=5,
    ).json()["access_token"]
    qr = requests.post(
        f"{sim.base_url}/cgi-bin/qrcode/create?access_token={token}",
        json={"action_name": "QR_LIMIT_SCENE", "action_info": {"scene": {"scene_id": 42}}},
        timeout=5,
    ).json()
    result = sim.scan("oQr", ticket=qr["ticket"])  # not following yet: a follow with the scene
    assert result.status == 200
    [ev] = rows(clean, Event)
    assert isinstance(ev.properties.pop("create_time"), int)
    assert ev.properties == {"event_key": "qrscene_42", "scene": "42", "ticket": qr["ticket"]}
    sim.scan("oQr", ticket=qr["ticket"])  # now a follower: SCAN
    scan = rows(clean, Event, Event.type == "oa.scan")[0]
    assert scan.properties["scene"] == "42"


def test_no_rule_means_no_passive_message(sim, yuchi_server, clean):
    result = sim.follow("oQuiet")
    assert result.status == 200 and result.reply is None and result.body == "success"
    assert sim.inbox("oQuiet") == []


def test_say_gets_the_keyword_reply_and_opens_the_window(sim, yuchi_server, clean):
    add_rule(yuchi_server, clean, name="价格", keywords=["价格"], reply="基础版每年 9800 元。")
    sim.follow("oSay")
    sim.set_user("oSay", last_interaction=None)
    result = sim.say("oSay", "价格多少")
    assert result.reply["Content"] == "基础版每年 9800 元。"
    assert sim.state.user("oSay").last_interaction is not None
    types = [e.type for e in rows(clean, Event)]
    assert types == ["oa.subscribe", "oa.text"]


def test_click_and_news_reply(sim, yuchi_server, clean):
    add_rule(
        yuchi_server,
        clean,
        name="联系我们",
        trigger="click",
        click_key="MENU_CONTACT",
        news={"title": "联系我们", "description": "9:00-18:00", "url": "https://example.com/c"},
    )
    sim.follow("oClick")
    result = sim.click("oClick", "MENU_CONTACT")
    assert result.reply["MsgType"] == "news" and result.reply["Article.Title"] == "联系我们"
    assert result.text == "联系我们"
    [ev] = rows(clean, Event, Event.type == "oa.click")
    assert ev.properties["key"] == "MENU_CONTACT"


def test_unfollow_and_what_a_non_follower_cannot_do(sim, yuchi_server, clean):
    sim.follow("oGone")
    result = sim.unfollow("oGone")
    assert result.status == 200 and result.reply is None
    assert not sim.state.user("oGone").subscribe
    with pytest.raises(ActorError):
        sim.say("oGone", "hello?")
    types = [e.type for e in rows(clean, Event)]
    assert types == ["oa.subscribe", "oa.unsubscribe"]


def test_actions_over_the_control_api(sim, yuchi_server, clean):
    add_rule(yuchi_server, clean, name="价格", keywords=["价格"], reply="价格回复")
    base = sim.base_url
    r = requests.post(f"{base}/_sim/actions/follow", json={"openid": "oApi"}, timeout=10)
    assert r.status_code == 200 and r.json()["status"] == 200
    r = requests.post(
        f"{base}/_sim/actions/say", json={"openid": "oApi", "text": "价格多少"}, timeout=10
    )
    assert r.json()["text"] == "价格回复" and r.json()["reply"]["MsgType"] == "text"
    r = requests.post(f"{base}/_sim/actions/say", json={"openid": "nobody", "text": "x"}, timeout=5)
    assert r.status_code == 409
    r = requests.post(f"{base}/_sim/actions/say", json={"openid": "oApi", "bogus": 1}, timeout=5)
    assert r.status_code == 400
    inbox = requests.get(f"{base}/_sim/inbox", params={"openid": "oApi"}, timeout=5).json()
    assert [m["kind"] for m in inbox["messages"]] == ["passive"]


def test_template_job_finish_event_reaches_yuchi(sim, sim_settings, yuchi_server, clean):
    sim.follow("oTpl")
    token = requests.get(
        f"{sim.base_url}/cgi-bin/token",
        params={
            "grant_type": "client_credential",
            "appid": clean.oa_appid,
            "secret": clean.oa_secret,
        },
        timeout=5,
    ).json()["access_token"]
    resp = requests.post(
        f"{sim.base_url}/cgi-bin/message/template/send?access_token={token}",
        json={"touser": "oTpl", "template_id": "TPL1", "data": {"first": {"value": "您好"}}},
        timeout=5,
    ).json()
    assert resp["errcode"] == 0

    def finished():
        return rows(clean, Event, Event.type != "oa.subscribe")

    [ev] = sim.wait_for(finished)
    assert ev.type == "oa.template_send_finished"
    assert isinstance(ev.properties.pop("create_time"), int)
    assert ev.properties == {"msg_id": str(resp["msgid"]), "status": "success"}


def test_wecom_actions_are_recorded_even_without_a_wecom_endpoint(sim, yuchi_server, clean):
    result = sim.add_external_contact("rep_li", "wmCustomer1", state="fair2024")
    # Yuchi has no /wechat/wecom yet: the simulator records the HTTP status cleanly.
    assert result.sent and result.status is not None
    assert result.extra["welcome_code"] and result.extra["state"] == "fair2024"
    [cb] = [c for c in sim.callbacks() if c["platform"] == "wecom"]
    assert cb["event"] == "add_external_contact" and cb["status"] == result.status
    for action in (sim.edit_external_contact, sim.customer_deletes_rep, sim.rep_deletes_customer):
        r = action("rep_li", "wmCustomer1")
        assert r.sent and r.status is not None
    events = [c["event"] for c in sim.callbacks() if c["platform"] == "wecom"]
    assert events == [
        "add_external_contact",
        "edit_external_contact",
        "del_follow_user",
        "del_external_contact",
    ]
    with pytest.raises(ActorError):
        sim.rep_deletes_customer("rep_li", "wmCustomer1")


def test_url_checks_as_the_consoles_make_them(sim, yuchi_server):
    oa = sim.verify_url("oa")
    assert oa.status == 200 and oa.extra == {"verified": True} and oa.error is None
    wecom = sim.verify_url("wecom")
    assert wecom.status == 200 and wecom.extra == {"verified": True} and wecom.error is None


def test_blocked_template_reports_failure(sim, yuchi_server, clean):
    sim.follow("oBlock")
    sim.set_user("oBlock", blocks_templates=True)
    msgid = sim.sim.state.next_id()
    sim.sim.actors.template_finished_later("oBlock", msgid, "failed:user block")
    [ev] = sim.wait_for(lambda: rows(clean, Event, Event.type == "oa.template_send_finished"))
    assert isinstance(ev.properties.pop("create_time"), int)
    assert ev.properties == {"msg_id": str(msgid), "status": "failed:user block"}


def test_reset_forgets_a_pending_template_callback(sim, yuchi_server, clean):
    sim.configure(template_callback_delay=0.2)
    sim.follow("oPending")
    sim.sim.actors.template_finished_later("oPending", 123, "success")
    sim.reset()
    time.sleep(0.4)
    assert rows(clean, Event, Event.type == "oa.template_send_finished") == []


def test_cli_drives_a_running_simulator(sim, yuchi_server, clean):
    from click.testing import CliRunner

    from bot.cli import main

    add_rule(yuchi_server, clean, name="价格", keywords=["价格"], reply="基础版每年 9800 元。")
    runner = CliRunner()
    url = ["--sim-url", sim.base_url]
    out = runner.invoke(main, ["sim", "follow", "--scene", "fair", *url])
    assert out.exit_code == 0 and "o_demo_user 关注公众号（扫码场景 fair）" in out.output
    out = runner.invoke(main, ["sim", "say", "价格多少", *url])
    assert out.exit_code == 0 and "← 文本：基础版每年 9800 元。" in out.output
    out = runner.invoke(main, ["sim", "inbox", *url])
    assert "[被动回复]  基础版每年 9800 元。" in out.output
    out = runner.invoke(main, ["sim", "say", "hi", "--openid", "oStranger", *url])
    assert out.exit_code == 1 and "does not follow" in out.output
    out = runner.invoke(main, ["sim", "add-contact", "--userid", "rep_wang", "--state", "s1", *url])
    assert out.exit_code == 0 and "welcome_code" in out.output
    out = runner.invoke(main, ["sim", "say", "x", "--sim-url", "http://127.0.0.1:9"])
    assert out.exit_code == 1 and "cannot reach the simulator" in out.output
