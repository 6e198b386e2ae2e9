"""Tag changes out to the platforms: TagSync rows (written by bot.tagging.tags in the same
transaction as the tag change) are taken in batches by a background job per platform.

- Official Account: rows grouped by (op, tag); the OA tag is created on first use (PlatformTag
  keeps its id), then ``tags/members/batchtagging`` / ``batchuntagging`` with at most 50
  openids a call.
- WeCom: rows grouped by contact; tag names map to corp tag ids (CorpTag; missing ones are
  created with ``add_corp_tag`` in the group 「鱼池」); one ``externalcontact/mark_tag`` per
  (rep, customer) pair with the contact's add_tag and remove_tag.

Tagging is idempotent on both platforms, so a row is synced at least once: a crash between
the call and the bookkeeping only repeats a harmless call. Transient errors keep the row
pending (attempts + 1) and schedule a retry with backoff; other errors fail the row with the
platform's code and message. Runs of one platform take a Redis lock, so two workers never
send the same rows; a flag coalesces kicks into one queued job, like the outbox drain.

This module is the job (kick, sweep, run); the platforms' halves are sync_oa.py and
sync_wecom.py, the row bookkeeping they share is sync_rows.py.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from datetime import timedelta

import redis
import sqlalchemy as sa

from bot.core import queue
from bot.core.config import Settings
from bot.core.db import session_scope
from bot.core.models import TagSync, utcnow
from bot.messaging import outbox as messaging
from bot.messaging import send_rules
from bot.tagging.sync_oa import sync_oa
from bot.tagging.sync_rows import Row, due
from bot.tagging.sync_wecom import sync_wecom

log = logging.getLogger(__name__)

log = logging.getLogger(__name__)

JOB = "bot.background.jobs.sync_tags"
PLATFORMS = ("oa", "wecom")


def _flag(platform: str) -> str:
    return f"yuchi:tagsync:{platform}:queued"


def _last_job(platform: str) -> str:
    return f"yuchi:tagsync:{platform}:job"


def _retry_job(platform: str) -> str:
    return f"yuchi:tagsync:{platform}:retry"


# --- enqueueing ------------------------------------------------------------------------------


def kick(settings: Settings, first_rows: Mapping[str, int]) -> bool:
    """After commit: make sure a sync run will see the rows just written (``first_rows``:
    platform -> the lowest TagSync id written). While the flag is set a queued run has not
    started reading, so it will see them; otherwise enqueue one, named by that row id.
    False (logged) when Redis is unreachable: the sweeper finds the rows later."""
    try:
        conn = queue.get_redis(settings)
        for platform, first in sorted(first_rows.items()):
            if conn.set(_flag(platform), "1", nx=True, ex=60):
                _enqueue(settings, platform, f"tagsync-{platform}-{first}", retry=False)
    except queue.REDIS_ERRORS as exc:
        log.warning("tag sync not enqueued (%s); the sweeper will pick the rows up", exc)
        return False
    return True


def _enqueue(
    settings: Settings, platform: str, job_id: str, retry: bool, delay: float = 0.0
) -> None:
    q = queue.get_queue(settings)
    if delay > 0:
        q.enqueue_in(
            timedelta(seconds=delay), JOB, platform, retry, job_id=job_id, failure_ttl=7 * 86400
        )
        queue.get_redis(settings).set(_retry_job(platform), job_id, ex=int(delay) + 3600)
        return
    q.enqueue(
        JOB, platform, retry, job_id=job_id, result_ttl=60, failure_ttl=7 * 86400, job_timeout=3600
    )
    queue.get_redis(settings).set(_last_job(platform), job_id, ex=3600)


def sweep(settings: Settings) -> int:
    """Pending rows older than the grace period with no sync job alive (Redis down or
    flushed, a worker killed, a lost retry): enqueue a run that takes every pending row."""
    cutoff = utcnow() - timedelta(seconds=settings.sweep_grace_seconds)
    t = TagSync.__table__.c
    with session_scope(settings.database_url) as session:
        firsts = dict(
            session.execute(
                sa.select(t.platform, sa.func.min(t.id))
                .where(t.status == "pending", t.created_at < cutoff)
                .group_by(t.platform)
            ).all()
        )
    conn = queue.get_redis(settings)
    enqueued = 0
    for platform, first in sorted(firsts.items()):
        known = [conn.get(_last_job(platform)), conn.get(_retry_job(platform))]
        if any(j and queue.job_alive(settings, j.decode()) for j in known):
            continue
        job_id = f"tagsync-{platform}-{first}-swept"
        queue.drop_job(settings, job_id)
        _enqueue(settings, platform, job_id, retry=True)
        enqueued += 1
    if enqueued:
        log.info("sweeper: tag sync enqueued for %d platform(s)", enqueued)
    return enqueued


# --- the run ---------------------------------------------------------------------------------


def run(settings: Settings, platform: str, retry: bool = False) -> dict[str, int]:
    """Sync the pending rows of one platform. A normal run takes rows never tried; a retry
    run (scheduled after a transient error, or by the sweeper) takes every pending row."""
    if platform not in PLATFORMS:
        raise ValueError(f"unknown platform {platform!r}")
    conn = queue.get_redis(settings)
    if not retry:
        conn.delete(_flag(platform))  # rows committed from now on kick a new run
    lock = conn.lock(f"yuchi:tagsync:{platform}:lock", timeout=900, blocking_timeout=60)
    if not lock.acquire():
        log.warning("tag sync %s: another run holds the lock; leaving rows to it", platform)
        return {"busy": 1}
    counts: dict[str, int] = defaultdict(int)
    to_retry: list[Row] = []
    try:
        after = 0
        while rows := due(settings, platform, after, retry):
            after = rows[-1].id
            sync = sync_oa if platform == "oa" else sync_wecom
            for status, settled in sync(settings, rows).items():
                counts[status] += len(settled)
                if status == "retry":
                    to_retry += settled
            lock.reacquire()
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:
            log.warning("tag sync %s: the lock expired during the run", platform)
    if to_retry:
        attempt = max(r.attempts for r in to_retry) + 1
        delay = send_rules.backoff(attempt, messaging.policy(settings))
        job_id = f"tagsync-{platform}-retry-{to_retry[0].id}-a{attempt}"
        try:
            _enqueue(settings, platform, job_id, retry=True, delay=delay)
        except queue.REDIS_ERRORS as exc:
            log.warning("tag sync retry not scheduled (%s); the sweeper will find the rows", exc)
        log.info("tag sync %s: %d row(s) retry in %.1fs", platform, len(to_retry), delay)
    return dict(counts)
