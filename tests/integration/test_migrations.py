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
