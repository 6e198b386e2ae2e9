"""Journeys end to end, past the welcome series: published versions (a contact keeps the version
it entered), pause / resume / stop and taking one contact out, every action executed (points,
fields, the rep's notification, another journey; webhooks: test_journey_webhooks.py), the
tag / score / stage triggers, and the per-step stats."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from support import run_worker

from bot.automation import wake_jobs as journey_wake_jobs
from bot.automation import wakes as journey_wakes
from bot.background.worker import BurstWorker
from bot.contacts import record as events
from bot.core import db, queue
from bot.core.models import (
    Contact,
    ContactTag,
    Enrollment,
    Event,
    Identity,
    JourneyVersion,
    Message,
    ScoreEntry,
    utcnow,
)
from bot.scoring.explain import explain
from bot.scoring.rules import DIRECT

# --- building definitions ------------------------------------------------------------------


def trigger(next_: str | None, **on: Any) -> dict:
    return {"id": "start", "type": "trigger", "event": "oa.subscribe", "next": next_, **on}


def send(sid: str, text: str, next_: str | None = None) -> dict:
    step = {"id": sid, "type": "action", "do": "send", "kind": "text"}
    return {**step, "payload": {"content": text}, "next": next_}


def wait(sid: str, duration: str, next_: str | None) -> dict:
    return {"id": sid, "type": "wait", "duration": duration, "next": next_}


def act(sid: str, do: str, next_: str | None = None, **args: Any) -> dict:
    return {"id": sid, "type": "action", "do": do, "next": next_, **args}


def journey(jid: str, *steps: dict, **extra: Any) -> dict:
    return {"id": jid, "name": jid, "steps": list(steps), **extra}


# --- the API and the database --------------------------------------------------------------


def create(client, auth, definition: dict, name: str | None = None) -> int:
    body = {"name": name or definition["id"], "definition": definition}
    resp = client.post("/api/journeys", json=body, headers=auth)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["id"]


def publish(client, auth, jid: int) -> dict:
    resp = client.post(f"/api/journeys/{jid}/publish", headers=auth)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def published(client, auth, definition: dict, name: str | None = None) -> int:
    jid = create(client, auth, definition, name)
    publish(client, auth, jid)
    return jid


def known_tags(client, auth, *tags: str) -> None:
    """Make tags known (publishing checks every tag a journey reads): a tag rule gives them."""
    rule = {"name": f"给{tags[0]}", "event_type": "crm.mark", "add_tags": list(tags)}
    assert client.post("/api/tag-rules", json=rule, headers=auth).status_code == 201


def contact_of(settings, openid: str) -> int:
    with db.session_scope(settings.database_url) as s:
        return s.execute(
            sa.select(Identity.contact_id).where(Identity.value == openid)
        ).scalar_one()


def follower(sim, settings, openid: str, scene: str | None = None) -> int:
    assert sim.follow(openid, scene=scene).status == 200
    run_worker(settings)
    return contact_of(settings, openid)


def enrollments(settings, jid: int, cid: int | None = None) -> list[Enrollment]:
    with db.session_scope(settings.database_url) as s:
        q = sa.select(Enrollment).where(Enrollment.journey_id == jid)
        if cid is not None:
            q = q.where(Enrollment.contact_id == cid)
        return list(s.execute(q.order_by(Enrollment.id)).scalars())


def events_of(settings, cid: int, type_: str) -> list[Event]:
    with db.session_scope(settings.database_url) as s:
        return list(
            s.execute(
                sa.select(Event)
                .where(Event.contact_id == cid, Event.type == type_)
                .order_by(Event.id)
            ).scalars()
        )


def contact(settings, cid: int) -> Contact:
    with db.session_scope(settings.database_url) as s:
        return s.get(Contact, cid)


def update_contact(settings, cid: int, **values: Any) -> None:
    with db.session_scope(settings.database_url) as s:
        s.execute(
            sa.update(Contact.__table__).where(Contact.__table__.c.id == cid).values(**values)
        )


def give_tag(settings, cid: int, tag: str) -> None:
    """A tag from elsewhere, straight into the table (no change noted: no trigger fires)."""
    with db.session_scope(settings.database_url) as s:
        s.add(ContactTag(contact_id=cid, tag=tag, source="manual", created_at=utcnow()))


def texts(sim, openid: str) -> list[str]:
    return [
        m["payload"]["text"]["content"]
        for m in sim.inbox(openid, kind="custom")
        if "text" in m["payload"]
    ]


def wake_later(settings, e: Enrollment) -> str:
    """Wake the enrollment as if its wait were over (the clock passed in, not Redis)."""
    assert e.wake_at is not None
    status = journey_wakes.wake(settings, e.id, e.wake_at + timedelta(minutes=1))
    run_worker(settings)
    return status


def run_due(settings) -> None:
    """The worker with rq's scheduler: due ``enqueue_at`` jobs (wakes) run too."""
    BurstWorker(queue.all_queues(settings), connection=queue.get_redis(settings)).work(
        burst=True, with_scheduler=True, logging_level="WARNING"
    )


