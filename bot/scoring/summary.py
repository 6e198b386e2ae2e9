"""A contact's score at a glance, for the rep's sidebar: the score now (decayed), how it moved
lately, and the rules that weigh most in the ledger. Aggregates in SQL, so a contact with a long
ledger costs one grouped query, not a replay (``explain`` is the line-by-line account)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.core.models import Contact, ScoreEntry
from bot.scoring import points as score_points
from bot.scoring.rules import MARKER
from bot.scoring.versions import active

S = ScoreEntry.__table__.c
TREND_DAYS = 7


@dataclass(frozen=True)
class Reason:
    rule: str
    reason: str  # one line's own words (the latest)
    points: float  # the rule's sum in the ledger
    times: int


@dataclass(frozen=True)
class Summary:
    score: float  # now, decayed
    trend: float  # ledger points of the last TREND_DAYS days
    reasons: list[Reason]


def summary(session: Session, contact: Contact, now: datetime, top: int = 3) -> Summary:
    """One grouped pass over the contact's ledger (per rule: sum, count, latest line, latest
    positive line, recent points); the rest is arithmetic on a handful of rows."""
    act = active(session)
    since = now - timedelta(days=TREND_DAYS)
    total = sa.func.sum(S.points)
    rows = session.execute(
        sa.select(
            S.rule_id,
            total,
            sa.func.count(),
            sa.func.max(S.id),
            sa.func.max(sa.case((S.points > 0, S.occurred_at))),
            sa.func.sum(sa.case((S.occurred_at >= since, S.points), else_=0.0)),
        )
        .where(S.contact_id == contact.id, S.ruleset_version == act.version, S.rule_id != MARKER)
        .group_by(S.rule_id)
    ).all()
    last_positive = max((r[4] for r in rows if r[4] is not None), default=None)
    moments = [t for t in (contact.last_interaction_at, last_positive) if t]
    factor = score_points.decay_factor(max(moments, default=None), now, act.rules.half_life)
    heaviest = sorted(rows, key=lambda r: (-abs(r[1]), r[0]))[:top]
    words = dict(
        session.execute(sa.select(S.id, S.reason).where(S.id.in_([r[3] for r in heaviest]))).all()
    )
    reasons = [Reason(r[0], words.get(r[3]) or r[0], round(r[1], 2), r[2]) for r in heaviest]
    recent = sum(float(r[5] or 0) for r in rows)
    return Summary(round(contact.score * factor, 2), round(recent, 2), reasons)
