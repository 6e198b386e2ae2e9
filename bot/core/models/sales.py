"""WeCom and sales: reps, their external contacts (follow users), channel QR codes, leads."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from bot.core.models.columns import JSONType, ts_column, utcnow


class Rep(SQLModel, table=True):
    """A WeCom member (sales rep), synced from ``user/get`` when first seen."""

    __tablename__ = "rep"

    userid: str = Field(primary_key=True, max_length=64)
    name: str = Field(default="", max_length=64)
    active: bool = Field(default=True)
    capacity: int = Field(default=200)  # open leads this rep can take
    # rep | manager (a manager sees the customers of every rep in their team)
    role: str = Field(
        default="rep", sa_column=sa.Column(sa.String(16), nullable=False, server_default="rep")
    )
    team: str | None = Field(default=None, max_length=64)  # WeCom main department by default
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


class LeadAssignment(SQLModel, table=True):
    """A lead handed to a rep, and what became of it."""

    __tablename__ = "lead_assignment"
    __table_args__ = (
        sa.Index("ix_lead_owner_status", "userid", "status"),
        sa.Index("ix_lead_assigned_at", "assigned_at"),
    )

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
    # why a returned lead was returned (a LeadReturnReason, its label kept), and the rep's note
    return_reason_id: int | None = Field(default=None)
    return_reason: str | None = Field(default=None, max_length=32)
    return_note: str | None = Field(default=None, max_length=500)
