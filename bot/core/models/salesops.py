"""Sales operations: quick replies (话术库), follow-up reminders, customer transfers
(在职转接, 离职继承) and the reasons a lead can be returned for."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from bot.core.models.columns import ts_column, utcnow


class QuickReplyGroup(SQLModel, table=True):
    """A group of quick replies (e.g. 报价, 产品介绍), in the rep's order."""

    __tablename__ = "quick_reply_group"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True)
    position: int = Field(default=0)
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())


class QuickReply(SQLModel, table=True):
    """One quick reply: a text, a link (title, description, url, picture) or an image
    (a WeCom media id), put into the chat by the sidebar's sendChatMessage."""

    __tablename__ = "quick_reply"

    id: int | None = Field(default=None, primary_key=True)
    group_id: int = Field(foreign_key="quick_reply_group.id", index=True)
    kind: str = Field(max_length=8)  # text | link | image
    title: str = Field(max_length=64)
    content: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False))
    url: str | None = Field(default=None, max_length=1000)
    image_url: str | None = Field(default=None, max_length=1000)
    media_id: str | None = Field(default=None, max_length=128)
    position: int = Field(default=0)
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())


class FollowUpReminder(SQLModel, table=True):
    """A rep's next follow-up with a contact: at ``due_at`` the rep gets a WeCom app message
    (exactly one: the message row's idempotency key is ``reminder-<id>``)."""

    __tablename__ = "follow_up_reminder"
    __table_args__ = (sa.Index("ix_reminder_due", "status", "due_at"),)

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contact.id", index=True)
    userid: str = Field(max_length=64)
    due_at: datetime = Field(sa_column=ts_column())
    text: str = Field(max_length=500)
    status: str = Field(default="pending", max_length=16)  # pending | sent | cancelled
    message_id: int | None = Field(default=None)
    created_by: str = Field(default="", max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    sent_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))


class CustomerTransfer(SQLModel, table=True):
    """One customer handed from one rep to another through WeCom, and what became of it."""

    __tablename__ = "customer_transfer"
    __table_args__ = (sa.Index("ix_transfer_pair", "handover_userid", "takeover_userid"),)

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int | None = Field(default=None, foreign_key="contact.id", index=True)
    external_userid: str = Field(max_length=128)
    handover_userid: str = Field(max_length=64)
    takeover_userid: str = Field(max_length=64)
    kind: str = Field(max_length=16)  # in_service (在职转接) | resigned (离职继承)
    # waiting | completed | refused | limit_exceeded | failed (the call refused this customer)
    status: str = Field(default="waiting", max_length=16)
    errcode: int | None = Field(default=None)
    requested_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    takeover_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    finished_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))


class LeadReturnReason(SQLModel, table=True):
    """Why a rep may return a lead, and what then happens to it: back to nurture (the
    contact's stage becomes ``nurture_stage``), to the next rep, or disqualified."""

    __tablename__ = "lead_return_reason"

    id: int | None = Field(default=None, primary_key=True)
    label: str = Field(max_length=32, unique=True)
    outcome: str = Field(max_length=16)  # nurture | reassign | disqualify
    nurture_stage: str | None = Field(default=None, max_length=16)
    note_required: bool = Field(default=False)  # 其他: the free text says why
    position: int = Field(default=0)
    active: bool = Field(default=True)
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
