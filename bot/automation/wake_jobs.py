"""The rq side of journey waits: the jobs that deliver wakes, the sweep that rebuilds lost ones.

A wait is its enrollment's ``wake_at``. Wakes are delivered by one rq job per second of due
time (``journey-wakes-<epoch>``, scheduled with enqueue_at): whichever runs first advances
every enrollment due by then (bot.automation.wakes.wake_due), in batches, so 100,000 waits
that end in the same minute cost sixty jobs, not 100,000.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from bot.core import queue
from bot.core.config import Settings
from bot.core.db import session_scope
from bot.core.models import Enrollment, Journey, utcnow

log = logging.getLogger(__name__)

WAKE_DUE_JOB = "bot.background.jobs.wake_due"
SWEEP_WAKE = "journey-wakes-sweep"


def wake_bucket_id(epoch: int) -> str:
    return f"journey-wakes-{epoch}"


def enqueue_wakes(settings: Settings, epochs: Iterable[int]) -> bool:
    """Schedule the wake job for each second (deterministic ids, skipped when alive); False if
    Redis is down (the sweeper finds the overdue rows)."""
    try:
        q = queue.get_queue(settings, queue.WAKES)
        for epoch in sorted(set(epochs)):
            job_id = wake_bucket_id(epoch)
            if queue.job_alive(settings, job_id):
                continue
            queue.drop_job(settings, job_id)
            at = datetime.fromtimestamp(epoch, UTC)
            q.enqueue_at(at, WAKE_DUE_JOB, epoch, job_id=job_id, result_ttl=300, job_timeout=3600)
    except queue.REDIS_ERRORS as exc:
        log.warning("journey wakes not enqueued (%s); the sweeper will", exc)
        return False
    return True


def enqueue_wake(settings: Settings, at: datetime) -> bool:
    return enqueue_wakes(settings, [math.ceil(at.timestamp())])


def continue_wakes(settings: Settings) -> None:
    """A fresh wake job for what a job that used up its slice left."""
    try:
        queue.get_queue(settings, queue.WAKES).enqueue(
            WAKE_DUE_JOB, job_id=f"journey-wakes-more-{uuid.uuid4().hex[:12]}", result_ttl=60
        )
    except queue.REDIS_ERRORS as exc:
        log.warning("journey wakes: continuation not enqueued (%s); the sweeper will", exc)


def live_waits(*columns: Any) -> Any:
    """SELECT ``columns`` over the enrollments waiting (or asking) in published journeys."""
    en, j = Enrollment.__table__.c, Journey.__table__.c
    return (
        sa.select(*columns)
        .select_from(Enrollment.__table__.join(Journey.__table__, j.id == en.journey_id))
        .where(en.status.in_(("waiting", "asking")), j.status == "published")
    )


def sweep(settings: Settings, grace: timedelta = timedelta(minutes=1)) -> int:
    """If any wake (of a published journey) is overdue by more than ``grace`` and no sweep's
    wake job is alive, enqueue one now (Redis lost the scheduled one, or no worker ran).
    Returns how many overdue wakes it enqueued a job for (0: none, or one is on its way)."""
    cutoff = utcnow() - grace
    with session_scope(settings.database_url) as session:
        overdue = session.execute(
            live_waits(sa.func.count()).where(Enrollment.__table__.c.wake_at < cutoff)
        ).scalar_one()
    if not overdue or queue.job_alive(settings, SWEEP_WAKE):
        return 0
    queue.drop_job(settings, SWEEP_WAKE)
    queue.get_queue(settings, queue.WAKES).enqueue(WAKE_DUE_JOB, job_id=SWEEP_WAKE, result_ttl=60)
    return overdue


def resume_due(settings: Settings, journey_id: int) -> int:
    """After a resume: wake what came due while the journey was paused (returns how many)."""
    en = Enrollment.__table__.c
    with session_scope(settings.database_url) as session:
        due = session.execute(
            sa.select(sa.func.count()).where(
                en.journey_id == journey_id,
                en.status.in_(("waiting", "asking")),
                en.wake_at <= utcnow(),  # the others' jobs are scheduled (or the sweeper's)
            )
        ).scalar_one()
    if due:
        enqueue_wakes(settings, [math.floor(utcnow().timestamp())])
    return due
