"""Saved segments and the members the journey sweep remembers (to see who left)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from bot.core.models.columns import JSONType, ts_column, utcnow


class Segment(SQLModel, table=True):
    """A named condition on contacts (a journeys ``Pred``), compiled to SQL by bot/audiences."""

    __tablename__ = "segment"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    description: str = Field(default="", max_length=500)
    definition: dict = Field(sa_column=sa.Column(JSONType, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    # When the sweep last compared the members (None: never; the first sweep only remembers).
    swept_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))


class SegmentMember(SQLModel, table=True):
    """A contact in a segment as of the last sweep (kept only for segments a journey's
    ``segment_entered``/``segment_left`` trigger names)."""

    __tablename__ = "segment_member"

    segment_id: int = Field(
        sa_column=sa.Column(
            sa.Integer, sa.ForeignKey("segment.id", ondelete="CASCADE"), primary_key=True
        )
    )
    contact_id: int = Field(
        sa_column=sa.Column(sa.Integer, sa.ForeignKey("contact.id"), primary_key=True)
    )
    since: datetime = Field(default_factory=utcnow, sa_column=ts_column())
