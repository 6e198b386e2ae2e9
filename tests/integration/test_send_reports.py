"""What each send did: tracked links through the simulator (rewritten at send time, a click
recorded and redirected, a tampered code a 404 that records nothing) and the report figures
on a seeded history, per message, per broadcast and per journey step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import sqlalchemy as sa
from test_messaging import follower, send

from bot.core import db
from bot.core.models import (
    Broadcast,
    Contact,
    Enrollment,
    Event,
    Message,
    MessageClick,
    utcnow,
)
from bot.messaging import broadcasts, delivery, links
from bot.messaging import outbox as messaging
from bot.messaging.payloads import SendRequest

GOAL = "h5.form_submitted"


def clicks(settings) -> list[MessageClick]:
    with db.session_scope(settings.database_url) as s:
        return list(s.execute(sa.select(MessageClick).order_by(MessageClick.id)).scalars())


def events_of(settings, type_: str) -> list[Event]:
    with db.session_scope(settings.database_url) as s:
        return list(s.execute(sa.select(Event).where(Event.type == type_)).scalars())


def tracked_urls(settings, text: str) -> list[str]:
    base = settings.public_url.rstrip("/") + "/r/"
    return [u for u in links.URL.findall(text) if u.startswith(base)]


def test_links_are_tracked_clicks_recorded_and_redirected(sim, sim_settings, sim_client, auth):
    cid = follower(sim, sim_settings, "oLinks")
    text = "新品上线：https://example.com/p?a=1&b=2，详情见 https://shop.example.com/x 。"
    mid = send(sim_settings, cid, text)
    assert delivery.deliver(sim_settings, mid) == "sent"
    [sent] = sim.inbox("oLinks", kind="custom")
    content = sent["payload"]["text"]["content"]
    assert "example.com/p" not in content and content.startswith("新品上线：")
    first, second = tracked_urls(sim_settings, content)
    assert content.endswith(" 。") and "，详情见 " in content

    # the stored row keeps the original text
    body = sim_client.get(f"/api/messages/{mid}", headers=auth).get_json()
    assert body["payload"]["content"] == text

    code = urlsplit(first).path.removeprefix("/r/")
    head = sim_client.head(f"/r/{code}")  # a link preview: answered, not a click
    assert head.status_code == 302 and clicks(sim_settings) == []
    resp = sim_client.get(f"/r/{code}")
    assert resp.status_code == 302
    assert resp.headers["Location"] == "https://example.com/p?a=1&b=2"
    resp = sim_client.get(urlsplit(second).path)
    assert resp.headers["Location"] == "https://shop.example.com/x"
    sim_client.get(f"/r/{code}")  # clicked again: recorded, reach still counts them once

    rows = clicks(sim_settings)
    assert [(r.message_id, r.contact_id, r.link) for r in rows] == [
        (mid, cid, 0),
        (mid, cid, 1),
        (mid, cid, 0),
    ]
    clicked = events_of(sim_settings, "msg.clicked")
    assert len(clicked) == 3 and {e.contact_id for e in clicked} == {cid}
    assert clicked[0].properties["message_id"] == mid
    assert {e.properties["url"] for e in clicked} == {
        "https://example.com/p?a=1&b=2",
        "https://shop.example.com/x",
    }

    report = sim_client.get(f"/api/messages/{mid}/report", headers=auth).get_json()
    assert (report["sent"], report["reach"], report["clicks"], report["clickers"]) == (1, 1, 3, 1)

    # a tampered code, an unknown message, a link the message does not have: 404, nothing kept
    tampered = code[:-1] + ("A" if code[-1] != "A" else "B")
    for bad in (
        tampered,
        "x" + code,
        links.code_for(sim_settings, mid + 1000, 0),
        links.code_for(sim_settings, mid, 2),
        "nothing",
    ):
        resp = sim_client.get(f"/r/{bad}")
        assert resp.status_code == 404, bad
        assert "链接无效" in resp.get_data(as_text=True)
    assert len(clicks(sim_settings)) == 3
    assert len(events_of(sim_settings, "msg.clicked")) == 3


def test_news_and_template_fallback_urls_are_tracked(sim, sim_settings, sim_client):
    cid = follower(sim, sim_settings, "oNews")
    news = {"title": "鱼池新品", "description": "点击查看", "url": "https://example.com/n"}
    req = SendRequest.model_validate({"contact_id": cid, "kind": "news", "payload": news})
    mid = messaging.create(sim_settings, req)[0].id
    assert delivery.deliver(sim_settings, mid) == "sent"
    [sent] = sim.inbox("oNews", kind="custom")
    url = sent["payload"]["news"]["articles"][0]["url"]
    assert url.startswith(sim_settings.public_url.rstrip("/") + "/r/")
    assert sim_client.get(urlsplit(url).path).headers["Location"] == "https://example.com/n"

    # outside the window: the fallback template's url is tracked as the row's next link
    fallback = {"template_id": "TPL_NOTICE", "data": {"first": "您好"}, "url": "https://e.com/t"}
    req = SendRequest.model_validate(
        {
            "contact_id": cid,
            "kind": "text",
            "payload": {"content": "见 https://e.com/c"},
            "outside_window": "fallback",
            "fallback": fallback,
        }
    )
    mid = messaging.create(sim_settings, req)[0].id
    later = datetime.now(UTC) + timedelta(hours=49)
    assert delivery.deliver(sim_settings, mid, now=later) == "sent"
    [tpl] = sim.inbox("oNews", kind="template")
    turl = tpl["payload"]["url"]
    assert links.read_code(sim_settings, urlsplit(turl).path.removeprefix("/r/")) == (mid, 1)
    assert sim_client.get(urlsplit(turl).path).headers["Location"] == "https://e.com/t"


# --- the report figures on a seeded history ---------------------------------------------

T = datetime(2026, 11, 2, 10, tzinfo=UTC)


def _contacts(s, n: int) -> list[int]:
    rows = [Contact(subscribed=True, first_seen_at=T, last_seen_at=T) for _ in range(n)]
    s.add_all(rows)
    s.flush()
    return [r.id for r in rows]


def _message(s, cid: int, status: str, **kw) -> int:
    m = Message(
        contact_id=cid,
        channel="oa",
        kind="text",
        payload={"content": "看看 https://example.com/a"},
        status=status,
        sent_at=T if status in ("sent", "delivered") else None,
        **kw,
    )
    s.add(m)
    s.flush()
    return m.id


def _event(s, cid: int, type_: str, at: datetime, **props) -> None:
    s.add(Event(contact_id=cid, type=type_, source="test", properties=props, occurred_at=at))


def _click(s, mid: int, cid: int, at: datetime) -> None:
    s.add(
        MessageClick(
            message_id=mid, contact_id=cid, link=0, url="https://example.com/a", clicked_at=at
        )
    )


def seed_history(s, **owner) -> dict[str, int]:
    """Eight sends, each with what followed (reach window 72 h, conversions 7 days):
    c1 clicked twice; c2 replied and converted; c3 sent 退订; c4 did everything too late;
    c5, c6 failed (two codes); c7 held; c8 delivered, clicked, converted before the send."""
    c = _contacts(s, 8)
    m = {}
    m["m1"] = _message(s, c[0], "sent", **owner)
    _click(s, m["m1"], c[0], T + timedelta(hours=1))
    _click(s, m["m1"], c[0], T + timedelta(hours=2))
    _event(s, c[0], "oa.text", T - timedelta(hours=1), content="早")  # before: not reach
    m["m2"] = _message(s, c[1], "sent", **owner)
    _event(s, c[1], "oa.text", T + timedelta(hours=2), content="好的")
    _event(s, c[1], GOAL, T + timedelta(days=1))
    m["m3"] = _message(s, c[2], "sent", **owner)
    _event(s, c[2], "oa.text", T + timedelta(hours=1), content=" 退订 ")
    m["m4"] = _message(s, c[3], "sent", **owner)
    _event(s, c[3], "oa.unsubscribe", T + timedelta(hours=30))
    _event(s, c[3], "oa.text", T + timedelta(hours=100), content="在吗")
    _event(s, c[3], GOAL, T + timedelta(days=8))
    m["m5"] = _message(s, c[4], "failed", error_code=45015, **owner)
    m["m6"] = _message(s, c[5], "failed", error_code=40003, **owner)
    m["m7"] = _message(s, c[6], "held", **owner)
    m["m8"] = _message(s, c[7], "delivered", **owner)
    _click(s, m["m8"], c[7], T + timedelta(minutes=5))
    _event(s, c[7], GOAL, T - timedelta(hours=1))
    _event(s, c[7], "oa.text", T + timedelta(hours=3), content="TD")  # also negative
    return m


EXPECTED = {
    "messages": 8,
    "sent": 5,
    "delivered": 1,
    "failed": 2,
    "failed_by_code": {"45015": 1, "40003": 1},
    "held": 1,
    "skipped": 0,
    "pending": 0,
    "reach": 3,
    "negative": 2,
    "conversions": 1,
    "clicks": 3,
    "clickers": 2,
    "reach_rate": 0.6,
    "conversion_rate": 0.2,
}


def test_broadcast_report_figures(client, auth, clean):
    with db.session_scope(clean.database_url) as s:
        b = Broadcast(name="双十一", kind="text", payload={}, audience={}, total=8, status="queued")
        s.add(b)
        s.flush()
        bid = b.id
        m = seed_history(s, broadcast_id=bid)
    resp = client.get(f"/api/broadcasts/{bid}/report?goal={GOAL}", headers=auth)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert {k: body[k] for k in EXPECTED} == EXPECTED
    assert body["windows"]["reach_seconds"] == 72 * 3600

    plain = client.get(f"/api/broadcasts/{bid}/report", headers=auth).get_json()
    assert "conversions" not in plain and plain["reach"] == 3

    one = client.get(f"/api/messages/{m['m1']}/report?goal={GOAL}", headers=auth).get_json()
    assert (one["sent"], one["reach"], one["clicks"], one["conversions"]) == (1, 1, 2, 0)
    two = client.get(f"/api/messages/{m['m2']}/report?goal={GOAL}", headers=auth).get_json()
    assert (two["reach"], two["negative"], two["conversions"]) == (1, 0, 1)

    assert (
        client.get(f"/api/broadcasts/{bid}/report?goal=bad goal", headers=auth).status_code == 422
    )
    bad = client.get(f"/api/broadcasts/{bid}/report?goal=nodot", headers=auth)
    assert bad.status_code == 422 and "goal" in str(bad.get_json())
    assert client.get(f"/api/broadcasts/{bid + 99}/report", headers=auth).status_code == 404
    assert client.get("/api/messages/999999/report", headers=auth).status_code == 404


JOURNEY = {
    "id": "report-steps",
    "name": "报告",
    "steps": [
        {"id": "t", "type": "trigger", "on": "event", "event": "oa.subscribe", "next": "hello"},
        {
            "id": "hello",
            "type": "action",
            "do": "send",
            "kind": "text",
            "payload": {"content": "你好"},
            "next": "later",
        },
        {
            "id": "later",
            "type": "action",
            "do": "send",
            "kind": "text",
            "payload": {"content": "再见"},
        },
    ],
}


def test_journey_step_stats_gain_the_send_columns(client, auth, clean):
    resp = client.post("/api/journeys", json={"definition": JOURNEY}, headers=auth)
    assert resp.status_code == 201, resp.get_json()
    jid = resp.get_json()["id"]
    assert client.post(f"/api/journeys/{jid}/publish", headers=auth).status_code == 200
    with db.session_scope(clean.database_url) as s:
        cid = _contacts(s, 1)[0]
        e = Enrollment(
            journey_id=jid,
            version=1,
            contact_id=cid,
            status="done",
            step="later",
            state={"history": ["t", "hello", "later"]},
            ended_at=utcnow(),
        )
        s.add(e)
        s.flush()
        seed_history(s, enrollment_id=e.id, step="hello")
        _message(s, cid, "failed", error_code=45047, enrollment_id=e.id, step="later")
    body = client.get(f"/api/journeys/{jid}/stats?goal={GOAL}", headers=auth).get_json()
    hello = body["steps"]["hello"]["sends"]
    assert {k: hello[k] for k in EXPECTED} == EXPECTED
    later = body["steps"]["later"]["sends"]
    assert (later["messages"], later["failed"], later["failed_by_code"]) == (1, 1, {"45047": 1})
    assert body["steps"]["hello"]["entered"] == 1  # the path counters are still there
    assert body["goal"] == GOAL
    assert client.get(f"/api/journeys/{jid}/stats?goal=x", headers=auth).status_code == 422


def test_broadcast_variants_split_contacts_and_report_per_variant(client, auth, clean):
    with db.session_scope(clean.database_url) as s:
        cids = _contacts(s, 40)
    body = {
        "name": "A/B 文案",
        "kind": "text",
        "payload": {"content": "默认"},
        "contact_ids": cids,
        "variants": [
            {"name": "短", "payload": {"content": "短 https://example.com/s"}, "percent": 30},
            {"name": "长", "payload": {"content": "长文案 https://example.com/l"}, "percent": 70},
        ],
    }
    resp = client.post("/api/broadcasts", json=body, headers=auth)
    assert resp.status_code == 202, resp.get_json()
    bid = resp.get_json()["id"]
    assert broadcasts.fan_out(clean, bid) == 40
    with db.session_scope(clean.database_url) as s:
        rows = s.execute(sa.select(Message).where(Message.broadcast_id == bid)).scalars().all()
        for m in rows:  # every variant's message is out; its first contact clicked
            m.status, m.sent_at = "sent", T
        s.flush()
        got = {m.contact_id: (m.variant, m.payload["content"]) for m in rows}
        firsts = {}
        for m in rows:
            firsts.setdefault(m.variant, m)
        for m in firsts.values():
            _click(s, m.id, m.contact_id, T + timedelta(minutes=1))
    variants = [{"percent": 30}, {"percent": 70}]
    for cid, (variant, content) in got.items():
        assert variant == broadcasts.variant_of(bid, cid, variants)
        assert content.startswith("短" if variant == 0 else "长文案")
    short = sum(1 for v, _ in got.values() if v == 0)
    assert 0 < short < 40

    report = client.get(f"/api/broadcasts/{bid}/report", headers=auth).get_json()
    assert (report["sent"], report["reach"], report["clicks"]) == (40, 2, 2)
    a, b = report["variants"]
    assert (a["name"], a["percent"], a["sent"], a["reach"]) == ("短", 30, short, 1)
    assert (b["name"], b["sent"], b["reach"]) == ("长", 40 - short, 1)


def test_broadcast_variants_are_validated(client, auth, clean):
    with db.session_scope(clean.database_url) as s:
        cids = _contacts(s, 1)

    def post(variants) -> dict:
        body = {"name": "x", "kind": "text", "payload": {"content": "x"}, "contact_ids": cids}
        resp = client.post("/api/broadcasts", json={**body, "variants": variants}, headers=auth)
        assert resp.status_code == 422, resp.get_json()
        return resp.get_json()["fields"]

    one = {"name": "a", "payload": {"content": "a"}, "percent": 50}
    assert "variants" in post([one, {**one, "name": "b", "percent": 40}])
    assert "variants" in post([one, {**one, "percent": 50}])  # the same name twice
    bad = post([one, {"name": "b", "payload": {"text": "?"}, "percent": 50}])
    assert any(k.startswith("variants[1].payload") for k in bad), bad
    assert "variants" in post([one])  # a set has two or more
