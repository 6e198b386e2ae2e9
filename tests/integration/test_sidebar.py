"""The WeCom sidebar over its real endpoints, against the simulator: member OAuth (forged,
replayed and unknown codes, non-staff), the JS-SDK signatures, access rules (follow user,
lead owner, manager, guessed ids), tag edits synced to WeCom, notes, stage, journeys, leads."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import sqlalchemy as sa
from support import run_worker

from bot.core import db
from bot.core.models import (
    Contact,
    Enrollment,
    Event,
    FollowUser,
    Identity,
    Journey,
    LeadAssignment,
    Rep,
    ScoreEntry,
    utcnow,
)
from bot.sales import handoff
from bot.wecom.jsapi import signature
from wxsim.entities import CorpTag as SimCorpTag
from wxsim.entities import CorpTagGroup, ExternalContact
from wxsim.entities import FollowUser as SimFollowUser


@pytest.fixture
def app(sim_settings):
    from bot.app import create_app

    app = create_app(sim_settings)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(app):
    return app.test_client()


def rows(s, model, **where) -> list:
    return list(s.execute(sa.select(model).filter_by(**where)).scalars())


def one(s, model, **where):
    (row,) = rows(s, model, **where)
    return row


def staff(settings, userid: str, role: str = "rep", team: str | None = "sales") -> None:
    with db.session_scope(settings.database_url) as s:
        s.merge(Rep(userid=userid, name=f"销售{userid}", role=role, team=team))


def customer(settings, external: str, userid: str | None, name: str = "王五") -> int:
    now = utcnow()
    with db.session_scope(settings.database_url) as s:
        c = Contact(first_seen_at=now, last_seen_at=now, name=name, score=12.0)
        s.add(c)
        s.flush()
        s.add(
            Identity(
                contact_id=c.id,
                kind="external_userid",
                app_id=settings.wecom_corp_id,
                value=external,
            )
        )
        if userid:
            s.add(FollowUser(contact_id=c.id, userid=userid, external_userid=external))
        return c.id


def sim_customer(sim, external: str, userid: str, name: str = "王五", **kw) -> None:
    sim.add_rep(userid, name=userid)
    with sim.state.lock:
        sim.state.contacts[external] = ExternalContact(
            external_userid=external,
            name=name,
            follow={userid: SimFollowUser(userid=userid, createtime=1)},
            **kw,
        )


def login(client, sim, userid: str, path: str = "/sidebar/") -> None:
    """Open ``path`` without a session: through the simulator's OAuth page as ``userid``."""
    sim.add_rep(userid, name=userid)
    first = client.get(path)
    assert first.status_code == 302
    hop = requests.get(first.headers["Location"], params={"as": userid}, allow_redirects=False)
    assert hop.status_code == 302, hop.text
    back = urlsplit(hop.headers["Location"])
    done = client.get(f"{back.path}?{back.query}")
    assert done.status_code == 302, done.get_data(as_text=True)
    assert done.headers["Location"] == path


def csrf(client, contact_id: int | None = None) -> dict:
    page = client.get(f"/sidebar/contacts/{contact_id}" if contact_id else "/sidebar/leads")
    text = page.get_data(as_text=True)
    token = text.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
    assert token
    return {"X-CSRF-Token": token}


# --- entry and identity -------------------------------------------------------------------------


def test_no_session_redirects_through_wecom_oauth_with_a_signed_state(client, sim_settings):
    resp = client.get("/sidebar/contacts/1")
    assert resp.status_code == 302
    url = urlsplit(resp.headers["Location"])
    q = parse_qs(url.query)
    assert url.path == "/connect/oauth2/authorize" and url.fragment == "wechat_redirect"
    assert q["appid"] == [sim_settings.wecom_corp_id]
    assert q["agentid"] == [str(sim_settings.wecom_agent_id)]
    assert q["redirect_uri"] == [f"{sim_settings.public_url}/sidebar/oauth/callback"]
    assert q["scope"] == ["snsapi_base"] and q["state"][0]
    for path in ("/sidebar/leads", "/sidebar/leads/1", "/sidebar/"):
        assert client.get(path).status_code == 302
    api = client.post("/sidebar/api/contacts/1/notes", json={"text": "x", "key": "k" * 10})
    assert api.status_code == 401 and "登录" in api.get_json()["error"]


