"""outbox.interacted_at: a callback's contact touch, deferred to the background

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bot.core.models import UTCDateTime

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("interacted_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE outbox DROP COLUMN interacted_at")  # SQLite 3.35+ and PostgreSQL
