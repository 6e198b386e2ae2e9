"""contact.asking: one of the contact's enrollments is asking (the callback's cheap check)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # ALTER TABLE on both dialects: a batch copy of contact would fail on its foreign keys
    op.add_column(
        "contact", sa.Column("asking", sa.Boolean(), nullable=False, server_default=sa.false())
    )
    op.execute(
        "UPDATE contact SET asking = EXISTS (SELECT 1 FROM enrollment"
        " WHERE enrollment.contact_id = contact.id AND enrollment.status = 'asking')"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE contact DROP COLUMN asking")  # SQLite 3.35+ and PostgreSQL