def test_login_sets_an_httponly_samesite_cookie_and_returns_to_the_page(client, sim, sim_settings):
    staff(sim_settings, "alice")
    login(client, sim, "alice", "/sidebar/leads")
    cookie = client.get_cookie("yuchi_rep", path="/sidebar")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"
    assert "我的线索" in client.get("/sidebar/leads").get_data(as_text=True)


def test_forged_replayed_and_missing_state_are_refused_in_chinese(client, sim, sim_settings):
    staff(sim_settings, "alice")
    sim.add_rep("alice")
    first = client.get("/sidebar/")
    hop = requests.get(first.headers["Location"], params={"as": "alice"}, allow_redirects=False)
    back = urlsplit(hop.headers["Location"])
    q = parse_qs(back.query)
    forged = client.get(f"{back.path}?code={q['code'][0]}&state={q['state'][0][:-3]}abc")
    assert forged.status_code == 400 and "state" in forged.get_data(as_text=True)
    assert client.get(f"{back.path}?{back.query}").status_code == 302  # the real one works
    replay = client.get(f"{back.path}?{back.query}")
    assert replay.status_code == 400 and "已经用过" in replay.get_data(as_text=True)
    missing = client.get(f"{back.path}?code=abc")
    assert missing.status_code == 400 and "无效" in missing.get_data(as_text=True)


def test_an_unknown_code_and_a_non_staff_member_are_refused(client, sim, sim_settings):
    first = client.get("/sidebar/")
    state = parse_qs(urlsplit(first.headers["Location"]).query)["state"][0]
    unknown = client.get(f"/sidebar/oauth/callback?code=nosuchcode&state={state}")
    assert unknown.status_code == 400 and "登录码无效" in unknown.get_data(as_text=True)
    # bob is a WeCom member, but not in the staff directory
    sim.add_rep("bob")
    first = client.get("/sidebar/")
    hop = requests.get(first.headers["Location"], params={"as": "bob"}, allow_redirects=False)
    back = urlsplit(hop.headers["Location"])
    refused = client.get(f"{back.path}?{back.query}")
    assert refused.status_code == 403 and "销售人员名单" in refused.get_data(as_text=True)
    assert client.get_cookie("yuchi_rep", path="/sidebar") is None


def test_someone_outside_the_corp_is_refused(client, sim, sim_settings):
    first = client.get("/sidebar/")
    hop = requests.get(first.headers["Location"], params={"as": "oOUTSIDER"}, allow_redirects=False)
    back = urlsplit(hop.headers["Location"])
    refused = client.get(f"{back.path}?{back.query}")
    assert refused.status_code == 403 and "只有企业成员" in refused.get_data(as_text=True)


def test_a_rep_who_left_loses_the_session(client, sim, sim_settings):
    staff(sim_settings, "alice")
    login(client, sim, "alice", "/sidebar/leads")
    with db.session_scope(sim_settings.database_url) as s:
        s.get(Rep, "alice").active = False
    assert client.get("/sidebar/leads").status_code == 302


def test_the_entry_signs_wx_config_and_agent_config_with_cached_tickets(client, sim, sim_settings):
    staff(sim_settings, "alice")
    login(client, sim, "alice")
    page = client.get("/sidebar/").get_data(as_text=True)
    assert sim_settings.wecom_jssdk_url in page

    def attr(name: str) -> str:
        return page.split(f'data-{name}="', 1)[1].split('"', 1)[0]

    url = f"{sim_settings.public_url}/sidebar/"
    tickets = {kind: set(sim.state.valid_tickets(kind)) for kind in ("wecom_jsapi", "agent_config")}
    corp = signature(
        next(iter(tickets["wecom_jsapi"])), attr("config-nonce"), attr("config-timestamp"), url
    )
    agent = signature(
        next(iter(tickets["agent_config"])), attr("agent-nonce"), attr("agent-timestamp"), url
    )
    assert attr("config-signature") == corp and attr("agent-signature") == agent
    client.get("/sidebar/")
    assert len(sim.calls("wecom", "/cgi-bin/get_jsapi_ticket")) == 1  # cached in Redis
    assert len(sim.calls("wecom", "/cgi-bin/ticket/get")) == 1


