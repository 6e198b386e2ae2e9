"""The WeCom callback through the simulator and the real app: every external-contact event,
channel QR codes with tags and welcome messages, the staff directory, One ID merges, hostile
input and retries."""

from __future__ import annotations

import threading
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from support import run_worker

from bot.contacts import identity as contacts
from bot.core import db
from bot.core.models import Contact, ContactTag, Event, FollowUser, Identity, Rep
from bot.wecom import sync as wecom_sync
from wxsim.callbacks import WeComPlatform, xml_fields


@pytest.fixture
def wecom(settings) -> WeComPlatform:
    return WeComPlatform(
        settings.wecom_token,
        settings.wecom_aes_key,
        settings.wecom_corp_id,
        settings.wecom_agent_id,
    )


def q(settings, stmt):
    with db.session_scope(settings.database_url) as s:
        return list(s.execute(stmt).scalars())


def contact_of(settings, kind: str, value: str) -> int:
    [cid] = q(
        settings,
        sa.select(Identity.contact_id).where(Identity.kind == kind, Identity.value == value),
    )
    with db.session_scope(settings.database_url) as s:
        return contacts.resolve(s, cid)


def post(sim_client, wecom: WeComPlatform, fields: dict):
    req = wecom.sign(xml_fields(fields))
    return sim_client.post(
        f"/wechat/wecom?{req.query_string}", data=req.body, content_type="text/xml"
    )


def test_url_verification(sim_client, wecom):
    check = wecom.url_check("wecom-echo-42")
    resp = sim_client.get(f"/wechat/wecom?{urlencode(check)}")
    assert resp.status_code == 200 and resp.get_data(as_text=True) == "wecom-echo-42"
    assert (
        sim_client.get(
            f"/wechat/wecom?{urlencode({**check, 'msg_signature': '0' * 40})}"
        ).status_code
        == 403
    )
    other = WeComPlatform(wecom.token, "A" * 42 + "E", wecom.corp_id)
    assert sim_client.get(f"/wechat/wecom?{urlencode(other.url_check())}").status_code == 403


def test_channel_add_tags_welcome_rep_and_name(sim, sim_settings, env_to_sim, sim_client, auth):
    sim.add_rep("lisi", name="李四")
    resp = sim_client.post(
        "/api/channels",
        json={
            "name": "展会海报",
            "reps": ["lisi"],
            "tags": ["渠道:展会"],
            "welcome_text": "您好，我是鱼池顾问李四！",
        },
        headers=auth,
    )
    assert resp.status_code == 201, resp.get_json()
    channel = resp.get_json()
    assert channel["config_id"] and channel["qr_code"] and channel["state"]

    result = sim.add_external_contact(
        external_userid="wmEXT001", config_id=channel["config_id"], name="王女士", unionid="uWANG"
    )
    assert result.status == 200 and result.body == ""
    run_worker(sim_settings)

    cid = contact_of(sim_settings, "external_userid", "wmEXT001")
    [ev] = q(
        sim_settings,
        sa.select(Event).where(Event.contact_id == cid, Event.type == "wecom.contact_added"),
    )
    assert ev.properties["userid"] == "lisi" and ev.properties["state"] == channel["state"]
    [fu] = q(sim_settings, sa.select(FollowUser).where(FollowUser.contact_id == cid))
    assert (fu.userid, fu.status, fu.state) == ("lisi", "active", channel["state"])
    [tag] = q(sim_settings, sa.select(ContactTag).where(ContactTag.contact_id == cid))
    assert (tag.tag, tag.source, tag.source_ref) == (
        "渠道:展会",
        "channel",
        f"channel:{channel['id']}",
    )
    assert tag.cause_event_id == ev.id  # the add through the channel's QR code earned it
    with db.session_scope(sim_settings.database_url) as s:
        c = s.get(Contact, cid)
        assert c.name == "王女士" and c.source_channel_id == channel["id"]
        rep = s.get(Rep, "lisi")
        assert rep.name == "李四" and rep.active
    assert q(
        sim_settings,
        sa.select(Identity.value).where(Identity.contact_id == cid, Identity.kind == "unionid"),
    ) == ["uWANG"]
    [welcome] = sim.inbox(external_userid="wmEXT001", kind="welcome")
    assert "鱼池顾问李四" in str(welcome["payload"])

    found = sim_client.get("/api/contacts?external_userid=wmEXT001", headers=auth).get_json()[
        "contacts"
    ]
    assert [c["id"] for c in found] == [cid] and found[0]["name"] == "王女士"
    assert (
        sim_client.get("/api/contacts?unionid=uWANG", headers=auth).get_json()["contacts"][0]["id"]
        == cid
    )


def test_channel_validation_and_platform_errors(sim, sim_settings, env_to_sim, sim_client, auth):
    bad = sim_client.post("/api/channels", json={"name": "", "reps": []}, headers=auth)
    assert bad.status_code == 422 and {"name", "reps"} <= set(bad.get_json()["fields"])
    refused = sim_client.post("/api/channels", json={"name": "x", "reps": ["nobody"]}, headers=auth)
    assert refused.status_code == 502 and refused.get_json()["errcode"]
    assert sim_client.get("/api/channels/999", headers=auth).status_code == 404


