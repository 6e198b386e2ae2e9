"""A broadcast variant set that learns (``mode: bandit``), sent in two stages.

1. The fan-out sends only the explore share (a contact is in it by a fixed draw of their own,
   bot.messaging.broadcasts.in_explore), each contact's variant by the percentages; the
   broadcast waits ``exploring`` and a decision job is scheduled for ``decide_at``.
2. The decision (``decide``) counts, per variant, the contacts sent to and those who did the
   goal event within the conversion window after their send (the figures of
   bot.messaging.reports), turns them into weights by Thompson sampling (journeys.bandit,
   seeded per broadcast, each variant at least ``min_share``; the percentages when nothing
   was sent yet), stores them once (log stage
   ``decided``) and sends the rest of the audience: each contact's variant is their same
   fixed draw against the new weights. A re-run reads the stored weights back, and the
   message keys ``b<id>:c<contact>`` keep every row single.

The sweeper schedules again the decision of any broadcast still ``exploring`` whose job Redis
lost."""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.core import queue
from bot.core.config import Settings
from bot.core.db import session_scope
from bot.core.models import Broadcast, BroadcastOptimisation, Message, utcnow
from bot.messaging import broadcasts, reports
from journeys import bandit

log = logging.getLogger(__name__)
DECIDE = "bot.background.jobs.decide_broadcast"


def job_id(broadcast_id: int) -> str:
    return f"broadcast-decide-{broadcast_id}"


def seed(broadcast_id: int) -> int:
    """The broadcast's fixed Thompson seed."""
    return int.from_bytes(hashlib.sha256(f"broadcast-{broadcast_id}".encode()).digest()[:8], "big")


def percents(variants: list[dict[str, Any]]) -> list[float]:
    return [round(float(v["percent"]) / 100, 4) for v in variants]


def _log_row(session: Session, broadcast_id: int, stage: str) -> BroadcastOptimisation | None:
    t = BroadcastOptimisation
    return session.execute(
        sa.select(t).where(t.broadcast_id == broadcast_id, t.stage == stage)
    ).scalar_one_or_none()


def _store(settings: Settings, row: BroadcastOptimisation) -> list[float]:
    """Store a log row once; the stored weights (this row's, or the one a concurrent run
    stored first)."""
    try:
        with session_scope(settings.database_url) as session:
            found = _log_row(session, row.broadcast_id, row.stage)
            if found is not None:
                return list(found.weights)
            session.add(row)
            session.flush()
            return list(row.weights)
    except sa.exc.IntegrityError:
        with session_scope(settings.database_url) as session:
            found = _log_row(session, row.broadcast_id, row.stage)
            assert found is not None
            return list(found.weights)


def started(settings: Settings, broadcast_id: int) -> None:
    """The explore share is out: log the weights it went with, schedule the decision."""
    with session_scope(settings.database_url) as session:
        b = session.get(Broadcast, broadcast_id)
        assert b is not None and b.bandit and b.variants
        goal, weights, at = b.bandit["goal"], percents(b.variants), b.decide_at
    _store(
        settings,
        BroadcastOptimisation(
            broadcast_id=broadcast_id, stage="explore", goal=goal, weights=weights, counts=[]
        ),
    )
    schedule(settings, broadcast_id, at or utcnow())


def schedule(settings: Settings, broadcast_id: int, at: datetime) -> bool:
    """Ask rq for the decision at ``at`` (now if past; skipped when its job is alive); False
    when Redis is down (the sweeper schedules it)."""
    try:
        if queue.job_alive(settings, job_id(broadcast_id)):
            return True
        queue.drop_job(settings, job_id(broadcast_id))
        q = queue.get_queue(settings, queue.BULK)
        if at <= utcnow():
            q.enqueue(DECIDE, broadcast_id, job_id=job_id(broadcast_id), job_timeout=3600)
        else:
            q.enqueue_at(at, DECIDE, broadcast_id, job_id=job_id(broadcast_id), job_timeout=3600)
    except queue.REDIS_ERRORS as exc:
        log.warning(
            "broadcast %s: decision not scheduled (%s); the sweeper will", broadcast_id, exc
        )
        return False
    return True


def counts(session: Session, settings: Settings, b: Broadcast) -> list[dict[str, Any]]:
    """Per variant: contacts sent to, and those of them who did the goal event after."""
    assert b.bandit and b.variants
    m = Message.__table__.c
    per = reports.figures(session, settings, m.broadcast_id == b.id, b.bandit["goal"], by=m.variant)
    out = []
    for i, v in enumerate(b.variants):
        fig = per.get(i) or reports.empty(b.bandit["goal"])
        out.append({"variant": v["name"], "sent": fig["sent"], "converted": fig["conversions"]})
    return out


