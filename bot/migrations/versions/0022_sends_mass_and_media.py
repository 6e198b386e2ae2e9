"""targeted sends: broadcast.fallback, mass_send, media, message.platform_msgid index

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bot.core.models import JSONType, UTCDateTime

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("broadcast", sa.Column("fallback", JSONType, nullable=True))
    # TEMPLATESENDJOBFINISH and MASSSENDJOBFINISH find their rows by the platform's msgid
    op.create_index("ix_message_platform_msgid", "message", ["platform_msgid"])
    op.create_table(
        "mass_send",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("broadcast_id", sa.Integer(), sa.ForeignKey("broadcast.id"), nullable=False),
        sa.Column("client_msg_id", sa.String(64), nullable=False),
        sa.Column("target", sa.String(16), nullable=False),
        sa.Column("tag_id", sa.Integer(), nullable=True),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("msg_id", sa.String(64), nullable=True),
        sa.Column("platform_status", sa.String(64), nullable=True),
        sa.Column("total_count", sa.Integer(), nullable=True),
        sa.Column("filter_count", sa.Integer(), nullable=True),
        sa.Column("sent_count", sa.Integer(), nullable=True),
        sa.Column("error_count", sa.Integer(), nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("client_msg_id"),
    )
    op.create_index("ix_mass_send_broadcast_id", "mass_send", ["broadcast_id"])
    op.create_index("ix_mass_send_msg_id", "mass_send", ["msg_id"])
    op.create_table(
        "media",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("permanent", sa.Boolean(), nullable=False),
        sa.Column("filename", sa.String(200), nullable=False),
        sa.Column("content_type", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("media_id", sa.String(128), nullable=True),
        sa.Column("url", sa.String(500), nullable=True),
        sa.Column("uploaded_at", UTCDateTime(), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("uploads", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("media")
    op.drop_index("ix_mass_send_msg_id", table_name="mass_send")
    op.drop_index("ix_mass_send_broadcast_id", table_name="mass_send")
    op.drop_table("mass_send")
    op.drop_index("ix_message_platform_msgid", table_name="message")
    op.execute("ALTER TABLE broadcast DROP COLUMN fallback")  # SQLite 3.35+ and PostgreSQL
