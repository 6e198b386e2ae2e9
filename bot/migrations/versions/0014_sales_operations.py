"""sales operations: quick replies, follow-up reminders, customer transfers, lead return
reasons (seeded) and the reason on a returned lead

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bot.core.models import UTCDateTime, utcnow

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (label, outcome, nurture stage, note required): the list issue 20 starts from
SEEDED_REASONS = [
    ("预算不足", "nurture", "lead", False),
    ("时机未到", "nurture", "lead", False),
    ("联系不上", "reassign", None, False),
    ("非决策人", "nurture", "lead", False),
    ("非目标客户", "disqualify", None, False),
    ("其他", "reassign", None, True),
]


def upgrade() -> None:
    op.create_table(
        "quick_reply_group",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "quick_reply",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("title", sa.String(64), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("url", sa.String(1000), nullable=True),
        sa.Column("image_url", sa.String(1000), nullable=True),
        sa.Column("media_id", sa.String(128), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["quick_reply_group.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_quick_reply_group_id", "quick_reply", ["group_id"])
    op.create_table(
        "follow_up_reminder",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("userid", sa.String(64), nullable=False),
        sa.Column("due_at", UTCDateTime(), nullable=False),
        sa.Column("text", sa.String(500), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["contact_id"], ["contact.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_follow_up_reminder_contact_id", "follow_up_reminder", ["contact_id"])
    op.create_index("ix_reminder_due", "follow_up_reminder", ["status", "due_at"])
    op.create_table(
        "customer_transfer",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.Column("external_userid", sa.String(128), nullable=False),
        sa.Column("handover_userid", sa.String(64), nullable=False),
        sa.Column("takeover_userid", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("errcode", sa.Integer(), nullable=True),
        sa.Column("requested_at", UTCDateTime(), nullable=False),
        sa.Column("takeover_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["contact_id"], ["contact.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_customer_transfer_contact_id", "customer_transfer", ["contact_id"])
    op.create_index("ix_transfer_pair", "customer_transfer", ["handover_userid", "takeover_userid"])
    reasons = op.create_table(
        "lead_return_reason",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("nurture_stage", sa.String(16), nullable=True),
        sa.Column("note_required", sa.Boolean(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("label"),
    )
    op.bulk_insert(
        reasons,
        [
            {
                "label": label,
                "outcome": outcome,
                "nurture_stage": stage,
                "note_required": note,
                "position": n,
                "active": True,
                "created_at": utcnow(),
            }
            for n, (label, outcome, stage, note) in enumerate(SEEDED_REASONS)
        ],
    )
    with op.batch_alter_table("lead_assignment") as batch:
        batch.add_column(sa.Column("return_reason_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("return_reason", sa.String(32), nullable=True))
        batch.add_column(sa.Column("return_note", sa.String(500), nullable=True))
    op.create_index("ix_lead_assigned_at", "lead_assignment", ["assigned_at"])


def downgrade() -> None:
    op.drop_index("ix_lead_assigned_at", table_name="lead_assignment")
    with op.batch_alter_table("lead_assignment") as batch:
        batch.drop_column("return_note")
        batch.drop_column("return_reason")
        batch.drop_column("return_reason_id")
    op.drop_table("lead_return_reason")
    op.drop_index("ix_transfer_pair", table_name="customer_transfer")
    op.drop_index("ix_customer_transfer_contact_id", table_name="customer_transfer")
    op.drop_table("customer_transfer")
    op.drop_index("ix_reminder_due", table_name="follow_up_reminder")
    op.drop_index("ix_follow_up_reminder_contact_id", table_name="follow_up_reminder")
    op.drop_table("follow_up_reminder")
    op.drop_index("ix_quick_reply_group_id", table_name="quick_reply")
    op.drop_table("quick_reply")
    op.drop_table("quick_reply_group")