# --- versions ------------------------------------------------------------------------------


def versioned(text: str) -> dict:
    return journey(
        "ver",
        trigger("hello"),
        send("hello", "你好", "later"),
        wait("later", "1h", "bye"),
        send("bye", text),
    )


V2_YAML = """\
id: ver
name: ver
steps:
  - id: start
    type: trigger
    event: oa.subscribe
    next: hello
  - {id: hello, type: action, do: send, kind: text, payload: {content: 你好}, next: later}
  - {id: later, type: wait, duration: 1h, next: bye}
  - id: bye
    type: action
    do: send
    kind: text
    payload:
      content: 第二版：再见
"""


def test_contacts_keep_the_version_they_entered(sim, sim_settings, sim_client, auth, env_to_sim):
    jid = create(sim_client, auth, versioned("第一版：再见"), name="版本")
    first = publish(sim_client, auth, jid)
    assert (first["version"], first["new_version"], first["status"]) == (1, True, "published")
    assert [v["version"] for v in first["versions"]] == [1]

    a = follower(sim, sim_settings, "oVerA")
    [ea] = enrollments(sim_settings, jid, a)
    assert (ea.version, ea.status, ea.step) == (1, "waiting", "later")

    # edit the draft: JSON, then YAML; nothing changes for contacts until it is published
    resp = sim_client.put(
        f"/api/journeys/{jid}", json={"definition": versioned("草稿")}, headers=auth
    )
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["version"] == 1
    resp = sim_client.put(
        f"/api/journeys/{jid}",
        data=V2_YAML.encode(),
        headers={**auth, "Content-Type": "application/yaml"},
    )
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json()["definition"]["steps"][-1]["payload"]["content"] == "第二版：再见"
    second = publish(sim_client, auth, jid)
    assert (second["version"], second["new_version"]) == (2, True)
    assert [v["version"] for v in second["versions"]] == [1, 2]

    again = publish(sim_client, auth, jid)  # the draft is the published version: no new one
    assert (again["version"], again["new_version"]) == (2, False)
    with db.session_scope(sim_settings.database_url) as s:
        stored = s.execute(
            sa.select(JourneyVersion.version, JourneyVersion.definition)
            .where(JourneyVersion.journey_id == jid)
            .order_by(JourneyVersion.version)
        ).all()
    assert [v for v, _ in stored] == [1, 2]
    assert stored[0][1]["steps"][-1]["payload"]["content"] == "第一版：再见"  # never changed

    b = follower(sim, sim_settings, "oVerB")
    [eb] = enrollments(sim_settings, jid, b)
    assert (eb.version, eb.step) == (2, "later")

    assert wake_later(sim_settings, ea) == "done"
    assert wake_later(sim_settings, eb) == "done"
    assert texts(sim, "oVerA") == ["你好", "第一版：再见"]
    assert texts(sim, "oVerB") == ["你好", "第二版：再见"]
    listed = sim_client.get(f"/api/contacts/{a}/journeys", headers=auth).get_json()
    assert [(x["version"], x["status"]) for x in listed["enrollments"]] == [(1, "done")]


