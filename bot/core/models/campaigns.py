"""H5 referral campaigns: the campaign (a visitor is a contact with an ``h5_visitor``
identity, the cookie), the share chain (a tree per campaign),
sign-ups, and the points (积分) sharers earn and spend on rewards."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from bot.core.models.columns import JSONType, ts_column, utcnow


class Campaign(SQLModel, table=True):
    __tablename__ = "campaign"

    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(max_length=64, unique=True)
    name: str = Field(max_length=100)
    title: str = Field(max_length=100)
    kind: str = Field(max_length=16)  # landing | resource | event
    body: str = Field(default="", sa_column=sa.Column(sa.Text, nullable=False))  # sanitised HTML
    cover_url: str = Field(default="", max_length=500)
    cta: str = Field(default="立即提交", max_length=40)
    # Everything else the spec holds (form, tags, score events, reward rule, follow step, the
    # resource or the event's details, dates): the validated spec as JSON.
    spec: dict = Field(default_factory=dict, sa_column=sa.Column(JSONType, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())


class Referral(SQLModel, table=True):
    """One node of a campaign's share chain: who brought this contact (first touch wins)."""

    __tablename__ = "h5_referral"
    __table_args__ = (sa.UniqueConstraint("campaign_id", "contact_id", name="uq_h5_referral"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    contact_id: int = Field(foreign_key="contact.id", index=True)
    parent_id: int | None = Field(default=None, foreign_key="h5_referral.id", index=True)
    sharer_userid: str | None = Field(default=None, max_length=64)  # the employee at the root
    depth: int = Field(default=0)  # 0: came on their own; 1: an employee's link; 2: …
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())


class Signup(SQLModel, table=True):
    __tablename__ = "h5_signup"
    __table_args__ = (sa.UniqueConstraint("campaign_id", "contact_id", name="uq_h5_signup"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    contact_id: int = Field(foreign_key="contact.id")
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    checked_in_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    checked_in_by: str | None = Field(default=None, max_length=64)


class PointsEntry(SQLModel, table=True):
    """A line of a person's points ledger; ``key`` makes a retried credit a no-op."""

    __tablename__ = "h5_points_entry"
    __table_args__ = (sa.UniqueConstraint("key", "holder", name="uq_h5_points_entry"),)

    id: int | None = Field(default=None, primary_key=True)
    holder: str = Field(max_length=80, index=True)  # "u:<userid>" | "c:<contact id>"
    campaign_id: int | None = Field(default=None, foreign_key="campaign.id")
    points: int
    reason: str = Field(max_length=200)
    key: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())


class PointsBalance(SQLModel, table=True):
    __tablename__ = "h5_points_balance"

    holder: str = Field(max_length=80, primary_key=True)
    balance: int = Field(default=0)


class Reward(SQLModel, table=True):
    __tablename__ = "h5_reward"
    __table_args__ = (sa.CheckConstraint("stock >= 0", name="ck_h5_reward_stock"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    kind: str = Field(max_length=16)  # coupon | gift
    cost: int
    stock: int
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())


class Redemption(SQLModel, table=True):
    __tablename__ = "h5_redemption"

    id: int | None = Field(default=None, primary_key=True)
    reward_id: int = Field(foreign_key="h5_reward.id", index=True)
    holder: str = Field(max_length=80, index=True)
    cost: int
    code: str = Field(max_length=40)
    request_key: str = Field(max_length=80, unique=True)  # a retried redemption changes nothing
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
