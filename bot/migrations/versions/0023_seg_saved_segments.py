"""saved segments (segment, segment_member), contact.score_activity_at (decay's last
activity, readable in SQL) and the indexes a segment count reads

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bot.core.models import JSONType, UTCDateTime

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "segment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("definition", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("swept_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "segment_member",
        sa.Column("segment_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("since", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["segment_id"], ["segment.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["contact_id"], ["contact.id"]),
        sa.PrimaryKeyConstraint("segment_id", "contact_id"),
    )
    # ALTER TABLE on both dialects: a batch copy of contact would fail on its foreign keys
    op.add_column("contact", sa.Column("score_activity_at", UTCDateTime(), nullable=True))
    op.execute(
        "UPDATE contact SET score_activity_at = (SELECT max(s.occurred_at) FROM score_entry s"
        " JOIN scoring_ruleset r ON r.version = s.ruleset_version AND r.active"
        " WHERE s.contact_id = contact.id AND s.points > 0)"
    )
    # A tag clause reads (tag → contact ids) from the index alone.
    op.create_index("ix_contact_tag_tag_contact", "contact_tag", ["tag", "contact_id"])


def downgrade() -> None:
    op.drop_index("ix_contact_tag_tag_contact", table_name="contact_tag")
    op.execute("ALTER TABLE contact DROP COLUMN score_activity_at")  # SQLite 3.35+, PostgreSQL
    op.drop_table("segment_member")
    op.drop_table("segment")
