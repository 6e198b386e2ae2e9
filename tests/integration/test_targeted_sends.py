"""Targeted broadcasts through the simulator over real HTTP: audiences by ids and tags, the
routes (customer service in the window; outside it mass send by tag or openid list, template
or hold), the monthly mass quota, the preview against what is then sent, the platform's job
reports matched to rows, and media uploaded again when it expires."""

from __future__ import annotations

import importlib.util
import io
import struct
import zlib
from datetime import timedelta

import pytest
import sqlalchemy as sa
from support import run_worker

from bot.core import db, wechat
from bot.core.models import (
    Broadcast,
    Contact,
    ContactTag,
    Event,
    Identity,
    MassSend,
    Media,
    Message,
    Outbox,
    PlatformTag,
    utcnow,
)

OLD = 3 * 86400  # seconds since their last message: outside the 48-hour window


def png(seed: int = 0) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    raw = b"\x00" + bytes([seed % 256, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def setup(sim, sim_settings, yuchi_server, env_to_sim, monkeypatch):
    """An API client and the worker's environment with the same settings: no quiet hours
    (the tests run at any hour), a mass quota the test chooses."""
    from bot.app import create_app

    state = {}

    def configure(quota: int = 4) -> tuple:
        monkeypatch.setenv("YUCHI_QUIET_HOURS", "")
        monkeypatch.setenv("YUCHI_MASS_MONTHLY_QUOTA", str(quota))
        settings = sim_settings.replace(quiet_hours="", mass_monthly_quota=quota)
        app = create_app(settings)
        app.config["TESTING"] = True
        state["client"] = app.test_client()
        return state["client"], settings

    return configure


AUTH = {"Authorization": "Bearer test-api-token"}


def contact_of(settings, openid: str) -> int:
    with db.session_scope(settings.database_url) as s:
        return s.execute(
            sa.select(Identity.contact_id).where(Identity.value == openid)
        ).scalar_one()


def follower(sim, settings, openid: str, old: bool = False) -> int:
    """A follower; ``old``: their last message was 3 days ago (both sides agree)."""
    assert sim.follow(openid).status == 200
    cid = contact_of(settings, openid)
    if old:
        sim.set_user(openid, last_interaction_ago=OLD)
        with db.session_scope(settings.database_url) as s:
            s.execute(
                sa.update(Contact.__table__)
                .where(Contact.__table__.c.id == cid)
                .values(last_interaction_at=utcnow() - timedelta(seconds=OLD))
            )
    return cid


def tag(sim, settings, name: str, openids: list[str], oa_tag_id: int = 100) -> None:
    """Tag contacts in Yuchi and on the platform, as tag sync leaves them."""
    st = sim.state
    with st.lock:
        st.oa_tags[oa_tag_id] = name
        for o in openids:
            st.users[o].tagid_list.append(oa_tag_id)
    with db.session_scope(settings.database_url) as s:
        s.add(PlatformTag(name=name, oa_tag_id=oa_tag_id))
        for o in openids:
            s.add(ContactTag(contact_id=contact_of(settings, o), tag=name, source="manual"))


def rows(settings, broadcast_id: int) -> dict[int, Message]:
    with db.session_scope(settings.database_url) as s:
        found = s.execute(sa.select(Message).where(Message.broadcast_id == broadcast_id))
        return {m.contact_id: m for m in found.scalars()}


def mass_sends(settings) -> list[MassSend]:
    with db.session_scope(settings.database_url) as s:
        return list(s.execute(sa.select(MassSend).order_by(MassSend.id)).scalars())


def outcome(m: Message) -> str:
    """A sent row's route, in the preview's words."""
    if m.status in ("sent", "delivered"):
        return {"template": "template", "mass": "mass"}.get(m.sent_kind, "cs")
    if m.status == "held":
        return "quota" if "quota" in (m.error_message or "") else "hold"
    if m.status == "skipped":
        return "capped" if "cap" in (m.error_message or "") else "skip"
    return m.status


def wait_finished(sim, settings, kind: str, n: int = 1) -> None:
    """Wait for the platform's job reports and process them. The server kicks the drain just
    after its commit, so a report can be visible before its drain is queued: the worker runs
    until the reports' outbox rows are done, not once."""

    def outbox() -> list[str | None]:
        """The status of each report's outbox row (None: stored without one)."""
        with db.session_scope(settings.database_url) as s:
            return list(
                s.execute(
                    sa.select(Outbox.status)
                    .select_from(Event)
                    .outerjoin(Outbox, Outbox.event_id == Event.id)
                    .where(Event.type == kind)
                ).scalars()
            )

    def processed() -> bool:
        run_worker(settings)
        return outbox().count("done") >= n

    # a loaded machine is slow
    assert sim.wait_for(processed, timeout=30.0), f"{kind}: outbox rows {outbox()}"


def broadcast(client, body: dict) -> int:
    resp = client.post("/api/broadcasts", json=body, headers=AUTH)
    assert resp.status_code == 202, resp.get_json()
    return resp.get_json()["id"]


TEXT = {"name": "新品上市", "kind": "text", "payload": {"content": "鱼池新品上市啦"}}


def test_window_goes_by_customer_service_and_the_rest_by_mass_openids(sim, sim_settings, setup):
    client, settings = setup()
    a = follower(sim, settings, "oTsA")
    b = follower(sim, settings, "oTsB", old=True)
    c = follower(sim, settings, "oTsC", old=True)
    body = {**TEXT, "audience": {"ids": [a, b, c]}, "outside_window": "mass"}
    preview = client.post("/api/broadcasts/preview", json=body, headers=AUTH).get_json()
    assert preview["routes"] == {"cs": 1, "template": 0, "mass": 2, "hold": 0, "fail": 0}
    assert preview["mass"] == {"by": "openids", "tag_id": None, "calls": 1}
    assert sim.calls(path="message/") == []  # a preview sends nothing

    bid = broadcast(client, body)
    run_worker(settings)
    got = rows(settings, bid)
    assert {cid: outcome(m) for cid, m in got.items()} == {a: "cs", b: "mass", c: "mass"}
    assert len(sim.inbox("oTsA", kind="custom")) == 1
    assert sim.inbox("oTsA", kind="mass") == []  # never both
    [call] = sim.calls(path="message/mass/send")
    assert call["errcode"] == 0
    [ms] = mass_sends(settings)
    assert (ms.target, ms.recipients) == ("openids", 2)
    assert ms.status in ("submitted", "finished")  # its report may be back already
    assert got[b].platform_msgid == ms.msg_id == got[c].platform_msgid

    wait_finished(sim, settings, "oa.mass_send_finished")
    got = rows(settings, bid)
    assert (got[b].status, got[c].status, got[a].status) == ("delivered", "delivered", "sent")
    [ms] = mass_sends(settings)
    assert (ms.status, ms.total_count, ms.filter_count, ms.sent_count, ms.error_count) == (
        "finished",
        2,
        2,
        2,
        0,
    )
    with db.session_scope(settings.database_url) as s:  # the helper is not a contact
        assert s.execute(sa.select(Identity).where(Identity.value == "mphelper")).first() is None


def test_a_synced_tag_outside_the_window_goes_by_the_tag_mass_send(sim, sim_settings, setup):
    client, settings = setup()
    people = ["oTagA", "oTagB", "oTagC"]
    for o in people:
        follower(sim, settings, o, old=True)
    follower(sim, settings, "oNotTagged", old=True)
    tag(sim, settings, "VIP", people)
    body = {**TEXT, "audience": {"tags": {"any": ["VIP"]}}, "outside_window": "mass"}
    preview = client.post("/api/broadcasts/preview", json=body, headers=AUTH).get_json()
    assert preview["total"] == 3 and preview["routes"]["mass"] == 3
    assert preview["mass"] == {"by": "tag", "tag_id": 100, "calls": 1}

    bid = broadcast(client, body)
    run_worker(settings)
    [call] = sim.calls(path="message/mass/")
    assert call["path"].endswith("sendall") and call["errcode"] == 0
    assert [len(sim.inbox(o, kind="mass")) for o in people] == [1, 1, 1]
    assert sim.inbox("oNotTagged", kind="mass") == []
    wait_finished(sim, settings, "oa.mass_send_finished")
    assert {m.status for m in rows(settings, bid).values()} == {"delivered"}
    assert mass_sends(settings)[0].tag_id == 100


def test_the_monthly_mass_quota_holds_the_rest_and_they_get_it_when_they_write(
    sim, sim_settings, setup
):
    client, settings = setup(quota=1)
    ids = [follower(sim, settings, o, old=True) for o in ("oQa", "oQb")]
    body = {**TEXT, "audience": {"ids": ids}, "outside_window": "mass"}
    first = broadcast(client, body)
    run_worker(settings)
    assert {outcome(m) for m in rows(settings, first).values()} == {"mass"}

    second = {**body, "name": "第二次", "payload": {"content": "第二条群发"}}
    preview = client.post("/api/broadcasts/preview", json=second, headers=AUTH).get_json()
    assert preview["routes"]["mass"] == 0 and preview["not_sent"]["quota"] == 2
    bid = broadcast(client, second)
    run_worker(settings)
    assert {outcome(m) for m in rows(settings, bid).values()} == {"quota"}
    assert len(sim.calls(path="message/mass/")) == 1  # the quota is ours: nothing was tried

    sim.say("oQa", "在吗")  # the window opens: the held message goes as customer service
    run_worker(settings)
    assert outcome(rows(settings, bid)[ids[0]]) == "cs"
    assert [i["text"] for i in sim.inbox("oQa", kind="custom")] == ["第二条群发"]


def test_the_platform_refusing_for_quota_holds_the_rows(sim, sim_settings, setup):
    client, settings = setup()
    sim.configure(mass_daily_calls=0)
    ids = [follower(sim, settings, o, old=True) for o in ("oPq1", "oPq2")]
    bid = broadcast(client, {**TEXT, "audience": {"ids": ids}, "outside_window": "mass"})
    run_worker(settings)
    got = rows(settings, bid)
    assert {(m.status, m.error_code) for m in got.values()} == {("held", 45028)}
    [ms] = mass_sends(settings)
    assert (ms.status, ms.error_code) == ("failed", 45028)


TEMPLATE = {"template_id": "TPL_NEWS", "data": {"first": "鱼池新品", "remark": "点击查看"}}


def test_template_policy_and_its_job_reports(sim, sim_settings, setup):
    client, settings = setup()
    ok = follower(sim, settings, "oTplOk", old=True)
    blocked = follower(sim, settings, "oTplBlock", old=True)
    sim.set_user("oTplBlock", blocks_templates=True)
    body = {
        **TEXT,
        "audience": {"ids": [ok, blocked]},
        "outside_window": "template",
        "template": TEMPLATE,
    }
    preview = client.post("/api/broadcasts/preview", json=body, headers=AUTH).get_json()
    assert preview["routes"]["template"] == 2
    bid = broadcast(client, body)
    run_worker(settings)
    # (the report may already have come back and been matched)
    assert {m.sent_kind for m in rows(settings, bid).values()} == {"template"}
    assert sim.inbox("oTplOk", kind="template")[0]["payload"]["template_id"] == "TPL_NEWS"
    wait_finished(sim, settings, "oa.template_send_finished", n=2)
    got = rows(settings, bid)
    assert got[ok].status == "delivered"
    assert (got[blocked].status, got[blocked].error_message) == (
        "failed",
        "platform: failed:user block",
    )


def test_hold_policy_waits_for_their_next_message(sim, sim_settings, setup):
    client, settings = setup()
    cid = follower(sim, settings, "oHoldB", old=True)
    bid = broadcast(client, {**TEXT, "audience": {"ids": [cid]}, "outside_window": "hold"})
    run_worker(settings)
    assert outcome(rows(settings, bid)[cid]) == "hold"
    assert sim.calls(path="message/") == []
    sim.say("oHoldB", "你好")
    run_worker(settings)
    assert outcome(rows(settings, bid)[cid]) == "cs"


def test_the_preview_figures_are_what_is_then_sent(sim, sim_settings, setup):
    client, settings = setup(quota=1)
    window = [follower(sim, settings, f"oPvW{i}") for i in range(2)]
    outside = [follower(sim, settings, f"oPvO{i}", old=True) for i in range(3)]
    capped = follower(sim, settings, "oPvCap")
    gone = follower(sim, settings, "oPvGone", old=True)
    sim.unfollow("oPvGone")
    used = follower(sim, settings, "oPvUsed", old=True)
    now = utcnow()
    with db.session_scope(settings.database_url) as s:
        for i in range(3):  # the frequency cap is full for one
            s.add(
                Message(
                    contact_id=capped,
                    channel="oa",
                    kind="text",
                    payload={},
                    marketing=True,
                    status="sent",
                    sent_at=now,
                    idempotency_key=f"cap{i}",
                )
            )
        s.add(  # one mass message this month already for another
            Message(
                contact_id=used,
                channel="oa",
                kind="text",
                payload={},
                marketing=True,
                status="sent",
                sent_kind="mass",
                sent_at=now,
                idempotency_key="used",
            )
        )
    everyone = [*window, *outside, capped, gone, used]
    body = {**TEXT, "audience": {"ids": everyone}, "outside_window": "mass"}
    preview = client.post("/api/broadcasts/preview", json=body, headers=AUTH).get_json()
    expected = {"cs": 2, "mass": 3, "capped": 1, "skip": 1, "quota": 1}
    assert preview["routes"] == {"cs": 2, "template": 0, "mass": 3, "hold": 0, "fail": 0}
    assert preview["not_sent"] == {"capped": 1, "quota": 1, "quiet": 0, "skipped": 1}

    bid = broadcast(client, body)
    run_worker(settings)
    sent: dict[str, int] = {}
    for m in rows(settings, bid).values():
        sent[outcome(m)] = sent.get(outcome(m), 0) + 1
    assert sent == expected


def test_quiet_hours_are_counted_by_the_preview(sim, sim_settings, setup):
    client, settings = setup()
    app_settings = settings.replace(quiet_hours="00:00-23:59")
    from bot.app import create_app

    quiet = create_app(app_settings).test_client()
    cid = follower(sim, settings, "oQuiet", old=True)
    body = {**TEXT, "audience": {"ids": [cid]}, "outside_window": "mass"}
    preview = quiet.post("/api/broadcasts/preview", json=body, headers=AUTH).get_json()
    assert preview["not_sent"]["quiet"] == 1 and preview["quiet_until"]


def test_expired_media_is_uploaded_again_before_the_send(sim, sim_settings, setup):
    client, settings = setup()
    resp = client.post(
        "/api/media",
        data={"file": (io.BytesIO(png()), "cover.png"), "kind": "image"},
        headers=AUTH,
        content_type="multipart/form-data",
    )
    assert resp.status_code == 201, resp.get_json()
    media = resp.get_json()
    first = media["media_id"]
    assert first and media["expires_at"] and media["uploads"] == 1
    cid = follower(sim, settings, "oPic")
    body = {"name": "图", "kind": "image", "payload": {"media": media["id"]}, "marketing": False}
    broadcast(client, {**body, "audience": {"ids": [cid]}})
    run_worker(settings)
    assert [i["payload"]["image"]["media_id"] for i in sim.inbox("oPic", kind="custom")] == [first]

    # our record says it has expired: uploaded again before the send
    with db.session_scope(settings.database_url) as s:
        s.execute(sa.update(Media.__table__).values(expires_at=utcnow() - timedelta(minutes=1)))
    broadcast(client, {**body, "name": "图2", "audience": {"ids": [cid]}})
    run_worker(settings)
    second = client.get(f"/api/media/{media['id']}", headers=AUTH).get_json()
    assert second["uploads"] == 2 and second["media_id"] != first
    assert (
        sim.inbox("oPic", kind="custom")[-1]["payload"]["image"]["media_id"] == second["media_id"]
    )

    # the platform has forgotten it although our record says otherwise: 40007, upload, send
    sim.advance(3 * 86400 + 60)
    sim.say("oPic", "再发一张")  # the window, on the platform's clock
    broadcast(client, {**body, "name": "图3", "audience": {"ids": [cid]}})
    run_worker(settings)
    third = client.get(f"/api/media/{media['id']}", headers=AUTH).get_json()
    assert third["uploads"] == 3
    assert [c["errcode"] for c in sim.calls(path="message/custom/send")][-2:] == [40007, 0]
    assert len(sim.inbox("oPic", kind="custom")) == 3


def test_validation_names_the_field(sim, sim_settings, setup):
    client, settings = setup()
    cid = follower(sim, settings, "oVal")
    cases = [
        ({**TEXT, "audience": {"ids": [cid]}, "outside_window": "template"}, "template"),
        (
            {
                "name": "n",
                "kind": "news",
                "outside_window": "mass",
                "audience": {"ids": [cid]},
                "payload": {"title": "t", "url": "https://example.com"},
            },
            "outside_window",
        ),
        ({**TEXT, "audience": {"ids": [cid], "tags": {"any": ["a"]}}}, "audience"),
        ({**TEXT, "audience": {"tags": {"any": ["a"], "all": ["b"]}}}, "audience.tags"),
        ({**TEXT, "audience": {"ids": [cid, 999999]}}, "audience.ids"),
        (
            {
                "name": "i",
                "kind": "image",
                "payload": {"media": 424242},
                "audience": {"ids": [cid]},
            },
            "payload.media",
        ),
    ]
    for body, field in cases:
        for path in ("/api/broadcasts", "/api/broadcasts/preview"):
            resp = client.post(path, json=body, headers=AUTH)
            assert resp.status_code == 422, (path, body, resp.get_json())
            assert any(k.startswith(field) for k in resp.get_json()["fields"]), resp.get_json()
    bad = client.post(
        "/api/media",
        data={"file": (io.BytesIO(b"not an image"), "x.png"), "kind": "image"},
        headers=AUTH,
        content_type="multipart/form-data",
    )
    assert bad.status_code == 422 and "file" in bad.get_json()["fields"]
    with db.session_scope(settings.database_url) as s:
        assert s.execute(sa.select(sa.func.count()).select_from(Media)).scalar_one() == 0


@pytest.mark.skipif(
    importlib.util.find_spec("bot.audiences.segments") is None,
    reason="saved segments are another stream of issue 16 (wired at merge)",
)
def test_the_segments_package_has_what_resolve_calls() -> None:
    """At merge: bot.audiences.resolve calls segments.member_ids(session, id) -> SELECT of
    contact ids, and takes LookupError/ValueError for an unknown segment (a 422)."""
    import inspect

    from bot.audiences import segments

    assert list(inspect.signature(segments.member_ids).parameters)[:2] == [
        "session",
        "segment_id",
    ]


def test_simulator_mass_and_media_rules(sim, sim_settings):
    oa = wechat.oa(sim_settings)
    sim.set_user("oR1")
    sim.set_user("oR2")
    text = {"msgtype": "text", "text": {"content": "群发"}}
    with pytest.raises(wechat.PlatformError) as lone:
        oa.call("post", "message/mass/send", data={"touser": ["oR1"], **text})
    assert lone.value.errcode == 40130
    with pytest.raises(wechat.PlatformError) as media:
        oa.call(
            "post",
            "message/mass/send",
            data={"touser": ["oR1", "oR2"], "msgtype": "image", "image": {"media_id": "nope"}},
        )
    assert media.value.errcode == 40007
    with pytest.raises(wechat.PlatformError) as no_tag:
        oa.call("post", "message/mass/sendall", data={"filter": {"tag_id": 999}, **text})
    assert no_tag.value.errcode == 45159
    body = {"touser": ["oR1", "oR2"], "clientmsgid": "once", **text}
    first = oa.call("post", "message/mass/send", data=body)["msg_id"]
    with pytest.raises(wechat.PlatformError) as again:
        oa.call("post", "message/mass/send", data=body)
    assert (again.value.errcode, again.value.answer["msg_id"]) == (45065, first)
    with pytest.raises(wechat.PlatformError) as bad_file:
        oa.call(
            "post",
            "media/upload",
            params={"type": "image"},
            files={"media": ("x.png", b"GIF", "image/png")},
        )
    assert bad_file.value.errcode == 40005
    uploaded = oa.call(
        "post",
        "media/upload",
        params={"type": "image"},
        files={"media": ("x.png", png(), "image/png")},
    )
    assert uploaded["type"] == "image" and uploaded["media_id"]
    material = oa.call(
        "post",
        "material/add_material",
        params={"type": "image"},
        files={"media": ("x.png", png(), "image/png")},
    )
    assert material["url"].startswith("http")
    # four mass messages a month per follower: the fifth is filtered out
    for n in range(5):
        oa.call(
            "post",
            "message/mass/send",
            data={"touser": ["oR1", "oR2"], "msgtype": "text", "text": {"content": f"第{n}条"}},
        )
    assert len(sim.inbox("oR1", kind="mass")) == 4


def test_a_tag_with_someone_in_the_window_goes_by_openid_list(sim, sim_settings, setup):
    """The tag mass send would reach the one in the window too (a second message): the
    others go by openid list instead."""
    client, settings = setup()
    follower(sim, settings, "oMixW")
    for o in ("oMixA", "oMixB"):
        follower(sim, settings, o, old=True)
    tag(sim, settings, "活动", ["oMixW", "oMixA", "oMixB"])
    body = {**TEXT, "audience": {"tags": {"all": ["活动"]}}, "outside_window": "mass"}
    preview = client.post("/api/broadcasts/preview", json=body, headers=AUTH).get_json()
    assert preview["routes"]["cs"] == 1 and preview["mass"]["by"] == "openids"
    broadcast(client, body)
    run_worker(settings)
    assert [c["path"].rsplit("/", 1)[-1] for c in sim.calls(path="message/mass/")] == ["send"]
    assert sim.inbox("oMixW", kind="mass") == [] and len(sim.inbox("oMixW", kind="custom")) == 1
    assert len(sim.inbox("oMixA", kind="mass")) == 1


def test_tags_any_and_all(sim, sim_settings, setup):
    client, settings = setup()
    for o in ("oAB", "oA", "oB", "oNone"):
        follower(sim, settings, o)
    tag(sim, settings, "A", ["oAB", "oA"], oa_tag_id=101)
    tag(sim, settings, "B", ["oAB", "oB"], oa_tag_id=102)

    def total(tags: dict) -> int:
        body = {**TEXT, "audience": {"tags": tags}}
        return client.post("/api/broadcasts/preview", json=body, headers=AUTH).get_json()["total"]

    assert (total({"any": ["A", "B"]}), total({"all": ["A", "B"]}), total({"any": ["C"]})) == (
        3,
        1,
        0,
    )


def test_a_lone_mass_recipient_is_held(sim, sim_settings, setup):
    client, settings = setup()
    cid = follower(sim, settings, "oLone", old=True)
    body = {**TEXT, "audience": {"ids": [cid]}, "outside_window": "mass"}
    preview = client.post("/api/broadcasts/preview", json=body, headers=AUTH).get_json()
    assert preview["routes"]["hold"] == 1 and preview["lone_mass_held"] is True
    bid = broadcast(client, body)
    run_worker(settings)
    m = rows(settings, bid)[cid]
    assert m.status == "held" and "at least 2" in m.error_message
    assert sim.calls(path="message/mass/") == []


def test_a_refused_mass_job_fails_its_rows_with_the_platforms_status(sim, sim_settings, setup):
    client, settings = setup()
    sim.configure(mass_status="err(10001)")  # 涉嫌广告: the review refused it
    ids = [follower(sim, settings, o, old=True) for o in ("oErr1", "oErr2")]
    bid = broadcast(client, {**TEXT, "audience": {"ids": ids}, "outside_window": "mass"})
    run_worker(settings)
    wait_finished(sim, settings, "oa.mass_send_finished")
    got = rows(settings, bid)
    assert {(m.status, m.error_message) for m in got.values()} == {
        ("failed", "platform: err(10001)")
    }
    [ms] = mass_sends(settings)
    assert (ms.status, ms.platform_status, ms.sent_count) == ("failed", "err(10001)", 0)
    assert sim.inbox("oErr1", kind="mass") == []


def test_an_image_goes_by_mass_with_our_media(sim, sim_settings, setup):
    client, settings = setup()
    resp = client.post(
        "/api/media",
        data={"file": (io.BytesIO(png(7)), "poster.png"), "kind": "image", "permanent": "true"},
        headers=AUTH,
        content_type="multipart/form-data",
    )
    media = resp.get_json()
    assert resp.status_code == 201 and media["url"] and media["expires_at"] is None
    ids = [follower(sim, settings, o, old=True) for o in ("oImg1", "oImg2")]
    body = {
        "name": "海报",
        "kind": "image",
        "payload": {"media": media["id"]},
        "audience": {"ids": ids},
        "outside_window": "mass",
    }
    broadcast(client, body)
    run_worker(settings)
    [got] = sim.inbox("oImg1", kind="mass")
    assert got["payload"]["image"] == {"media_id": media["media_id"]}


def test_the_sweeper_sends_mass_rows_whose_job_was_lost(sim, sim_settings, setup):
    from bot.core import queue
    from bot.messaging import broadcasts, delivery, mass

    client, settings = setup()
    ids = [follower(sim, settings, o, old=True) for o in ("oLost1", "oLost2")]
    bid = broadcast(client, {**TEXT, "audience": {"ids": ids}, "outside_window": "mass"})
    broadcasts.fan_out(settings, bid)  # decided here, in this process …
    delivery.deliver_batch(settings, sorted(m.id for m in rows(settings, bid).values()))
    assert {m.status for m in rows(settings, bid).values()} == {"mass_queued"}
    queue.get_redis(settings).flushdb()  # … and Redis lost the mass job
    swept = settings.replace(message_sweep_grace_seconds=0.0)
    assert mass.sweep(swept) == 1
    assert mass.sweep(swept) == 0  # its job is alive: not twice
    run_worker(settings)
    assert {outcome(m) for m in rows(settings, bid).values()} == {"mass"}
    assert len(sim.calls(path="message/mass/")) == 1


def test_a_segment_audience_goes_through_member_ids(sim, sim_settings, setup, monkeypatch):
    """The resolution path for {"segment": id}, with a stand-in for the segments module
    (the real one is another stream's): its SELECT is what the broadcast reaches."""
    import sys
    import types

    import bot.audiences

    client, settings = setup()
    a, b = follower(sim, settings, "oSegA"), follower(sim, settings, "oSegB")

    def member_ids(session, segment_id):
        if segment_id != 7:
            raise LookupError(f"no segment {segment_id}")
        return sa.select(Contact.id).where(Contact.id == b)

    fake = types.ModuleType("bot.audiences.segments")
    fake.member_ids = member_ids
    monkeypatch.setitem(sys.modules, "bot.audiences.segments", fake)
    monkeypatch.setattr(bot.audiences, "segments", fake, raising=False)
    body = {**TEXT, "marketing": False, "audience": {"segment": 7}}
    assert client.post("/api/broadcasts/preview", json=body, headers=AUTH).get_json()["total"] == 1
    bad = client.post("/api/broadcasts", json={**body, "audience": {"segment": 8}}, headers=AUTH)
    assert bad.status_code == 422 and "audience.segment" in bad.get_json()["fields"]
    bid = broadcast(client, body)
    run_worker(settings)
    assert set(rows(settings, bid)) == {b} and a not in rows(settings, bid)


def test_media_whose_first_upload_failed_is_uploaded_before_its_send(sim, sim_settings, setup):
    client, settings = setup()
    sim.faults(busy_next=4, paths=["media/upload"])  # the platform is busy for a moment
    resp = client.post(
        "/api/media",
        data={"file": (io.BytesIO(png(3)), "later.png"), "kind": "image"},
        headers=AUTH,
        content_type="multipart/form-data",
    )
    media = resp.get_json()
    assert resp.status_code == 201 and media["media_id"] is None and media["error"]
    sim.faults(busy_next=0)
    cid = follower(sim, settings, "oLater")
    body = {"name": "图", "kind": "image", "payload": {"media": media["id"]}, "marketing": False}
    bid = broadcast(client, {**body, "audience": {"ids": [cid]}})
    run_worker(settings)
    assert rows(settings, bid)[cid].status == "sent"
    now = client.get(f"/api/media/{media['id']}", headers=AUTH).get_json()
    assert now["media_id"] and now["error"] is None and now["uploads"] == 1
    [got] = sim.inbox("oLater", kind="custom")
    assert got["payload"]["image"]["media_id"] == now["media_id"]


def test_a_report_that_overtook_its_send_is_applied_when_the_rows_are_marked(clean):
    """The pipeline processed the platform's report before our rows were marked sent: the
    marking finds it (results.late_template / late_mass)."""
    from bot.contacts import record
    from bot.messaging import results

    url = clean.database_url
    now = utcnow()
    with db.session_scope(url) as s:
        contact = Contact(first_seen_at=now, last_seen_at=now)
        s.add(contact)
        s.flush()
        cid = contact.id
        s.add(Broadcast(name="b", kind="text", payload={}, audience={"ids": [cid]}, id=1))
        s.flush()
        s.add_all(
            [
                Message(
                    contact_id=cid,
                    channel="oa",
                    kind="text",
                    payload={},
                    status="sent",
                    sent_kind="template",
                    platform_msgid="T1",
                    sent_at=now,
                ),
                Message(
                    contact_id=cid,
                    channel="oa",
                    kind="text",
                    payload={},
                    status="sent",
                    sent_kind="mass",
                    platform_msgid="M1",
                    sent_at=now,
                    broadcast_id=1,
                ),
                MassSend(
                    broadcast_id=1,
                    client_msg_id="c1",
                    target="openids",
                    recipients=1,
                    status="submitted",
                    msg_id="M1",
                ),
            ]
        )
        record.timeline(
            s,
            [(cid, "oa.template_send_finished", {"msg_id": "T1", "status": "success"}, "k1")],
        )
        s.flush()
        props = {
            "msg_id": "M1",
            "status": "send success",
            "total": "1",
            "filtered": "1",
            "sent": "1",
            "errors": "0",
        }
        s.execute(
            sa.insert(Event.__table__).values(
                contact_id=None,
                type="oa.mass_send_finished",
                source="oa",
                properties=props,
                occurred_at=now,
                received_at=now,
                dedupe_key="k2",
            )
        )
    with db.session_scope(url) as s:
        results.late_template(s, cid, "T1", now)
        results.late_mass(s, "M1", now)
    with db.session_scope(url) as s:
        got = {m.sent_kind: m.status for m in s.execute(sa.select(Message)).scalars()}
        assert got == {"template": "delivered", "mass": "delivered"}
        assert s.execute(sa.select(MassSend.status)).scalar_one() == "finished"


def test_a_news_picture_is_our_permanent_image(sim, sim_settings, setup):
    client, settings = setup()
    upload = client.post(
        "/api/media",
        data={"file": (io.BytesIO(png(9)), "cover.png"), "kind": "image", "permanent": "true"},
        headers=AUTH,
        content_type="multipart/form-data",
    ).get_json()
    cid = follower(sim, settings, "oNews")
    article = {"title": "鱼池周刊", "url": "https://example.com/w", "media": upload["id"]}
    body = {"name": "周刊", "kind": "news", "payload": article, "marketing": False}
    broadcast(client, {**body, "audience": {"ids": [cid]}})
    run_worker(settings)
    [got] = sim.inbox("oNews", kind="custom")
    [sent] = got["payload"]["news"]["articles"]
    assert sent["picurl"] == upload["url"] and "media" not in sent
    temporary = client.post(
        "/api/media",
        data={"file": (io.BytesIO(png(10)), "tmp.png"), "kind": "image"},
        headers=AUTH,
        content_type="multipart/form-data",
    ).get_json()
    refused = client.post(
        "/api/broadcasts",
        json={**body, "payload": {**article, "media": temporary["id"]}, "audience": {"ids": [cid]}},
        headers=AUTH,
    )
    assert refused.status_code == 422 and "payload.media" in refused.get_json()["fields"]
