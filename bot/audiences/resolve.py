"""Who a send goes to: an audience (a saved segment, tags any/all, or contact ids) as one
SELECT of contact ids, for the broadcast fan-out and its preview alike."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.orm import Session

from bot.core.input_guard import Id
from bot.core.models import Contact, ContactTag

MAX_IDS = 100_000


class TagFilter(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    any: list[str] | None = Field(default=None, min_length=1, max_length=50)
    all: list[str] | None = Field(default=None, min_length=1, max_length=50)

    @model_validator(mode="after")
    def _one(self) -> TagFilter:
        given = [name for name in ("any", "all") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("tags: give exactly one of any or all")
        names = getattr(self, given[0])
        if any(not n or len(n) > 64 for n in names):
            raise ValueError(f"tags.{given[0]}: tag names are 1 to 64 characters")
        setattr(self, given[0], sorted(set(names)))
        return self

    @property
    def names(self) -> list[str]:
        return self.any or self.all or []


class Audience(BaseModel):
    """Exactly one of segment, tags or ids."""

    model_config = ConfigDict(extra="forbid")

    segment: Id | None = None
    tags: TagFilter | None = None
    ids: list[Id] | None = Field(default=None, min_length=1, max_length=MAX_IDS)

    @model_validator(mode="after")
    def _one(self) -> Audience:
        given = [n for n in ("segment", "tags", "ids") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("audience: give exactly one of segment, tags or ids")
        if self.ids is not None:
            self.ids = sorted(set(self.ids))
        return self

    def single_tag(self) -> str | None:
        """The one tag this audience is (``{"tags": {"any"|"all": [t]}}``), else None: such
        an audience may go out as the OA's mass send by that tag."""
        if self.tags is not None and len(self.tags.names) == 1:
            return self.tags.names[0]
        return None


def contact_ids(session: Session, audience: Audience | dict[str, Any]) -> sa.Select:
    """A SELECT of the audience's contact ids (merged contacts left out), unordered."""
    a = audience if isinstance(audience, Audience) else Audience.model_validate(audience)
    c = Contact.__table__.c
    if a.segment is not None:
        from bot.audiences import segments  # the saved-segment stream's module (issue 16)

        inner = segments.member_ids(session, a.segment)
        return sa.select(c.id).where(c.id.in_(inner), c.merged_into_id.is_(None))
    if a.ids is not None:
        return sa.select(c.id).where(c.id.in_(a.ids), c.merged_into_id.is_(None))
    assert a.tags is not None
    t = ContactTag.__table__.c
    names = a.tags.names
    if a.tags.any is not None:
        members = sa.select(t.contact_id).where(t.tag.in_(names)).distinct()
    else:
        members = (
            sa.select(t.contact_id)
            .where(t.tag.in_(names))
            .group_by(t.contact_id)
            .having(sa.func.count(sa.distinct(t.tag)) == len(names))
        )
    return sa.select(c.id).where(c.id.in_(members.scalar_subquery()), c.merged_into_id.is_(None))


def segment_missing(session: Session, audience: Audience) -> str | None:
    """Why a segment audience cannot be used here (no segments package, no such segment),
    else None. Kept apart so the API can answer 422 naming the field."""
    if audience.segment is None:
        return None
    try:
        from bot.audiences import segments
    except ImportError:
        return "segments are not available in this build"
    try:  # the segments module refuses an unknown segment in its own way
        segments.member_ids(session, audience.segment)
    except (LookupError, ValueError) as exc:
        return f"no segment {audience.segment} ({exc})"
    return None
