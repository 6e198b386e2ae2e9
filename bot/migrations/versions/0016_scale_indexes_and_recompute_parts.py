"""indexes for a million contacts (identity by kind and value; event history by type, time
and contact) and score_recompute (the partitions of a parallel, resumable recompute)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bot.core.models import UTCDateTime

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_identity_kind_value", "identity", ["kind", "value"])
    # (type, occurred_at, contact_id) answers every query (type, occurred_at) did, and more.
    op.create_index("ix_event_type_time_contact", "event", ["type", "occurred_at", "contact_id"])
    op.drop_index("ix_event_type_time", table_name="event")
    op.create_table(
        "score_recompute",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("part", sa.Integer(), nullable=False),
        sa.Column("first_id", sa.Integer(), nullable=False),
        sa.Column("last_id", sa.Integer(), nullable=True),
        sa.Column("next_id", sa.Integer(), nullable=False),
        sa.Column("contacts", sa.Integer(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("lines", sa.Integer(), nullable=False),
        sa.Column("stage_changes", sa.Integer(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("done_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("version", "part", name="uq_score_recompute"),
    )


def downgrade() -> None:
    op.drop_table("score_recompute")
    op.create_index("ix_event_type_time", "event", ["type", "occurred_at"])
    op.drop_index("ix_event_type_time_contact", table_name="event")
    op.drop_index("ix_identity_kind_value", table_name="identity")
