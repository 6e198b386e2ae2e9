"""Read side of the event store: contacts with their identities and tags, timelines."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.contacts import tag_history
from bot.core.db import keyset_before
from bot.core.models import Contact, ContactTag, Event, EventTag, Identity

IDENTITY_KINDS = ("openid", "unionid", "external_userid")


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _contact_dicts(session: Session, rows: list[Contact], with_tags: bool = True) -> list[dict]:
    ids = [c.id for c in rows]
    identities: dict[int, list[dict]] = {i: [] for i in ids}
    tags: dict[int, list[dict]] = {i: [] for i in ids}
    if ids:
        for ident in session.execute(
            sa.select(Identity).where(Identity.contact_id.in_(ids)).order_by(Identity.id)
        ).scalars():
            identities[ident.contact_id].append(
                {"kind": ident.kind, "value": ident.value, "app_id": ident.app_id}
            )
        if with_tags:
            _current_tags(session, ids, tags)
    out = []
    for c in rows:
        item = {
            "id": c.id,
            "identities": identities[c.id],
            "openid": next((i["value"] for i in identities[c.id] if i["kind"] == "openid"), None),
            "subscribed": c.subscribed,
            "subscribed_at": _iso(c.subscribed_at),
            "unsubscribed_at": _iso(c.unsubscribed_at),
            "first_seen_at": _iso(c.first_seen_at),
            "last_seen_at": _iso(c.last_seen_at),
            "last_interaction_at": _iso(c.last_interaction_at),
            "name": c.name,
            "stage": c.stage,
            "score": round(c.score, 2),
            "owner_userid": c.owner_userid,
            "source_channel_id": c.source_channel_id,
        }
        if with_tags:
            item["tags"] = tags[c.id]
        out.append(item)
    return out


def _current_tags(session: Session, ids: list[int], into: dict[int, list[dict]]) -> None:
    """Each current tag with when and why it was given: the source, the actor (rule, word,
    channel, journey step, rep) and the event that caused it."""
    rows = list(
        session.execute(
            sa.select(ContactTag).where(ContactTag.contact_id.in_(ids)).order_by(ContactTag.id)
        ).scalars()
    )
    causes = {r.cause_event_id for r in rows if r.cause_event_id is not None}
    types = dict(
        session.execute(sa.select(Event.id, Event.type).where(Event.id.in_(causes))).all()
        if causes
        else []
    )
    for tag in rows:
        into[tag.contact_id].append(
            {
                "tag": tag.tag,
                "source": tag.source,
                "source_ref": tag.source_ref,
                "actor": tag.source_ref,
                "cause_event_id": tag.cause_event_id,
                "cause_event_type": types.get(tag.cause_event_id),
                "added_at": _iso(tag.created_at),
            }
        )


def contact_json(session: Session, contact_id: int, with_tags: bool = True) -> dict | None:
    """The contact; for a merged-away id, the contact it lives on in."""
    contact = session.get(Contact, contact_id)
    seen = set()
    while contact is not None and contact.merged_into_id is not None and contact.id not in seen:
        seen.add(contact.id)
        contact = session.get(Contact, contact.merged_into_id)
    return _contact_dicts(session, [contact], with_tags)[0] if contact else None


def find_contacts(
    session: Session, identity: tuple[str, str] | None, limit: int, before: int | None
) -> tuple[list[dict], int | None]:
    """Contacts newest first (by id), optionally those holding one identity value."""
    query = (
        sa.select(Contact)
        .where(Contact.merged_into_id.is_(None))  # merged contacts live on in their survivor
        .order_by(Contact.id.desc())
        .limit(limit + 1)
    )
    if identity:
        kind, value = identity
        query = query.where(
            Contact.id.in_(
                sa.select(Identity.contact_id).where(Identity.kind == kind, Identity.value == value)
            )
        )
    if before:
        query = query.where(Contact.id < before)
    rows = list(session.execute(query).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    return _contact_dicts(session, rows), (rows[-1].id if more else None)


def event_json(e: Event) -> dict:
    return {
        "id": e.id,
        "type": e.type,
        "source": e.source,
        "properties": e.properties,
        "occurred_at": _iso(e.occurred_at),
        "received_at": _iso(e.received_at),
        "processed_at": _iso(e.processed_at),
    }


def timeline(
    session: Session,
    contact_id: int,
    limit: int,
    before: int | None,
    types: Sequence[str] | None = None,
    other_than: Sequence[str] | None = None,
    tag: str | None = None,
) -> tuple[list[dict], int | None]:
    """A contact's events newest first; ``before`` is the id of the last event already seen
    (keyset pagination on (occurred_at, id), stable while new events arrive). ``types``: only
    these event types; ``other_than``: none of these; ``tag``: the events that earned the tag
    and the tag's own changes."""
    query = (
        sa.select(Event)
        .where(Event.contact_id == contact_id)
        .order_by(Event.occurred_at.desc(), Event.id.desc())
        .limit(limit + 1)
    )
    if types is not None:
        query = query.where(Event.type.in_(types))
    if other_than is not None:
        query = query.where(Event.type.not_in(other_than))
    if tag:
        query = query.where(carrying(tag))
    if before:
        anchor = session.execute(
            sa.select(Event.occurred_at).where(Event.id == before, Event.contact_id == contact_id)
        ).scalar()
        if anchor is None:
            return [], None
        query = query.where(keyset_before(Event.occurred_at, Event.id, anchor, before))
    rows = list(session.execute(query).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    return [event_json(e) for e in rows], (rows[-1].id if more else None)


def carrying(tag: str) -> sa.ColumnElement[bool]:
    """An event that earned ``tag`` (event_tag, by its primary key), or a change of it."""
    et = EventTag.__table__.c
    earned = sa.exists().where(et.event_id == Event.id, et.tag == tag)
    change = sa.and_(
        Event.type.in_(tag_history.CHANGES), Event.properties["tag"].as_string() == tag
    )
    return sa.or_(earned, change)
