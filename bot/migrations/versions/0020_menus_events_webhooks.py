"""Menus as data (menu, menu_version); webhook subscriptions by event type

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bot.core.models import JSONType, UTCDateTime

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "menu",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("tag", sa.String(64), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("buttons", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tag"),
    )
    op.create_table(
        "menu_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("menus", JSONType, nullable=False),
        sa.Column("error", sa.String(500), nullable=True),
        sa.Column("published_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    # ALTER TABLE on both dialects (plain nullable columns)
    op.add_column("webhook_endpoint", sa.Column("event_types", JSONType, nullable=True))
    op.add_column("webhook_delivery", sa.Column("endpoint_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE webhook_delivery DROP COLUMN endpoint_id")
    op.execute("ALTER TABLE webhook_endpoint DROP COLUMN event_types")
    op.drop_table("menu_version")
    op.drop_table("menu")
