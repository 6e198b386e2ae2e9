"""Handoff to sales through the simulator: who gets the lead, the rep's notification,
accept/return, escalation and a rep leaving."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from support import run_worker

from bot.contacts import record as events
from bot.core import db, queue
from bot.core.models import Contact, Event, Identity, LeadAssignment, Rep, utcnow
from bot.sales import handoff


def reps(sim, settings, *people: tuple[str, str]) -> None:
    with db.session_scope(settings.database_url) as s:
        for userid, name in people:
            sim.add_rep(userid, name=name)
            s.add(Rep(userid=userid, name=name, active=True, capacity=10, synced_at=utcnow()))


def follower(sim, settings, openid: str) -> int:
    sim.follow(openid)
    with db.session_scope(settings.database_url) as s:
        return s.execute(
            sa.select(Identity.contact_id).where(Identity.value == openid)
        ).scalar_one()


def becomes_mql(settings, contact_id: int) -> None:
    with db.session_scope(settings.database_url) as s:
        s.execute(
            sa.update(Contact.__table__)
            .where(Contact.__table__.c.id == contact_id)
            .values(stage="mql", score=55, name=f"客户{contact_id}")
        )
        events.append(
            s,
            contact_id,
            "contact.stage_changed",
            {"from": "lead", "to": "mql", "score": 55},
            f"test-mql-{contact_id}",
        )
    queue.kick_outbox(settings)
    run_worker(settings)


def leads(settings, **where) -> list[LeadAssignment]:
    with db.session_scope(settings.database_url) as s:
        query = sa.select(LeadAssignment).order_by(LeadAssignment.id)
        for key, value in where.items():
            query = query.where(getattr(LeadAssignment, key) == value)
        return list(s.execute(query).scalars())


def test_the_rep_who_has_them_gets_the_lead_and_a_notification(
    sim, sim_settings, env_to_sim, sim_client, auth
):
    reps(sim, sim_settings, ("zhang", "张三"), ("wang", "王五"))
    sim.add_external_contact("wang", "wmLEAD", name="刘女士")
    run_worker(sim_settings)
    with db.session_scope(sim_settings.database_url) as s:
        cid = s.execute(
            sa.select(Identity.contact_id).where(Identity.value == "wmLEAD")
        ).scalar_one()
    becomes_mql(sim_settings, cid)
    [lead] = leads(sim_settings)
    assert (lead.userid, lead.status) == (
        "wang",
        "assigned",
    ) and "already their WeCom contact" in lead.reason
    with db.session_scope(sim_settings.database_url) as s:
        assert s.get(Contact, cid).owner_userid == "wang"
        assert s.execute(
            sa.select(Event.id).where(Event.contact_id == cid, Event.type == "lead.assigned")
        ).first()
    run_worker(sim_settings)  # the notification message
    [card] = sim.inbox(userid="wang")
    assert card["payload"]["textcard"]["title"].startswith("新线索：")
    assert "分数" in card["payload"]["textcard"]["description"]
    assert card["payload"]["textcard"]["url"].endswith(f"/sidebar/leads/{lead.id}")
    body = sim_client.get("/api/leads?owner=wang&status=assigned", headers=auth).get_json()
    assert [(x["contact_id"], x["owner"]) for x in body["leads"]] == [(cid, "wang")]
    assert sim_client.get("/api/leads?status=bogus", headers=auth).status_code == 422


def test_round_robin_then_accept_and_return(sim, sim_settings, env_to_sim, sim_client, auth):
    reps(sim, sim_settings, ("a_rep", "甲"), ("b_rep", "乙"))
    cids = [follower(sim, sim_settings, f"oRR{i}") for i in range(4)]
    for cid in cids:
        becomes_mql(sim_settings, cid)
    owners = [lead.userid for lead in leads(sim_settings)]
    assert sorted(owners) == ["a_rep", "a_rep", "b_rep", "b_rep"]  # fewest open leads first

    first = leads(sim_settings)[0]
    wrong = "b_rep" if first.userid == "a_rep" else "a_rep"
    assert (
        sim_client.post(
            f"/api/leads/{first.id}/accept", json={"userid": wrong}, headers=auth
        ).status_code
        == 409
    )
    ok = sim_client.post(
        f"/api/leads/{first.id}/accept", json={"userid": first.userid}, headers=auth
    )
    assert ok.status_code == 200 and ok.get_json()["status"] == "accepted"
    assert (
        sim_client.post(
            f"/api/leads/{first.id}/accept", json={"userid": first.userid}, headers=auth
        ).status_code
        == 409
    )

    second = leads(sim_settings)[1]
    back = sim_client.post(
        f"/api/leads/{second.id}/return",
        json={"userid": second.userid, "note": "不是我的区域", "reason": "联系不上"},
        headers=auth,
    )
    assert back.status_code == 200 and back.get_json()["status"] == "returned"
    [again] = leads(sim_settings, contact_id=second.contact_id, status="assigned")
    assert again.userid != second.userid
    assert (
        sim_client.post("/api/leads/9999/accept", json={"userid": "x"}, headers=auth).status_code
        == 404
    )
    assert (
        sim_client.post(f"/api/leads/{first.id}/accept", json={}, headers=auth).status_code == 422
    )


def test_unanswered_leads_escalate(sim, sim_settings, env_to_sim):
    reps(sim, sim_settings, ("slow", "慢"), ("fast", "快"))
    cid = follower(sim, sim_settings, "oESC")
    becomes_mql(sim_settings, cid)
    [lead] = leads(sim_settings)
    assert handoff.escalate_due(sim_settings) == 0  # not yet
    assert handoff.escalate_due(sim_settings, now=utcnow() + timedelta(hours=5)) == 1
    statuses = {(x.userid, x.status) for x in leads(sim_settings)}
    other = "fast" if lead.userid == "slow" else "slow"
    assert statuses == {(lead.userid, "escalated"), (other, "assigned")}


def test_a_rep_leaves_and_an_heir_inherits(sim, sim_settings, env_to_sim, sim_client, auth):
    reps(sim, sim_settings, ("leaver", "离职的"), ("heir", "接手的"))
    cids = [follower(sim, sim_settings, f"oLV{i}") for i in range(2)]
    with db.session_scope(sim_settings.database_url) as s:
        for cid in cids:
            s.execute(
                sa.update(Contact.__table__)
                .where(Contact.__table__.c.id == cid)
                .values(owner_userid="leaver")
            )
            s.add(LeadAssignment(contact_id=cid, userid="leaver", reason="test"))
    resp = sim_client.post("/api/reps/leaver/leave", json={"to": "heir"}, headers=auth)
    assert resp.status_code == 200 and len(resp.get_json()["moved"]) == 2
    with db.session_scope(sim_settings.database_url) as s:
        assert {s.get(Contact, cid).owner_userid for cid in cids} == {"heir"}
        assert not s.get(Rep, "leaver").active
        assert len(s.execute(sa.select(Event.id).where(Event.type == "lead.reassigned")).all()) == 2
    assert {x.status for x in leads(sim_settings, userid="leaver")} == {"reassigned"}
    assert sim_client.post("/api/reps/nobody/leave", json={}, headers=auth).status_code == 404
    assert (
        sim_client.post("/api/reps/heir/leave", json={"to": "leaver"}, headers=auth).status_code
        == 409
    )
    names = [r["userid"] for r in sim_client.get("/api/reps", headers=auth).get_json()["reps"]]
    assert names == ["heir", "leaver"]
    changed = sim_client.put("/api/reps/heir", json={"capacity": 3}, headers=auth)
    assert changed.status_code == 200 and changed.get_json()["capacity"] == 3
    assert sim_client.put("/api/reps/heir", json={"capacity": -1}, headers=auth).status_code == 422
    assert (
        sim_client.put("/api/reps/ghost", json={"active": False}, headers=auth).status_code == 404
    )