def test_definition_bodies_that_are_refused(client, auth):
    jid = create(client, auth, versioned("再见"))
    yaml_headers = {**auth, "Content-Type": "application/yaml"}

    bomb = (
        "id: x\nname: x\nsteps:\n  - &s {id: start, type: trigger, event: oa.subscribe}\n  - *s\n"
    )
    resp = client.put(f"/api/journeys/{jid}", data=bomb.encode(), headers=yaml_headers)
    assert resp.status_code == 422
    assert "aliases" in resp.get_json()["error"]

    broken = "id: x\nname: x\nsteps:\n  - {id: start, type: trigger\n  - id: y\n"
    resp = client.put(f"/api/journeys/{jid}", data=broken.encode(), headers=yaml_headers)
    assert resp.status_code == 422
    assert "line " in resp.get_json()["error"]

    resp = client.put(f"/api/journeys/{jid}", data=b"- a\n- b\n", headers=yaml_headers)
    assert resp.status_code == 422

    bad = journey(
        "bad",
        trigger("pause"),
        {"id": "pause", "type": "wait", "next": "hello"},  # a wait needs a duration
        act("hello", "send", next_="nowhere", kind="text", payload={"content": "hi"}),
    )
    resp = client.put(f"/api/journeys/{jid}", json={"definition": bad}, headers=auth)
    assert resp.status_code == 422
    problems = resp.get_json()["problems"]
    assert {"pause", "hello"} <= {p["step"] for p in problems}
    assert all(p["text"] for p in problems)

    # nothing refused reached the draft
    got = client.get(f"/api/journeys/{jid}", headers=auth).get_json()
    assert got["definition"]["steps"][-1]["payload"]["content"] == "再见"

    # a YAML body creates a journey too (the name from ?name=), dates and times included
    dated = V2_YAML.replace(
        "{id: later, type: wait, duration: 1h, next: bye}",
        "{id: later, type: wait, date: 2099-01-01, at: '10:00', next: bye}",
    )
    resp = client.post("/api/journeys?name=按日期", data=dated.encode(), headers=yaml_headers)
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["name"] == "按日期"
    on_day = resp.get_json()["definition"]["steps"][2]
    assert (on_day["date"], on_day["at"]) == ("2099-01-01", "10:00")  # stored as JSON text
    created = resp.get_json()["id"]
    assert client.post(f"/api/journeys/{created}/publish", headers=auth).status_code == 200


# --- pause, resume, stop, remove ----------------------------------------------------------


