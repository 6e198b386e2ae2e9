"""wecom, one id, tags, scoring, leads

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bot.core.models import BIGINT, JSONType, UTCDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "channel",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("state", sa.String(30), nullable=False),
        sa.Column("config_id", sa.String(128), nullable=True),
        sa.Column("qr_code", sa.String(500), nullable=True),
        sa.Column("reps", JSONType, nullable=False),
        sa.Column("tags", JSONType, nullable=False),
        sa.Column("welcome_text", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("state"),
    )
    op.create_table(
        "corp_tag",
        sa.Column("tag_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("group_id", sa.String(64), nullable=False),
        sa.Column("group_name", sa.String(64), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("synced_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("tag_id"),
    )
    with op.batch_alter_table("corp_tag", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_corp_tag_name"), ["name"], unique=False)

    op.create_table(
        "interest_word",
        sa.Column("word", sa.String(64), nullable=False),
        sa.Column("tag", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("word"),
    )
    op.create_table(
        "platform_tag",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("oa_tag_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "rep",
        sa.Column("userid", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("left_at", UTCDateTime(), nullable=True),
        sa.Column("synced_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("userid"),
    )
    op.create_table(
        "scoring_ruleset",
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("rules", JSONType, nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("version"),
    )
    op.create_table(
        "tag_rule",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("conditions", JSONType, nullable=False),
        sa.Column("add_tags", JSONType, nullable=False),
        sa.Column("remove_tags", JSONType, nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "follow_user",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("userid", sa.String(64), nullable=False),
        sa.Column("external_userid", sa.String(128), nullable=False),
        sa.Column("state", sa.String(64), nullable=True),
        sa.Column("remark", sa.String(128), nullable=True),
        sa.Column("wecom_tags", JSONType, nullable=False),
        sa.Column("added_at", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contact.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("contact_id", "userid", name="uq_follow_user"),
    )
    with op.batch_alter_table("follow_user", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_follow_user_contact_id"), ["contact_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_follow_user_userid"), ["userid"], unique=False)

    op.create_table(
        "lead_assignment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("userid", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("assigned_at", UTCDateTime(), nullable=False),
        sa.Column("responded_at", UTCDateTime(), nullable=True),
        sa.Column("escalate_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contact.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("lead_assignment", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_lead_assignment_contact_id"), ["contact_id"], unique=False
        )
        batch_op.create_index("ix_lead_owner_status", ["userid", "status"], unique=False)

    op.create_table(
        "score_entry",
        sa.Column("id", BIGINT, autoincrement=True, nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("event_id", BIGINT, nullable=True),
        sa.Column("rule_id", sa.String(64), nullable=False),
        sa.Column("ruleset_version", sa.Integer(), nullable=False),
        sa.Column("points", sa.Float(), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contact.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "contact_id", "event_id", "rule_id", "ruleset_version", name="uq_score_entry"
        ),
    )
    with op.batch_alter_table("score_entry", schema=None) as batch_op:
        batch_op.create_index("ix_score_entry_contact", ["contact_id", "occurred_at"], unique=False)

    op.create_table(
        "tag_sync",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("platform", sa.String(8), nullable=False),
        sa.Column("op", sa.String(8), nullable=False),
        sa.Column("tag", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("done_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contact.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("tag_sync", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tag_sync_contact_id"), ["contact_id"], unique=False)
        batch_op.create_index("ix_tag_sync_pending", ["status", "platform"], unique=False)

    with op.batch_alter_table("contact", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name", sa.String(128), nullable=True))
        batch_op.add_column(sa.Column("merged_into_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("stage", sa.String(16), nullable=False, server_default="subscriber")
        )
        batch_op.add_column(
            sa.Column("stage_manual", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("score", sa.Float(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("score_updated_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("owner_userid", sa.String(64), nullable=True))
        batch_op.add_column(sa.Column("source_channel_id", sa.Integer(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_contact_merged_into_id"), ["merged_into_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_contact_owner_userid"), ["owner_userid"], unique=False)
        batch_op.create_index(batch_op.f("ix_contact_stage"), ["stage"], unique=False)
        batch_op.create_foreign_key(
            "fk_contact_source_channel", "channel", ["source_channel_id"], ["id"]
        )
        batch_op.create_foreign_key("fk_contact_merged_into", "contact", ["merged_into_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("contact", schema=None) as batch_op:
        batch_op.drop_constraint("fk_contact_merged_into", type_="foreignkey")
        batch_op.drop_constraint("fk_contact_source_channel", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_contact_stage"))
        batch_op.drop_index(batch_op.f("ix_contact_owner_userid"))
        batch_op.drop_index(batch_op.f("ix_contact_merged_into_id"))
        batch_op.drop_column("source_channel_id")
        batch_op.drop_column("owner_userid")
        batch_op.drop_column("score_updated_at")
        batch_op.drop_column("score")
        batch_op.drop_column("stage_manual")
        batch_op.drop_column("stage")
        batch_op.drop_column("merged_into_id")
        batch_op.drop_column("name")

    with op.batch_alter_table("tag_sync", schema=None) as batch_op:
        batch_op.drop_index("ix_tag_sync_pending")
        batch_op.drop_index(batch_op.f("ix_tag_sync_contact_id"))

    op.drop_table("tag_sync")
    with op.batch_alter_table("score_entry", schema=None) as batch_op:
        batch_op.drop_index("ix_score_entry_contact")

    op.drop_table("score_entry")
    with op.batch_alter_table("lead_assignment", schema=None) as batch_op:
        batch_op.drop_index("ix_lead_owner_status")
        batch_op.drop_index(batch_op.f("ix_lead_assignment_contact_id"))

    op.drop_table("lead_assignment")
    with op.batch_alter_table("follow_user", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_follow_user_userid"))
        batch_op.drop_index(batch_op.f("ix_follow_user_contact_id"))

    op.drop_table("follow_user")
    op.drop_table("tag_rule")
    op.drop_table("scoring_ruleset")
    op.drop_table("rep")
    op.drop_table("platform_tag")
    op.drop_table("interest_word")
    with op.batch_alter_table("corp_tag", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_corp_tag_name"))

    op.drop_table("corp_tag")
    op.drop_table("channel")
