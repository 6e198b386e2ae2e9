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
    name: str | None = Field(default=None, max_length=128)  # from WeCom or forms
    # One ID: a contact merged into another keeps its row as a pointer to the survivor.
    merged_into_id: int | None = Field(default=None, foreign_key="contact.id", index=True)
    # Lifecycle: subscriber | lead | mql | sql | customer | disqualified
    stage: str = Field(default="subscriber", max_length=16, index=True)
    stage_manual: bool = Field(default=False)  # set by a person: thresholds leave it alone
    score: float = Field(default=0.0)  # the ledger's undecayed sum; decay applies when read
    score_updated_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    owner_userid: str | None = Field(default=None, max_length=64, index=True)  # the sales rep
    source_channel_id: int | None = Field(default=None, foreign_key="channel.id")
    # Marketer-defined fields (set by journeys' set_field, forms): {"city": "上海", ...}
    fields: dict | None = Field(default=None, sa_column=sa.Column(JSONType, nullable=True))


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
    status: str = Field(default="fanning_out", max_length=16)  # fanning_out | queued | failed
    reason: str | None = Field(default=None, max_length=500)  # why the fan-out failed
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


class Rep(SQLModel, table=True):
    """A WeCom member (sales rep), synced from ``user/get`` when first seen."""

    __tablename__ = "rep"

    userid: str = Field(primary_key=True, max_length=64)
    name: str = Field(default="", max_length=64)
    active: bool = Field(default=True)
    capacity: int = Field(default=200)  # open leads this rep can take
    left_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    synced_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())


class FollowUser(SQLModel, table=True):
    """A rep who has the contact as a WeCom external contact (企业微信好友)."""

    __tablename__ = "follow_user"
    __table_args__ = (sa.UniqueConstraint("contact_id", "userid", name="uq_follow_user"),)

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contact.id", index=True)
    userid: str = Field(max_length=64, index=True)
    external_userid: str = Field(max_length=128)
    state: str | None = Field(default=None, max_length=64)
    remark: str | None = Field(default=None, max_length=128)
    wecom_tags: list = Field(default_factory=list, sa_column=sa.Column(JSONType, nullable=False))
    added_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    # rep_deleted: the rep removed the customer; customer_deleted: the customer removed the rep
    status: str = Field(default="active", max_length=24)
    ended_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))


class Channel(SQLModel, table=True):
    """A channel QR code (渠道活码): a WeCom contact way with its own state, reps, tags and
    welcome message."""

    __tablename__ = "channel"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    state: str = Field(max_length=30, unique=True)
    config_id: str | None = Field(default=None, max_length=128)
    qr_code: str | None = Field(default=None, max_length=500)
    reps: list = Field(default_factory=list, sa_column=sa.Column(JSONType, nullable=False))
    tags: list = Field(default_factory=list, sa_column=sa.Column(JSONType, nullable=False))
    welcome_text: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())


class TagRule(SQLModel, table=True):
    """Add or remove tags when an event matches: type plus conditions on its properties."""

    __tablename__ = "tag_rule"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    event_type: str = Field(max_length=64)
    conditions: dict = Field(default_factory=dict, sa_column=sa.Column(JSONType, nullable=False))
    add_tags: list = Field(default_factory=list, sa_column=sa.Column(JSONType, nullable=False))
    remove_tags: list = Field(default_factory=list, sa_column=sa.Column(JSONType, nullable=False))
    enabled: bool = Field(default=True)
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())


class InterestWord(SQLModel, table=True):
    """The interest dictionary: a word in free text (jieba tokens) -> an interest tag."""

    __tablename__ = "interest_word"

    word: str = Field(primary_key=True, max_length=64)
    tag: str = Field(max_length=64)


class CorpTag(SQLModel, table=True):
    """The local copy of WeCom's corp tag library (企业客户标签)."""

    __tablename__ = "corp_tag"

    tag_id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=64, index=True)
    group_id: str = Field(max_length=64)
    group_name: str = Field(max_length=64)
    deleted: bool = Field(default=False)
    synced_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())


class PlatformTag(SQLModel, table=True):
    """Our tag name -> the Official Account's user tag id (created on first sync)."""

    __tablename__ = "platform_tag"

    name: str = Field(primary_key=True, max_length=64)
    oa_tag_id: int | None = Field(default=None)


class TagSync(SQLModel, table=True):
    """A tag change owed to a platform (OA user tags, WeCom corp tags), batched by a job."""

    __tablename__ = "tag_sync"
    __table_args__ = (sa.Index("ix_tag_sync_pending", "status", "platform"),)

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contact.id", index=True)
    platform: str = Field(max_length=8)  # oa | wecom
    op: str = Field(max_length=8)  # add | remove
    tag: str = Field(max_length=64)
    status: str = Field(default="pending", max_length=16)  # pending | done | failed
    attempts: int = Field(default=0)
    error: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    done_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))


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


