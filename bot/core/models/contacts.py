"""Contacts and what they did: the person, their identities, events, tags and the outbox."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from bot.core.models.columns import BIGINT, JSONType, ts_column, utcnow


class Contact(SQLModel, table=True):
    __tablename__ = "contact"

    id: int | None = Field(default=None, primary_key=True)
    subscribed: bool = Field(default=False, nullable=False)
    subscribed_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    unsubscribed_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    first_seen_at: datetime = Field(sa_column=ts_column())
    last_seen_at: datetime = Field(sa_column=ts_column())
    # Last time the person themself did something (messaging's 48-hour window reads this).
    last_interaction_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    name: str | None = Field(default=None, max_length=128)  # from WeCom or forms
    # One ID: a contact merged into another keeps its row as a pointer to the survivor.
    merged_into_id: int | None = Field(default=None, foreign_key="contact.id", index=True)
    # Lifecycle: subscriber | lead | mql | sql | customer | disqualified
    stage: str = Field(default="subscriber", max_length=16, index=True)
    stage_manual: bool = Field(default=False)  # set by a person: thresholds leave it alone
    score: float = Field(default=0.0)  # the ledger's undecayed sum; decay applies when read
    score_updated_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    # The contact's last ledger line with positive points (bot.scoring.ledger keeps it): with
    # last_interaction_at, the "last activity" decay counts from, readable in SQL (segments).
    score_activity_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    owner_userid: str | None = Field(default=None, max_length=64, index=True)  # the sales rep
    source_channel_id: int | None = Field(default=None, foreign_key="channel.id")
    # One of the contact's enrollments is asking a question (bot.automation.enroll keeps it;
    # the callback reads it and looks for the open question only when it is set).
    asking: bool = Field(
        default=False, sa_column=sa.Column(sa.Boolean, nullable=False, server_default=sa.false())
    )
    # Marketer-defined fields (set by journeys' set_field, forms): {"city": "上海", ...}
    fields: dict | None = Field(default=None, sa_column=sa.Column(JSONType, nullable=True))


class Identity(SQLModel, table=True):
    __tablename__ = "identity"
    __table_args__ = (
        sa.UniqueConstraint("kind", "app_id", "value", name="uq_identity"),
        # A person found by an identity value whatever app it belongs to (the API, the sidebar).
        sa.Index("ix_identity_kind_value", "kind", "value"),
    )

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contact.id", index=True)
    kind: str = Field(max_length=32)  # openid | unionid | external_userid | phone
    app_id: str = Field(default="", max_length=64)  # appid or corp id the value belongs to
    value: str = Field(max_length=128)
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())


class Event(SQLModel, table=True):
    __tablename__ = "event"
    __table_args__ = (
        sa.Index("ix_event_timeline", "contact_id", "occurred_at", "id"),
        # a timeline filtered by kind (the sidebar's notes, tags, leads …)
        sa.Index("ix_event_contact_type", "contact_id", "type", "occurred_at"),
        # Event history ("≥ 2 oa.click in the last 14 days"): an index-only range scan.
        sa.Index("ix_event_type_time_contact", "type", "occurred_at", "contact_id"),
        sa.Index("ux_event_callback_nonce", "callback_nonce", unique=True),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(BIGINT, primary_key=True, autoincrement=True)
    )
    # None for platform events about no one person (a WeCom corp tag library change, …).
    contact_id: int | None = Field(default=None, foreign_key="contact.id")
    type: str = Field(max_length=64)
    source: str = Field(max_length=32)
    properties: dict = Field(default_factory=dict, sa_column=sa.Column(JSONType, nullable=False))
    occurred_at: datetime = Field(sa_column=ts_column())
    received_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    dedupe_key: str | None = Field(default=None, max_length=200, unique=True)
    # The passive reply given, neutral (bot.replies.decide.Reply as JSON; None for "success"):
    # a retry renders the same one.
    reply: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    processed_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    # The callback that delivered it: its signed "channel:timestamp:nonce" (unique, so a
    # replayed request is caught) and the SHA-256 of its body (a retry carries the same).
    callback_nonce: str | None = Field(default=None, max_length=160)
    callback_digest: str | None = Field(default=None, max_length=64)


class ContactTag(SQLModel, table=True):
    __tablename__ = "contact_tag"
    __table_args__ = (
        sa.UniqueConstraint("contact_id", "tag", name="uq_contact_tag"),
        # A segment's tag clause: the tag's contact ids from the index alone.
        sa.Index("ix_contact_tag_tag_contact", "tag", "contact_id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contact.id", index=True)
    tag: str = Field(max_length=64, index=True)
    # Why it was given (bot.contacts.tag_history.TAG_SOURCES) and by whom (rule, word,
    # channel, journey step, rep userid); the event that caused it, when one did.
    source: str = Field(max_length=16)
    source_ref: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    cause_event_id: int | None = Field(default=None, sa_column=sa.Column(BIGINT, nullable=True))


class EventTag(SQLModel, table=True):
    """A tag an event earned, and why: one row per (event, tag), kept when the contact loses
    the tag. ``contact_id`` and ``occurred_at`` are the event's, copied so that "events with
    tag T between A and B" and "contacts with an event tagged T at least N times since D" are
    range scans of one index (``ix_event_tag_time``; on PostgreSQL it carries contact_id, so
    the count is an index-only scan). Measured against a tag array with a GIN index in
    bench/tagged_events.py."""

    __tablename__ = "event_tag"
    __table_args__ = (
        sa.Index(
            "ix_event_tag_time",
            "tag",
            "occurred_at",
            "event_id",
            postgresql_include=["contact_id"],
        ),
    )

    event_id: int = Field(
        sa_column=sa.Column(
            BIGINT, sa.ForeignKey("event.id"), primary_key=True, autoincrement=False
        )
    )
    tag: str = Field(primary_key=True, max_length=64)
    contact_id: int = Field(foreign_key="contact.id")
    occurred_at: datetime = Field(sa_column=ts_column())
    source: str = Field(max_length=16)
    actor: str | None = Field(default=None, max_length=64)


class Outbox(SQLModel, table=True):
    """Work owed to the background path; written with its event, deleted never, done once."""

    __tablename__ = "outbox"
    __table_args__ = (
        sa.Index("ix_outbox_pending", "status", "created_at"),
        sa.Index("ix_outbox_next", "status", "priority", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    event_id: int = Field(
        sa_column=sa.Column(BIGINT, sa.ForeignKey("event.id"), unique=True, nullable=False)
    )
    status: str = Field(default="pending", max_length=16)  # pending | done | failed
    # 0: something a person did (drained first), 1: something Yuchi did (a journey's exit, …)
    priority: int = Field(
        default=0, sa_column=sa.Column(sa.SmallInteger, nullable=False, server_default="0")
    )
    attempts: int = Field(default=0)
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    done_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    # A callback's contact touch (last seen, last interaction: the 48-hour window), left to
    # the background so that the callback writes only its event: when the person acted.
    interacted_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
