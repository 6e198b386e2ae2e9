"""record(): the one way an event enters the store.

In one transaction: the contact (found by identity, or created on first sight), the event
(unique by its dedupe key, so a retried callback adds nothing), the contact's new state, the
tags that matched, and an outbox row for the background path. The caller enqueues the job
after commit (see bot.core.queue); if that fails the sweeper finds the outbox row later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.contacts import statements, tag_history
from bot.core.db import dialect_insert
from bot.core.models import Event, utcnow

TAG_SOURCES = tag_history.TAG_SOURCES


@dataclass(frozen=True)
class IncomingEvent:
    """A normalized interaction, before it is stored."""

    type: str  # e.g. oa.text, oa.subscribe
    source: str  # oa | wecom | h5 | api
    identity_kind: str  # openid | unionid | external_userid
    identity_value: str
    app_id: str
    occurred_at: datetime
    dedupe_key: str | None
    properties: dict[str, Any] = field(default_factory=dict)
    # Did the person act themself (opens messaging's 48-hour window)?
    interaction: bool = True
    # True: now following; False: unfollowed; None: unchanged.
    subscribed: bool | None = None
    # A callback's signed (timestamp, nonce) as a key unique per channel, and its body's
    # digest: a second delivery with the same key must carry the same body (a retry).
    callback_nonce: str | None = None
    body_digest: str | None = None
    # When a callback arrived (server clock): the contact's last interaction, which opens
    # the 48-hour window, is this, never the sender's clock. None: occurred_at.
    received_at: datetime | None = None


@dataclass(frozen=True)
class TagGrant:
    tag: str
    source: str = "rule"
    source_ref: str | None = None


@dataclass(frozen=True)
class Recorded:
    event_id: int
    contact_id: int | None
    outbox_id: int | None
    reply: str | None
    duplicate: bool
    kicked: bool = False  # the outbox drain was kicked after the commit already


class NonceReused(Exception):
    """A callback's (timestamp, nonce) was stored already with another body: a replay."""


class _IdentityRace(Exception):
    """Another request created the same identity first; the transaction is retried."""


class _MergedMeanwhile(Exception):
    """The contact was merged while this transaction waited for its row: the event must go
    to the survivor (its timeline, its drain's partition); the transaction is retried."""


@dataclass(frozen=True)
class _Found:
    contact_id: int
    asking: bool  # one of its journeys asks it something
    new: bool  # created by this transaction


def _find_or_create_contact(session: Session, ev: IncomingEvent, now: datetime) -> _Found:
    conn = session.connection()
    dialect = conn.dialect.name
    who = {"kind": ev.identity_kind, "app_id": ev.app_id, "value": ev.identity_value}
    row = conn.execute(statements.stmt(dialect, "find"), who).first()
    if row is not None:
        if row.merged_into_id is not None:
            raise _MergedMeanwhile
        return _Found(row.contact_id, bool(row.asking), new=False)
    contact_id = conn.execute(
        statements.stmt(dialect, "contact"), {"t": ev.occurred_at, "now": now}
    ).scalar_one()
    inserted = conn.execute(
        statements.stmt(dialect, "identity"), {**who, "contact_id": contact_id, "now": now}
    ).scalar()
    if inserted is None:
        raise _IdentityRace
    return _Found(contact_id, asking=False, new=True)


def _update_contact(session: Session, contact_id: int, ev: IncomingEvent) -> None:
    """Touch the contact (last seen, last interaction, subscription)."""
    conn = session.connection()
    stmt = statements.stmt(conn.dialect.name, ("touch", ev.interaction, ev.subscribed))
    params = {"t": ev.occurred_at, "contact_id": contact_id}
    if ev.interaction:
        params["arrived"] = ev.received_at or ev.occurred_at
    merged_into, _asking = conn.execute(stmt, params).one()
    if merged_into is not None:
        raise _MergedMeanwhile


def touch_later(ev: IncomingEvent) -> bool:
    """Is this event's contact touch left to the background (``apply_touches``)? Yes for what a
    person says or clicks; a follow, an unfollow and platform notices touch at once."""
    return ev.interaction and ev.subscribed is None


