"""A contact's tags and their history: ``add`` and ``remove`` are the one way a tag changes
(bot.tagging.tags adds the platform sync on top; the callback's reply rules call ``add``).

- ``contact_tag`` is the current state: one row per tag the contact has now, with when, why and
  the event that caused it.
- ``event_tag`` says which tags each event earned and why (a tag rule, an interest word, a
  channel, a journey step, a rep's edit in WeCom, ...), also when the contact had the tag
  already (that is what "tagged N times" counts); rows stay when the tag goes.
- Every change is a timeline event of its own, ``tag.added`` / ``tag.removed``, stored as
  processed (journeys hear of a new tag through bot.core.changes, not through these), with the
  tag, the source, the actor and the causing event.

A causing event changes a tag at most once each way: the change's dedupe key names it, and a
retried or recomputed step that finds its change written changes nothing. A change without a
causing event (by hand, after a journey's wait) is itself the event that carries the tag.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.core.db import dialect_insert
from bot.core.models import ContactTag, Event, EventTag, utcnow

TAG_ADDED, TAG_REMOVED = "tag.added", "tag.removed"
CHANGES = (TAG_ADDED, TAG_REMOVED)
# Why a tag changes; the actor says which rule, word, channel, step or rep.
TAG_SOURCES = (
    "tag_rule",  # actor tag_rule:<id>
    "interest",  # interest:<word>
    "reply_rule",  # reply_rule:<id>
    "channel",  # channel:<id> (渠道活码)
    "campaign",
    "journey",  # journey:<id>:<step>
    "manual",  # the rep's userid, or "api"
    "wecom",  # the rep's userid whose edit in WeCom it came back from
    "rule",  # a rule, as stored before the kinds of rule were told apart
)


@dataclass(frozen=True)
class Why:
    source: str
    actor: str | None = None
    event_id: int | None = None  # the event that caused the change

    def __post_init__(self) -> None:
        if self.source not in TAG_SOURCES:
            raise ValueError(f"unknown tag source {self.source!r}")


def change_key(contact_id: int, kind: str, tag: str, cause: int | str) -> str:
    return f"{kind}:{contact_id}:{tag}:{cause}"


def add(session: Session, contact_id: int, tag: str, why: Why, now: datetime | None = None) -> bool:
    """Give the contact ``tag`` (kept with its first source if already there) in the
    caller's transaction; the causing event earns it either way. True if it was new."""
    now = now or utcnow()
    if why.event_id is not None:
        earn(session, contact_id, tag, why)
        if _written(session, change_key(contact_id, TAG_ADDED, tag, why.event_id)):
            return False
    t = ContactTag.__table__
    added = session.execute(
        dialect_insert(session, t)
        .values(
            contact_id=contact_id,
            tag=tag,
            source=why.source,
            source_ref=_short(why.actor),
            created_at=now,
            cause_event_id=why.event_id,
        )
        .on_conflict_do_nothing(index_elements=["contact_id", "tag"])
        .returning(t.c.id)
    ).scalar()
    if added is None:
        return False
    change = _change(session, contact_id, TAG_ADDED, tag, why, now)
    if why.event_id is None and change is not None:
        earn(session, contact_id, tag, Why(why.source, why.actor, change))
    return True


def remove(
    session: Session, contact_id: int, tag: str, why: Why, now: datetime | None = None
) -> bool:
    """Take ``tag`` off the contact (whatever gave it); True if it was there. Its history
    (the events that earned it, its tag.added) stays."""
    if why.event_id is not None and _written(
        session, change_key(contact_id, TAG_REMOVED, tag, why.event_id)
    ):
        return False
    t = ContactTag.__table__
    gone = session.execute(
        sa.delete(t).where(t.c.contact_id == contact_id, t.c.tag == tag).returning(t.c.id)
    ).first()
    if gone is None:
        return False
    _change(session, contact_id, TAG_REMOVED, tag, why, now or utcnow())
    return True


def earn(session: Session, contact_id: int, tag: str, why: Why) -> None:
    """Event ``why.event_id`` carries ``tag`` (its first reason stays)."""
    e, t = Event.__table__, EventTag.__table__
    source = sa.select(
        e.c.id,
        sa.literal(tag, sa.String()),
        sa.literal(contact_id, sa.Integer()),
        e.c.occurred_at,
        sa.literal(why.source, sa.String()),
        sa.literal(_short(why.actor), sa.String()),
    ).where(e.c.id == why.event_id)
    columns = ["event_id", "tag", "contact_id", "occurred_at", "source", "actor"]
    session.execute(
        dialect_insert(session, t).from_select(columns, source).on_conflict_do_nothing()
    )


def _short(actor: str | None) -> str | None:
    return actor[:64] if actor else actor


def _written(session: Session, key: str) -> bool:
    e = Event.__table__.c
    return session.execute(sa.select(e.id).where(e.dedupe_key == key)).first() is not None


def change_properties(tag: str, why: Why, **extra: Any) -> dict[str, Any]:
    return {
        "tag": tag,
        "source": why.source,
        "actor": _short(why.actor),
        "cause_event_id": why.event_id,
        **extra,
    }


def _change(
    session: Session, contact_id: int, kind: str, tag: str, why: Why, now: datetime
) -> int | None:
    """The timeline event of one change; None when this cause wrote it already."""
    key = change_key(contact_id, kind, tag, why.event_id) if why.event_id is not None else None
    t = Event.__table__
    return session.execute(
        dialect_insert(session, t)
        .values(
            contact_id=contact_id,
            type=kind,
            source="bot",
            properties=change_properties(tag, why),
            occurred_at=now,
            received_at=now,
            processed_at=now,
            dedupe_key=key,
        )
        .on_conflict_do_nothing()
        .returning(t.c.id)
    ).scalar()