@pytest.mark.parametrize("how", ["resume", "publish"])
def test_pause_holds_everything_and_resume_runs_due_wakes_once(
    how, sim, sim_settings, sim_client, auth, env_to_sim
):
    jid = published(
        sim_client,
        auth,
        journey(
            "short",
            trigger("hello"),
            send("hello", "你好", "w"),
            wait("w", "1s", "bye"),
            send("bye", "再见"),
        ),
    )
    a = follower(sim, sim_settings, "oPauseA")
    [ea] = enrollments(sim_settings, jid, a)
    assert ea.status == "waiting"

    paused = sim_client.post(f"/api/journeys/{jid}/pause", headers=auth)
    assert paused.status_code == 200 and paused.get_json()["status"] == "paused"
    b = follower(sim, sim_settings, "oPauseB")
    assert enrollments(sim_settings, jid, b) == []  # a paused journey enrolls no one
    assert texts(sim, "oPauseB") == []

    time.sleep(max(0.0, (ea.wake_at - utcnow()).total_seconds()) + 0.05)
    run_due(sim_settings)  # the wake job came due and ran: nothing moved
    assert journey_wakes.wake(sim_settings, ea.id) == "paused"
    [ea2] = enrollments(sim_settings, jid, a)
    assert (ea2.status, ea2.step) == ("waiting", "w")
    assert texts(sim, "oPauseA") == ["你好"]
    assert journey_wake_jobs.sweep(sim_settings) == 0  # not for a paused journey either

    resumed = sim_client.post(f"/api/journeys/{jid}/{how}", headers=auth)  # publish: unchanged
    assert resumed.status_code == 200
    assert (resumed.get_json()["status"], resumed.get_json()["wakes"]) == ("published", 1)
    assert resumed.get_json()["version"] == 1
    run_due(sim_settings)
    run_due(sim_settings)
    assert texts(sim, "oPauseA") == ["你好", "再见"]
    [ea3] = enrollments(sim_settings, jid, a)
    assert ea3.status == "done"
    assert journey_wakes.wake(sim_settings, ea.id) == "done"
    assert sim_client.post(f"/api/journeys/{jid}/resume", headers=auth).status_code == 409


def test_remove_one_contact_then_stop_the_journey(sim, sim_settings, sim_client, auth, env_to_sim):
    jid = published(
        sim_client,
        auth,
        journey(
            "long",
            trigger("hello"),
            send("hello", "你好", "w"),
            wait("w", "1d", "bye"),
            send("bye", "再见"),
        ),
    )
    other = published(
        sim_client, auth, journey("other", trigger("hi", event="never.happens"), send("hi", "嗨"))
    )
    a, b, c = (follower(sim, sim_settings, f"oStop{x}") for x in "ABC")

    resp = sim_client.delete(f"/api/journeys/{jid}/contacts/{a}", headers=auth)
    assert resp.status_code == 200 and resp.get_json() == {"removed": 1}
    [ea] = enrollments(sim_settings, jid, a)
    assert (ea.status, ea.reason, ea.wake_at) == ("exited", "removed by a marketer", None)
    assert sim_client.delete(f"/api/journeys/{jid}/contacts/{a}", headers=auth).status_code == 409
    assert sim_client.delete(f"/api/journeys/{other}/contacts/{b}", headers=auth).status_code == 409
    assert (
        sim_client.delete(f"/api/journeys/{jid}/contacts/999999", headers=auth).status_code == 404
    )
    assert sim_client.delete(f"/api/journeys/999999/contacts/{b}", headers=auth).status_code == 404
    assert [e.status for e in enrollments(sim_settings, jid, b)] == ["waiting"]

    resp = sim_client.post(f"/api/journeys/{jid}/stop", headers=auth)
    assert resp.status_code == 200
    assert (resp.get_json()["status"], resp.get_json()["ended"]) == ("stopped", 2)
    run_worker(sim_settings)
    for cid in (b, c):
        [e] = enrollments(sim_settings, jid, cid)
        assert (e.status, e.reason, e.wake_at) == ("exited", "journey stopped", None)
        [exited] = events_of(sim_settings, cid, "journey.exited")
        assert exited.properties["reason"] == "journey stopped"
        assert exited.processed_at is not None  # its outbox row was kicked and drained
        assert journey_wakes.wake(sim_settings, e.id, utcnow() + timedelta(days=2)) == "exited"
    [removed] = events_of(sim_settings, a, "journey.exited")
    assert removed.properties["reason"] == "removed by a marketer"
    assert removed.processed_at is not None

    follower(sim, sim_settings, "oStopD")
    assert len(enrollments(sim_settings, jid)) == 3  # a stopped journey enrolls no one
    assert sim_client.post(f"/api/journeys/{jid}/pause", headers=auth).status_code == 409
    assert sim_client.post(f"/api/journeys/{jid}/stop", headers=auth).status_code == 409
    assert all(texts(sim, f"oStop{x}") == ["你好"] for x in "ABC")


