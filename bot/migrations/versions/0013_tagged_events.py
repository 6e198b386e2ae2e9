"""tagged events: event_tag (the tags each event earned, and why), contact_tag.cause_event_id,
and the existing tags as the first tag.added entries on the timeline, marked as migrated

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from bot.core.models import BIGINT, JSONType, UTCDateTime

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

contact_tag = sa.table(
    "contact_tag",
    sa.column("id", sa.Integer),
    sa.column("contact_id", sa.Integer),
    sa.column("tag", sa.String),
    sa.column("source", sa.String),
    sa.column("source_ref", sa.String),
    sa.column("created_at", UTCDateTime()),
)
event = sa.table(
    "event",
    sa.column("id", BIGINT),
    sa.column("contact_id", sa.Integer),
    sa.column("type", sa.String),
    sa.column("source", sa.String),
    sa.column("properties", JSONType),
    sa.column("occurred_at", UTCDateTime()),
    sa.column("received_at", UTCDateTime()),
    sa.column("processed_at", UTCDateTime()),
    sa.column("dedupe_key", sa.String),
)
event_tag = sa.table(
    "event_tag",
    sa.column("event_id", BIGINT),
    sa.column("tag", sa.String),
    sa.column("contact_id", sa.Integer),
    sa.column("occurred_at", UTCDateTime()),
    sa.column("source", sa.String),
    sa.column("actor", sa.String),
)


def upgrade() -> None:
    op.create_table(
        "event_tag",
        sa.Column("event_id", BIGINT, nullable=False),
        sa.Column("tag", sa.String(64), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(["event_id"], ["event.id"]),
        sa.ForeignKeyConstraint(["contact_id"], ["contact.id"]),
        sa.PrimaryKeyConstraint("event_id", "tag"),
    )
    op.create_index(
        "ix_event_tag_time",
        "event_tag",
        ["tag", "occurred_at", "event_id"],
        unique=False,
        postgresql_include=["contact_id"],
    )
    op.add_column("contact_tag", sa.Column("cause_event_id", BIGINT, nullable=True))
    _tell_rules_apart()
    _first_entries()


def _tell_rules_apart() -> None:
    """The sources tags were stored with say which kind of rule or channel gave them."""
    c = contact_tag.c
    for source, old, prefix in (
        ("tag_rule", "rule", "tag_rule:%"),
        ("interest", "rule", "interest:%"),
        ("channel", "campaign", "channel:%"),
    ):
        op.execute(
            sa.update(contact_tag)
            .where(c.source == old, c.source_ref.like(prefix))
            .values(source=source)
        )
    conn = op.get_bind()
    replies = conn.execute(
        sa.select(c.id, c.source_ref).where(c.source == "rule", c.source_ref.is_not(None))
    ).all()
    for row_id, ref in replies:  # a reply rule's tags were stored with the bare rule id
        if ref.isdigit():
            conn.execute(
                sa.update(contact_tag)
                .where(c.id == row_id)
                .values(source="reply_rule", source_ref=f"reply_rule:{ref}")
            )


def _first_entries() -> None:
    """Each tag a contact has: a tag.added at the time it was given, with its source, marked
    migrated; it carries the tag (event_tag), as a change without a known cause does."""
    conn = op.get_bind()
    c = contact_tag.c
    now = sa.bindparam("now", datetime.now(UTC), type_=UTCDateTime())
    builder = sa.func.jsonb_build_object
    migrated: sa.ColumnElement = sa.true()
    if conn.dialect.name == "sqlite":
        builder, migrated = sa.func.json_object, sa.func.json("true")
    properties = builder(
        "tag", c.tag, "source", c.source, "actor", c.source_ref,
        "cause_event_id", sa.null(), "migrated", migrated,
    )  # fmt: skip
    key = sa.literal("tag.added:") + sa.cast(c.contact_id, sa.String) + ":" + c.tag + ":migrated"
    op.execute(
        sa.insert(event).from_select(
            [
                "contact_id",
                "type",
                "source",
                "properties",
                "occurred_at",
                "received_at",
                "processed_at",
                "dedupe_key",
            ],
            sa.select(
                c.contact_id,
                sa.literal("tag.added"),
                sa.literal("bot"),
                sa.type_coerce(properties, JSONType),
                c.created_at,
                now,
                now,
                key,
            ).where(sa.true()),
        )  # fmt: skip
    )
    e = event.c
    op.execute(
        sa.insert(event_tag).from_select(
            ["event_id", "tag", "contact_id", "occurred_at", "source", "actor"],
            sa.select(e.id, c.tag, c.contact_id, c.created_at, c.source, c.source_ref).select_from(
                contact_tag.join(event, e.dedupe_key == key)
            ),
        )
    )


def downgrade() -> None:
    op.drop_index("ix_event_tag_time", table_name="event_tag")
    op.drop_table("event_tag")
    op.execute(sa.delete(event).where(event.c.type.in_(["tag.added", "tag.removed"])))
    with op.batch_alter_table("contact_tag", schema=None) as batch_op:
        batch_op.drop_column("cause_event_id")
