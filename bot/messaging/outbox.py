"""Outbound messages: every send is a row, delivered by a background job that obeys the
platform's rules (48-hour window, template fallback or hold, unsubscribed contacts) and ours
(frequency caps, quiet hours, rate limit), with at-most-once delivery per row.

A row moves queued → sending → sent, or to held / scheduled / skipped / failed; a batch job
first marks the rows it will send ``claimed`` (nothing sent yet, but counted by the cap), then
each one ``sending`` just before its call. ``sending`` is committed before the API call: if
the worker dies after that, the row is never sent again (the sweeper marks it ``unknown``),
so a message is delivered at most once whatever crashes or retries happen; a retried job or a
duplicate idempotency key finds the row and stops. A claimed row whose job is lost is queued
again by the sweeper.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from rq import Retry
from sqlalchemy.orm import Session

from bot.contacts import record as events
from bot.core import queue
from bot.core.config import Settings
from bot.core.db import dialect_insert, session_scope
from bot.core.models import Contact, Message, utcnow
from bot.messaging import send_rules
from bot.messaging.payloads import SendRequest

log = logging.getLogger(__name__)

DELIVER = "bot.background.jobs.deliver_message"
DELIVER_BATCH = "bot.background.jobs.deliver_messages"
FINAL = {"sent", "delivered", "failed", "skipped", "unknown"}
# Rows a job may still decide about: "claimed" is a batch's, not yet being sent by anyone.
CLAIMABLE = ("queued", "scheduled", "claimed")


class UnknownContact(Exception):
    pass


def policy(settings: Settings) -> send_rules.Policy:
    start = end = None
    if settings.quiet_hours:
        a, _, b = settings.quiet_hours.partition("-")
        start, end = send_rules.parse_clock(a), send_rules.parse_clock(b)
    return send_rules.Policy(
        marketing_cap=settings.marketing_cap,
        quiet_start=start,
        quiet_end=end,
        timezone=settings.timezone,
        mass_quota=settings.mass_monthly_quota,
    )


def message_json(m: Message) -> dict[str, Any]:
    iso = lambda v: v.isoformat() if v else None  # noqa: E731
    return {
        "id": m.id,
        "contact_id": m.contact_id,
        "to_user": m.to_user.split("|") if m.to_user else None,
        "channel": m.channel,
        "kind": m.kind,
        "sent_kind": m.sent_kind,
        "payload": m.payload,
        "marketing": m.marketing,
        "outside_window": m.outside_window,
        "status": m.status,
        "attempts": m.attempts,
        "error_code": m.error_code,
        "error_message": m.error_message,
        "platform_msgid": m.platform_msgid,
        "idempotency_key": m.idempotency_key,
        "broadcast_id": m.broadcast_id,
        "enrollment_id": m.enrollment_id,
        "step": m.step,
        "variant": m.variant,
        "not_before": iso(m.not_before),
        "created_at": iso(m.created_at),
        "sent_at": iso(m.sent_at),
    }


# --- creating ------------------------------------------------------------------------------


def new_message_row(req: SendRequest, broadcast_id: int | None = None) -> dict[str, Any]:
    now = utcnow()
    return {
        "contact_id": req.contact_id,
        "to_user": "|".join(req.to_user) if req.to_user else None,
        "channel": req.channel,
        "kind": req.kind,
        "payload": req.payload,
        "outside_window": req.outside_window,
        "fallback": req.fallback.model_dump(mode="json", exclude_none=True)
        if req.fallback
        else None,
        "marketing": req.marketing,
        "reply_to_event_id": req.reply_to_event_id,
        "broadcast_id": broadcast_id,
        "enrollment_id": None,  # a journey's send: set by bot.automation.execute
        "step": None,
        "variant": None,  # a broadcast's A/B variant
        "status": "queued",
        "attempts": 0,
        "idempotency_key": req.idempotency_key,
        "created_at": now,
        "updated_at": now,
    }


def insert_messages(
    session: Session, rows: list[dict[str, Any]], new_keys: bool = False
) -> list[int]:
    """Insert rows (one executemany; all with the same keys), skipping any whose idempotency
    key exists; returns the new ids. ``new_keys``: the caller knows no row with these keys
    can exist (a journey's send, made once under its step's claim); on PostgreSQL the ids
    are then drawn from the sequence and the rows inserted without RETURNING, which psycopg
    runs as one short statement whatever the number of rows."""
    if not rows:
        return []
    t = Message.__table__
    stmt = dialect_insert(session, t).on_conflict_do_nothing(index_elements=["idempotency_key"])
    if not new_keys or session.get_bind().dialect.name != "postgresql":
        return sorted(session.execute(stmt.returning(t.c.id), rows).scalars())
    sequence = sa.func.pg_get_serial_sequence("message", "id")
    ids = list(
        session.execute(
            sa.select(sa.func.nextval(sequence)).select_from(sa.func.generate_series(1, len(rows)))
        ).scalars()
    )
    session.execute(stmt, [{**row, "id": i} for row, i in zip(rows, ids, strict=True)])
    return ids


def create(settings: Settings, req: SendRequest) -> tuple[Message, bool]:
    """Store a send and enqueue its delivery. Returns (row, created); an existing idempotency
    key returns the row it already made (and sends nothing new)."""
    with session_scope(settings.database_url) as session:
        if req.contact_id is not None and session.get(Contact, req.contact_id) is None:
            raise UnknownContact(req.contact_id)
        ids = insert_messages(session, [new_message_row(req)])
        if ids:
            row, created = session.get(Message, ids[0]), True
        else:
            key = req.idempotency_key
            row = session.execute(
                sa.select(Message).where(Message.idempotency_key == key)
            ).scalar_one()
            created = False
    if created:
        enqueue(settings, [row.id])
    return row, created


# A delivery job that fails (a deadlock with a drain, Redis failing before a send) runs again:
# the rows it claimed are then sent now, not when the sweeper's grace period has passed.
RETRY = Retry(max=3)


def enqueue(
    settings: Settings,
    ids: list[int],
    at: datetime | None = None,
    batch: int = 1,
    urgent: bool = False,
    name: str | None = None,
    must: bool = False,
) -> bool:
    """Enqueue delivery jobs with deterministic ids (one per message, or one per ``batch``
    messages, by default on the bulk queue (broadcasts); ``urgent``: answers to the contact's
    own message, first in line; ``name``: this queue); False if Redis is unreachable — the
    sweeper finds the rows. ``must``: raise instead (a batch job handing on its rest: failing,
    it is run again whole, see RETRY and queue.recover_abandoned)."""
    try:
        if name is None:
            name = queue.URGENT if urgent else queue.BULK if batch > 1 else queue.QUEUE_NAME
        q = queue.get_queue(settings, name)
        if at is not None:
            for i in ids:
                q.enqueue_at(
                    at,
                    DELIVER,
                    i,
                    job_id=f"msg-{i}-at{int(at.timestamp())}",
                    result_ttl=300,
                    retry=RETRY,
                )
            return True
        if batch > 1:
            chunks = [ids[n : n + batch] for n in range(0, len(ids), batch)]
            jobs = [
                q.prepare_data(
                    DELIVER_BATCH,
                    (c,),
                    job_id=f"msgs-{c[0]}-{c[-1]}",
                    result_ttl=300,
                    timeout=3600,
                    retry=RETRY,
                )
                for c in chunks
            ]
        else:
            jobs = [
                q.prepare_data(DELIVER, (i,), job_id=f"msg-{i}", result_ttl=300, retry=RETRY)
                for i in ids
            ]
        with q.connection.pipeline() as pipe:
            q.enqueue_many(jobs, pipeline=pipe)
            pipe.execute()
    except queue.REDIS_ERRORS as exc:
        if must:
            raise
        log.warning(
            "%d message job(s) not enqueued (%s); the sweeper will pick them up", len(ids), exc
        )
        return False
    return True


MASS_JOB = "bot.background.jobs.send_mass"


def mass_flag(broadcast_id: int) -> str:
    return f"yuchi:mass:{broadcast_id}:queued"


def mass_job_key(broadcast_id: int) -> str:
    """Where the id of the broadcast's newest mass job is kept (for the sweeper)."""
    return f"yuchi:mass:{broadcast_id}:job"