# --- actions -------------------------------------------------------------------------------


def test_add_points_becomes_a_direct_ledger_line(sim, sim_settings, sim_client, auth, env_to_sim):
    published(
        sim_client,
        auth,
        journey(
            "points", trigger("bonus"), act("bonus", "add_points", points=7, reason="新粉奖励")
        ),
    )
    cid = follower(sim, sim_settings, "oPoints")
    [ev] = events_of(sim_settings, cid, "journey.points")
    assert (ev.properties["points"], ev.properties["reason"]) == (7, "新粉奖励")
    with db.session_scope(sim_settings.database_url) as s:
        lines = s.execute(
            sa.select(ScoreEntry.rule_id, ScoreEntry.points, ScoreEntry.event_id).where(
                ScoreEntry.contact_id == cid, ScoreEntry.rule_id == DIRECT
            )
        ).all()
        explained = explain(s, cid, utcnow())
    assert [(r, p, e) for r, p, e in lines] == [(DIRECT, 7.0, ev.id)]
    assert contact(sim_settings, cid).score == 12  # 5 for following, 7 from the journey
    direct = [ln for ln in explained["lines"] if ln["rule"] == DIRECT]
    assert len(direct) == 1 and direct[0]["points"] == 7
    assert "新粉奖励" in direct[0]["reason"]

    run_worker(sim_settings)  # nothing is scored twice
    assert contact(sim_settings, cid).score == 12


def test_set_field_is_kept_and_read_by_a_later_condition(
    sim, sim_settings, sim_client, auth, env_to_sim
):
    jid = published(
        sim_client,
        auth,
        journey(
            "city",
            trigger("remember"),
            act("remember", "set_field", next_="later", field="city", value="上海"),
            wait("later", "1h", "where"),
            {
                "id": "where",
                "type": "condition",
                "if": {"field": "city", "is": {"eq": "上海"}},
                "yes": "local",
                "no": "elsewhere",
            },
            send("local", "上海的朋友你好"),
            send("elsewhere", "外地的朋友你好"),
        ),
    )
    a = follower(sim, sim_settings, "oCityA")
    b = follower(sim, sim_settings, "oCityB")
    assert contact(sim_settings, a).fields == {"city": "上海"}
    [field_event] = events_of(sim_settings, a, "journey.field")
    assert (field_event.properties["field"], field_event.properties["value"]) == ("city", "上海")
    update_contact(sim_settings, b, fields={"city": "北京", "size": 10})  # moved meanwhile

    for cid in (a, b):
        [e] = enrollments(sim_settings, jid, cid)
        assert wake_later(sim_settings, e) == "done"
    assert texts(sim, "oCityA") == ["上海的朋友你好"]
    assert texts(sim, "oCityB") == ["外地的朋友你好"]
    assert contact(sim_settings, b).fields == {"city": "北京", "size": 10}


def test_notify_rep_messages_the_owner_or_records_why_not(
    sim, sim_settings, sim_client, auth, env_to_sim
):
    jid = published(
        sim_client,
        auth,
        journey(
            "notify",
            trigger("later"),
            wait("later", "1h", "tell"),
            act("tell", "notify_rep", note="{{contact.name|这位客户}}关注一小时了，跟进一下"),
        ),
    )
    sim.add_rep("wang", name="王经理")
    owned = follower(sim, sim_settings, "oOwned")
    orphan = follower(sim, sim_settings, "oOrphan")
    update_contact(sim_settings, owned, owner_userid="wang", name="李女士")

    for cid in (owned, orphan):
        [e] = enrollments(sim_settings, jid, cid)
        assert wake_later(sim_settings, e) == "done"
    [card] = sim.inbox(userid="wang")
    assert card["payload"]["msgtype"] == "text"
    assert "李女士" in card["payload"]["text"]["content"]
    assert "跟进一下" in card["payload"]["text"]["content"]
    with db.session_scope(sim_settings.database_url) as s:
        [m] = s.execute(sa.select(Message).where(Message.kind == "wecom_text")).scalars()
    assert (m.to_user, m.status) == ("wang", "sent")
    assert len(events_of(sim_settings, owned, "journey.notify_rep")) == 1
    assert events_of(sim_settings, owned, "journey.notify_failed") == []
    [failed] = events_of(sim_settings, orphan, "journey.notify_failed")
    assert failed.properties["step"] == "tell" and failed.properties["error"]