def apply_touches(session: Session, touches: list[tuple[int, datetime, datetime]]) -> None:
    """The deferred touches of interactions (see ``touch_later``): (contact id, occurred at,
    arrived at) each, in one executemany, before the background steps see the events. A touch
    only moves times forward, so their order does not matter."""
    if not touches:
        return
    conn = session.connection()
    stmt = statements.stmt(conn.dialect.name, ("touch_many", True, None))
    conn.execute(stmt, [{"contact_id": c, "t": t, "arrived": a} for c, t, a in touches])


def add_tags(
    session: Session,
    contact_id: int,
    grants: list[TagGrant],
    now: datetime,
    event_id: int | None = None,
) -> None:
    """Add tags a contact does not have yet (a tag already there keeps its first source);
    ``event_id``, the event that earned them, carries them either way."""
    for grant in grants:
        why = tag_history.Why(grant.source, grant.source_ref, event_id)
        tag_history.add(session, contact_id, grant.tag, why, now)


def _existing(session: Session, ev: IncomingEvent) -> Recorded | None:
    """The stored event ``ev`` collided with: by its callback nonce (the same body: a retry;
    another body: NonceReused), else by its dedupe key; None if neither is stored (a guarded
    insert found its contact merged away)."""
    e = Event.__table__.c
    columns = (e.id, e.contact_id, e.reply, e.callback_digest)
    row = None
    if ev.callback_nonce is not None:
        row = session.execute(
            sa.select(*columns).where(e.callback_nonce == ev.callback_nonce)
        ).first()
        if row is not None and row.callback_digest != ev.body_digest:
            raise NonceReused(ev.callback_nonce)
    if row is None and ev.dedupe_key is not None:
        row = session.execute(sa.select(*columns).where(e.dedupe_key == ev.dedupe_key)).first()
    if row is None:
        return None
    return Recorded(row.id, row.contact_id, None, row.reply, duplicate=True)


def event_params(ev: IncomingEvent, contact_id: int | None, reply: Any, now: datetime) -> dict:
    """The parameters of the event statements (bot.contacts.statements) for ``ev``."""
    return {
        "contact_id": contact_id,
        "type": ev.type,
        "source": ev.source,
        "properties": ev.properties,
        "t": ev.occurred_at,
        "now": now,
        "dedupe_key": ev.dedupe_key,
        "reply": reply,
        "callback_nonce": ev.callback_nonce,
        "callback_digest": ev.body_digest,
    }


def _insert_event(
    session: Session,
    contact_id: int | None,
    ev: IncomingEvent,
    reply: str | None,
    now: datetime,
    outbox: bool = True,
    guarded: bool = False,
    interacted_at: datetime | None = None,
) -> tuple[int, int | None] | None:
    """Insert the event and its outbox row (``outbox=False``: none, and it is stored as
    processed); None when the dedupe key is already stored (or, ``guarded``, when the contact
    was merged away meanwhile). ``interacted_at``: the contact touch the background owes."""
    conn = session.connection()
    dialect = conn.dialect.name
    event_id = conn.execute(
        statements.stmt(dialect, "event_guarded" if guarded else "event"),
        event_params(ev, contact_id, reply, now),
    ).scalar()
    if event_id is None:
        return None
    if not outbox:
        conn.execute(
            sa.update(Event.__table__)
            .where(Event.__table__.c.id == event_id)
            .values(processed_at=now)
        )
        return event_id, None
    outbox_id = conn.execute(
        statements.stmt(dialect, "outbox"),
        {
            "event_id": event_id,
            "now": now,
            "priority": int(ev.source == "bot"),
            "interacted_at": interacted_at,
        },
    ).scalar_one()
    return event_id, outbox_id


def append(
    session: Session,
    contact_id: int | None,
    type: str,
    properties: dict[str, Any],
    dedupe_key: str | None,
    source: str = "bot",
    pipeline: bool = True,
) -> int | None:
    """Add an event Yuchi itself caused (a message sent, held, failed) to a known contact,
    inside the caller's transaction. Returns the outbox id to enqueue after the caller
    commits, or None if an event with this dedupe key exists already (or ``pipeline=False``:
    it only goes on the timeline, no background step sees it)."""
    if not pipeline:
        timeline(session, [(contact_id, type, properties, dedupe_key)], source)
        return None
    now = utcnow()
    ev = IncomingEvent(
        type=type,
        source=source,
        identity_kind="",
        identity_value="",
        app_id="",
        occurred_at=now,
        dedupe_key=dedupe_key,
        properties=properties,
        interaction=False,
    )
    inserted = _insert_event(session, contact_id, ev, None, now, outbox=pipeline)
    return None if inserted is None else inserted[1]


