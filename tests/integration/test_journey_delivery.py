"""A journey's messages go through the messaging service's rules: a touch that comes due in
quiet hours is moved to their end, not dropped; a reply to the contact's own message is not
held back by them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from fixtures import journey_definition
from support import run_worker

from bot.automation import wakes as journey_wakes
from bot.core import db
from bot.core.models import Contact, Enrollment, Identity, Message

TOUCH = journey_definition("quiet_hours_touch")


def quiet_around_now() -> str:
    local = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai"))
    start, end = local - timedelta(hours=1), local + timedelta(hours=1)
    return f"{start:%H:%M}-{end:%H:%M}"


def test_a_touch_due_in_quiet_hours_is_moved_not_dropped(
    sim, sim_settings, sim_client, auth, env_to_sim, monkeypatch
):
    monkeypatch.setenv("YUCHI_QUIET_HOURS", quiet_around_now())
    resp = sim_client.post(
        "/api/journeys", json={"name": "触达", "definition": TOUCH}, headers=auth
    )
    jid = resp.get_json()["id"]
    assert sim_client.post(f"/api/journeys/{jid}/publish", headers=auth).status_code == 200
    sim.follow("oQuiet")
    run_worker(sim_settings)
    with db.session_scope(sim_settings.database_url) as s:
        cid = s.execute(
            sa.select(Identity.contact_id).where(Identity.value == "oQuiet")
        ).scalar_one()
        # they followed a while ago: not in a conversation any more, still inside 48 hours
        s.execute(
            sa.update(Contact)
            .where(Contact.id == cid)
            .values(last_interaction_at=datetime.now(UTC) - timedelta(hours=2))
        )
        e = s.execute(sa.select(Enrollment).where(Enrollment.contact_id == cid)).scalar_one()
        eid, due = e.id, e.wake_at
    assert journey_wakes.wake(sim_settings, eid, now=due + timedelta(seconds=1)) == "done"
    run_worker(sim_settings)
    with db.session_scope(sim_settings.database_url) as s:
        [m] = s.execute(sa.select(Message).where(Message.contact_id == cid)).scalars()
        assert m.marketing is True
        assert m.status == "scheduled"
        assert m.not_before is not None and m.not_before > datetime.now(UTC) + timedelta(minutes=50)
    assert sim.inbox("oQuiet", kind="custom") == []


def test_an_answer_to_the_contacts_own_message_ignores_quiet_hours(
    sim, sim_settings, sim_client, auth, env_to_sim, monkeypatch
):
    monkeypatch.setenv("YUCHI_QUIET_HOURS", quiet_around_now())
    resp = sim_client.post("/api/journeys", json={"library": "bant"}, headers=auth)
    jid = resp.get_json()["id"]
    sim_client.post(f"/api/journeys/{jid}/publish", headers=auth)
    sim.follow("oNight", scene="lead_night")
    run_worker(sim_settings)
    [question] = sim.inbox("oNight", kind="custom")  # in answer to their follow
    assert "预算" in question["payload"]["text"]["content"]


REPLY = journey_definition("await_reply")


def test_answers_made_in_the_background_go_out_from_the_drain_itself(
    sim, sim_settings, sim_client, auth, env_to_sim
):
    from bot.background import jobs
    from bot.core import queue

    resp = sim_client.post(
        "/api/journeys", json={"name": "reply", "definition": REPLY}, headers=auth
    )
    assert resp.status_code == 201, resp.get_json()
    sim_client.post(f"/api/journeys/{resp.get_json()['id']}/publish", headers=auth)
    sim_client.post("/api/journeys", json={"library": "welcome"}, headers=auth)
    welcome = sim_client.get("/api/journeys", headers=auth).get_json()["journeys"][-1]["id"]
    sim_client.post(f"/api/journeys/{welcome}/publish", headers=auth)

    # the follow is processed by the drain (what the urgent worker runs); the welcome it makes
    # answers the follow, so the drain delivers it itself: no delivery job
    assert sim.follow("oInline").status == 200
    assert jobs.drain_outbox() >= 1
    [first] = sim.inbox("oInline", kind="custom")
    assert "欢迎关注鱼池" in first["payload"]["text"]["content"]
    urgent = queue.get_queue(sim_settings, queue.URGENT)
    assert not [j for j in urgent.jobs if "deliver" in j.func_name]

    # their text ends the wait in the background too (only questions are answered inside the
    # callback): the drain delivers the answer itself
    said = sim.say("oInline", "你好")
    assert said.status == 200 and said.reply is None
    assert jobs.drain_outbox() >= 1
    got = [m["payload"]["text"]["content"] for m in sim.inbox("oInline", kind="custom")]
    assert got[1:] == ["收到，顾问马上联系您"]
    assert not [j for j in urgent.jobs if "deliver" in j.func_name]
    run_worker(sim_settings)
    assert len(sim.inbox("oInline", kind="custom")) == 2  # nothing sent twice


def test_a_long_delivery_batch_hands_the_rest_on(sim, sim_settings, env_to_sim, monkeypatch):
    from bot.background import jobs
    from bot.core import queue
    from bot.messaging import outbox as messaging
    from bot.messaging.payloads import SendRequest

    for i in range(3):
        sim.follow(f"oSlice{i}")
    run_worker(sim_settings)
    with db.session_scope(sim_settings.database_url) as s:
        cids = list(s.execute(sa.select(Contact.id).order_by(Contact.id)).scalars())
        rows = [
            messaging.new_message_row(
                SendRequest.model_validate(
                    {"kind": "text", "payload": {"content": "你好"}, "contact_id": cid}
                )
            )
            for cid in cids
        ]
        ids = messaging.insert_messages(s, rows)
    monkeypatch.setattr(jobs, "DELIVERY_SLICE", 0.0)  # every message past the first is "late"
    assert jobs.deliver_messages(ids) == {"sent": 1, "handed_on": 2}
    [job] = queue.get_queue(sim_settings, queue.BULK).jobs
    assert job.args == (ids[1:],)
    run_worker(sim_settings)
    assert sum(len(sim.inbox(f"oSlice{i}", kind="custom")) for i in range(3)) == 3