# --- the customer of the chat -------------------------------------------------------------------


def test_a_customer_never_seen_is_fetched_and_created(client, sim, sim_settings):
    staff(sim_settings, "alice")
    sim_customer(sim, "wmNEW1", "alice", name="赵六", avatar="http://img/1.png")
    login(client, sim, "alice")
    resp = client.post(
        "/sidebar/api/open", json={"external_userid": "wmNEW1"}, headers=csrf(client)
    )
    assert resp.status_code == 200, resp.get_json()
    cid = resp.get_json()["contact_id"]
    with db.session_scope(sim_settings.database_url) as s:
        c = s.get(Contact, cid)
        assert c.name == "赵六" and c.fields["avatar"] == "http://img/1.png"
        assert len(rows(s, FollowUser, contact_id=cid, userid="alice")) == 1
    again = client.post(
        "/sidebar/api/open", json={"external_userid": "wmNEW1"}, headers=csrf(client)
    )
    assert again.get_json()["contact_id"] == cid
    assert len(sim.calls("wecom", "/cgi-bin/externalcontact/get")) == 1
    page = client.get(resp.get_json()["url"]).get_data(as_text=True)
    assert "赵六" in page and "在侧边栏首次打开客户" in page


def test_a_new_customer_sharing_a_unionid_is_merged(client, sim, sim_settings):
    staff(sim_settings, "alice")
    old = customer(sim_settings, "wmOLD", "alice", name="老客户")
    with db.session_scope(sim_settings.database_url) as s:
        s.add(Identity(contact_id=old, kind="unionid", app_id="", value="UNION1"))
    sim_customer(sim, "wmNEW2", "alice", unionid="UNION1")
    login(client, sim, "alice")
    resp = client.post(
        "/sidebar/api/open", json={"external_userid": "wmNEW2"}, headers=csrf(client)
    )
    assert resp.get_json()["contact_id"] == old


def test_an_external_userid_wecom_does_not_know_is_a_409(client, sim, sim_settings):
    staff(sim_settings, "alice")
    login(client, sim, "alice")
    resp = client.post(
        "/sidebar/api/open", json={"external_userid": "wmNOBODY"}, headers=csrf(client)
    )
    assert resp.status_code == 409 and "查不到" in resp.get_json()["error"]


# --- access rules -------------------------------------------------------------------------------


def test_access_follow_user_owner_manager_and_refusals(client, sim, sim_settings):
    for userid, role, team in [
        ("alice", "rep", "east"),
        ("carol", "rep", "west"),
        ("boss", "manager", "east"),
        ("wboss", "manager", "west"),
        ("dave", "rep", "east"),
    ]:
        staff(sim_settings, userid, role, team)
    followed = customer(sim_settings, "wm1", "alice")
    owned = customer(sim_settings, "wm2", None)
    with db.session_scope(sim_settings.database_url) as s:
        s.get(Contact, owned).owner_userid = "carol"
    expected = {
        "alice": {followed: 200, owned: 403, 999999: 403},
        "carol": {followed: 403, owned: 200},
        "boss": {followed: 200, owned: 403},
        "wboss": {followed: 403, owned: 200},
        "dave": {followed: 403, owned: 403},
    }
    for userid, cases in expected.items():
        client.delete_cookie("yuchi_rep", path="/sidebar")
        login(client, sim, userid, "/sidebar/leads")
        headers = csrf(client)
        for cid, status in cases.items():
            page = client.get(f"/sidebar/contacts/{cid}")
            assert page.status_code == status, (userid, cid)
            if status == 403:
                assert "没有权限" in page.get_data(as_text=True)
            api = client.get(f"/sidebar/api/contacts/{cid}/timeline", headers=headers)
            assert api.status_code == status, (userid, cid)
            note = client.post(
                f"/sidebar/api/contacts/{cid}/notes",
                json={"text": "看看", "key": f"k{userid}{cid}xx"},
                headers=headers,
            )
            assert note.status_code == (201 if status == 200 else 403)