class LeadAssignment(SQLModel, table=True):
    """A lead handed to a rep, and what became of it."""

    __tablename__ = "lead_assignment"
    __table_args__ = (sa.Index("ix_lead_owner_status", "userid", "status"),)

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contact.id", index=True)
    userid: str = Field(max_length=64)
    # assigned | accepted | returned | escalated | reassigned
    status: str = Field(default="assigned", max_length=16)
    reason: str = Field(
        default="", max_length=200
    )  # why this rep (existing friend, referral, round robin)
    assigned_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    responded_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    escalate_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))


class Journey(SQLModel, table=True):
    """A journey (journeys/): ``definition`` is the editable draft; publishing it makes a new
    JourneyVersion, the one new contacts enter (``version``; 0 before the first publish).
    draft | published (contacts enter and advance) | paused (nothing moves) | stopped."""

    __tablename__ = "journey"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    version: int = Field(default=0)
    definition: dict = Field(default_factory=dict, sa_column=sa.Column(JSONType, nullable=False))
    status: str = Field(default="draft", max_length=16)
    published_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())


class JourneyVersion(SQLModel, table=True):
    """A published definition, never changed: enrollments run on the version they entered."""

    __tablename__ = "journey_version"
    __table_args__ = (sa.UniqueConstraint("journey_id", "version", name="uq_journey_version"),)

    id: int | None = Field(default=None, primary_key=True)
    journey_id: int = Field(foreign_key="journey.id")
    version: int
    definition: dict = Field(default_factory=dict, sa_column=sa.Column(JSONType, nullable=False))
    published_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())


class Enrollment(SQLModel, table=True):
    """One contact's way through one journey: the engine's State, serialized."""

    __tablename__ = "enrollment"
    __table_args__ = (
        sa.Index("ix_enrollment_contact", "contact_id", "status"),
        # the event that started it: a re-run pipeline never enrolls twice on one event
        sa.UniqueConstraint("journey_id", "start_event_id", name="uq_enrollment_start"),
    )

    id: int | None = Field(default=None, primary_key=True)
    journey_id: int = Field(foreign_key="journey.id", index=True)
    version: int = Field(default=1)
    contact_id: int = Field(foreign_key="contact.id")
    # active | waiting | asking | done | exited | converted
    status: str = Field(default="active", max_length=16)
    step: str | None = Field(default=None, max_length=64)
    state: dict = Field(default_factory=dict, sa_column=sa.Column(JSONType, nullable=False))
    wake_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True, index=True))
    start_event_id: int | None = Field(default=None, sa_column=sa.Column(BIGINT, nullable=True))
    last_event_id: int | None = Field(default=None, sa_column=sa.Column(BIGINT, nullable=True))
    started_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    ended_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    reason: str | None = Field(default=None, max_length=200)  # why it ended


class StepRun(SQLModel, table=True):
    """The run-log: one row per command a journey executed, so each runs once."""

    __tablename__ = "step_run"
    __table_args__ = (
        sa.UniqueConstraint("enrollment_id", "step", "visit", "idx", name="uq_step_run"),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(BIGINT, primary_key=True, autoincrement=True)
    )
    enrollment_id: int = Field(foreign_key="enrollment.id")
    step: str = Field(max_length=64)
    visit: int = Field(default=1)
    idx: int = Field(default=0)  # turn * 1000 + the command's position in that advance call
    kind: str = Field(max_length=32)
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())


class WebhookEndpoint(SQLModel, table=True):
    """Where journey webhooks may go: a journey's webhook url must be one of these. The
    secret signs each request (Standard Webhooks); the API shows it once, when created."""

    __tablename__ = "webhook_endpoint"

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(max_length=2000, unique=True)
    secret: str = Field(max_length=100)
    note: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())


class WebhookDelivery(SQLModel, table=True):
    """One journey webhook to deliver (the truth; its rq job only carries it): ``pending``
    until it is ``answered`` (any HTTP status below 500), ``failed`` (no answer or a 5xx
    after every attempt) or ``refused`` (an address not allowed, no registered endpoint)."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (sa.Index("ix_webhook_delivery_due", "status", "due_at"),)

    id: int | None = Field(
        default=None, sa_column=sa.Column(BIGINT, primary_key=True, autoincrement=True)
    )
    key: str = Field(max_length=200, unique=True)  # the journey.webhook event's dedupe key
    contact_id: int = Field(foreign_key="contact.id")
    url: str = Field(max_length=2000)
    body: dict = Field(default_factory=dict, sa_column=sa.Column(JSONType, nullable=False))
    status: str = Field(default="pending", max_length=16)
    attempts: int = Field(default=0)
    due_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())  # next attempt
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    finished_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    # what came back: {status, duration_ms, excerpt?} or {error}
    result: dict | None = Field(default=None, sa_column=sa.Column(JSONType, nullable=True))
