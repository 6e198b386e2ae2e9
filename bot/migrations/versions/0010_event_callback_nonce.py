"""event.callback_nonce and callback_digest: replayed callbacks are refused

Revision ID: 0010
Revises: 0006
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable columns and a new index: no table rebuild on SQLite, no rewrite on PostgreSQL.
    op.add_column("event", sa.Column("callback_nonce", sa.String(160), nullable=True))
    op.add_column("event", sa.Column("callback_digest", sa.String(64), nullable=True))
    op.create_index("ux_event_callback_nonce", "event", ["callback_nonce"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_event_callback_nonce", table_name="event")
    with op.batch_alter_table("event", schema=None) as batch_op:
        batch_op.drop_column("callback_digest")
        batch_op.drop_column("callback_nonce")
