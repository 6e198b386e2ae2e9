"""a broadcast variant set that learns: broadcast.bandit, broadcast.decide_at and the
broadcast_optimisation log

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bot.core.models import JSONType, UTCDateTime

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("broadcast", sa.Column("bandit", JSONType, nullable=True))
    op.add_column("broadcast", sa.Column("decide_at", UTCDateTime(), nullable=True))
    op.create_table(
        "broadcast_optimisation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("broadcast_id", sa.Integer(), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("goal", sa.String(length=64), nullable=False),
        sa.Column("weights", JSONType, nullable=False),
        sa.Column("counts", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["broadcast_id"], ["broadcast.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("broadcast_id", "stage"),
    )


def downgrade() -> None:
    op.drop_table("broadcast_optimisation")
    # ALTER TABLE ... DROP COLUMN: SQLite 3.35+, PostgreSQL
    op.execute("ALTER TABLE broadcast DROP COLUMN decide_at")
    op.execute("ALTER TABLE broadcast DROP COLUMN bandit")
