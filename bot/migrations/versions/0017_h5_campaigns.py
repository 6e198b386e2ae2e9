"""H5 referral campaigns: campaigns, the share chain, sign-ups, points and rewards

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bot.core.models import JSONType, UTCDateTime

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer(), nullable=False)


def _created() -> sa.Column:
    return sa.Column("created_at", UTCDateTime(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "campaign",
        _id(),
        sa.Column("slug", sa.String(64), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("title", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("cover_url", sa.String(500), nullable=False),
        sa.Column("cta", sa.String(40), nullable=False),
        sa.Column("spec", JSONType, nullable=False),
        _created(),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("slug"),
    )
    op.create_table(
        "h5_referral",
        _id(),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("sharer_userid", sa.String(64), nullable=True),
        sa.Column("depth", sa.Integer(), nullable=False),
        _created(),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
        sa.ForeignKeyConstraint(["contact_id"], ["contact.id"]),
        sa.ForeignKeyConstraint(["parent_id"], ["h5_referral.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("campaign_id", "contact_id", name="uq_h5_referral"),
    )
    op.create_index("ix_h5_referral_campaign_id", "h5_referral", ["campaign_id"])
    op.create_index("ix_h5_referral_contact_id", "h5_referral", ["contact_id"])
    op.create_index("ix_h5_referral_parent_id", "h5_referral", ["parent_id"])
    op.create_table(
        "h5_signup",
        _id(),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        _created(),
        sa.Column("checked_in_at", UTCDateTime(), nullable=True),
        sa.Column("checked_in_by", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
        sa.ForeignKeyConstraint(["contact_id"], ["contact.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("campaign_id", "contact_id", name="uq_h5_signup"),
    )
    op.create_index("ix_h5_signup_campaign_id", "h5_signup", ["campaign_id"])
    op.create_table(
        "h5_points_entry",
        _id(),
        sa.Column("holder", sa.String(80), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        _created(),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key", "holder", name="uq_h5_points_entry"),
    )
    op.create_index("ix_h5_points_entry_holder", "h5_points_entry", ["holder"])
    op.create_table(
        "h5_points_balance",
        sa.Column("holder", sa.String(80), nullable=False),
        sa.Column("balance", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("holder"),
    )
    op.create_table(
        "h5_reward",
        _id(),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("cost", sa.Integer(), nullable=False),
        sa.Column("stock", sa.Integer(), nullable=False),
        _created(),
        sa.CheckConstraint("stock >= 0", name="ck_h5_reward_stock"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "h5_redemption",
        _id(),
        sa.Column("reward_id", sa.Integer(), nullable=False),
        sa.Column("holder", sa.String(80), nullable=False),
        sa.Column("cost", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(40), nullable=False),
        sa.Column("request_key", sa.String(80), nullable=False),
        _created(),
        sa.ForeignKeyConstraint(["reward_id"], ["h5_reward.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("request_key"),
    )
    op.create_index("ix_h5_redemption_reward_id", "h5_redemption", ["reward_id"])
    op.create_index("ix_h5_redemption_holder", "h5_redemption", ["holder"])


def downgrade() -> None:
    for table in (
        "h5_redemption",
        "h5_reward",
        "h5_points_balance",
        "h5_points_entry",
        "h5_signup",
        "h5_referral",
        "campaign",
    ):
        op.drop_table(table)