TimelineItem = tuple[int, str, dict[str, Any], str | None]  # contact, type, properties, key


def timeline(session: Session, items: list[TimelineItem], source: str = "bot") -> None:
    """Events Yuchi caused that only go on the timeline (stored as processed: no background
    step sees them), in one executemany; a dedupe key stored already is skipped."""
    if not items:
        return
    now = utcnow()
    stmt = dialect_insert(session, Event.__table__).on_conflict_do_nothing(
        index_elements=["dedupe_key"]
    )
    session.execute(
        stmt,
        [
            {
                "contact_id": contact_id,
                "type": type_,
                "source": source,
                "properties": properties,
                "occurred_at": now,
                "received_at": now,
                "dedupe_key": key,
                "processed_at": now,
            }
            for contact_id, type_, properties, key in items
        ],
    )


OnInsert = Callable[[Session, int, int, bool], str | None]
# Before the insert: (session, contact_id, asking) → the reply to store with the event, or
# LATER to decide after the insert (with the event's id) through ``on_insert``.
Early = Callable[[Session, int, bool], Any]
LATER = object()


# One piece: the order of these statements is the callback's whole write path, and each
# branch (new contact, deferred touch, early or late reply) is a line or two.
def _record_once(
    session: Session,
    ev: IncomingEvent,
    reply: str | None,
    tags: list[TagGrant],
    on_insert: OnInsert | None = None,
    early: Early | None = None,
) -> Recorded:
    now = utcnow()
    # An event about no one person (identity_value "") is stored without a contact.
    found = _find_or_create_contact(session, ev, now) if ev.identity_value else None
    decided: Any = LATER
    if found is not None and early is not None:
        decided = early(session, found.contact_id, found.asking)
    if decided is not LATER:
        reply = decided
    # A known contact's interaction writes only its event and outbox row: the touch is owed.
    defer = found is not None and not found.new and touch_later(ev)
    inserted = _insert_event(
        session,
        found.contact_id if found else None,
        ev,
        reply,
        now,
        guarded=found is not None and not found.new,
        interacted_at=(ev.received_at or ev.occurred_at) if defer else None,
    )
    if inserted is None:  # a retry of something already stored, or the contact was merged
        session.rollback()
        existing = _existing(session, ev)
        if existing is None:
            raise _MergedMeanwhile
        return existing
    event_id, outbox_id = inserted
    if found is not None:
        if not defer:
            _update_contact(session, found.contact_id, ev)
        add_tags(session, found.contact_id, tags, now, event_id)
        if on_insert is not None and decided is LATER:
            late = on_insert(session, event_id, found.contact_id, found.asking)
            if late is not None:
                reply = late
                session.execute(
                    sa.update(Event.__table__)
                    .where(Event.__table__.c.id == event_id)
                    .values(reply=reply)
                )
    session.commit()
    contact_id = found.contact_id if found else None
    return Recorded(event_id, contact_id, outbox_id, reply, duplicate=False)


def record(
    session: Session,
    ev: IncomingEvent,
    reply: str | None = None,
    tags: list[TagGrant] | None = None,
    on_insert: OnInsert | None = None,
    early: Early | None = None,
) -> Recorded:
    """Store one event (with its reply and tags) and commit; idempotent on ``dedupe_key``.
    ``on_insert(session, event_id, contact_id, asking)`` runs in the same transaction once the
    event is new (not for a retry; ``asking``: one of the contact's journeys asks it
    something); a text it returns becomes the stored reply. ``early(session, contact_id,
    asking)``, when given, runs before the insert: what it returns (unless LATER) is the
    reply stored with the event, and ``on_insert`` is not called. Raises NonceReused when
    ``ev.callback_nonce`` is stored already with another body."""
    for attempt in range(3):
        try:
            return _record_once(session, ev, reply, tags or [], on_insert, early)
        except (_IdentityRace, _MergedMeanwhile, IntegrityError):
            # A concurrent request created the same contact identity (or stored the same
            # event between our statements), or merged the contact: start again and we will
            # find theirs.
            session.rollback()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")