def test_json_endpoints_refuse_cross_site_requests(client, sim, sim_settings):
    staff(sim_settings, "alice")
    cid = customer(sim_settings, "wm1", "alice")
    login(client, sim, "alice")
    body = {"tag": "高意向"}
    no_token = client.post(f"/sidebar/api/contacts/{cid}/tags", json=body)
    assert no_token.status_code == 403
    wrong = client.post(
        f"/sidebar/api/contacts/{cid}/tags", json=body, headers={"X-CSRF-Token": "x"}
    )
    assert wrong.status_code == 403
    other_site = client.post(
        f"/sidebar/api/contacts/{cid}/tags",
        json=body,
        headers={**csrf(client, cid), "Origin": "https://evil.example"},
    )
    assert other_site.status_code == 403 and "跨站" in other_site.get_json()["error"]
    with db.session_scope(sim_settings.database_url) as s:
        assert len(rows(s, Event, contact_id=cid)) == 0


def test_manager_role_is_set_through_the_reps_api(client, sim_settings):
    staff(sim_settings, "boss", "rep", None)
    auth = {"Authorization": "Bearer test-api-token"}
    resp = client.put("/api/reps/boss", json={"role": "manager", "team": "east"}, headers=auth)
    assert resp.status_code == 200 and resp.get_json()["role"] == "manager"
    assert resp.get_json()["team"] == "east"
    bad = client.put("/api/reps/boss", json={"role": "king"}, headers=auth)
    assert bad.status_code == 422 and "role" in bad.get_json()["fields"]


# --- what the rep does --------------------------------------------------------------------------


def corp_tags(sim, tags: dict[str, str]) -> None:
    with sim.state.lock:
        sim.state.tag_groups.append(
            CorpTagGroup("g1", "意向", 1, tags=[SimCorpTag(i, n, 1) for i, n in tags.items()])
        )


def test_tag_edits_sync_to_wecom_corp_tags(client, sim, sim_settings, env_to_sim):
    staff(sim_settings, "alice")
    sim_customer(sim, "wm1", "alice")
    corp_tags(sim, {"t1": "高意向"})
    cid = customer(sim_settings, "wm1", "alice")
    login(client, sim, "alice")
    headers = csrf(client, cid)
    resp = client.post(f"/sidebar/api/contacts/{cid}/tags", json={"tag": "高意向"}, headers=headers)
    assert resp.status_code == 201
    again = client.post(
        f"/sidebar/api/contacts/{cid}/tags", json={"tag": "高意向"}, headers=headers
    )
    assert again.status_code == 200 and again.get_json()["added"] is False
    run_worker(sim_settings)
    with sim.state.lock:
        assert sim.state.contacts["wm1"].follow["alice"].tag_ids == ["t1"]
    assert "高意向" in client.get(f"/sidebar/contacts/{cid}").get_data(as_text=True)
    gone = client.delete(f"/sidebar/api/contacts/{cid}/tags/高意向", headers=headers)
    assert gone.status_code == 200 and gone.get_json()["removed"] is True
    run_worker(sim_settings)
    with sim.state.lock:
        assert sim.state.contacts["wm1"].follow["alice"].tag_ids == []
    bad = client.post(f"/sidebar/api/contacts/{cid}/tags", json={"tag": ""}, headers=headers)
    assert bad.status_code == 422