def test_enter_journey_starts_the_other_one(sim, sim_settings, sim_client, auth, env_to_sim):
    nurture = published(
        sim_client,
        auth,
        journey("nurture", trigger("hi", event="never.happens"), send("hi", "欢迎进入培育")),
        name="培育",
    )
    main = published(
        sim_client,
        auth,
        journey(
            "main",
            trigger("go"),
            act("go", "enter_journey", next_="missing", journey="培育"),
            act("missing", "enter_journey", journey="没有这个"),
        ),
    )
    cid = follower(sim, sim_settings, "oEnter")
    [m] = enrollments(sim_settings, main, cid)
    [n] = enrollments(sim_settings, nurture, cid)
    assert m.status == "done"
    assert (n.status, n.version, n.start_event_id) == ("done", 1, None)
    assert n.state["history"] == ["start", "hi"]
    assert texts(sim, "oEnter") == ["欢迎进入培育"]
    [entered] = events_of(sim_settings, cid, "journey.enter")
    assert entered.properties["journey"] == "培育"
    [failed] = events_of(sim_settings, cid, "journey.enter_failed")
    assert failed.properties["journey"] == "没有这个"


# --- triggers on changes -------------------------------------------------------------------


def test_tag_added_by_a_journey_or_a_tag_rule_starts_a_journey(
    sim, sim_settings, sim_client, client, auth, env_to_sim
):
    rule = {
        "name": "海报关注",
        "event_type": "oa.subscribe",
        "conditions": {"scene": {"prefix": "poster_"}},
        "add_tags": ["来源:海报"],
    }
    assert client.post("/api/tag-rules", json=rule, headers=auth).status_code == 201
    tagger = published(
        sim_client,
        auth,
        journey(
            "tagger",
            trigger("tag", conditions={"scene": {"prefix": "vip_"}}),
            act("tag", "add_tag", tag="VIP"),
        ),
    )
    vip = published(
        sim_client,
        auth,
        journey(
            "vip",
            {"id": "start", "type": "trigger", "on": "tag_added", "tag": "VIP", "next": "hi"},
            send("hi", "尊贵的VIP你好"),
        ),
    )
    poster = published(
        sim_client,
        auth,
        journey(
            "poster",
            {"id": "start", "type": "trigger", "on": "tag_added", "tag": "来源:海报", "next": "hi"},
            send("hi", "海报来的朋友你好"),
        ),
    )

    a = follower(sim, sim_settings, "oVip", scene="vip_1")
    b = follower(sim, sim_settings, "oPoster", scene="poster_1")
    c = follower(sim, sim_settings, "oPlain")
    assert [e.contact_id for e in enrollments(sim_settings, vip)] == [a]
    assert [e.contact_id for e in enrollments(sim_settings, poster)] == [b]
    assert texts(sim, "oVip") == ["尊贵的VIP你好"]
    assert texts(sim, "oPoster") == ["海报来的朋友你好"]
    assert texts(sim, "oPlain") == []
    assert c not in (a, b)
    # The journey's tag is on the timeline: its step, and the follow that moved the journey.
    with db.session_scope(sim_settings.database_url) as s:
        e = Event.__table__.c
        follow = s.execute(
            sa.select(e.id).where(e.contact_id == a, e.type == "oa.subscribe")
        ).scalar_one()
        [added] = s.execute(
            sa.select(e.properties).where(e.contact_id == a, e.type == "tag.added")
        ).scalars()
    assert added == {
        "tag": "VIP",
        "source": "journey",
        "actor": f"journey:{tagger}:tag",
        "cause_event_id": follow,
    }


