"""The tables. One person is one Contact; the ways we see them (openid, unionid, WeCom
external_userid) are Identity rows, so later channels add identities, not contacts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.types.TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone of its own)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER


def ts_column(nullable: bool = False, index: bool = False) -> Any:
    return sa.Column(UTCDateTime(), nullable=nullable, index=index)


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


class Identity(SQLModel, table=True):
    __tablename__ = "identity"
    __table_args__ = (sa.UniqueConstraint("kind", "app_id", "value", name="uq_identity"),)

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
        sa.Index("ix_event_type_time", "type", "occurred_at"),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(BIGINT, primary_key=True, autoincrement=True)
    )
    contact_id: int = Field(foreign_key="contact.id")
    type: str = Field(max_length=64)
    source: str = Field(max_length=32)
    properties: dict = Field(default_factory=dict, sa_column=sa.Column(JSONType, nullable=False))
    occurred_at: datetime = Field(sa_column=ts_column())
    received_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    dedupe_key: str | None = Field(default=None, max_length=200, unique=True)
    # The passive reply given (plaintext XML, or None for "success"): a retry gets the same one.
    reply: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    processed_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))


class ContactTag(SQLModel, table=True):
    __tablename__ = "contact_tag"
    __table_args__ = (sa.UniqueConstraint("contact_id", "tag", name="uq_contact_tag"),)

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contact.id", index=True)
    tag: str = Field(max_length=64, index=True)
    source: str = Field(max_length=16)  # rule | manual | journey | campaign
    source_ref: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())


class Outbox(SQLModel, table=True):
    """Work owed to the background path; written with its event, deleted never, done once."""

    __tablename__ = "outbox"
    __table_args__ = (sa.Index("ix_outbox_pending", "status", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    event_id: int = Field(
        sa_column=sa.Column(BIGINT, sa.ForeignKey("event.id"), unique=True, nullable=False)
    )
    status: str = Field(default="pending", max_length=16)  # pending | done | failed
    attempts: int = Field(default=0)
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    done_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))


class ReplyRule(SQLModel, table=True):
    """An instant passive reply: to a keyword, to a follow (welcome) or to a menu click."""

    __tablename__ = "reply_rule"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    trigger: str = Field(max_length=16)  # keyword | subscribe | click
    match: str = Field(default="jieba", max_length=16)  # exact | contains | jieba (keyword only)
    keywords: list = Field(default_factory=list, sa_column=sa.Column(JSONType, nullable=False))
    click_key: str | None = Field(default=None, max_length=128)
    reply_type: str = Field(default="text", max_length=16)  # text | news
    reply: dict = Field(default_factory=dict, sa_column=sa.Column(JSONType, nullable=False))
    tags: list = Field(default_factory=list, sa_column=sa.Column(JSONType, nullable=False))
    priority: int = Field(default=0)
    enabled: bool = Field(default=True)
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())


class Broadcast(SQLModel, table=True):
    """One message to many contacts; its messages carry its id, so progress is a count."""

    __tablename__ = "broadcast"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    kind: str = Field(max_length=32)
    payload: dict = Field(default_factory=dict, sa_column=sa.Column(JSONType, nullable=False))
    marketing: bool = Field(default=True)
    outside_window: str = Field(default="fail", max_length=16)
    # {"subscribed": true} (everyone following when it fans out) or {"contact_ids": [...]}
    audience: dict = Field(default_factory=dict, sa_column=sa.Column(JSONType, nullable=False))
    total: int = Field(default=0)
    status: str = Field(default="fanning_out", max_length=16)  # fanning_out | queued
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())


class Message(SQLModel, table=True):
    """One outbound send and everything that happened to it."""

    __tablename__ = "message"
    __table_args__ = (
        sa.Index("ix_message_contact", "contact_id", "created_at"),
        sa.Index("ix_message_status", "status", "not_before"),
        sa.Index("ix_message_broadcast", "broadcast_id", "status"),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(BIGINT, primary_key=True, autoincrement=True)
    )
    contact_id: int | None = Field(default=None, foreign_key="contact.id")
    to_user: str | None = Field(default=None, max_length=1000)  # WeCom userids "a|b" for staff
    channel: str = Field(max_length=16)  # oa | wecom
    kind: str = Field(max_length=32)
    payload: dict = Field(default_factory=dict, sa_column=sa.Column(JSONType, nullable=False))
    # Outside the 48-hour window: "fallback" (send the template in ``fallback``), "hold" (deliver
    # on the contact's next interaction) or "fail".
    outside_window: str = Field(default="hold", max_length=16)
    fallback: dict | None = Field(default=None, sa_column=sa.Column(JSONType, nullable=True))
    marketing: bool = Field(default=False)
    reply_to_event_id: int | None = Field(default=None, sa_column=sa.Column(BIGINT, nullable=True))
    broadcast_id: int | None = Field(default=None, foreign_key="broadcast.id")
    # queued | scheduled | sending | sent | held | failed | skipped | unknown
    status: str = Field(default="queued", max_length=16)
    sent_kind: str | None = Field(
        default=None, max_length=32
    )  # what went out (template on fallback)
    attempts: int = Field(default=0)
    error_code: int | None = Field(default=None)
    error_message: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    platform_msgid: str | None = Field(default=None, max_length=64)
    idempotency_key: str | None = Field(default=None, max_length=200, unique=True)
    not_before: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    sent_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True, index=False))
