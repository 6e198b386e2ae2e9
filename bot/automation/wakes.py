"""Advancing the enrollments whose wait has come (``wake_at``): ``wake_due``, the job every
wake job runs (bot.automation.wake_jobs schedules them), and ``wake`` for one enrollment."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.automation import moves
from bot.automation.definitions import status_of
from bot.automation.enroll import Move
from bot.automation.runner import drain_changes
from bot.automation.snapshots import snapshot, snapshots
from bot.automation.state import state_from_json
from bot.automation.tx import After, Tx, locked
from bot.automation.wake_jobs import continue_wakes, live_waits
from bot.core.config import Settings
from bot.core.db import session_scope
from bot.core.models import Enrollment, utcnow

log = logging.getLogger(__name__)

WAKE_BATCH = 500
EARLY_START = 1.5  # seconds: rq's scheduler may run a job this much before its time, at most
WAKE_SLICE = 2.0  # seconds of waking before a job hands the rest to a fresh one
IDLE_WAIT = 1.0  # a job with nothing due waits for a wake this close, rather than return
# ... and then for the wakes due in the GATHER after it too: waits spread over the minute come
# due a few ms apart, and a batch of one each means a delivery job (and its fixed costs) each.
GATHER = 0.1


def _next_wake_in(session: Session, now: datetime) -> float | None:
    """Seconds until the next live wait ends (None: nothing waits)."""
    en = Enrollment.__table__.c
    soonest = session.execute(live_waits(sa.func.min(en.wake_at))).scalar()
    if soonest is None:
        return None
    return max(-_seconds_since(soonest, now), 0.0)


def _seconds_since(at: datetime, now: datetime) -> float:
    if at.tzinfo is None:  # SQLite hands back naive UTC
        at = at.replace(tzinfo=now.tzinfo)
    return (now - at).total_seconds()


def _due_batch(session: Session, now: datetime, limit: int) -> list[Enrollment]:
    en = Enrollment.__table__.c
    query = live_waits(Enrollment).where(en.wake_at <= now).order_by(en.wake_at).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        # SKIP LOCKED splits the due rows between the workers that wake at the same time
        query = query.with_for_update(skip_locked=True, of=Enrollment)
    return list(session.execute(query).scalars())


def _resync(row: Enrollment, now: datetime) -> None:
    """A due row the engine did not move: its wake_at column disagrees with its state (set by
    hand?). Take the state's, so it is not picked again and again."""
    wake = state_from_json(row.state).wake_at
    log.warning("enrollment %s was due at %s but its state says %s", row.id, row.wake_at, wake)
    row.wake_at = wake if wake is not None and wake > now else None


def _wake_batch(tx: Tx, rows: list[Enrollment]) -> int:
    """Advance one batch of due rows, a contact's first row only (the next batch sees the
    contact as this one left them); returns how many rows were left for later."""
    contacts_now = snapshots(tx.session, (r.contact_id for r in rows))
    batch: list[Move] = []
    seen: set[int] = set()
    later = 0
    for row in rows:
        if row.contact_id in seen:
            later += 1
            continue
        contact = contacts_now.get(row.contact_id)
        move = None if contact is None else moves.transition(tx, row, None, contact)
        if move is None:
            _resync(row, tx.now)
            continue
        seen.add(row.contact_id)
        batch.append((row, *move, None))
    moves.apply(tx, batch)
    drain_changes(tx)
    return later


def wake_due(
    settings: Settings,
    batch: int = WAKE_BATCH,
    due_by: float | None = None,
    on_batch: Callable[[float], object] | None = None,
    may_wait: Callable[[float], bool] | None = None,
) -> dict[str, int]:
    """Advance every enrollment whose wake_at has come, ``batch`` per transaction, until none
    is left. ``due_by``: the second this job was scheduled for; rq may start it a little early,
    so it waits for that second first. ``on_batch(late)`` runs before each batch: how many
    seconds after its time the previous batch's first wait ran (0 before the first).
    ``may_wait(seconds)``: asked before waiting for the next wake; False returns instead
    (another job waits already). Idempotent: a row already advanced is no longer due."""
    out = {"batches": 0, "woken": 0}
    early = (due_by - time.time()) if due_by is not None else 0.0
    if 0 < early <= EARLY_START:
        time.sleep(early + 0.01)
    started = time.monotonic()
    late = 0.0
    while True:
        if on_batch is not None:
            on_batch(late)
        after: After = []
        now = utcnow()
        with session_scope(settings.database_url) as session:
            rows = _due_batch(session, now, batch)
            idle = None if rows else _next_wake_in(session, now)
            if rows:
                late = _seconds_since(rows[0].wake_at, now)  # the batch's oldest
                later = _wake_batch(Tx(settings, session, now, after), rows)
        if not rows:
            late = 0.0
            # The next second's job would be scheduled, started and connected only after its
            # time: when that wake is this close and the slice allows, wait for it here.
            left = WAKE_SLICE - (time.monotonic() - started)
            if idle is None or idle > min(IDLE_WAIT, left):
                return out
            pause = max(idle, GATHER) + 0.005
            if may_wait is not None and not may_wait(pause):
                return out
            time.sleep(pause)
            continue
        for action in after:
            action()
        out["batches"] += 1
        out["woken"] += len(rows) - later
        if time.monotonic() - started > WAKE_SLICE:
            # let the worker look at the urgent queue (answers to contacts) in between
            continue_wakes(settings)
            return out


def wake(settings: Settings, enrollment_id: int, now: datetime | None = None) -> str:
    """Advance an enrollment whose wake_at has come (event None). Idempotent: an early, a
    repeated or a stale call changes nothing. Returns the enrollment's status, or "missing",
    "not_due", "paused"."""
    now = now or utcnow()
    after: After = []
    with session_scope(settings.database_url) as session:
        row = session.execute(
            locked(session, sa.select(Enrollment).where(Enrollment.id == enrollment_id))
        ).scalar()
        if row is None:
            return "missing"
        if row.status not in ("waiting", "asking") or row.wake_at is None:
            return row.status
        if now < row.wake_at:
            return "not_due"
        if status_of(session, row.journey_id) != "published":
            return "paused"
        tx = Tx(settings, session, now, after)
        moves.advance(tx, row, None, None, snapshot(session, row.contact_id))
        drain_changes(tx)
        status = row.status
    for action in after:
        action()
    return status