def test_notes_are_timeline_events_once_per_form(client, sim, sim_settings):
    staff(sim_settings, "alice")
    cid = customer(sim_settings, "wm1", "alice")
    login(client, sim, "alice")
    headers = csrf(client, cid)
    body = {"text": "电话沟通，预算五万左右", "key": "form12345"}
    assert (
        client.post(f"/sidebar/api/contacts/{cid}/notes", json=body, headers=headers).status_code
        == 201
    )
    dup = client.post(f"/sidebar/api/contacts/{cid}/notes", json=body, headers=headers)
    assert dup.status_code == 200 and dup.get_json()["stored"] is False
    with db.session_scope(sim_settings.database_url) as s:
        notes = rows(s, Event, contact_id=cid, type="note.added")
        assert [n.properties for n in notes] == [{"author": "alice", "text": body["text"]}]
    page = client.get(f"/sidebar/contacts/{cid}?kind=note").get_data(as_text=True)
    assert "销售alice 记录：电话沟通，预算五万左右" in page
    for bad in (
        {"text": "", "key": "form12345"},
        {"text": "x"},
        {"text": "x", "key": "a b c d e f"},
    ):
        assert (
            client.post(f"/sidebar/api/contacts/{cid}/notes", json=bad, headers=headers).status_code
            == 422
        )


def test_header_score_trend_reasons_and_paginated_timeline(client, sim, sim_settings):
    staff(sim_settings, "alice")
    cid = customer(sim_settings, "wm1", "alice")
    now = utcnow()
    with db.session_scope(sim_settings.database_url) as s:
        from bot.scoring.versions import active

        version = active(s).version
        for i, (rule, pts, why) in enumerate(
            [
                ("menu_price", 5, "点击菜单「产品价格」"),
                ("budget", 8, "回答了预算问题"),
                ("x", 1, "小事"),
                ("y", 2, "中事"),
            ]
        ):
            s.add(
                ScoreEntry(
                    contact_id=cid,
                    rule_id=rule,
                    ruleset_version=version,
                    points=pts,
                    reason=why,
                    occurred_at=now - timedelta(days=i * 3),
                )
            )
        s.add(
            ScoreEntry(
                contact_id=cid,
                rule_id="@ledger",
                ruleset_version=version,
                points=0,
                occurred_at=now,
            )
        )
        for i in range(45):
            s.add(
                Event(
                    contact_id=cid,
                    type="oa.click",
                    source="oa",
                    properties={"key": f"菜单{i}"},
                    occurred_at=now - timedelta(days=3, minutes=i),
                )
            )
        s.add(
            Event(
                contact_id=cid,
                type="tag.added",
                source="bot",
                properties={"tag": "VIP"},
                occurred_at=now - timedelta(days=1),
            )
        )
    login(client, sim, "alice")
    page = client.get(f"/sidebar/contacts/{cid}").get_data(as_text=True)
    reasons = page.split('id="reasons"', 1)[1].split("</ol>", 1)[0]
    assert (
        reasons.index("回答了预算问题")
        < reasons.index("点击菜单「产品价格」")
        < reasons.index("中事")
    )
    assert "小事" not in reasons
    assert "3天前 点击菜单「菜单0」" in page.replace("</time> ", " ")
    assert "获得标签「VIP」" in page
    headers = csrf(client, cid)
    first = client.get(
        f"/sidebar/api/contacts/{cid}/timeline?kind=menu", headers=headers
    ).get_json()
    assert len(first["events"]) == 20 and all(e["kind"] == "menu" for e in first["events"])
    second = client.get(
        f"/sidebar/api/contacts/{cid}/timeline?kind=menu&before={first['next_before']}",
        headers=headers,
    ).get_json()
    third = client.get(
        f"/sidebar/api/contacts/{cid}/timeline?kind=menu&before={second['next_before']}",
        headers=headers,
    ).get_json()
    texts = [e["text"] for e in first["events"] + second["events"] + third["events"]]
    assert texts == [f"点击菜单「菜单{i}」" for i in range(45)] and third["next_before"] is None
    tags_only = client.get(
        f"/sidebar/api/contacts/{cid}/timeline?kind=tag", headers=headers
    ).get_json()
    assert [e["text"] for e in tags_only["events"]] == ["获得标签「VIP」"]


