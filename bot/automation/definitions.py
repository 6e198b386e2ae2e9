"""Journey definitions as the runtime reads them: the published versions (cached: a
journey_version row never changes), the list of published journeys, and publishing a draft."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

import journeys
from bot.core.models import Journey, JourneyVersion, utcnow

CACHE_SIZE = 512
_versions: dict[tuple[int, int], journeys.Definition] = {}


def definition_for(session: Session, journey_id: int, version: int) -> journeys.Definition:
    """The published definition of this journey version (versions never change: cached)."""
    key = (journey_id, version)
    found = _versions.get(key)
    if found is None:
        raw = session.execute(
            sa.select(JourneyVersion.definition).where(
                JourneyVersion.journey_id == journey_id, JourneyVersion.version == version
            )
        ).scalar()
        if raw is None:
            raise journeys.DefinitionError([journeys.Problem(None, "version", f"no v{version}")])
        found = journeys.check(raw)
        if len(_versions) > CACHE_SIZE:
            _versions.clear()
        _versions[key] = found
    return found


def invalidate() -> None:
    """Forget the cached versions (the tests reuse journey ids; Yuchi never deletes one)."""
    _versions.clear()


def published(session: Session) -> list[Any]:
    """The published journeys: rows of (id, name, version), by id."""
    j = Journey.__table__.c
    return list(
        session.execute(
            sa.select(j.id, j.name, j.version).where(j.status == "published").order_by(j.id)
        )
    )


def status_of(session: Session, journey_id: int) -> str | None:
    return session.execute(
        sa.select(Journey.__table__.c.status).where(Journey.__table__.c.id == journey_id)
    ).scalar()


def journey_name(session: Session, journey_id: int) -> str:
    return (
        session.execute(
            sa.select(Journey.__table__.c.name).where(Journey.__table__.c.id == journey_id)
        ).scalar()
        or f"#{journey_id}"
    )


def publish(session: Session, j: Journey, now: datetime | None = None) -> JourneyVersion | None:
    """Make the draft the journey's new version (unless it equals the latest one) and let
    contacts in. Returns the new version, or None when the draft was already published."""
    now = now or utcnow()
    latest = None
    if j.version:
        latest = session.execute(
            sa.select(JourneyVersion).where(
                JourneyVersion.journey_id == j.id, JourneyVersion.version == j.version
            )
        ).scalar()
    draft = dict(j.definition)
    if latest is not None and _same(latest.definition, draft):
        return None
    number = (j.version or 0) + 1
    draft["version"] = number
    row = JourneyVersion(journey_id=j.id, version=number, definition=draft, published_at=now)
    session.add(row)
    j.version, j.definition, j.published_at = number, draft, now
    session.add(j)
    session.flush()
    return row


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return {**a, "version": 0} == {**b, "version": 0}