def test_score_and_stage_triggers(sim, sim_settings, sim_client, auth, env_to_sim):
    scored = published(
        sim_client,
        auth,
        journey(
            "hot",
            {"id": "start", "type": "trigger", "on": "score", "score_gte": 20, "next": "hi"},
            send("hi", "你的得分很高"),
        ),
    )
    staged = published(
        sim_client,
        auth,
        journey(
            "lead",
            {"id": "start", "type": "trigger", "on": "stage", "stage": "lead", "next": "hi"},
            send("hi", "你成为了线索"),
        ),
    )
    customer = published(
        sim_client,
        auth,
        journey(
            "customer",
            {"id": "start", "type": "trigger", "on": "stage", "stage": "customer", "next": "hi"},
            send("hi", "感谢购买"),
        ),
    )
    published(
        sim_client,
        auth,
        journey(
            "boost",
            trigger("bonus", conditions={"scene": {"prefix": "hot_"}}),
            act("bonus", "add_points", points=20, reason="热门海报"),
        ),
    )
    published(
        sim_client,
        auth,
        journey(
            "buyer",
            trigger("bought", conditions={"scene": {"prefix": "buy_"}}),
            act("bought", "set_stage", stage="customer"),
        ),
    )
    hot = follower(sim, sim_settings, "oHot", scene="hot_1")  # 5 + 20: crosses 20, lead
    cold = follower(sim, sim_settings, "oCold")  # 5: neither
    buyer = follower(sim, sim_settings, "oBuyer", scene="buy_1")  # 5, then customer

    assert contact(sim_settings, hot).score == 25 and contact(sim_settings, hot).stage == "lead"
    assert [e.contact_id for e in enrollments(sim_settings, scored)] == [hot]
    assert [e.contact_id for e in enrollments(sim_settings, staged)] == [hot]
    assert [e.contact_id for e in enrollments(sim_settings, customer)] == [buyer]
    assert sorted(texts(sim, "oHot")) == sorted(["你的得分很高", "你成为了线索"])
    assert texts(sim, "oCold") == []
    assert texts(sim, "oBuyer") == ["感谢购买"]
    assert contact(sim_settings, cold).score == 5

    # the score moving further up (25 -> 45) is no new crossing; entry once anyway
    with db.session_scope(sim_settings.database_url) as s:
        events.append(s, hot, "journey.points", {"points": 20, "reason": "再来"}, "extra:1")
    queue.kick_outbox(sim_settings)
    run_worker(sim_settings)
    assert contact(sim_settings, hot).score == 45
    assert len(enrollments(sim_settings, scored)) == 1


def test_score_trigger_on_the_first_scored_event(sim, sim_settings, sim_client, auth, env_to_sim):
    low = published(
        sim_client,
        auth,
        journey(
            "low",
            {"id": "start", "type": "trigger", "on": "score", "score_gte": 5, "next": "hi"},
            send("hi", "你好"),
        ),
    )
    cid = follower(sim, sim_settings, "oLow")  # 0 -> 5 by following
    assert contact(sim_settings, cid).score == 5
    assert [e.contact_id for e in enrollments(sim_settings, low)] == [cid]


# --- stats ---------------------------------------------------------------------------------


def branching() -> dict:
    return journey(
        "branching",
        trigger("later"),
        wait("later", "1h", "vip"),
        {"id": "vip", "type": "condition", "if": {"tag": "VIP"}, "yes": "gold", "no": "plain"},
        send("gold", "VIP 专享"),
        send("plain", "普通问候"),
        goal={"tag": "已购买"},
    )