def test_edit_and_deletions_and_transfer_fail(sim, sim_settings, env_to_sim, sim_client, wecom):
    sim.add_rep("zhao", name="赵六")
    sim.add_external_contact("zhao", "wmEXT002", name="陈先生")
    sim.edit_external_contact("zhao", "wmEXT002", remark="老客户")
    sim.customer_deletes_rep("zhao", "wmEXT002")
    fields = wecom.event_fields(
        "change_external_contact",
        ChangeType="transfer_fail",
        UserID="zhao",
        ExternalUserID="wmEXT002",
        FailReason="customer_refused",
    )
    assert post(sim_client, wecom, fields).status_code == 200
    run_worker(sim_settings)
    cid = contact_of(sim_settings, "external_userid", "wmEXT002")
    types = q(sim_settings, sa.select(Event.type).where(Event.contact_id == cid).order_by(Event.id))
    for t in (
        "wecom.contact_added",
        "wecom.contact_edited",
        "wecom.customer_deleted_rep",
        "wecom.transfer_failed",
    ):
        assert t in types
    [fu] = q(sim_settings, sa.select(FollowUser).where(FollowUser.contact_id == cid))
    assert fu.status == "customer_deleted" and fu.ended_at is not None

    sim.add_rep("qian")
    sim.add_external_contact("qian", "wmEXT002")
    sim.rep_deletes_customer("qian", "wmEXT002")
    run_worker(sim_settings)
    statuses = {
        f.userid: f.status
        for f in q(sim_settings, sa.select(FollowUser).where(FollowUser.contact_id == cid))
    }
    assert statuses == {"zhao": "customer_deleted", "qian": "rep_deleted"}


def test_corp_tag_change_is_a_system_event(sim, sim_settings, env_to_sim, sim_client, wecom):
    fields = wecom.event_fields(
        "change_external_tag", ChangeType="create", Id="etNEW", TagType="tag"
    )
    assert post(sim_client, wecom, fields).status_code == 200
    assert post(sim_client, wecom, fields).status_code == 200  # a retry
    [ev] = q(sim_settings, sa.select(Event).where(Event.type == "wecom.corp_tag_changed"))
    assert ev.contact_id is None and ev.properties["id"] == "etNEW"
    run_worker(sim_settings)
    [ev] = q(sim_settings, sa.select(Event).where(Event.type == "wecom.corp_tag_changed"))
    assert ev.processed_at is not None


def test_retries_are_deduplicated(sim_client, wecom, clean):
    fields = wecom.event_fields(
        "change_external_contact",
        1_800_000_000,
        ChangeType="add_external_contact",
        UserID="u1",
        ExternalUserID="wmDUP",
        State="",
        WelcomeCode="WC",
    )
    for _ in range(3):
        assert post(sim_client, wecom, fields).status_code == 200
    assert len(q(clean, sa.select(Event.id))) == 1 and len(q(clean, sa.select(Contact.id))) == 1


@pytest.mark.parametrize(
    "mutate, status, reason",
    [
        (lambda q_, b: ({**q_, "msg_signature": "f" * 40}, b), 403, "invalid msg_signature"),
        (
            lambda q_, b: ({k: v for k, v in q_.items() if k != "msg_signature"}, b),
            403,
            "missing msg_signature",
        ),
        (lambda q_, b: (q_, b"<xml><Encrypt>broken"), 400, "malformed XML"),
        (
            lambda q_, b: (q_, b'<!DOCTYPE x [<!ENTITY a "b">]><xml><Encrypt>&a;</Encrypt></xml>'),
            400,
            "DOCTYPE",
        ),
        (lambda q_, b: (q_, b"<xml><ToUserName>x</ToUserName></xml>"), 400, "no <Encrypt>"),
        (lambda q_, b: (q_, b + b" " * 70_000), 413, "larger than"),
    ],
)
def test_hostile_input(sim_client, wecom, clean, mutate, status, reason):
    fields = wecom.event_fields(
        "change_external_contact",
        ChangeType="add_external_contact",
        UserID="u",
        ExternalUserID="wmH",
    )
    req = wecom.sign(xml_fields(fields))
    query, body = mutate(req.query, req.body)
    resp = sim_client.post(f"/wechat/wecom?{urlencode(query)}", data=body, content_type="text/xml")
    assert resp.status_code == status and reason in resp.get_data(as_text=True)
    assert q(clean, sa.select(Event.id)) == [] and q(clean, sa.select(Contact.id)) == []


