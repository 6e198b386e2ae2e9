"""Returning a lead, with a reason. The reasons live in the database (``lead_return_reason``,
seeded by migration 0014 and managed through ``/api/lead-return-reasons``); each says what
happens next, from the table ``OUTCOMES``:

- ``nurture``: the lead closes as returned, the contact has no owner and goes back to the
  reason's nurture stage (thresholds move it on again later);
- ``reassign``: the next rep gets the lead (the rep who returned it is left out);
- ``disqualify``: stage ``disqualified`` (set by a person: thresholds leave it alone) and
  marketing sends to the contact stop (bot.messaging.send_rules.NO_MARKETING_STAGES).

Whatever the outcome, ``lead.returned`` (with the reason) is on the timeline and goes through
the pipeline, so score rules and journey triggers can react to it like to any event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from bot.contacts import record as events
from bot.core import queue
from bot.core.config import Settings
from bot.core.db import session_scope
from bot.core.models import Contact, LeadAssignment, LeadReturnReason, utcnow
from bot.sales import handoff
from bot.scoring import ledger

# The list migration 0014 seeds: (label, outcome, nurture stage, note required)
SEEDED = [
    ("预算不足", "nurture", "lead", False),
    ("时机未到", "nurture", "lead", False),
    ("联系不上", "reassign", None, False),
    ("非决策人", "nurture", "lead", False),
    ("非目标客户", "disqualify", None, False),
    ("其他", "reassign", None, True),
]


class UnknownReason(handoff.LeadError):
    """No active return reason with this id or label."""


class NoteRequired(handoff.LeadError):
    """This reason (其他) needs the rep's own words."""


class DuplicateLabel(Exception):
    pass