def test_stats_count_how_contacts_went(sim, sim_settings, sim_client, auth, env_to_sim):
    known_tags(sim_client, auth, "VIP", "已购买")
    jid = create(sim_client, auth, branching())
    resp = sim_client.get(f"/api/journeys/{jid}/stats", headers=auth)
    assert resp.status_code == 409  # never published
    publish(sim_client, auth, jid)

    vip, plain, waiting, buyer, removed = (
        follower(sim, sim_settings, f"oStats{i}") for i in range(5)
    )
    give_tag(sim_settings, vip, "VIP")
    give_tag(sim_settings, buyer, "已购买")
    for cid in (vip, plain, buyer):
        [e] = enrollments(sim_settings, jid, cid)
        wake_later(sim_settings, e)
    assert (
        sim_client.delete(f"/api/journeys/{jid}/contacts/{removed}", headers=auth).status_code
        == 200
    )

    resp = sim_client.get(f"/api/journeys/{jid}/stats", headers=auth)
    assert resp.status_code == 200, resp.get_json()
    got = resp.get_json()
    assert (got["journey_id"], got["version"], got["versions"]) == (jid, 1, [1])
    steps = got["steps"]
    assert set(steps) == {"start", "later", "vip", "gold", "plain"}
    assert steps["start"] == {
        "entered": 5,
        "waiting": 0,
        "passed": 5,
        "failed": 0,
        "exited": 0,
        "converted": 0,
        "branches": {},
    }
    later = steps["later"]
    assert (later["entered"], later["waiting"], later["passed"]) == (5, 1, 2)
    assert (later["exited"], later["converted"], later["failed"]) == (1, 1, 0)
    assert steps["vip"]["entered"] == 2 and steps["vip"]["passed"] == 2
    assert steps["vip"]["branches"] == {"gold": 1, "plain": 1}
    assert (steps["gold"]["entered"], steps["gold"]["passed"]) == (1, 1)
    assert (steps["plain"]["entered"], steps["plain"]["passed"]) == (1, 1)
    assert got["totals"] == {
        "enrolled": 5,
        "open": 1,
        "done": 2,
        "exited": 1,
        "converted": 1,
        "failed": 0,
        "conversion_rate": 0.2,
    }

    # a message of the step that could not be delivered counts as failed there
    with db.session_scope(sim_settings.database_url) as s:
        s.execute(
            sa.update(Message.__table__)
            .where(Message.__table__.c.contact_id == vip)
            .values(status="failed")
        )
    again = sim_client.get(f"/api/journeys/{jid}/stats", headers=auth).get_json()
    assert again["steps"]["gold"]["failed"] == 1
    assert again["steps"]["plain"]["failed"] == 0 and again["totals"]["failed"] == 0

    # a second version: counted on its own, the first still there with ?version=1
    changed = branching()
    changed["steps"][3]["payload"]["content"] = "VIP 专享（新）"
    assert (
        sim_client.put(
            f"/api/journeys/{jid}", json={"definition": changed}, headers=auth
        ).status_code
        == 200
    )
    publish(sim_client, auth, jid)
    follower(sim, sim_settings, "oStats5")
    v2 = sim_client.get(f"/api/journeys/{jid}/stats", headers=auth).get_json()
    assert (v2["version"], v2["versions"], v2["totals"]["enrolled"]) == (2, [1, 2], 1)
    assert v2["steps"]["later"]["waiting"] == 1
    v1 = sim_client.get(f"/api/journeys/{jid}/stats?version=1", headers=auth).get_json()
    assert v1["totals"] == got["totals"] and v1["steps"] == again["steps"]
    assert sim_client.get(f"/api/journeys/{jid}/stats?version=9", headers=auth).status_code == 404
    assert sim_client.get(f"/api/journeys/{jid}/stats?version=x", headers=auth).status_code == 422
    assert sim_client.get("/api/journeys/999999/stats", headers=auth).status_code == 404
