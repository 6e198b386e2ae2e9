"""TagSync rows as a sync run sees them: reading the due ones, keeping the newest change per
contact and tag, recording each row's outcome; and ``call``, one platform API call within the
app's shared rate limit."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from bot.core import queue, wechat
from bot.core.config import Settings
from bot.core.db import session_scope
from bot.core.models import TagSync, utcnow

BATCH = 500  # rows read per round
MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class Row:
    id: int
    contact_id: int
    op: str
    tag: str
    attempts: int


Outcome = tuple[str, str | None]  # ("done" | "retry" | "failed", error)
DONE: Outcome = ("done", None)


def due(settings: Settings, platform: str, after: int, retry: bool) -> list[Row]:
    t = TagSync.__table__.c
    query = (
        sa.select(t.id, t.contact_id, t.op, t.tag, t.attempts)
        .where(t.platform == platform, t.status == "pending", t.id > after)
        .order_by(t.id)
        .limit(BATCH)
    )
    if not retry:
        query = query.where(t.attempts == 0)
    with session_scope(settings.database_url) as session:
        return [Row(*r) for r in session.execute(query).all()]


def latest(rows: list[Row]) -> tuple[list[Row], list[Row]]:
    """(the newest row per contact and tag, the older rows it supersedes)."""
    newest: dict[tuple[int, str], Row] = {}
    for row in rows:
        newest[(row.contact_id, row.tag)] = row
    keep = set(newest.values())
    return [r for r in rows if r in keep], [r for r in rows if r not in keep]


def settle(settings: Settings, outcomes: Iterable[tuple[Row, Outcome]]) -> dict[str, list[Row]]:
    """Record outcomes (only on rows still pending); returns rows by final status."""
    t = TagSync.__table__
    now = utcnow()
    by_status: dict[str, list[Row]] = defaultdict(list)
    with session_scope(settings.database_url) as session:
        for row, (status, error) in outcomes:
            values: dict[str, Any] = {"attempts": row.attempts + 1, "error": error}
            if status == "retry" and row.attempts + 1 >= MAX_ATTEMPTS:
                status = "failed"
            if status == "retry":
                values["status"] = "pending"
            else:
                values.update(status=status, done_at=now)
            session.execute(
                sa.update(t).where(t.c.id == row.id, t.c.status == "pending").values(**values)
            )
            by_status[status].append(row)
    return by_status


def merge(into: dict[str, list[Row]], more: dict[str, list[Row]]) -> None:
    for status, rows in more.items():
        into.setdefault(status, []).extend(rows)


def error_outcome(exc: wechat.PlatformError) -> Outcome:
    return ("retry" if exc.transient else "failed", str(exc)[:2000])


def call(settings: Settings, platform: wechat.Platform, method: str, path: str, **kw: Any) -> dict:
    """One API call within the app's shared rate limit (as messaging sends are)."""
    platform.tokens.get()  # fetch a missing token before taking a rate slot
    wechat.RateLimiter(queue.get_redis(settings), platform.app, settings.send_rate).acquire()
    return platform.call(method, path, **kw)
