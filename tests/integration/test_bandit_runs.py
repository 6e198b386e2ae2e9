"""A bandit split run by the journey runner: the arm each contact got stored on its first
pass, the weights recomputed from conversions and logged (GET /api/journeys/<id>/optimisation),
the new weights used for the next contacts, the sweeper's interval."""

from __future__ import annotations

import sqlalchemy as sa
from support import run_worker
from test_journey_runner import contact_of

from bot.automation import bandits, definitions
from bot.core import db, queue
from bot.core.models import Event, Message, SplitAssignment, utcnow
from journeys import bandit

GOAL = "h5.form_submitted"
JOURNEY = {
    "id": "bandit-welcome",
    "name": "欢迎 A/B",
    "steps": [
        {
            "id": "t",
            "type": "trigger",
            "on": "event",
            "event": "oa.subscribe",
            "entry": {"mode": "once_at_a_time"},
            "next": "ab",
        },
        {
            "id": "ab",
            "type": "condition",
            "mode": "bandit",
            "goal_event": GOAL,
            "min_share": 0.1,
            "split": [
                {"percent": 50, "next": "a", "name": "短文案"},
                {"percent": 50, "next": "b", "name": "长文案"},
            ],
        },
        {
            "id": "a",
            "type": "action",
            "do": "send",
            "kind": "text",
            "payload": {"content": "欢迎！https://example.com/a"},
        },
        {
            "id": "b",
            "type": "action",
            "do": "send",
            "kind": "text",
            "payload": {"content": "欢迎关注鱼池，详情 https://example.com/b"},
        },
    ],
}


def assignments(settings) -> dict[int, int]:
    with db.session_scope(settings.database_url) as s:
        t = SplitAssignment.__table__.c
        return dict(s.execute(sa.select(t.contact_id, t.arm).where(t.step == "ab")).all())


def publish(client, auth) -> int:
    resp = client.post("/api/journeys", json={"definition": JOURNEY}, headers=auth)
    assert resp.status_code == 201, resp.get_json()
    jid = resp.get_json()["id"]
    assert client.post(f"/api/journeys/{jid}/publish", headers=auth).status_code == 200
    return jid


def test_bandit_split_learns_and_logs(sim, sim_settings, sim_client, auth, env_to_sim):
    jid = publish(sim_client, auth)
    openids = [f"oBandit{i}" for i in range(12)]
    for o in openids:
        assert sim.follow(o).status == 200
    run_worker(sim_settings)
    cids = [contact_of(sim_settings, o) for o in openids]
    given = assignments(sim_settings)
    assert sorted(given) == sorted(cids)

    # the arm stored is the step that sent: one message per contact, from that arm's step
    with db.session_scope(sim_settings.database_url) as s:
        m = Message.__table__.c
        steps = dict(s.execute(sa.select(m.contact_id, m.step).where(m.step.is_not(None))).all())
    assert steps == {cid: "ab"[given[cid]] for cid in cids}
    # before any recompute the split's percentages decide: the draw against 50/50
    with db.session_scope(sim_settings.database_url) as s:
        d = definitions.definition_for(s, jid, 1)
    for cid in cids:
        assert given[cid] == bandit.arm_for(bandit.draw(d.id, "ab", cid), [50, 50])

    # arm B converts (twice for one contact: counted once), arm A never
    arm_b = [cid for cid in cids if given[cid] == 1]
    arm_a = [cid for cid in cids if given[cid] == 0]
    assert arm_a and arm_b, given
    with db.session_scope(sim_settings.database_url) as s:
        for cid in arm_b + arm_b[:1]:
            s.add(
                Event(contact_id=cid, type=GOAL, source="h5", properties={}, occurred_at=utcnow())
            )
    [change] = bandits.recompute(sim_settings)
    assert change["step"] == "ab" and change["goal"] == GOAL
    assert change["counts"] == [
        {"arm": "短文案", "assigned": len(arm_a), "converted": 0},
        {"arm": "长文案", "assigned": len(arm_b), "converted": len(arm_b)},
    ]
    weights = change["weights"]
    assert weights[1] > 0.8 and weights[0] >= 0.1
    assert bandits.recompute(sim_settings) == []  # nothing new: no change, no row

    resp = sim_client.get(f"/api/journeys/{jid}/optimisation", headers=auth)
    assert resp.status_code == 200
    assert resp.get_json()["changes"] == [change]
    assert resp.get_json()["weights"] == {"ab": weights}
    assert sim_client.get("/api/journeys/99999/optimisation", headers=auth).status_code == 404

    # the next contacts are split by the new weights
    later = [f"oBanditLate{i}" for i in range(6)]
    for o in later:
        assert sim.follow(o).status == 200
    run_worker(sim_settings)
    given = assignments(sim_settings)
    for o in later:
        cid = contact_of(sim_settings, o)
        assert given[cid] == bandit.arm_for(bandit.draw(d.id, "ab", cid), weights)

    # the journey stats count the conversions per step
    stats = sim_client.get(f"/api/journeys/{jid}/stats?goal={GOAL}", headers=auth).get_json()
    assert stats["steps"]["b"]["sends"]["conversions"] == len(arm_b)
    assert stats["steps"]["a"]["sends"]["conversions"] == 0

    # the sweeper recomputes at most once per YUCHI_BANDIT_INTERVAL
    def convert(cid: int) -> None:
        with db.session_scope(sim_settings.database_url) as s:
            s.add(
                Event(contact_id=cid, type=GOAL, source="h5", properties={}, occurred_at=utcnow())
            )

    queue.get_redis(sim_settings).delete(bandits.LOCK)
    convert(arm_a[0])
    assert bandits.sweep(sim_settings) == 1
    assert 0 < queue.get_redis(sim_settings).ttl(bandits.LOCK) <= sim_settings.bandit_interval
    convert(arm_a[-1])
    assert bandits.sweep(sim_settings) == 0  # within the interval: not yet
    log = sim_client.get(f"/api/journeys/{jid}/optimisation", headers=auth).get_json()["changes"]
    assert len(log) == 2 and log[0]["counts"][0]["converted"] == 1  # newest first

    # a contact who comes back gets the arm of their first pass, whatever the weights now
    weights = sim_client.get(f"/api/journeys/{jid}/optimisation", headers=auth).get_json()[
        "weights"
    ]["ab"]
    first = {cid: arm for cid, arm in assignments(sim_settings).items() if cid in cids}
    # Usually some of them would get the other arm if drawn afresh under ``weights``; with 12
    # contacts about one id set in five has no draw between the old split and the new one
    # (the ids depend on what ran before in this database), so that is not asserted.
    for o in openids:
        assert sim.unfollow(o).status == 200
        assert sim.follow(o).status == 200
    run_worker(sim_settings)
    with db.session_scope(sim_settings.database_url) as s:
        t = SplitAssignment.__table__.c
        rows = s.execute(sa.select(t.contact_id, t.arm).where(t.contact_id.in_(cids))).all()
    assert len(rows) == 2 * len(cids)  # a second enrollment each, its arm stored
    assert all(arm == first[cid] for cid, arm in rows)