def test_stage_changes_sql_won_and_lost_with_a_reason(client, sim, sim_settings):
    staff(sim_settings, "alice")
    cid = customer(sim_settings, "wm1", "alice")
    login(client, sim, "alice")
    headers = csrf(client, cid)
    url = f"/sidebar/api/contacts/{cid}/stage"
    assert client.post(url, json={"stage": "sql"}, headers=headers).get_json()["stage"] == "sql"
    lost = client.post(url, json={"stage": "lost"}, headers=headers)
    assert lost.status_code == 409 and "原因" in lost.get_json()["error"]
    ok = client.post(url, json={"stage": "lost", "reason": "预算不足"}, headers=headers)
    assert ok.get_json()["stage"] == "disqualified"
    assert client.post(url, json={"stage": "mql"}, headers=headers).status_code == 422
    page = client.get(f"/sidebar/contacts/{cid}?kind=score").get_data(as_text=True)
    assert "阶段 SQL → 已流失（销售alice 设置：预算不足）" in page


def journey_with(settings, cid: int, status: str = "waiting") -> int:
    with db.session_scope(settings.database_url) as s:
        j = Journey(name="新客培育", definition={}, status="published")
        s.add(j)
        s.flush()
        s.add(
            Enrollment(
                journey_id=j.id,
                contact_id=cid,
                status=status,
                step="wait1",
                wake_at=utcnow() + timedelta(days=1),
            )
        )
        return j.id


def test_a_manager_pauses_resumes_and_removes_a_contact_in_a_journey(client, sim, sim_settings):
    staff(sim_settings, "alice", "rep", "east")
    staff(sim_settings, "boss", "manager", "east")
    cid = customer(sim_settings, "wm1", "alice")
    jid = journey_with(sim_settings, cid)
    login(client, sim, "alice")
    headers = csrf(client, cid)
    page = client.get(f"/sidebar/contacts/{cid}").get_data(as_text=True)
    assert "新客培育" in page and "当前步骤 wait1" in page and "下次 明天" in page
    refused = client.post(
        f"/sidebar/api/contacts/{cid}/journeys/{jid}/pause", headers=headers, json={}
    )
    assert refused.status_code == 403
    client.delete_cookie("yuchi_rep", path="/sidebar")
    login(client, sim, "boss")
    headers = csrf(client, cid)
    base = f"/sidebar/api/contacts/{cid}/journeys/{jid}"
    assert client.post(f"{base}/pause", headers=headers, json={}).status_code == 200
    with db.session_scope(sim_settings.database_url) as s:
        e = one(s, Enrollment)
        assert (e.status, e.paused_from) == ("paused", "waiting")
    assert client.post(f"{base}/pause", headers=headers, json={}).status_code == 409
    assert client.post(f"{base}/resume", headers=headers, json={}).status_code == 200
    with db.session_scope(sim_settings.database_url) as s:
        assert one(s, Enrollment).status == "waiting"
    assert client.post(f"{base}/remove", headers=headers, json={}).status_code == 200
    with db.session_scope(sim_settings.database_url) as s:
        assert one(s, Enrollment).status == "exited"
    assert client.post(f"{base}/dance", headers=headers, json={}).status_code == 409
    assert (
        client.post(
            f"/sidebar/api/contacts/{cid}/journeys/99999/pause", headers=headers, json={}
        ).status_code
        == 403
    )


# --- leads --------------------------------------------------------------------------------------


def lead_for(settings, cid: int, userid: str) -> int:
    with db.session_scope(settings.database_url) as s:
        a = LeadAssignment(
            contact_id=cid, userid=userid, reason="test", escalate_at=utcnow() + timedelta(hours=4)
        )
        s.add(a)
        s.get(Contact, cid).owner_userid = userid
        s.flush()
        return a.id


def test_the_lead_card_links_to_the_sidebar_lead_page(sim_settings, clean):
    staff(sim_settings, "alice")
    cid = customer(sim_settings, "wm1", "alice")
    lid = lead_for(sim_settings, cid, "alice")
    handoff.notify(sim_settings, lid)
    from bot.core.models import Message

    with db.session_scope(sim_settings.database_url) as s:
        m = one(s, Message)
        assert m.payload["url"] == f"{sim_settings.public_url}/sidebar/leads/{lid}"


