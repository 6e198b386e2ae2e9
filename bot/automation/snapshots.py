"""Contacts and events as the pure engine sees them, read from the database."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

import sqlalchemy as sa
from sqlalchemy.orm import Session

import journeys
from bot.audiences import segments as saved_segments
from bot.core.db import any_of
from bot.core.models import Contact, ContactTag, Event


class EventCounts(Mapping[str, int]):
    """The contact's events by type, counted on first use: only a condition on past events
    (``{event: ..., count: ...}``) needs them, and the query reads the contact's whole
    timeline."""

    def __init__(self, session: Session, contact_id: int) -> None:
        self._session, self._contact_id = session, contact_id
        self._counts: dict[str, int] | None = None

    def _load(self) -> dict[str, int]:
        if self._counts is None:
            e = Event.__table__.c
            self._counts = dict(
                self._session.execute(
                    sa.select(e.type, sa.func.count())
                    .where(e.contact_id == self._contact_id)
                    .group_by(e.type)
                ).all()
            )
        return self._counts

    def __getitem__(self, key: str) -> int:
        return self._load()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())


class Membership(Mapping[int, bool]):
    """Saved segment id -> is the contact a member now: each asked of the database once, when
    a ``{segment: id}`` condition reads it (an unknown segment: not a member)."""

    def __init__(self, session: Session, contact_id: int) -> None:
        self._session, self._contact_id = session, contact_id
        self._known: dict[int, bool] = {}

    def __getitem__(self, key: int) -> bool:
        if key not in self._known:
            try:
                self._known[key] = saved_segments.matches(self._session, key, self._contact_id)
            except saved_segments.UnknownSegment:
                self._known[key] = False
        return self._known[key]

    def __iter__(self) -> Iterator[int]:
        return iter(self._known)

    def __len__(self) -> int:
        return len(self._known)


def snapshot(session: Session, contact_id: int) -> journeys.Contact:
    return snapshots(session, [contact_id]).get(contact_id) or journeys.Contact(id=contact_id)


def snapshots(
    session: Session,
    contact_ids: Iterable[int],
    counts: Mapping[int, Mapping[str, int]] | None = None,
) -> dict[int, journeys.Contact]:
    """The contacts as the engine sees them, in two queries. ``counts``: their events by type
    when the caller counted them in bulk (else each is counted on first use)."""
    ids = sorted(set(contact_ids))
    tags: dict[int, set[str]] = {i: set() for i in ids}
    ct, k = ContactTag.__table__.c, Contact.__table__.c
    for cid, tag in session.execute(
        sa.select(ct.contact_id, ct.tag).where(any_of(session, ct.contact_id, ids))
    ):
        tags[cid].add(tag)
    out = {}
    for r in session.execute(
        sa.select(k.id, k.name, k.fields, k.score, k.stage, k.last_seen_at).where(
            any_of(session, k.id, ids)
        )
    ):
        out[r.id] = journeys.Contact(
            id=r.id,
            name=r.name or "",
            tags=frozenset(tags[r.id]),
            fields=dict(r.fields or {}),
            score=float(r.score or 0.0),
            stage=r.stage or "subscriber",
            event_counts=counts.get(r.id, {}) if counts is not None else EventCounts(session, r.id),
            last_seen_at=r.last_seen_at,
            segments=Membership(session, r.id),
        )
    return out


def event_of(ev: Event) -> journeys.Event:
    return journeys.Event(type=ev.type, properties=dict(ev.properties), occurred_at=ev.occurred_at)
