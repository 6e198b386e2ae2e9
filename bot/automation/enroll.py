"""Contacts entering and leaving journeys: the entry rule, the enrollment row and the
engine's first move (applied by bot.automation.moves); ending open enrollments (unsubscribed,
removed, the journey stopped)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

import journeys
from bot.automation.state import state_from_json, state_to_json
from bot.automation.tx import Tx, locked
from bot.contacts import record as events
from bot.core.db import dialect_insert
from bot.core.models import Contact, Enrollment
from journeys import commands as c

OPEN = ("active", "waiting", "asking", "paused")  # paused: held for one contact
# One enrollment's transition: (row, state before, state after, commands, the event's id).
Move = tuple[Enrollment, journeys.State, journeys.State, list[c.Command], int | None]


def lock_contact(session: Session, contact_id: int) -> None:
    """Serialize entry decisions for one contact (PostgreSQL; SQLite has one writer)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            sa.select(Contact.__table__.c.id)
            .where(Contact.__table__.c.id == contact_id)
            .with_for_update()
        )


def begin(
    tx: Tx,
    j: Any,
    d: journeys.Definition,
    contact_id: int,
    event: journeys.Event | None,
    event_id: int | None,
    contact: journeys.Contact,
) -> Move | None:
    """Enroll the contact if the entry rule lets them in; returns the engine's first move
    (to apply), or None when they stay out or were enrolled on this event already."""
    session = tx.session
    lock_contact(session, contact_id)
    en = Enrollment.__table__.c
    past = session.execute(
        sa.select(en.started_at, en.ended_at).where(
            en.journey_id == j.id, en.contact_id == contact_id
        )
    ).all()
    history = [journeys.Enrollment(r.started_at, r.ended_at) for r in past]
    if not journeys.may_enter(d.trigger.entry, history, tx.now):
        return None
    row = _insert(session, j.id, j.version, contact_id, event_id, tx.now)
    if row is None:
        return None  # enrolled on this event already (a re-run)
    tx.enrolled.add((j.id, contact_id))
    weights = tx.split_weights(j.id, d, contact_id)
    if event is None:
        new, cmds = journeys.enter(d, tx.now, contact, weights)
    else:
        new, cmds = journeys.start(d, event, tx.now, contact, weights)
    return (row, journeys.State(), new, cmds, event_id)


def _insert(
    session: Session,
    journey_id: int,
    version: int,
    contact_id: int,
    event_id: int | None,
    now: datetime,
) -> Enrollment | None:
    t = Enrollment.__table__
    new_id = session.execute(
        dialect_insert(session, t)
        .values(
            journey_id=journey_id,
            version=version,
            contact_id=contact_id,
            status="active",
            state={},
            start_event_id=event_id,
            last_event_id=event_id,
            started_at=now,
        )
        .on_conflict_do_nothing(index_elements=["journey_id", "start_event_id"])
        .returning(t.c.id)
    ).scalar()
    return None if new_id is None else session.get(Enrollment, new_id)


def exit_all(
    session: Session,
    contact_id: int,
    now: datetime,
    reason: str,
    journey_id: int | None = None,
) -> int:
    """End the contact's open enrollments (all, or in one journey): unsubscribed, removed."""
    en = Enrollment.__table__.c
    where = [en.contact_id == contact_id]
    if journey_id is not None:
        where.append(en.journey_id == journey_id)
    return _end_open(session, where, now, reason)


def stop_journey(session: Session, journey_id: int, now: datetime, reason: str) -> int:
    """End every open enrollment of a stopped journey; returns how many."""
    return _end_open(session, [Enrollment.__table__.c.journey_id == journey_id], now, reason)


def _end_open(session: Session, where: list[Any], now: datetime, reason: str) -> int:
    query = sa.select(Enrollment).where(*where, Enrollment.__table__.c.status.in_(OPEN))
    rows = session.execute(locked(session, query)).scalars().all()
    were_asking = {row.contact_id for row in rows if row.status == "asking"}
    for row in rows:
        _end(session, row, now, reason)
    session.flush()
    stopped_asking(session, were_asking)
    return len(rows)


# contact.asking is true while one of the contact's enrollments is asking: the callback reads
# it in the statement that touches the contact, and looks for an open question only then.


def started_asking(session: Session, contact_ids: set[int]) -> None:
    """In the transaction that makes an enrollment ask: set it (unconditionally, so that it
    waits for a concurrent ``stopped_asking`` and lands after it)."""
    if contact_ids:
        c = Contact.__table__.c
        session.execute(
            sa.update(Contact.__table__).where(c.id.in_(sorted(contact_ids))).values(asking=True)
        )


def stopped_asking(session: Session, contact_ids: set[int]) -> None:
    """In the transaction where an enrollment stops asking: true only if another still asks.
    The rows are locked first, so the recount sees a concurrent ``started_asking`` committed."""
    if not contact_ids:
        return
    c, en = Contact.__table__.c, Enrollment.__table__.c
    ids = sorted(contact_ids)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.select(c.id).where(c.id.in_(ids)).order_by(c.id).with_for_update())
    still = sa.exists().where(en.contact_id == c.id, en.status == "asking")
    session.execute(sa.update(Contact.__table__).where(c.id.in_(ids)).values(asking=still))


def _end(session: Session, row: Enrollment, now: datetime, reason: str) -> None:
    state = state_from_json(row.state)
    row.state = {**state_to_json(state), "status": "exited", "wake_at": None}
    row.status, row.wake_at, row.ended_at, row.reason = "exited", None, now, reason[:200]
    session.add(row)
    events.append(
        session,
        row.contact_id,
        "journey.exited",
        {"enrollment_id": row.id, "journey_id": row.journey_id, "reason": reason},
        dedupe_key=f"j{row.id}:exit",
        pipeline=False,
    )
