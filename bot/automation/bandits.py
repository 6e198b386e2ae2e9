"""The bot's side of bandit splits (journeys/bandit.py decides, this counts and stores):

- the weights in force, given to the engine: the newest optimisation_log row of each step
  (none yet: the split's own percentages);
- the arm each enrollment got on its first pass, stored as it passes (``record``);
- ``recompute``: per bandit split of every published journey, the arms' assigned and
  converted counts in one grouped query (converted: the goal event within
  YUCHI_CONVERSION_WINDOW after the assignment), Thompson sampling, and a log row whenever
  the weights change. The sweeper runs it at most every YUCHI_BANDIT_INTERVAL seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

import journeys
from bot.automation import definitions
from bot.core import queue
from bot.core.config import Settings
from bot.core.db import dialect_insert, plus_seconds, session_scope
from bot.core.models import Event, OptimisationLog, SplitAssignment, utcnow
from journeys import bandit

log = logging.getLogger(__name__)
LOCK = "yuchi:bandits:recomputed"


def current_weights(session: Session, journey_id: int) -> dict[str, list[float]]:
    """The weights in force per bandit step of the journey (steps never recomputed: absent)."""
    t = OptimisationLog.__table__.c
    newest = (
        sa.select(sa.func.max(t.id)).where(t.journey_id == journey_id).group_by(t.step)
    ).scalar_subquery()
    rows = session.execute(sa.select(t.step, t.weights).where(t.id.in_(newest)))
    return {step: list(weights) for step, weights in rows}


def contact_arms(session: Session, journey_id: int, contact_id: int) -> dict[str, int]:
    """The arm the contact got at each bandit split of the journey on their first pass ever
    (an earlier enrollment's included)."""
    t = SplitAssignment.__table__.c
    first = (
        sa.select(sa.func.min(t.id))
        .where(t.journey_id == journey_id, t.contact_id == contact_id)
        .group_by(t.step)
    ).scalar_subquery()
    return dict(session.execute(sa.select(t.step, t.arm).where(t.id.in_(first))).all())


def pinned(
    d: journeys.Definition, weights: dict[str, list[float]], arms: dict[str, int]
) -> dict[str, list[float]]:
    """The weights with the contact's stored arms pinned (all the weight on their arm), so a
    contact who comes back gets the arm they got the first time."""
    out = dict(weights)
    for s in bandit.bandit_steps(d):
        n = len(s.split or [])
        if s.id in arms and 0 <= arms[s.id] < n:
            out[s.id] = [1.0 if i == arms[s.id] else 0.0 for i in range(n)]
    return out


def record(
    session: Session,
    journey_id: int,
    enrollment_id: int,
    contact_id: int,
    d: journeys.Definition,
    before: Sequence[str],
    after: Sequence[str],
    now: datetime,
) -> None:
    """Store the arms this enrollment got on its first pass through bandit splits."""
    found = bandit.assignments(d, before, after)
    if not found:
        return
    stmt = dialect_insert(session, SplitAssignment.__table__).on_conflict_do_nothing(
        index_elements=["enrollment_id", "step"]
    )
    session.execute(
        stmt,
        [
            {
                "journey_id": journey_id,
                "step": step,
                "arm": arm,
                "contact_id": contact_id,
                "enrollment_id": enrollment_id,
                "assigned_at": now,
            }
            for step, arm in found
        ],
    )


def arm_counts(
    session: Session, settings: Settings, journey_id: int, step: journeys.model.Condition
) -> list[tuple[int, int]]:
    """(assigned, converted) per arm of the split, in its order."""
    a, e = SplitAssignment.__table__.c, Event.__table__.c
    converted = (
        sa.select(1)
        .where(
            e.contact_id == a.contact_id,
            e.type == step.goal_event,
            e.occurred_at >= a.assigned_at,
            e.occurred_at <= plus_seconds(session, a.assigned_at, settings.conversion_window),
        )
        .exists()
    )
    rows = session.execute(
        sa.select(a.arm, sa.func.count(), sa.func.sum(sa.case((converted, 1), else_=0)))
        .where(a.journey_id == journey_id, a.step == step.id)
        .group_by(a.arm)
    )
    by_arm = {arm: (int(n), int(k or 0)) for arm, n, k in rows}
    return [by_arm.get(i, (0, 0)) for i in range(len(step.split or []))]


def recompute(settings: Settings, now: datetime | None = None) -> list[dict[str, Any]]:
    """Recompute every bandit split of the published journeys; the log rows written."""
    now = now or utcnow()
    written = []
    with session_scope(settings.database_url) as session:
        for j in definitions.published(session):
            d = definitions.definition_for(session, j.id, j.version)
            steps = bandit.bandit_steps(d)
            if not steps:
                continue
            current = current_weights(session, j.id)
            for s in steps:
                counts = arm_counts(session, settings, j.id, s)
                if not any(n for n, _ in counts):
                    continue  # no one has passed: the split's own percentages stay
                weights = bandit.thompson_weights(
                    counts, s.min_share, bandit.seed_for(j.id, s.id, counts)
                )
                if current.get(s.id) == weights:
                    continue
                arms = s.split or []
                row = OptimisationLog(
                    journey_id=j.id,
                    step=s.id,
                    goal=s.goal_event or "",
                    weights=weights,
                    counts=[
                        {"arm": arm.name or arm.next, "assigned": n, "converted": k}
                        for arm, (n, k) in zip(arms, counts, strict=True)
                    ],
                    created_at=now,
                )
                session.add(row)
                session.flush()
                written.append(log_json(row))
    return written


def sweep(settings: Settings) -> int:
    """Recompute if no one has in the last YUCHI_BANDIT_INTERVAL seconds (a Redis lock)."""
    try:
        first = queue.get_redis(settings).set(
            LOCK, "1", nx=True, ex=max(1, int(settings.bandit_interval))
        )
    except queue.REDIS_ERRORS:
        return 0
    return len(recompute(settings)) if first else 0


def log_json(row: OptimisationLog) -> dict[str, Any]:
    return {
        "id": row.id,
        "journey_id": row.journey_id,
        "step": row.step,
        "goal": row.goal,
        "weights": row.weights,
        "counts": row.counts,
        "created_at": row.created_at.isoformat(),
    }


def optimisation_log(session: Session, journey_id: int, limit: int = 200) -> list[dict[str, Any]]:
    """The journey's weight changes, newest first."""
    rows = session.execute(
        sa.select(OptimisationLog)
        .where(OptimisationLog.journey_id == journey_id)
        .order_by(OptimisationLog.id.desc())
        .limit(limit)
    ).scalars()
    return [log_json(r) for r in rows]
