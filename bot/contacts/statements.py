"""The callback's write path as statements, built once per dialect: a callback pays for
binding parameters, not for building SQL (≈0.5 ms saved). Executed by bot.contacts.record on the
session's Core connection, and by bot.contacts.fast_record straight on the DB-API cursor."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from bot.core.models import Contact, Event, Identity, JSONType, Outbox, UTCDateTime

_statements: dict[tuple[str, Any], Any] = {}


def stmt(dialect: str, key: Any) -> Any:
    found = _statements.get((dialect, key))
    if found is None:
        found = _statements[(dialect, key)] = _build(dialect, key)
    return found


def _insert_for(dialect: str) -> Any:
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def _now_param() -> Any:
    return sa.bindparam("now", type_=UTCDateTime())


def _find(dialect: str) -> Any:
    """The contact of an identity with what the callback needs of it, in one read."""
    ident, contact = Identity.__table__, Contact.__table__
    return (
        sa.select(ident.c.contact_id, contact.c.merged_into_id, contact.c.asking)
        .join(contact, contact.c.id == ident.c.contact_id)
        .where(
            ident.c.kind == sa.bindparam("kind"),
            ident.c.app_id == sa.bindparam("app_id"),
            ident.c.value == sa.bindparam("value"),
        )
    )


def _new_contact(dialect: str) -> Any:
    contact = Contact.__table__
    t = sa.bindparam("t", type_=UTCDateTime())
    return (
        sa.insert(contact)
        .values(first_seen_at=t, last_seen_at=t, created_at=_now_param())
        .returning(contact.c.id)
    )


def _new_identity(dialect: str) -> Any:
    ident = Identity.__table__
    return (
        _insert_for(dialect)(ident)
        .values(
            contact_id=sa.bindparam("contact_id"),
            kind=sa.bindparam("kind"),
            app_id=sa.bindparam("app_id"),
            value=sa.bindparam("value"),
            created_at=_now_param(),
        )
        .on_conflict_do_nothing(index_elements=["kind", "app_id", "value"])
        .returning(ident.c.id)
    )


def _event_values() -> dict[str, Any]:
    return {
        "contact_id": sa.bindparam("contact_id"),
        "type": sa.bindparam("type"),
        "source": sa.bindparam("source"),
        "properties": sa.bindparam("properties", type_=JSONType),
        "occurred_at": sa.bindparam("t", type_=UTCDateTime()),
        "received_at": _now_param(),
        "dedupe_key": sa.bindparam("dedupe_key"),
        "reply": sa.bindparam("reply"),
        "callback_nonce": sa.bindparam("callback_nonce"),
        "callback_digest": sa.bindparam("callback_digest"),
    }


def _new_event(dialect: str) -> Any:
    event = Event.__table__
    return (
        _insert_for(dialect)(event)
        .values(**_event_values())
        # Either unique key (dedupe_key, callback_nonce) already stored: nothing inserted,
        # and _existing says which.
        .on_conflict_do_nothing()
        .returning(event.c.id)
    )


def _new_event_guarded(dialect: str) -> Any:
    """The event, inserted only while its contact is not merged away. On PostgreSQL the
    contact row is share-locked by the same statement: a merge waits for this commit (and then
    moves the event), or went first (and nothing is inserted: the caller retries)."""
    event, contact = Event.__table__, Contact.__table__
    values = _event_values()
    alive = sa.select(contact.c.id).where(
        contact.c.id == sa.bindparam("contact_id"), contact.c.merged_into_id.is_(None)
    )
    if dialect == "postgresql":
        alive = alive.with_for_update(read=True)
    rows = sa.select(*values.values()).where(sa.exists(alive))
    return (
        _insert_for(dialect)(event)
        .from_select(list(values), rows)
        .on_conflict_do_nothing()
        .returning(event.c.id)
    )


def _new_outbox_row(dialect: str) -> Any:
    return (
        sa.insert(Outbox.__table__)
        .values(
            event_id=sa.bindparam("event_id"),
            status="pending",
            priority=sa.bindparam("priority"),
            attempts=0,
            created_at=_now_param(),
            interacted_at=sa.bindparam("interacted_at", type_=UTCDateTime()),
        )
        .returning(Outbox.__table__.c.id)
    )


def _touch(interaction: bool, subscribed: bool | None, returning: bool = True) -> Any:
    contact = Contact.__table__
    c = contact.c
    t = sa.bindparam("t", type_=UTCDateTime())
    values: dict[str, Any] = {
        "last_seen_at": sa.case((c.last_seen_at < t, t), else_=c.last_seen_at),
        "first_seen_at": sa.case((c.first_seen_at > t, t), else_=c.first_seen_at),
    }
    if interaction:
        arrived = sa.bindparam("arrived", type_=UTCDateTime())
        values["last_interaction_at"] = sa.case(
            (c.last_interaction_at.is_(None), arrived),
            (c.last_interaction_at < arrived, arrived),
            else_=c.last_interaction_at,
        )
    if subscribed is True:
        values.update(subscribed=True, subscribed_at=t)
    elif subscribed is False:
        values.update(subscribed=False, unsubscribed_at=t)
    update = sa.update(contact).where(c.id == sa.bindparam("contact_id")).values(**values)
    return update.returning(c.merged_into_id, c.asking) if returning else update


def _outbox_for(added: Any) -> Any:
    """The pending outbox row of each event the CTE ``added`` inserted."""
    outbox = Outbox.__table__
    return (
        sa.insert(outbox)
        .from_select(
            ["event_id", "status", "priority", "attempts", "created_at", "interacted_at"],
            sa.select(
                added.c.id,
                sa.literal("pending"),
                sa.bindparam("priority"),
                sa.literal(0),
                _now_param(),
                sa.bindparam("interacted_at", type_=UTCDateTime()),
            ),
        )
        .returning(outbox.c.id, outbox.c.event_id)
    )


def _with_outbox(event_insert: Any) -> Any:
    """PostgreSQL: the event and its outbox row in one statement (one round trip): the row
    is added only when the event was (``RETURNING`` is empty for a duplicate)."""
    return _outbox_for(event_insert.cte("added"))


def _known_event_outbox(dialect: str) -> Any:
    """PostgreSQL: a known contact's event and its outbox row in one statement, found by its
    identity: nothing is inserted (no row comes back) when the identity is unknown, its
    contact merged away, the event stored already, or ``gate`` and the contact asking (a
    journey's question decides that reply). The contact row is share-locked, as in
    _new_event_guarded: a merge waits for this statement, or went first (then the merged
    contact's row no longer qualifies). Returns (outbox id, event id, contact id)."""
    ident, contact, event = Identity.__table__, Contact.__table__, Event.__table__
    who = (
        sa.select(ident.c.contact_id)
        .join(contact, contact.c.id == ident.c.contact_id)
        .where(
            ident.c.kind == sa.bindparam("kind"),
            ident.c.app_id == sa.bindparam("app_id"),
            ident.c.value == sa.bindparam("value"),
            contact.c.merged_into_id.is_(None),
            sa.not_(sa.and_(sa.bindparam("gate", type_=sa.Boolean), contact.c.asking)),
        )
        .with_for_update(read=True, of=contact)
        .cte("who")
    )
    values = {**_event_values(), "contact_id": who.c.contact_id}
    added = (
        _insert_for(dialect)(event)
        .from_select(list(values), sa.select(*values.values()).select_from(who))
        .on_conflict_do_nothing()
        .returning(event.c.id, event.c.contact_id)
        .cte("added")
    )
    queued = _outbox_for(added).cte("queued")
    return sa.select(queued.c.id, queued.c.event_id, added.c.contact_id).join_from(
        queued, added, added.c.id == queued.c.event_id
    )


_BUILDERS = {
    "find": _find,
    "known_event_outbox": _known_event_outbox,
    "contact": _new_contact,
    "identity": _new_identity,
    "event": _new_event,
    "event_guarded": _new_event_guarded,
    "outbox": _new_outbox_row,
    "event_outbox": lambda dialect: _with_outbox(_new_event(dialect)),
    "event_guarded_outbox": lambda dialect: _with_outbox(_new_event_guarded(dialect)),
}


def _build(dialect: str, key: Any) -> Any:
    if isinstance(key, str):
        return _BUILDERS[key](dialect)
    kind, interaction, subscribed = key
    assert kind in ("touch", "touch_many")
    return _touch(interaction, subscribed, returning=kind == "touch")
