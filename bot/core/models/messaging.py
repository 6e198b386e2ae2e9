"""What is said to contacts: instant reply rules, broadcasts and every outbound message."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from bot.core.models.columns import BIGINT, JSONType, ts_column, utcnow


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
    # outside the 48-hour window: fail | hold | template (``fallback``) | mass (OA mass send)
    outside_window: str = Field(default="fail", max_length=16)
    fallback: dict | None = Field(default=None, sa_column=sa.Column(JSONType, nullable=True))
    # {"subscribed": true} (everyone following when it fans out), {"contact_ids": [...]},
    # {"ids": [...]}, {"tags": {"any"|"all": [...]}} or {"segment": id}
    audience: dict = Field(default_factory=dict, sa_column=sa.Column(JSONType, nullable=False))
    # An A/B set: [{"name", "payload", "percent"}]; each contact gets one, fixed by a hash of
    # the broadcast and the contact (None: everyone gets ``payload``).
    variants: list | None = Field(default=None, sa_column=sa.Column(JSONType, nullable=True))
    # A variant set that learns (bot.messaging.broadcast_bandit): {"goal", "explore",
    # "decide_after_minutes", "min_share"}; None: the percentages, in one pass.
    bandit: dict | None = Field(default=None, sa_column=sa.Column(JSONType, nullable=True))
    decide_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    total: int = Field(default=0)
    # fanning_out | exploring (bandit: the explore share is out) | queued | failed
    status: str = Field(default="fanning_out", max_length=16)
    reason: str | None = Field(default=None, max_length=500)  # why the fan-out failed
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())


class BroadcastOptimisation(SQLModel, table=True):
    """A bandit broadcast's arm weights: the percentages its explore share went out with
    (stage ``explore``) and the weights decided from its conversions (``decided``, stored
    once: the rest of the audience is sent with them)."""

    __tablename__ = "broadcast_optimisation"
    __table_args__ = (sa.UniqueConstraint("broadcast_id", "stage"),)

    id: int | None = Field(default=None, primary_key=True)
    broadcast_id: int = Field(foreign_key="broadcast.id")
    stage: str = Field(max_length=16)  # explore | decided
    goal: str = Field(max_length=64)
    weights: list = Field(default_factory=list, sa_column=sa.Column(JSONType, nullable=False))
    # per variant: {"variant": name, "sent": n, "converted": k}
    counts: list = Field(default_factory=list, sa_column=sa.Column(JSONType, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())


class Message(SQLModel, table=True):
    """One outbound send and everything that happened to it."""

    __tablename__ = "message"
    __table_args__ = (
        sa.Index("ix_message_contact", "contact_id", "created_at"),
        sa.Index("ix_message_status", "status", "not_before"),
        sa.Index("ix_message_broadcast", "broadcast_id", "status"),
        sa.Index("ix_message_enrollment", "enrollment_id", "step"),
        sa.Index("ix_message_platform_msgid", "platform_msgid"),
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
    # A journey's send: its enrollment and step (the per-step report groups by them).
    enrollment_id: int | None = Field(default=None, sa_column=sa.Column(BIGINT, nullable=True))
    step: str | None = Field(default=None, max_length=100)
    variant: int | None = Field(default=None)  # a broadcast variant's place in its set
    # queued | scheduled | claimed | sending | sent | delivered | held | failed | skipped |
    # unknown, and mass_queued (waiting for its broadcast's OA mass send)
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


class MessageClick(SQLModel, table=True):
    """One click on a tracked link (``/r/<code>``) of a message; every click is a row, reach
    counts a contact once."""

    __tablename__ = "message_click"
    __table_args__ = (sa.Index("ix_message_click_message", "message_id", "contact_id"),)

    id: int | None = Field(
        default=None, sa_column=sa.Column(BIGINT, primary_key=True, autoincrement=True)
    )
    message_id: int = Field(
        sa_column=sa.Column(BIGINT, sa.ForeignKey("message.id"), nullable=False)
    )
    contact_id: int | None = Field(default=None, foreign_key="contact.id")
    link: int = Field(default=0)  # the link's place among the message's links
    url: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    clicked_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())


class MassSend(SQLModel, table=True):
    """One OA mass-send call (``message/mass/sendall`` by tag or ``message/mass/send`` by
    openid list) for part of a broadcast; its messages carry its ``msg_id``."""

    __tablename__ = "mass_send"

    id: int | None = Field(default=None, primary_key=True)
    broadcast_id: int = Field(foreign_key="broadcast.id", index=True)
    client_msg_id: str = Field(max_length=64, unique=True)
    target: str = Field(max_length=16)  # tag | openids
    tag_id: int | None = Field(default=None)
    recipients: int = Field(default=0)  # our message rows in it
    # sending | submitted | finished | failed | unknown
    status: str = Field(default="sending", max_length=16)
    msg_id: str | None = Field(default=None, max_length=64, index=True)
    platform_status: str | None = Field(default=None, max_length=64)  # "send success", err(…)
    total_count: int | None = Field(default=None)
    filter_count: int | None = Field(default=None)
    sent_count: int | None = Field(default=None)
    error_count: int | None = Field(default=None)
    error_code: int | None = Field(default=None)
    error_message: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    finished_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))


class Media(SQLModel, table=True):
    """A file uploaded to the Official Account once: its bytes (to upload again when a
    temporary media_id expires) and the platform's media_id with its expiry."""

    __tablename__ = "media"

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=8)  # image | voice | video | thumb
    permanent: bool = Field(default=False)  # material/add_material, else media/upload (3 days)
    filename: str = Field(max_length=200)
    content_type: str = Field(max_length=64)
    size: int = Field(default=0)
    sha256: str = Field(max_length=64)
    content: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    media_id: str | None = Field(default=None, max_length=128)
    url: str | None = Field(default=None, max_length=500)  # permanent images have one
    uploaded_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    expires_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    uploads: int = Field(default=0)
    error: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