def test_a_lead_is_accepted_or_returned_as_the_rep(client, sim, sim_settings):
    staff(sim_settings, "alice")
    staff(sim_settings, "carol")
    cid = customer(sim_settings, "wm1", None)
    lid = lead_for(sim_settings, cid, "alice")
    login(client, sim, "alice", f"/sidebar/leads/{lid}")
    page = client.get(f"/sidebar/leads/{lid}").get_data(as_text=True)
    assert "接受线索" in page
    headers = csrf(client, cid)
    ok = client.post(f"/sidebar/api/leads/{lid}/accept", json={}, headers=headers)
    assert ok.status_code == 200 and ok.get_json()["status"] == "accepted"
    assert (
        client.post(f"/sidebar/api/leads/{lid}/accept", json={}, headers=headers).status_code == 409
    )
    assert "跟进中" in client.get("/sidebar/leads").get_data(as_text=True)
    # carol may neither see nor answer alice's lead
    client.delete_cookie("yuchi_rep", path="/sidebar")
    login(client, sim, "carol", "/sidebar/leads")
    headers = csrf(client)
    assert client.get(f"/sidebar/leads/{lid}").status_code == 403
    assert (
        client.post(f"/sidebar/api/leads/{lid}/return", json={}, headers=headers).status_code == 403
    )
    assert (
        client.post("/sidebar/api/leads/424242/accept", json={}, headers=headers).status_code == 403
    )


def test_returning_a_lead_hands_it_on(client, sim, sim_settings):
    staff(sim_settings, "alice")
    staff(sim_settings, "carol")
    cid = customer(sim_settings, "wm1", None)
    lid = lead_for(sim_settings, cid, "alice")
    login(client, sim, "alice", f"/sidebar/leads/{lid}")
    headers = csrf(client, cid)
    resp = client.post(
        f"/sidebar/api/leads/{lid}/return",
        json={"note": "不是我的区域", "reason": "联系不上"},
        headers=headers,
    )
    assert resp.get_json()["status"] == "returned"
    with db.session_scope(sim_settings.database_url) as s:
        assert one(s, LeadAssignment, status="assigned").userid == "carol"


def test_my_leads_hot_first_and_a_manager_sees_the_team(client, sim, sim_settings):
    staff(sim_settings, "alice", "rep", "east")
    staff(sim_settings, "boss", "manager", "east")
    staff(sim_settings, "carol", "rep", "west")
    cold = customer(sim_settings, "wm1", None, name="冷客户")
    hot = customer(sim_settings, "wm2", None, name="热客户")
    west = customer(sim_settings, "wm3", None, name="西区客户")
    with db.session_scope(sim_settings.database_url) as s:
        from bot.scoring.versions import active

        v = active(s).version
        s.add(
            ScoreEntry(
                contact_id=hot,
                rule_id="budget",
                ruleset_version=v,
                points=8,
                reason="回答了预算问题",
                occurred_at=utcnow(),
            )
        )
        s.get(Contact, cold).score = 30.0
    for cid, who in ((cold, "alice"), (hot, "alice"), (west, "carol")):
        lead_for(sim_settings, cid, who)
    login(client, sim, "alice", "/sidebar/leads")
    page = client.get("/sidebar/leads").get_data(as_text=True)
    assert page.index("热客户") < page.index("冷客户") and "西区客户" not in page
    assert "近7天 +8 分：回答了预算问题" in page
    client.delete_cookie("yuchi_rep", path="/sidebar")
    login(client, sim, "boss", "/sidebar/leads")
    page = client.get("/sidebar/leads").get_data(as_text=True)
    assert "团队线索" in page and "热客户" in page and "西区客户" not in page


def test_unknown_paths_and_methods_answer_in_chinese(client, sim, sim_settings):
    assert "找不到" in client.get("/sidebar/nothing").get_data(as_text=True)
    resp = client.get("/sidebar/api/open")
    assert resp.status_code == 405 and "不支持" in resp.get_json()["error"]


