"""rep.role and rep.team (managers see their team's customers in the sidebar);
enrollment.paused_from (a contact paused in one journey, and the status to resume to);
ix_event_contact_type (a contact's timeline filtered by kind)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("rep", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("role", sa.String(length=16), nullable=False, server_default="rep")
        )
        batch_op.add_column(sa.Column("team", sa.String(length=64), nullable=True))
    with op.batch_alter_table("enrollment", schema=None) as batch_op:
        batch_op.add_column(sa.Column("paused_from", sa.String(length=16), nullable=True))
    op.create_index("ix_event_contact_type", "event", ["contact_id", "type", "occurred_at"])


def downgrade() -> None:
    op.drop_index("ix_event_contact_type", table_name="event")
    with op.batch_alter_table("enrollment", schema=None) as batch_op:
        batch_op.drop_column("paused_from")
    with op.batch_alter_table("rep", schema=None) as batch_op:
        batch_op.drop_column("team")
        batch_op.drop_column("role")
