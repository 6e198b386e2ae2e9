"""A contact's score at a glance, for the rep's sidebar: the score now (decayed), how it moved
lately, and the rules that weigh most in the ledger. Aggregates in SQL, so a contact with a long
ledger costs one grouped query, not a replay (``explain`` is the line-by-line account)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.core.models import Contact, ScoreEntry
from bot.scoring import rules as score_rules
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
    act = active(session)
    mine = (S.contact_id == contact.id, S.ruleset_version == act.version, S.rule_id != MARKER)
    last_positive = session.execute(
        sa.select(sa.func.max(S.occurred_at)).where(*mine, S.points > 0)
    ).scalar()
    moments = [t for t in (contact.last_interaction_at, last_positive) if t]
    factor = score_rules.decay_factor(max(moments, default=None), now, act.rules.half_life)
    recent = session.execute(
        sa.select(sa.func.coalesce(sa.func.sum(S.points), 0.0)).where(
            *mine, S.occurred_at >= now - timedelta(days=TREND_DAYS)
        )
    ).scalar()
    total = sa.func.sum(S.points)
    rows = session.execute(
        sa.select(S.rule_id, total.label("points"), sa.func.count(), sa.func.max(S.id))
        .where(*mine)
        .group_by(S.rule_id)
        .order_by(sa.func.abs(total).desc(), S.rule_id)
        .limit(top)
    ).all()
    words = dict(
        session.execute(sa.select(S.id, S.reason).where(S.id.in_([r[3] for r in rows]))).all()
    )
    reasons = [Reason(r[0], words.get(r[3]) or r[0], round(r[1], 2), r[2]) for r in rows]
    return Summary(round(contact.score * factor, 2), round(float(recent or 0), 2), reasons)