# --- tickets, limits, hostile input -------------------------------------------------------------


def test_a_crowd_signing_at_once_fetches_each_ticket_once(sim, sim_settings):
    from concurrent.futures import ThreadPoolExecutor

    from bot.core import wechat
    from bot.wecom import jsapi

    wechat.reset_clients()
    url = f"{sim_settings.public_url}/sidebar/"
    with ThreadPoolExecutor(8) as pool:
        signed = list(pool.map(lambda _: jsapi.page_config(sim_settings, url), range(16)))
    assert len(sim.calls("wecom", "/cgi-bin/get_jsapi_ticket")) == 1
    assert len(sim.calls("wecom", "/cgi-bin/ticket/get")) == 1
    for s in signed:
        check = sim.state  # the simulator verifies what the JS-SDK stub would send
        from wxsim.jssdk import verify

        agent = {"kind": "agentConfig", "corpid": s["corpid"], "agentid": s["agentid"], "url": url}
        agent.update(s["agent"])
        assert verify(check, sim.config, agent)["ok"]


def test_a_refused_ticket_still_renders_the_page_with_the_way_out(client, sim, sim_settings):
    staff(sim_settings, "alice")
    login(client, sim, "alice", "/sidebar/leads")
    sim.faults(error_rate=1.0, paths=["/cgi-bin/get_jsapi_ticket"], apps=["wecom"])
    page = client.get("/sidebar/")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "暂时无法连接企业微信 JS-SDK" in text and "/sidebar/leads" in text


def test_pages_stay_small_and_hostile_input_is_a_4xx(client, sim, sim_settings):
    staff(sim_settings, "alice")
    cid = customer(sim_settings, "wm1", "alice")
    login(client, sim, "alice")
    page = client.get(f"/sidebar/contacts/{cid}")
    css = client.get("/sidebar/static/sidebar.css")
    js = client.get("/sidebar/static/sidebar.js")
    assert len(page.data) + len(css.data) + len(js.data) < 100_000
    headers = csrf(client, cid)
    for path in (
        f"/sidebar/contacts/{cid}?before=abc&kind=nonsense",
        f"/sidebar/contacts/{cid}?before=99999999999999999999999",
        "/sidebar/contacts/0",
        "/sidebar/contacts/-1",
        "/sidebar/leads/abc",
    ):
        assert client.get(path).status_code in (200, 404), path
    assert client.get("/sidebar/contacts/1?x=%00").status_code == 400
    bad_bodies = [b"[1,2]", b"not json", b'{"tag": 5}', b'{"tag": "a", "extra": 1}']
    for raw in bad_bodies:
        resp = client.post(
            f"/sidebar/api/contacts/{cid}/tags",
            data=raw,
            headers={**headers, "Content-Type": "application/json"},
        )
        assert resp.status_code == 422 and resp.get_json()["error"], raw
    long_tag = client.post(
        f"/sidebar/api/contacts/{cid}/tags", json={"tag": "长" * 65}, headers=headers
    )
    assert long_tag.status_code == 422
    with db.session_scope(sim_settings.database_url) as s:
        assert rows(s, Event, contact_id=cid) == []


def test_send_chat_message_needs_a_customer_chat(sim):
    base = sim.base_url
    sim.jssdk_context(entry="single_chat_tools", userid="alice", external_userid="")
    refused = requests.post(
        f"{base}/_sim/jssdk/sent", json={"msgtype": "text", "text": {"content": "x"}}
    )
    assert refused.json() == {"ok": False, "error": "not in a customer chat"}
    sim.jssdk_context(external_userid="wm1")
    bad = requests.post(f"{base}/_sim/jssdk/sent", json={"msgtype": "voice"})
    assert bad.json()["ok"] is False
    ok = requests.post(
        f"{base}/_sim/jssdk/sent", json={"msgtype": "text", "text": {"content": "你好"}}
    )
    assert ok.json() == {"ok": True}
    assert [(m["external_userid"], m["content"]) for m in sim.chat_messages()] == [
        ("wm1", {"content": "你好"})
    ]