def decide(settings: Settings, broadcast_id: int) -> int:
    """Decide the weights (once) and send the rest of the audience; the rows created. A
    failure no re-run can fix ends the broadcast ``failed`` with its reason (as its fan-out
    would); Redis or the database unreachable leaves it ``exploring`` for the sweeper."""
    return broadcasts.run_or_fail(settings, broadcast_id, "decision", _decide)


def _decide(settings: Settings, broadcast_id: int) -> int:
    with session_scope(settings.database_url) as session:
        b = session.get(Broadcast, broadcast_id)
        if b is None or b.status != "exploring" or not b.bandit or not b.variants:
            return 0
        spec, variants = dict(b.bandit), list(b.variants)
        decided = _log_row(session, broadcast_id, "decided")
        weights = list(decided.weights) if decided is not None else None
        found: list[dict[str, Any]] = []
        if weights is None:
            found = counts(session, settings, b)
            pairs = [(c["sent"], c["converted"]) for c in found]
            if any(n for n, _ in pairs):
                weights = bandit.thompson_weights(pairs, spec["min_share"], seed(broadcast_id))
            else:  # nothing went out yet (held, quiet hours): nothing learnt, keep the plan
                weights = percents(variants)
        ids = broadcasts.audience_contact_ids(session, b.audience)
    if decided is None:
        weights = _store(
            settings,
            BroadcastOptimisation(
                broadcast_id=broadcast_id,
                stage="decided",
                goal=spec["goal"],
                weights=weights,
                counts=found,
            ),
        )

    def pick(cid: int) -> int:
        if broadcasts.in_explore(broadcast_id, cid, spec):
            return broadcasts.variant_of(broadcast_id, cid, variants)
        u = bandit.draw(f"broadcast-{broadcast_id}", "variants", cid)
        return bandit.arm_for(u, weights)

    created = broadcasts.write_rows(settings, broadcast_id, ids, pick)
    with session_scope(settings.database_url) as session:
        m = Message.__table__.c
        total = session.execute(  # the explore rows of contacts since gone count too
            sa.select(sa.func.count()).where(m.broadcast_id == broadcast_id)
        ).scalar_one()
        session.execute(
            sa.update(Broadcast.__table__)
            .where(Broadcast.__table__.c.id == broadcast_id)
            .values(total=total, status="queued")
        )
    log.info("broadcast %s: decided %s, %d more message(s)", broadcast_id, weights, created)
    return created


def sweep(settings: Settings) -> int:
    """Schedule again the decisions whose job is gone (Redis down or flushed)."""
    t = Broadcast.__table__.c
    with session_scope(settings.database_url) as session:
        waiting = session.execute(sa.select(t.id, t.decide_at).where(t.status == "exploring")).all()
    lost = [(i, at) for i, at in waiting if not queue.job_alive(settings, job_id(i))]
    for i, at in lost:
        schedule(settings, i, at or utcnow())
    return len(lost)


def log_json(row: BroadcastOptimisation) -> dict[str, Any]:
    return {
        "id": row.id,
        "broadcast_id": row.broadcast_id,
        "stage": row.stage,
        "goal": row.goal,
        "weights": row.weights,
        "counts": row.counts,
        "created_at": row.created_at.isoformat(),
    }


def optimisation_log(session: Session, broadcast_id: int) -> list[dict[str, Any]]:
    """The broadcast's weights, oldest first: explore, then decided."""
    rows = session.execute(
        sa.select(BroadcastOptimisation)
        .where(BroadcastOptimisation.broadcast_id == broadcast_id)
        .order_by(BroadcastOptimisation.id)
    ).scalars()
    return [log_json(r) for r in rows]


def stage(session: Session, b: Broadcast) -> dict[str, Any]:
    """What progress shows of a bandit broadcast: its stage and the weights in force."""
    assert b.id is not None and b.bandit and b.variants
    decided = _log_row(session, b.id, "decided")
    return {
        "stage": "decided" if decided is not None and b.status != "exploring" else "exploring",
        "goal": b.bandit["goal"],
        "explore": b.bandit["explore"],
        "min_share": b.bandit["min_share"],
        "decide_at": b.decide_at.isoformat() if b.decide_at else None,
        "weights": {
            v["name"]: w
            for v, w in zip(
                b.variants,
                decided.weights if decided is not None else percents(b.variants),
                strict=True,
            )
        },
    }