def test_undecryptable_and_missing_fields(sim_client, wecom, clean):
    other = WeComPlatform(wecom.token, wecom.aes_key, "wwsomeoneelse0001")
    req = other.sign(
        xml_fields(
            other.event_fields(
                "change_external_contact", ChangeType="add_external_contact", ExternalUserID="x"
            )
        )
    )
    resp = sim_client.post(f"/wechat/wecom?{req.query_string}", data=req.body)
    assert resp.status_code == 403 and "cannot decrypt" in resp.get_data(as_text=True)
    fields = wecom.event_fields(
        "change_external_contact", ChangeType="add_external_contact", UserID="u"
    )
    resp = post(sim_client, wecom, fields)
    assert resp.status_code == 400 and "ExternalUserID" in resp.get_data(as_text=True)
    assert q(clean, sa.select(Event.id)) == []


def test_one_id_merges_follower_and_external_contact(
    sim, sim_settings, env_to_sim, sim_client, auth
):
    """The same person follows the Official Account and adds a rep on WeCom: one unionid,
    one contact, with everything from both."""
    sim.set_user("oSAME", unionid="uSAME")
    sim.follow("oSAME")
    sim.say("oSAME", "你好")
    run_worker(sim_settings)
    oa_contact = contact_of(sim_settings, "openid", "oSAME")
    sim.add_rep("sun", name="孙七")
    sim.add_external_contact("sun", "wmSAME", name="小同", unionid="uSAME")
    run_worker(sim_settings)
    run_worker(sim_settings)  # the merge event itself

    survivor = contact_of(sim_settings, "external_userid", "wmSAME")
    assert survivor == contact_of(sim_settings, "openid", "oSAME") == oa_contact  # the older one
    kinds = sorted(q(sim_settings, sa.select(Identity.kind).where(Identity.contact_id == survivor)))
    assert kinds == ["external_userid", "openid", "unionid"]
    types = q(sim_settings, sa.select(Event.type).where(Event.contact_id == survivor))
    assert {"oa.subscribe", "oa.text", "wecom.contact_added", "contact.merged"} <= set(types)
    assert types.count("contact.merged") == 1
    with db.session_scope(sim_settings.database_url) as s:
        gone = s.execute(sa.select(Contact).where(Contact.merged_into_id == survivor)).scalar_one()
        assert s.get(Contact, survivor).name == "小同" and s.get(Contact, survivor).subscribed
        assert contacts.merge(s, survivor, gone.id, "again") == (survivor, None)  # idempotent
    body = sim_client.get(f"/api/contacts/{gone.id}", headers=auth).get_json()
    assert body["id"] == survivor  # the old id leads to the survivor
    listed = sim_client.get("/api/contacts?unionid=uSAME", headers=auth).get_json()["contacts"]
    assert [c["id"] for c in listed] == [survivor]


def test_concurrent_callbacks_for_one_unionid_merge_once(sim, sim_settings, env_to_sim):
    sim.add_rep("r1")
    sim.add_rep("r2")
    sim.set_user("oRACE", unionid="uRACE")
    threads = [
        threading.Thread(target=sim.follow, args=("oRACE",)),
        threading.Thread(
            target=sim.add_external_contact, args=("r1", "wmRACE1"), kwargs={"unionid": "uRACE"}
        ),
        threading.Thread(
            target=sim.add_external_contact, args=("r2", "wmRACE2"), kwargs={"unionid": "uRACE"}
        ),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Learn the unionids concurrently too (three workers at once).
    with db.session_scope(sim_settings.database_url) as s:
        ids = {
            v: s.execute(sa.select(Identity.contact_id).where(Identity.value == v)).scalar()
            for v in ("oRACE", "wmRACE1", "wmRACE2")
        }
    learners = [
        threading.Thread(target=wecom_sync._learn, args=(sim_settings, cid, None, "uRACE"))
        for cid in ids.values()
    ]
    for t in learners:
        t.start()
    for t in learners:
        t.join()
    run_worker(sim_settings)
    run_worker(sim_settings)
    survivors = {
        contact_of(sim_settings, k, v)
        for k, v in [
            ("openid", "oRACE"),
            ("external_userid", "wmRACE1"),
            ("external_userid", "wmRACE2"),
        ]
    }
    assert len(survivors) == 1
    [survivor] = survivors
    assert q(
        sim_settings,
        sa.select(sa.func.count()).select_from(Identity).where(Identity.value == "uRACE"),
    ) == [1]
    merged = q(
        sim_settings,
        sa.select(Event.id).where(Event.contact_id == survivor, Event.type == "contact.merged"),
    )
    assert len(merged) == 2  # three contacts became one: two merges, each recorded once
    with db.session_scope(sim_settings.database_url) as s:
        total = s.execute(
            sa.select(sa.func.count())
            .select_from(Event)
            .where(Event.type.in_(["oa.subscribe", "wecom.contact_added"]))
        ).scalar()
        on_survivor = s.execute(
            sa.select(sa.func.count())
            .select_from(Event)
            .where(
                Event.contact_id == survivor,
                Event.type.in_(["oa.subscribe", "wecom.contact_added"]),
            )
        ).scalar()
    assert total == on_survivor == 3  # nothing lost, nothing counted twice
