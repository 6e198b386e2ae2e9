"""A broadcast variant set that learns (mode: bandit), through the simulator: the explore
share goes out first by the percentages, conversions are seeded for one variant, the decision
moves the weights toward it, logs them once and sends the rest, most of it the winner."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from support import run_worker
from test_messaging import follower

from bot.background import sweeper
from bot.core import db, queue
from bot.core.models import Broadcast, BroadcastOptimisation, Event, Message, utcnow
from bot.messaging import broadcast_bandit, broadcasts, delivery

GOAL = "h5.form_submitted"
VARIANTS = [
    {"name": "短", "payload": {"content": "短文案"}, "percent": 50},
    {"name": "长", "payload": {"content": "长一些的文案"}, "percent": 50},
]


def body(cids: list[int], **kw) -> dict:
    return {
        "name": "会学习的 A/B",
        "kind": "text",
        "payload": {"content": "默认"},
        "contact_ids": cids,
        "variants": VARIANTS,
        "mode": "bandit",
        "goal": GOAL,
        "explore": 0.5,
        "decide_after_minutes": 60,
        **kw,
    }


def rows(settings, bid: int) -> list[Message]:
    with db.session_scope(settings.database_url) as s:
        return list(
            s.execute(sa.select(Message).where(Message.broadcast_id == bid).order_by(Message.id))
            .scalars()
            .all()
        )


def log_rows(settings, bid: int) -> list[BroadcastOptimisation]:
    with db.session_scope(settings.database_url) as s:
        t = BroadcastOptimisation
        return list(s.execute(sa.select(t).where(t.broadcast_id == bid).order_by(t.id)).scalars())


def test_bandit_broadcast_explores_decides_and_sends_the_rest(sim, sim_settings, sim_client, auth):
    settings = sim_settings
    cids = [follower(sim, settings, f"oBandit{i}") for i in range(60)]
    resp = sim_client.post("/api/broadcasts", json=body(cids), headers=auth)
    assert resp.status_code == 202, resp.get_json()
    bid = resp.get_json()["id"]
    assert broadcasts.fan_out(settings, bid) > 0

    spec = {"explore": 0.5}
    explore = {c for c in cids if broadcasts.in_explore(bid, c, spec)}
    assert 0 < len(explore) < 60
    first = rows(settings, bid)
    assert {m.contact_id for m in first} == explore  # the rest has no row yet
    for m in first:
        assert m.variant == broadcasts.variant_of(bid, m.contact_id, VARIANTS)
        assert delivery.deliver(settings, m.id) == "sent"
    assert {m.variant for m in first} == {0, 1}
    assert queue.job_alive(settings, broadcast_bandit.job_id(bid))  # scheduled

    progress = sim_client.get(f"/api/broadcasts/{bid}", headers=auth).get_json()
    assert (progress["mode"], progress["stage"], progress["status"]) == (
        "bandit",
        "exploring",
        "exploring",
    )
    assert progress["weights"] == {"短": 0.5, "长": 0.5}
    assert progress["total"] == len(explore)

    # every contact who got 长 converted, none who got 短
    sent = rows(settings, bid)
    with db.session_scope(settings.database_url) as s:
        for m in sent:
            if m.variant == 1:
                s.add(
                    Event(
                        contact_id=m.contact_id,
                        type=GOAL,
                        source="test",
                        properties={},
                        occurred_at=m.sent_at + timedelta(minutes=5),
                    )
                )
    created = broadcast_bandit.decide(settings, bid)
    assert created == 60 - len(explore)

    log = sim_client.get(f"/api/broadcasts/{bid}/optimisation", headers=auth).get_json()
    assert [e["stage"] for e in log["log"]] == ["explore", "decided"]
    decided = log["log"][1]
    short, long_ = decided["weights"]
    assert long_ > 0.8 and short >= 0.05  # toward the winner, the floor kept
    winners = sum(1 for m in sent if m.variant == 1)
    assert decided["counts"] == [
        {"variant": "短", "sent": len(sent) - winners, "converted": 0},
        {"variant": "长", "sent": winners, "converted": winners},
    ]
    assert log["stage"] == "decided" and log["weights"] == {"短": short, "长": long_}

    after = rows(settings, bid)
    assert len(after) == 60 and {m.contact_id for m in after} == set(cids)
    rest = [m for m in after if m.contact_id not in explore]
    assert sum(1 for m in rest if m.variant == 1) > 0.7 * len(rest)
    for m in rest:  # the same fixed draw, against the new weights
        assert m.payload["content"] == VARIANTS[m.variant]["payload"]["content"]
    for m in after:
        if m.contact_id in explore:  # the explore rows stay as they were
            assert m.variant == broadcasts.variant_of(bid, m.contact_id, VARIANTS)

    progress = sim_client.get(f"/api/broadcasts/{bid}", headers=auth).get_json()
    assert progress["stage"] == "decided" and progress["total"] == 60
    assert progress["status"] in ("sending", "done")

    # a second run creates nothing, logs nothing
    assert broadcast_bandit.decide(settings, bid) == 0
    with db.session_scope(settings.database_url) as s:
        s.execute(sa.update(Broadcast).where(Broadcast.id == bid).values(status="exploring"))
    assert broadcast_bandit.decide(settings, bid) == 0  # even past the status check
    assert len(rows(settings, bid)) == 60
    assert [r.stage for r in log_rows(settings, bid)] == ["explore", "decided"]
    assert log_rows(settings, bid)[1].weights == [short, long_]


def test_a_lost_decision_job_is_swept(sim, sim_settings, sim_client, auth, env_to_sim, monkeypatch):
    monkeypatch.setenv("YUCHI_QUIET_HOURS", "")
    settings = sim_settings.replace(quiet_hours="")
    cids = [follower(sim, settings, f"oSwept{i}") for i in range(6)]
    bid = sim_client.post("/api/broadcasts", json=body(cids), headers=auth).get_json()["id"]
    broadcasts.fan_out(settings, bid)
    jid = broadcast_bandit.job_id(bid)
    assert queue.job_alive(settings, jid)
    assert broadcast_bandit.sweep(settings) == 0  # alive: left alone

    queue.get_redis(settings).flushdb()  # Redis forgot it; the decision is due
    with db.session_scope(settings.database_url) as s:
        s.execute(
            sa.update(Broadcast)
            .where(Broadcast.id == bid)
            .values(decide_at=utcnow() - timedelta(minutes=1))
        )
    assert not queue.job_alive(settings, jid)
    assert sweeper.sweep_all(settings)["broadcast_decisions"] == 1
    assert queue.job_alive(settings, jid)
    assert broadcast_bandit.sweep(settings) == 0

    run_worker(settings)  # the swept job decides and sends the rest
    with db.session_scope(settings.database_url) as s:
        b = s.get(Broadcast, bid)
        assert (b.status, b.total) == ("queued", 6)
    assert {m.contact_id for m in rows(settings, bid)} == set(cids)
    assert [r.stage for r in log_rows(settings, bid)] == ["explore", "decided"]
    assert broadcast_bandit.sweep(settings) == 0  # decided: nothing to sweep


def test_nothing_sent_yet_keeps_the_percentages(sim, sim_settings, sim_client, auth):
    """Explore rows still held (quiet hours, say) teach nothing: the rest goes by the plan."""
    settings = sim_settings
    cids = [follower(sim, settings, f"oHeld{i}") for i in range(8)]
    variants = [{**VARIANTS[0], "percent": 30}, {**VARIANTS[1], "percent": 70}]
    resp = sim_client.post("/api/broadcasts", json=body(cids, variants=variants), headers=auth)
    bid = resp.get_json()["id"]
    explored = broadcasts.fan_out(settings, bid)
    assert broadcast_bandit.decide(settings, bid) == 8 - explored
    [_, decided] = log_rows(settings, bid)
    assert decided.weights == [0.3, 0.7]
    assert decided.counts == [
        {"variant": "短", "sent": 0, "converted": 0},
        {"variant": "长", "sent": 0, "converted": 0},
    ]


def test_a_decision_that_cannot_succeed_fails_the_broadcast(sim, sim_settings, sim_client, auth):
    settings = sim_settings
    cids = [follower(sim, settings, f"oFail{i}") for i in range(3)]
    bid = sim_client.post("/api/broadcasts", json=body(cids), headers=auth).get_json()["id"]
    broadcasts.fan_out(settings, bid)
    with db.session_scope(settings.database_url) as s:
        s.execute(
            sa.update(Broadcast).where(Broadcast.id == bid).values(audience={"contact_ids": [0]})
        )
    assert broadcast_bandit.decide(settings, bid) == 0
    progress = sim_client.get(f"/api/broadcasts/{bid}", headers=auth).get_json()
    assert progress["status"] == "failed" and "decision failed" in progress["reason"]
    assert broadcast_bandit.sweep(settings) == 0  # not retried for ever


def test_bandit_broadcasts_are_validated(client, auth, clean):
    from bot.core.models import Contact

    with db.session_scope(clean.database_url) as s:
        c = Contact(subscribed=True, first_seen_at=utcnow(), last_seen_at=utcnow())
        s.add(c)
        s.flush()
        cids = [c.id]

    def fields(**kw) -> dict:
        payload = body(cids, **kw)
        payload = {k: v for k, v in payload.items() if v is not None}
        resp = client.post("/api/broadcasts", json=payload, headers=auth)
        assert resp.status_code == 422, resp.get_json()
        return resp.get_json()["fields"]

    assert "variants" in fields(variants=None)
    assert "goal" in fields(goal=None)
    assert "goal" in fields(goal="Not An Event")
    assert "outside_window" in fields(outside_window="mass", kind="text")
    assert "explore" in fields(explore=0.9)
    assert "explore" in fields(explore=0.01)
    assert "decide_after_minutes" in fields(decide_after_minutes=20000)
    assert "min_share" in fields(min_share=0.3)
    assert "goal" in fields(mode=None)  # bandit settings without mode=bandit
    with db.session_scope(clean.database_url) as s:
        assert s.execute(sa.select(sa.func.count()).select_from(Broadcast)).scalar_one() == 0
