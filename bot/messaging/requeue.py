"""Putting outbox rows back in line: held rows when their contact writes again (the
48-hour window reopens), and rows whose delivery job was lost (the sweeper), never a row that
may have been sent."""

from __future__ import annotations

import logging
from datetime import timedelta

import sqlalchemy as sa

from bot.core import queue
from bot.core.config import Settings
from bot.core.db import session_scope
from bot.core.models import Contact, Message, utcnow
from bot.messaging import send_rules
from bot.messaging.outbox import CLAIMABLE, enqueue, finish, kick_after_commit

log = logging.getLogger(__name__)

STALE_SENDING = timedelta(minutes=5)  # a row this long in ``sending``: its worker died


def release_held_for(settings: Settings, contact_ids: set[int]) -> int:
    """These contacts interacted: queue their held messages again (when the window is open).
    One indexed query when nobody has anything held, which is nearly always."""
    t, c = Message.__table__.c, Contact.__table__.c
    window_start = utcnow() - send_rules.WINDOW
    with session_scope(settings.database_url) as session:
        ids = list(
            session.execute(
                sa.select(t.id)
                .join(Contact.__table__, c.id == t.contact_id)
                .where(
                    t.status == "held",
                    t.contact_id.in_(sorted(contact_ids)),
                    c.last_interaction_at > window_start,
                )
            ).scalars()
        )
        if ids:
            session.execute(
                sa.update(Message.__table__)
                .where(t.id.in_(ids), t.status == "held")
                .values(status="queued", updated_at=utcnow())
            )
    if ids:
        enqueue(settings, ids)
        log.info("released %d held message(s) for %d contact(s)", len(ids), len(contact_ids))
    return len(ids)


DELIVERY_QUEUES = (queue.URGENT, queue.QUEUE_NAME, queue.BULK)
SWEPT_BATCH = 25  # rows a job when a whole emptied Redis's worth is queued again


def _backlog(settings: Settings) -> int:
    """Jobs waiting in the queues that carry deliveries."""
    return sum(queue.get_queue(settings, name).count for name in DELIVERY_QUEUES)


def sweep(settings: Settings, limit: int = 1000, redis_emptied: bool = False) -> dict[str, int]:
    """Re-enqueue due queued/claimed rows whose job is gone (Redis lost or down, a worker
    killed), and close rows stuck in ``sending`` (a worker died mid-call) as ``unknown`` —
    never resent. While delivery jobs are still waiting in the queues, rows waiting longer than
    the grace period are a backlog (a big broadcast under the rate limit), not lost: they are
    left to those jobs, and swept once the queues have emptied. Answers to a contact's own
    message are either in a job of their own (``msg-<id>``, first in line) or being sent by the
    drain that wrote them, within seconds: one waiting longer than the short outbox grace with
    no job was left by a drain that died, and goes to the urgent queue whatever the backlog.
    ``redis_emptied``: Redis has just started empty (see queue.started_empty), so every due
    row's job is gone: no grace, no backlog to wait for."""
    now = utcnow()
    t = Message.__table__.c
    backlog = 0 if redis_emptied else _backlog(settings)
    grace = 0 if redis_emptied else settings.message_sweep_grace_seconds
    answer_grace = 0 if redis_emptied else settings.sweep_grace_seconds
    answers = sa.and_(
        t.reply_to_event_id.is_not(None), t.updated_at <= now - timedelta(seconds=answer_grace)
    )
    others = sa.and_(t.reply_to_event_id.is_(None), t.updated_at <= now - timedelta(seconds=grace))
    with session_scope(settings.database_url) as session:
        due = session.execute(
            sa.select(t.id, t.reply_to_event_id.is_not(None).label("answer"))
            .where(
                t.status.in_(CLAIMABLE),
                sa.or_(t.not_before.is_(None), t.not_before <= now),
                answers if backlog else sa.or_(answers, others),
            )
            .order_by(t.id)
            .limit(limit)
        ).all()
        stuck = list(
            session.execute(
                sa.select(Message)
                .where(t.status == "sending", t.updated_at < now - STALE_SENDING)
                .limit(limit)
            ).scalars()
        )
        reason = "worker stopped during the API call; not resent (at most once)"
        outbox_ids = [
            finish(session, m, "unknown", "msg.failed", error_message=reason) for m in stuck
        ]
    kick_after_commit(settings, outbox_ids)
    todo = [row for row in due if not queue.job_alive(settings, f"msg-{row.id}")]
    for row in todo:
        queue.drop_job(settings, f"msg-{row.id}")
    urgent = [row.id for row in todo if row.answer]
    rest = [row.id for row in todo if not row.answer]
    if urgent:
        enqueue(settings, urgent, urgent=True)
    if rest:
        enqueue(settings, rest, batch=SWEPT_BATCH if redis_emptied else 1)
    return {"requeued": len(todo), "unknown": len(stuck)}
