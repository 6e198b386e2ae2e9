"""What each send did: a journey send's enrollment and step (a broadcast's variant) on its
message row, tracked-link clicks, bandit split assignments and the optimisation log

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-02
"""

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bot.core.models import BIGINT, JSONType, UTCDateTime

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # ALTER TABLE on both dialects (nullable columns: no rewrite of the table)
    op.add_column("message", sa.Column("enrollment_id", BIGINT, nullable=True))
    op.add_column("message", sa.Column("step", sa.String(100), nullable=True))
    op.add_column("message", sa.Column("variant", sa.Integer(), nullable=True))
    op.add_column("broadcast", sa.Column("variants", JSONType, nullable=True))
    op.create_index("ix_message_enrollment", "message", ["enrollment_id", "step"])
    _backfill_journey_sends()
    op.create_table(
        "message_click",
        sa.Column("id", BIGINT, autoincrement=True, nullable=False),
        sa.Column("message_id", BIGINT, nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.Column("link", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("clicked_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["message.id"]),
        sa.ForeignKeyConstraint(["contact_id"], ["contact.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_message_click_message", "message_click", ["message_id", "contact_id"])
    op.create_table(
        "split_assignment",
        sa.Column("id", BIGINT, autoincrement=True, nullable=False),
        sa.Column("journey_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.String(100), nullable=False),
        sa.Column("arm", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("enrollment_id", BIGINT, nullable=False),
        sa.Column("assigned_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["journey_id"], ["journey.id"]),
        sa.ForeignKeyConstraint(["contact_id"], ["contact.id"]),
        sa.ForeignKeyConstraint(["enrollment_id"], ["enrollment.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("enrollment_id", "step", name="uq_split_assignment"),
    )
    op.create_index("ix_split_assignment_arm", "split_assignment", ["journey_id", "step", "arm"])
    op.create_index("ix_split_assignment_contact", "split_assignment", ["contact_id", "journey_id"])
    op.create_table(
        "optimisation_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("journey_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.String(100), nullable=False),
        sa.Column("goal", sa.String(64), nullable=False),
        sa.Column("weights", JSONType, nullable=False),
        sa.Column("counts", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["journey_id"], ["journey.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_optimisation_log_step", "optimisation_log", ["journey_id", "step", "id"])


KEY = re.compile(r"^j(\d+):([^:]+):(\d+):(\d+)$")  # bot.automation.execute.key


def _backfill_journey_sends() -> None:
    """The journey sends stored before this revision: enrollment and step from their keys."""
    conn = op.get_bind()
    m = sa.table(
        "message",
        sa.column("id"),
        sa.column("idempotency_key"),
        sa.column("enrollment_id"),
        sa.column("step"),
    )
    last = 0
    while True:
        rows = conn.execute(
            sa.select(m.c.id, m.c.idempotency_key)
            .where(m.c.id > last, m.c.idempotency_key.like("j%"))
            .order_by(m.c.id)
            .limit(5000)
        ).all()
        if not rows:
            return
        last = rows[-1].id
        found = [(r.id, KEY.match(r.idempotency_key or "")) for r in rows]
        updates = [{"i": i, "e": int(k.group(1)), "s": k.group(2)[:100]} for i, k in found if k]
        if updates:
            conn.execute(
                sa.update(m)
                .where(m.c.id == sa.bindparam("i"))
                .values(enrollment_id=sa.bindparam("e"), step=sa.bindparam("s")),
                updates,
            )


def downgrade() -> None:
    op.drop_table("optimisation_log")
    op.drop_table("split_assignment")
    op.drop_table("message_click")
    op.drop_index("ix_message_enrollment", table_name="message")
    op.execute("ALTER TABLE broadcast DROP COLUMN variants")
    op.execute("ALTER TABLE message DROP COLUMN variant")
    op.execute("ALTER TABLE message DROP COLUMN step")  # SQLite 3.35+ and PostgreSQL
    op.execute("ALTER TABLE message DROP COLUMN enrollment_id")