def kick_mass(settings: Settings, broadcast_id: int, delay: float = 0.0) -> bool:
    """Make sure a mass-send job (bot.messaging.mass) for this broadcast will see the rows
    queued for it until now: a flag coalesces kicks into one job, cleared when the job starts.
    ``delay``: a job that looks again later. False if Redis is down: the sweeper finds them."""
    try:
        conn = queue.get_redis(settings)
        if not delay and not conn.set(mass_flag(broadcast_id), "1", nx=True, ex=600):
            return True
        q = queue.get_queue(settings, queue.BULK)
        job_id = f"mass-{broadcast_id}-{int(utcnow().timestamp() * 1000)}"
        if delay:
            q.enqueue_in(timedelta(seconds=delay), MASS_JOB, broadcast_id, job_id=job_id)
        else:
            q.enqueue(MASS_JOB, broadcast_id, job_id=job_id, job_timeout=3600)
        conn.set(mass_job_key(broadcast_id), job_id, ex=7 * 86400)
    except queue.REDIS_ERRORS as exc:
        log.warning("mass send for broadcast %s not enqueued (%s)", broadcast_id, exc)
        return False
    return True


# --- closing a row ------------------------------------------------------------------------


QUIET_EVENTS = frozenset({"msg.sent"})


def record_message_event(
    session: Session, m: Message, type_: str, extra: dict[str, Any]
) -> int | None:
    if m.contact_id is None:
        return None
    props = {"message_id": m.id, "kind": m.sent_kind or m.kind, "marketing": m.marketing, **extra}
    return events.append(
        session,
        m.contact_id,
        type_,
        props,
        dedupe_key=f"msg:{m.id}:{type_}:{m.attempts}",
        # one per send: on the timeline, but not worth a background pass each (held and
        # failed sends are, for rules and journeys that react to them)
        pipeline=type_ not in QUIET_EVENTS,
    )


def finish(
    session: Session, m: Message, status: str, event: str | None, **fields: Any
) -> int | None:
    for key, value in fields.items():
        setattr(m, key, value)
    m.status, m.updated_at = status, utcnow()
    session.add(m)
    session.flush()
    if event is None:
        return None
    extra = {k: fields[k] for k in ("error_code", "error_message") if fields.get(k) is not None}
    if status == "sent":
        extra["platform_msgid"] = m.platform_msgid
    return record_message_event(session, m, event, extra)


def kick_after_commit(settings: Settings, outbox_ids: list[int | None]) -> None:
    if any(ob is not None for ob in outbox_ids):
        queue.kick_outbox(settings)


# --- reading -------------------------------------------------------------------------------


def get(session: Session, message_id: int) -> Message | None:
    return session.get(Message, message_id)


def for_contact(
    session: Session, contact_id: int, limit: int, before: int | None
) -> tuple[list[Message], int | None]:
    query = (
        sa.select(Message)
        .where(Message.contact_id == contact_id)
        .order_by(Message.id.desc())
        .limit(limit + 1)
    )
    if before:
        query = query.where(Message.id < before)
    rows = list(session.execute(query).scalars())
    return rows[:limit], (rows[limit - 1].id if len(rows) > limit else None)
