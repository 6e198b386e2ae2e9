"""Issue 20: a returned lead says why; the reason decides what follows (nurture, the next
rep, disqualified), a rep who returned a contact is not handed it again within the cool-down,
and the lead-quality report counts a seeded history."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
import yaml
from support import run_worker
from test_handoff import becomes_mql, follower, leads, reps

from bot.contacts import record as events
from bot.core import db, queue
from bot.core.models import (
    Channel,
    Contact,
    ContactTag,
    Enrollment,
    Event,
    Journey,
    LeadAssignment,
    Message,
    utcnow,
)
from bot.sales import handoff, returns

FIXTURES = __import__("pathlib").Path(__file__).resolve().parent.parent / "fixtures" / "journeys"

RULES = {
    "events": [
        {"id": "follow", "event": "oa.subscribe", "points": 5},
        {
            "id": "not_a_target",
            "event": "lead.returned",
            "conditions": {"reason": {"eq": "非目标客户"}},
            "points": -30,
        },
    ],
    "decay": {"half_life_days": 14},
    "stages": {"lead": 20, "mql": 40, "sql": 80},
}


def contact(settings, cid: int) -> Contact:
    with db.session_scope(settings.database_url) as s:
        return s.get(Contact, cid)


def events_of(settings, cid: int, type_: str) -> list[dict]:
    with db.session_scope(settings.database_url) as s:
        return [
            p
            for p in s.execute(
                sa.select(Event.properties)
                .where(Event.contact_id == cid, Event.type == type_)
                .order_by(Event.id)
            ).scalars()
        ]


def give_back(client, auth, lead: LeadAssignment, **body):
    return client.post(
        f"/api/leads/{lead.id}/return", json={"userid": lead.userid, **body}, headers=auth
    )


def test_the_reasons_are_seeded_and_managed_through_the_api(client, auth):
    got = client.get("/api/lead-return-reasons", headers=auth).get_json()["reasons"]
    assert [r["label"] for r in got] == [
        "预算不足",
        "时机未到",
        "联系不上",
        "非决策人",
        "非目标客户",
        "其他",
    ]
    outcomes = {r["label"]: (r["outcome"], r["nurture_stage"], r["note_required"]) for r in got}
    assert outcomes["时机未到"] == ("nurture", "lead", False)
    assert outcomes["非目标客户"] == ("disqualify", None, False)
    assert outcomes["其他"] == ("reassign", None, True)

    new = client.post(
        "/api/lead-return-reasons",
        json={"label": "竞品客户", "outcome": "nurture", "nurture_stage": "subscriber"},
        headers=auth,
    )
    assert new.status_code == 201 and new.get_json()["nurture_stage"] == "subscriber"
    rid = new.get_json()["id"]
    again = client.post(
        "/api/lead-return-reasons", json={"label": "竞品客户", "outcome": "reassign"}, headers=auth
    )
    assert again.status_code == 422 and "label" in again.get_json()["fields"]
    bad = client.post(
        "/api/lead-return-reasons", json={"label": "x", "outcome": "shrug"}, headers=auth
    )
    assert bad.status_code == 422 and "outcome" in bad.get_json()["fields"]
    assert client.post("/api/lead-return-reasons", json=[], headers=auth).status_code == 422
    changed = client.put(
        f"/api/lead-return-reasons/{rid}",
        json={"label": "竞品客户", "outcome": "disqualify", "nurture_stage": "lead"},
        headers=auth,
    )
    assert changed.status_code == 200
    assert (changed.get_json()["outcome"], changed.get_json()["nurture_stage"]) == (
        "disqualify",
        None,
    )
    assert client.get(f"/api/lead-return-reasons/{rid}", headers=auth).status_code == 200
    assert client.delete(f"/api/lead-return-reasons/{rid}", headers=auth).status_code == 204
    assert client.get(f"/api/lead-return-reasons/{rid}", headers=auth).status_code == 404
    assert client.delete(f"/api/lead-return-reasons/{rid}", headers=auth).status_code == 404
    assert len(client.get("/api/lead-return-reasons", headers=auth).get_json()["reasons"]) == 6


def publish(client, auth) -> None:
    resp = client.post("/api/scoring/rulesets", json=RULES, headers=auth)
    assert resp.status_code == 201, resp.get_json()
    definition = yaml.safe_load((FIXTURES / "re_engage.yaml").read_text(encoding="utf-8"))
    resp = client.post("/api/journeys", json={"definition": definition}, headers=auth)
    assert resp.status_code == 201, resp.get_json()
    jid = resp.get_json()["id"]
    assert client.post(f"/api/journeys/{jid}/publish", headers=auth).status_code == 200


def test_timing_goes_back_to_nurture_and_triggers_the_journey_once(
    sim, sim_settings, env_to_sim, sim_client, auth
):
    reps(sim, sim_settings, ("zhao", "赵"))
    publish(sim_client, auth)
    cid = follower(sim, sim_settings, "oNurture")
    becomes_mql(sim_settings, cid)
    [lead] = leads(sim_settings)
    assert give_back(sim_client, auth, lead).status_code == 422  # a return says why
    assert give_back(sim_client, auth, lead, reason="不存在").status_code == 422
    resp = give_back(sim_client, auth, lead, reason="时机未到", note="明年再说")
    assert resp.status_code == 200, resp.get_json()
    assert (resp.get_json()["return_reason"], resp.get_json()["return_note"]) == (
        "时机未到",
        "明年再说",
    )
    assert give_back(sim_client, auth, lead, reason="时机未到").status_code == 409
    run_worker(sim_settings)
    run_worker(sim_settings)

    c = contact(sim_settings, cid)
    assert (c.stage, c.stage_manual, c.owner_userid) == ("lead", False, None)
    [returned] = events_of(sim_settings, cid, "lead.returned")
    assert (returned["reason"], returned["outcome"], returned["note"]) == (
        "时机未到",
        "nurture",
        "明年再说",
    )
    assert events_of(sim_settings, cid, "contact.stage_changed")[-1]["to"] == "lead"
    assert [x.status for x in leads(sim_settings)] == ["returned"]  # no next rep
    with db.session_scope(sim_settings.database_url) as s:
        [enrollment] = s.execute(
            sa.select(Enrollment).where(Enrollment.contact_id == cid)
        ).scalars()
        assert enrollment.status == "waiting" and enrollment.wake_at > utcnow() + timedelta(days=89)
        tags = set(
            s.execute(sa.select(ContactTag.tag).where(ContactTag.contact_id == cid)).scalars()
        )
    assert "再培育" in tags


def test_unreachable_goes_to_the_next_rep(sim, sim_settings, env_to_sim, sim_client, auth):
    reps(sim, sim_settings, ("qian", "钱"), ("sun", "孙"))
    cid = follower(sim, sim_settings, "oReassign")
    becomes_mql(sim_settings, cid)
    [lead] = leads(sim_settings)
    resp = give_back(sim_client, auth, lead, reason_id=_reason_id(sim_settings, "联系不上"))
    assert resp.status_code == 200
    other = "sun" if lead.userid == "qian" else "qian"
    assert [(x.userid, x.status) for x in leads(sim_settings)] == [
        (lead.userid, "returned"),
        (other, "assigned"),
    ]
    assert contact(sim_settings, cid).owner_userid == other
    other_lead = leads(sim_settings, status="assigned")[0]
    # 其他 needs the rep's own words
    assert give_back(sim_client, auth, other_lead, reason="其他").status_code == 422
    assert (
        give_back(sim_client, auth, other_lead, reason="其他", note="客户出国").status_code == 200
    )
    run_worker(sim_settings)
    assert len(sim.inbox(userid=other)) == 1  # the new owner's lead card


def _reason_id(settings, label: str) -> int:
    with db.session_scope(settings.database_url) as s:
        return returns.find_reason(s, label).id


def test_not_a_target_is_disqualified_and_marketing_stops(
    sim, sim_settings, env_to_sim, sim_client, auth
):
    reps(sim, sim_settings, ("li", "李"))
    publish(sim_client, auth)
    cid = follower(sim, sim_settings, "oDisq")
    becomes_mql(sim_settings, cid)
    score_before = contact(sim_settings, cid).score
    [lead] = leads(sim_settings)
    assert give_back(sim_client, auth, lead, reason="非目标客户").status_code == 200
    run_worker(sim_settings)
    c = contact(sim_settings, cid)
    assert (c.stage, c.stage_manual, c.owner_userid) == ("disqualified", True, None)
    assert c.score == score_before - 30  # the score rule on lead.returned
    assert len(leads(sim_settings)) == 1  # nobody else gets them

    sends = {}
    for marketing in (True, False):
        resp = sim_client.post(
            "/api/messages",
            json={
                "kind": "text",
                "contact_id": cid,
                "payload": {"content": "新品上市" if marketing else "您的订单已发货"},
                "marketing": marketing,
            },
            headers=auth,
        )
        assert resp.status_code == 201
        sends[marketing] = resp.get_json()["id"]
    run_worker(sim_settings)
    with db.session_scope(sim_settings.database_url) as s:
        marketing, service = s.get(Message, sends[True]), s.get(Message, sends[False])
        assert (marketing.status, marketing.error_message) == ("skipped", "contact is disqualified")
        assert service.status == "sent"
    assert [m["payload"]["text"]["content"] for m in sim.inbox("oDisq", kind="custom")] == [
        "您的订单已发货"
    ]


def test_a_requalified_contact_skips_the_rep_who_returned_it_during_the_cool_down(
    sim, sim_settings, env_to_sim, sim_client, auth
):
    reps(sim, sim_settings, ("zhou", "周"), ("wu", "吴"))
    sim.add_external_contact("zhou", "wmCOOL", name="郑先生")  # zhou is their WeCom contact
    run_worker(sim_settings)
    cid = follower_by_external(sim_settings, "wmCOOL")
    becomes_mql(sim_settings, cid)
    [first] = leads(sim_settings)
    assert first.userid == "zhou"
    assert give_back(sim_client, auth, first, reason="预算不足").status_code == 200
    run_worker(sim_settings)
    assert contact(sim_settings, cid).stage == "lead"

    requalified(sim_settings, cid)  # not zhou again, although they are their WeCom contact
    second = leads(sim_settings, status="assigned")
    assert [x.userid for x in second] == ["wu"]
    with db.session_scope(sim_settings.database_url) as s:
        later = utcnow() + timedelta(days=31)  # after the cool-down zhou is back in line
        assert handoff.recently_returned(s, cid, later - handoff.cooldown(sim_settings)) == set()
        assert handoff.recently_returned(s, cid, utcnow() - timedelta(days=1)) == {"zhou"}


def requalified(settings, cid: int) -> None:
    with db.session_scope(settings.database_url) as s:
        s.execute(
            sa.update(Contact.__table__).where(Contact.__table__.c.id == cid).values(stage="mql")
        )
        events.append(
            s, cid, "contact.stage_changed", {"from": "lead", "to": "mql"}, f"again-{cid}"
        )
    queue.kick_outbox(settings)
    run_worker(settings)


def follower_by_external(settings, external: str) -> int:
    from bot.core.models import Identity

    with db.session_scope(settings.database_url) as s:
        return s.execute(
            sa.select(Identity.contact_id).where(Identity.value == external)
        ).scalar_one()


# --- the report --------------------------------------------------------------------------------

T0 = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


def seed_history(settings) -> None:
    """Six leads: 展会 brings three (one accepted then SQL then won, one accepted, one
    returned 预算不足), 官网 two (one returned 非目标客户, one accepted after 4 h and SQL),
    and one with no channel, handed over outside the period."""
    with db.session_scope(settings.database_url) as s:
        fair = Channel(name="展会", state="fair")
        web = Channel(name="官网", state="web")
        s.add_all([fair, web])
        s.flush()
        j = Journey(name="新客欢迎", status="published", definition={}, created_at=T0)
        s.add(j)
        s.flush()
        plan = [  # (channel, campaign, rep, status, hours to answer, reason, stages reached)
            (fair, "双十一", "a", "accepted", 1, None, ["sql", "customer"]),
            (fair, "双十一", "a", "accepted", 3, None, []),
            (fair, None, "b", "returned", 2, "预算不足", []),
            (web, "双十一", "b", "returned", 1, "非目标客户", []),
            (web, None, "b", "accepted", 4, None, ["sql"]),
        ]
        for n, (channel, campaign, rep, status, hours, reason, stages) in enumerate(plan):
            at = T0 + timedelta(days=n)
            c = Contact(
                first_seen_at=at,
                last_seen_at=at,
                source_channel_id=channel.id,
                fields={"campaign": campaign} if campaign else None,
            )
            s.add(c)
            s.flush()
            if n < 2:
                s.add(
                    Enrollment(journey_id=j.id, contact_id=c.id, started_at=at - timedelta(hours=1))
                )
            s.add(
                LeadAssignment(
                    contact_id=c.id,
                    userid=rep,
                    status=status,
                    assigned_at=at,
                    responded_at=at + timedelta(hours=hours),
                    return_reason=reason,
                )
            )
            for k, stage in enumerate(stages):
                s.add(_stage_event(c.id, stage, at + timedelta(days=1, hours=k), n))
        outside = Contact(first_seen_at=T0, last_seen_at=T0)
        s.add(outside)
        s.flush()
        s.add(
            LeadAssignment(contact_id=outside.id, userid="a", assigned_at=T0 - timedelta(days=40))
        )


def _stage_event(cid: int, stage: str, at: datetime, n: int) -> Event:
    return Event(
        contact_id=cid,
        type="contact.stage_changed",
        source="bot",
        occurred_at=at,
        received_at=at,
        properties={"to": stage},
        dedupe_key=f"seed:{n}:{stage}",
    )


def test_the_lead_quality_report_counts_a_seeded_history(client, auth, clean):
    seed_history(clean)
    url = "/api/reports/lead-quality?from=2026-11-01&to=2026-11-30"
    by_channel = client.get(url + "&by=channel", headers=auth).get_json()["rows"]
    assert by_channel == [
        {
            "key": "展会",
            "created": 3,
            "accepted": 2,
            "returned": 1,
            "returned_by_reason": {"预算不足": 1},
            "sql": 1,
            "won": 1,
            "accept_rate": 0.6667,
            "return_rate": 0.3333,
            "sql_rate": 0.3333,
            "win_rate": 0.3333,
            "median_hours_to_accept": 2.0,
        },
        {
            "key": "官网",
            "created": 2,
            "accepted": 1,
            "returned": 1,
            "returned_by_reason": {"非目标客户": 1},
            "sql": 1,
            "won": 0,
            "accept_rate": 0.5,
            "return_rate": 0.5,
            "sql_rate": 0.5,
            "win_rate": 0.0,
            "median_hours_to_accept": 4.0,
        },
    ]
    by_rep = client.get(url + "&by=rep", headers=auth).get_json()["rows"]
    assert [(r["key"], r["created"], r["accepted"], r["returned"]) for r in by_rep] == [
        ("b", 3, 1, 2),
        ("a", 2, 2, 0),
    ]
    by_campaign = client.get(url + "&by=campaign", headers=auth).get_json()["rows"]
    assert [(r["key"], r["created"], r["won"]) for r in by_campaign] == [
        ("双十一", 3, 1),
        ("（无活动）", 2, 0),
    ]
    by_journey = client.get(url + "&by=journey", headers=auth).get_json()["rows"]
    assert [(r["key"], r["created"]) for r in by_journey] == [("（无旅程）", 3), ("新客欢迎", 2)]
    whole = client.get(
        "/api/reports/lead-quality?from=2026-09-01&to=2026-11-30&by=rep", headers=auth
    )
    assert sum(r["created"] for r in whole.get_json()["rows"]) == 6

    resp = client.get(url + "&by=channel&format=csv", headers=auth)
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    table = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))
    assert [
        (r["key"], r["created"], r["returned:预算不足"], r["returned:非目标客户"]) for r in table
    ] == [
        ("展会", "3", "1", "0"),
        ("官网", "2", "0", "1"),
    ]
    assert "returned:时机未到" in table[0]

    for bad in ("by=region", "from=2026-13-01", "from=2026-11-30&to=2026-11-01", "format=xml"):
        got = client.get(f"/api/reports/lead-quality?{bad}", headers=auth)
        assert got.status_code == 422, bad
    assert client.get("/api/reports/lead-quality").status_code == 401