class ReasonIn(BaseModel):
    """A return reason as the API creates or replaces it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    label: str = Field(min_length=1, max_length=32)
    outcome: Literal["nurture", "reassign", "disqualify"]
    nurture_stage: Literal["subscriber", "lead"] | None = None
    note_required: bool = False
    position: int = Field(default=0, ge=0, le=10_000)
    active: bool = True

    def model_post_init(self, _context: Any) -> None:
        if self.outcome == "nurture" and self.nurture_stage is None:
            self.nurture_stage = "lead"
        if self.outcome != "nurture":
            self.nurture_stage = None


# --- the reasons -----------------------------------------------------------------------------


def reason_json(r: LeadReturnReason) -> dict[str, Any]:
    return {
        "id": r.id,
        "label": r.label,
        "outcome": r.outcome,
        "nurture_stage": r.nurture_stage,
        "note_required": r.note_required,
        "position": r.position,
        "active": r.active,
    }


def list_reasons(session: Session, active_only: bool = False) -> list[LeadReturnReason]:
    """The reasons in the order a rep sees them."""
    query = sa.select(LeadReturnReason).order_by(LeadReturnReason.position, LeadReturnReason.id)
    if active_only:
        query = query.where(LeadReturnReason.active.is_(True))
    return list(session.execute(query).scalars())


def _label_taken(session: Session, label: str, other_than: int | None) -> bool:
    t = LeadReturnReason.__table__.c
    query = sa.select(t.id).where(t.label == label)
    if other_than is not None:
        query = query.where(t.id != other_than)
    return session.execute(query).first() is not None


def save_reason(
    session: Session, data: ReasonIn, row: LeadReturnReason | None = None
) -> LeadReturnReason:
    """Create (``row`` None) or replace a reason, and commit; DuplicateLabel."""
    if _label_taken(session, data.label, row.id if row else None):
        raise DuplicateLabel(data.label)
    row = row or LeadReturnReason(label=data.label, outcome=data.outcome)
    for key, value in data.model_dump().items():
        setattr(row, key, value)
    session.add(row)
    session.commit()
    return row


def seed_defaults(session: Session) -> int:
    """Add the seeded reasons that are missing (a database emptied by hand); how many."""
    have = {r.label for r in list_reasons(session)}
    added = 0
    for n, (label, outcome, stage, note) in enumerate(SEEDED):
        if label not in have:
            session.add(
                LeadReturnReason(
                    label=label,
                    outcome=outcome,
                    nurture_stage=stage,
                    note_required=note,
                    position=n,
                )
            )
            added += 1
    session.commit()
    return added


def delete_reason(session: Session, row: LeadReturnReason) -> None:
    """Remove a reason (returned leads keep its label) and commit."""
    session.delete(row)
    session.commit()


def find_reason(session: Session, reason: int | str) -> LeadReturnReason:
    """An active reason by id or by label; UnknownReason."""
    t = LeadReturnReason.__table__.c
    where = t.id == reason if isinstance(reason, int) else t.label == reason
    row = session.execute(
        sa.select(LeadReturnReason).where(where, t.active.is_(True))
    ).scalar_one_or_none()
    if row is None:
        raise UnknownReason(f"no active return reason {reason!r}")
    return row


# --- returning a lead --------------------------------------------------------------------------


def _to_nurture(
    session: Session, settings: Settings, a: LeadAssignment, why: LeadReturnReason
) -> int | None:
    _drop_owner(session, a)
    stage = why.nurture_stage or "lead"
    by, note = f"rep:{a.userid}", f"退回：{why.label}"
    ledger.set_stage(session, a.contact_id, stage, by, manual=False, note=note)
    return None


def _to_next_rep(
    session: Session, settings: Settings, a: LeadAssignment, why: LeadReturnReason
) -> int | None:
    nxt = handoff.assign(
        session,
        a.contact_id,
        f"returned by {a.userid}",
        exclude={a.userid},
        cooldown=handoff.cooldown(settings),
    )
    return nxt.id if nxt is not None else None


def _disqualify(
    session: Session, settings: Settings, a: LeadAssignment, why: LeadReturnReason
) -> int | None:
    _drop_owner(session, a)
    ledger.set_stage(
        session, a.contact_id, "disqualified", f"rep:{a.userid}", note=f"退回：{why.label}"
    )
    return None


def _drop_owner(session: Session, a: LeadAssignment) -> None:
    c = Contact.__table__.c
    session.execute(
        sa.update(Contact.__table__)
        .where(c.id == a.contact_id, c.owner_userid == a.userid)
        .values(owner_userid=None)
    )


# outcome -> what it does inside the return's transaction; returns a new assignment to notify
OUTCOMES: dict[str, Callable[[Session, Settings, LeadAssignment, LeadReturnReason], int | None]] = {
    "nurture": _to_nurture,
    "reassign": _to_next_rep,
    "disqualify": _disqualify,
}


def return_lead(
    settings: Settings, lead_id: int, userid: str, reason: int | str, note: str = ""
) -> LeadAssignment:
    """The rep ``userid`` returns lead ``lead_id`` for ``reason`` (a reason's id or label),
    with an optional note (required by reasons such as 其他). What follows is the reason's
    outcome (see the module docstring). LeadError (UnknownReason, NoteRequired, …)."""
    note = (note or "").strip()
    with session_scope(settings.database_url) as session:
        a = handoff.lock_open_lead(session, lead_id, userid)
        why = find_reason(session, reason)
        if why.note_required and not note:
            raise NoteRequired(f"reason {why.label} needs a note")
        a.status, a.responded_at = "returned", utcnow()
        a.return_reason_id, a.return_reason, a.return_note = why.id, why.label, note or None
        session.add(a)
        session.flush()
        props = {
            "assignment_id": a.id,
            "userid": userid,
            "reason": why.label,
            "reason_id": why.id,
            "outcome": why.outcome,
            "note": note,
        }
        events.append(session, a.contact_id, "lead.returned", props, f"lead:{a.id}:returned")
        reassigned = OUTCOMES[why.outcome](session, settings, a, why)
        result = a
    if reassigned is not None:
        handoff.notify(settings, reassigned)
    queue.kick_outbox(settings)
    return result
