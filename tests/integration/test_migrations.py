"""The migrations are the schema: applying them gives exactly what the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

import bot.core.models  # noqa: F401
from bot.core import db


def test_models_and_migrations_agree(settings):
    with db.get_engine(settings.database_url).connect() as conn:
        ctx = MigrationContext.configure(conn)
        diff = compare_metadata(ctx, SQLModel.metadata)
    assert diff == [], f"models differ from the migrations; add a migration: {diff}"
    head = ScriptDirectory.from_config(db.alembic_config(settings.database_url)).get_current_head()
    assert db.current_revision(settings.database_url) == head


def test_0021_fills_in_the_journey_sends_enrollment_and_step(tmp_path):
    """Rows stored before 0021 get their enrollment and step from their idempotency keys."""
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'm.db'}"
    db.upgrade(url, "0020")
    now = "2026-11-01 10:00:00.000000"
    with db.get_engine(url).begin() as conn:
        for key in ("j5:hello:1:2000", "j7:ask.v2-b:3:0", "b1:c2", "promo-1", None):
            conn.execute(
                sa.text(
                    "INSERT INTO message (channel, kind, payload, outside_window, marketing,"
                    " status, attempts, idempotency_key, created_at, updated_at)"
                    " VALUES ('oa', 'text', '{}', 'hold', 0, 'failed', 1, :k, :t, :t)"
                ),
                {"k": key, "t": now},
            )
    db.upgrade(url)
    with db.get_engine(url).connect() as conn:
        rows = conn.execute(
            sa.text("SELECT idempotency_key, enrollment_id, step FROM message ORDER BY id")
        ).all()
    assert [tuple(r) for r in rows] == [
        ("j5:hello:1:2000", 5, "hello"),
        ("j7:ask.v2-b:3:0", 7, "ask.v2-b"),
        ("b1:c2", None, None),
        ("promo-1", None, None),
        (None, None, None),
    ]
    db.get_engine(url).dispose()
