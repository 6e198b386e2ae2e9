"""The journey runner: the database side of the pure engine in journeys/, event by event.

For every stored event about a contact (``on_event``, a pipeline step, last in
bot.background.pipeline.STEPS), it advances the contact's enrollments that wait for an event or
ask a question, then starts the published journeys whose trigger matches and whose entry rule
lets the contact in; then it does the same for the changes earlier steps noted
(bot.core.changes: a tag added, the score moving). ``answer_now`` is the web path's way in:
the reply to an open question is advanced inside the callback's transaction, so the next
message goes back as the instant passive reply.

The pieces: definitions (the published versions, cached), state (the enrollment state codec),
snapshots (contacts as the engine sees them), enroll (entering and leaving), moves (storing a
transition and claiming its commands), execute (what each command does), wake_jobs and wakes
(waits coming due). Enrollments run on the journey version they entered (journey_version rows
never change). A paused journey neither enrolls nor advances anyone (its due wakes run on
resume); a stopped one ends every open enrollment.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

import journeys
from bot.automation import moves
from bot.automation.definitions import definition_for, status_of
from bot.automation.enroll import exit_all
from bot.automation.snapshots import event_of, snapshot
from bot.automation.state import state_from_json
from bot.automation.tx import After, Tx, locked
from bot.contacts import identity as contacts
from bot.core import changes
from bot.core.config import Settings
from bot.core.models import Enrollment, Event, Journey, utcnow
from journeys.engine import STAGE_CHANGED, awaits, could_start

if TYPE_CHECKING:
    from bot.core.context import Context

log = logging.getLogger(__name__)

UNSUBSCRIBE = "oa.unsubscribe"
MAX_CHANGE_ROUNDS = 10  # journeys that tag contacts that start journeys that tag …


def on_event(ctx: Context) -> None:
    """Pipeline step: advance the contact's open enrollments and start matching journeys, for
    the event and then for every change the earlier steps noted."""
    ev, session = ctx.event, ctx.session
    if ev.contact_id is None:
        changes.take(session)
        return
    tx = Tx(ctx.settings, session, utcnow(), ctx.after_commit, inline=True)
    contact_id = contacts.resolve(session, ev.contact_id)
    if ev.type == UNSUBSCRIBE:
        changes.take(session)
        exit_all(session, contact_id, tx.now, "unsubscribed")
        return
    quiet = ev.source == "bot" and ev.type != STAGE_CHANGED
    handle(tx, contact_id, event_of(ev), ev.id, quiet)
    drain_changes(tx)


def drain_changes(tx: Tx) -> None:
    """Handle the changes the transaction noted (tags, score, stage), round after round."""
    for _ in range(MAX_CHANGE_ROUNDS):
        noted = changes.take(tx.session)
        if not noted:
            return
        for contact_id, type_, props in noted:
            event = journeys.Event(type=type_, properties=props, occurred_at=tx.now)
            handle(tx, contacts.resolve(tx.session, contact_id), event, None)
    dropped = changes.take(tx.session)
    if dropped:
        log.warning("journeys: %d changes left after %d rounds", len(dropped), MAX_CHANGE_ROUNDS)


def open_enrollments(session: Session, contact_id: int, statuses: tuple[str, ...]) -> list:
    en = Enrollment.__table__.c
    return list(
        session.execute(
            locked(
                session,
                sa.select(Enrollment)
                .where(en.contact_id == contact_id, en.status.in_(statuses))
                .order_by(en.id),
            )
        ).scalars()
    )


def handle(
    tx: Tx,
    contact_id: int,
    event: journeys.Event,
    event_id: int | None,
    quiet: bool = False,
) -> None:
    """Advance the open enrollments this event concerns, then enroll where a trigger fires.
    ``quiet``: an event Yuchi made (a journey's own, a delivery outcome) that cannot answer a
    question, reach a goal or enter a segment; it only concerns waits and triggers on its type.
    """
    session = tx.session
    published = tx.published()
    if not published:
        return  # nothing published: no enrollment moves (paused ones wait), none starts
    open_ones = open_enrollments(session, contact_id, ("waiting", "asking"))
    if quiet:
        open_ones = [r for r in open_ones if awaits(state_from_json(r.state), event.type)]
    live = {j.id for j in published}
    contact: journeys.Contact | None = None

    def current() -> journeys.Contact:
        nonlocal contact
        if contact is None:
            contact = snapshot(session, contact_id)
        return contact

    for row in open_ones:
        if event_id is not None and row.last_event_id is not None and row.last_event_id >= event_id:
            continue  # this event (or a later one) was applied already
        if row.journey_id not in live:
            continue  # paused: nothing moves
        if event_id is not None:
            row.last_event_id = event_id
        if moves.advance(tx, row, event, event_id, current()):
            contact = None  # read again: the actions changed it
    for j in published:
        if (j.id, contact_id) in tx.enrolled:
            continue
        try:
            d = definition_for(session, j.id, j.version)
        except journeys.DefinitionError:
            log.exception("journey %s v%s is not valid", j.id, j.version)
            continue
        if not could_start(d, event.type, quiet):
            continue
        if not journeys.triggered_by(d, event, current(), tx.now):
            continue
        if moves.enroll_contact(tx, j, d, contact_id, event, event_id, current()) is not None:
            contact = None


# --- the web path: an open question answered in the callback -------------------------------


def has_open_question(session: Session, contact_id: int) -> bool:
    """Is a published journey waiting for this contact's answer? (Their text belongs to it,
    not to the keyword replies.)"""
    en, j = Enrollment.__table__.c, Journey.__table__.c
    contact_id = contacts.resolve(session, contact_id)
    return (
        session.execute(
            sa.select(en.id)
            .join(Journey.__table__, j.id == en.journey_id)
            .where(en.contact_id == contact_id, en.status == "asking", j.status == "published")
            .limit(1)
        ).first()
        is not None
    )


def answer_now(
    settings: Settings, session: Session, event_id: int, contact_id: int, after: After
) -> tuple[str, dict[str, Any]] | None:
    """Advance the contact's open questions with their just-stored reply, in the callback's
    transaction; the first message that follows comes back as (kind, payload) to send as the
    passive reply (it is stored as sent). The background pipeline then skips this event for
    these enrollments (``last_event_id``)."""
    ev = session.get(Event, event_id)
    tx = Tx(settings, session, utcnow(), after, passive=[])
    cid = contacts.resolve(session, contact_id)
    contact = snapshot(session, cid)
    event = event_of(ev)
    for row in open_enrollments(session, cid, ("asking",)):
        if status_of(session, row.journey_id) != "published":
            continue
        row.last_event_id = event_id
        if moves.advance(tx, row, event, event_id, contact):
            contact = snapshot(session, cid)
    drain_changes(tx)  # tags its steps gave may start other journeys
    return tx.passive[0] if tx.passive else None
