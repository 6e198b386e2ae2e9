"""journey versions, enrollment end reasons, contact fields, outbox priority

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bot.core.models import JSONType, UTCDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "journey_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("journey_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("definition", JSONType, nullable=False),
        sa.Column("published_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["journey_id"], ["journey.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("journey_id", "version", name="uq_journey_version"),
    )
    # Journeys published before versions existed become their version 1.
    op.execute(
        "INSERT INTO journey_version (journey_id, version, definition, published_at) "
        "SELECT id, version, definition, COALESCE(published_at, created_at) FROM journey "
        "WHERE published_at IS NOT NULL"
    )
    op.execute("UPDATE journey SET version = 0 WHERE published_at IS NULL")
    with op.batch_alter_table("enrollment", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reason", sa.String(200), nullable=True))
    with op.batch_alter_table("contact", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fields", JSONType, nullable=True))
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("priority", sa.SmallInteger(), server_default="0", nullable=False)
        )
        batch_op.create_index("ix_outbox_next", ["status", "priority", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_next")
        batch_op.drop_column("priority")
    with op.batch_alter_table("contact", schema=None) as batch_op:
        batch_op.drop_column("fields")
    with op.batch_alter_table("enrollment", schema=None) as batch_op:
        batch_op.drop_column("reason")
    op.drop_table("journey_version")
