"""Lead scoring: the versioned rule sets and the score ledger."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from bot.core.models.columns import BIGINT, JSONType, ts_column, utcnow


class ScoringRuleSet(SQLModel, table=True):
    """A version of the scoring rules; exactly one is active."""

    __tablename__ = "scoring_ruleset"

    version: int = Field(primary_key=True)
    rules: dict = Field(default_factory=dict, sa_column=sa.Column(JSONType, nullable=False))
    active: bool = Field(default=False)
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())


class ScoreEntry(SQLModel, table=True):
    """One line of a contact's score ledger: which event, which rule, how many points."""

    __tablename__ = "score_entry"
    __table_args__ = (
        sa.UniqueConstraint(
            "contact_id", "event_id", "rule_id", "ruleset_version", name="uq_score_entry"
        ),
        sa.Index("ix_score_entry_contact", "contact_id", "occurred_at"),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(BIGINT, primary_key=True, autoincrement=True)
    )
    contact_id: int = Field(foreign_key="contact.id")
    event_id: int | None = Field(default=None, sa_column=sa.Column(BIGINT, nullable=True))
    rule_id: str = Field(max_length=64)
    ruleset_version: int = Field()
    points: float = Field()
    reason: str = Field(default="", max_length=200)
    occurred_at: datetime = Field(sa_column=ts_column())
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())


class ScoreRecompute(SQLModel, table=True):
    """One partition of a version's recompute: a range of contact ids one job works through,
    ``next_id`` its cursor (committed with each batch, so a job that dies resumes there)."""

    __tablename__ = "score_recompute"
    __table_args__ = (sa.UniqueConstraint("version", "part", name="uq_score_recompute"),)

    id: int | None = Field(default=None, primary_key=True)
    version: int = Field()
    part: int = Field()
    first_id: int = Field()
    last_id: int | None = Field(default=None)  # None: to the last contact
    next_id: int = Field()
    contacts: int = Field(default=0)
    events: int = Field(default=0)
    lines: int = Field(default=0)
    stage_changes: int = Field(default=0)
    started_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    done_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
