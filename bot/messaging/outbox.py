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
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from rq import Retry
from sqlalchemy.orm import Session

from bot.contacts import record as events
from bot.core import queue, wechat
from bot.core.config import Settings
from bot.core.db import conflict, dialect_insert, session_scope
from bot.core.models import Contact, Identity, Message, utcnow
from bot.messaging import send_rules
from bot.messaging.payloads import SendRequest, oa_request, wecom_request

log = logging.getLogger(__name__)

DELIVER = "bot.background.jobs.deliver_message"
DELIVER_BATCH = "bot.background.jobs.deliver_messages"
FINAL = {"sent", "failed", "skipped", "unknown"}
# Rows a job may still decide about: "claimed" is a batch's, not yet being sent by anyone.
CLAIMABLE = ("queued", "scheduled", "claimed")
STALE_SENDING = timedelta(minutes=5)


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


# --- delivering ----------------------------------------------------------------------------


@dataclass
class _Plan:
    """What phase 1 decided: call this API with this body (or nothing)."""

    path: str
    body: dict
    sent_kind: str
    channel: str


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


def _finish(
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


def _recent_marketing(
    session: Session, contact_ids: list[int], exclude: list[int], since: datetime
) -> dict[int, int]:
    """Marketing messages per contact sent since ``since`` or on their way (claimed or being
    sent), not counting the rows in ``exclude``."""
    t = Message.__table__.c
    rows = session.execute(
        sa.select(t.contact_id, sa.func.count())
        .where(
            t.contact_id.in_(sorted(set(contact_ids))),
            t.marketing.is_(True),
            t.id.not_in(exclude),
            sa.or_(
                sa.and_(t.status == "sent", t.sent_at >= since),
                sa.and_(t.status.in_(("sending", "claimed")), t.updated_at >= since),
            ),
        )
        .group_by(t.contact_id)
    )
    return dict(rows.all())


def _contacts(session: Session, settings: Settings, contact_ids: list[int]) -> dict[int, Any]:
    """The contacts (locked, in id order: one send decision at a time per contact, for the
    cap) with their openid, in one round trip."""
    c, i = Contact.__table__, Identity.__table__
    rows = session.execute(
        sa.select(
            c.c.id, c.c.subscribed, c.c.stage, c.c.last_interaction_at, i.c.value.label("openid")
        )
        .select_from(
            c.outerjoin(
                i,
                sa.and_(
                    i.c.contact_id == c.c.id, i.c.kind == "openid", i.c.app_id == settings.oa_appid
                ),
            )
        )
        .where(c.c.id.in_(sorted(set(contact_ids))))
        .order_by(c.c.id, i.c.id)
        .with_for_update(of=c)
    )
    found: dict[int, Any] = {}
    for row in rows:
        found.setdefault(row.id, row)
    return found


def _not_yet(m: Message, now: datetime) -> bool:
    """Is the row held back until a time still ahead (quiet hours, a retry's backoff)?"""
    return m.not_before is not None and m.not_before > now


def _capped(m: Message) -> bool:
    """Does the frequency cap (and quiet hours) apply to this row?"""
    return m.channel != "wecom" and m.marketing and m.reply_to_event_id is None


def _outside_window(session: Session, m: Message, reason: str) -> tuple[str, int | None]:
    """Apply the row's policy when the 48-hour window is closed."""
    if m.outside_window == "fallback" and m.fallback:
        return "fallback", None
    if m.outside_window == "hold":
        return "held", _finish(session, m, "held", "msg.held", error_message=reason)
    return "failed", _finish(
        session, m, "failed", "msg.failed", error_code=45015, error_message=reason
    )


def _plan(
    session: Session,
    settings: Settings,
    m: Message,
    now: datetime,
    contact: Any = None,
    recent: int | None = None,
) -> tuple[str, Any]:
    """Phase 1, inside the claim transaction: decide what to do with the row. ``contact`` (see
    ``_contacts``) and ``recent`` (its marketing count) when the caller read them already.
    Returns ("send", _Plan) or (status, outbox id of the event recorded)."""
    pol = policy(settings)
    if m.channel == "wecom":
        path, body = wecom_request(m.kind, m.payload, m.to_user or "", settings.wecom_agent_id)
        return "send", _Plan(path, body, m.kind, "wecom")

    if contact is None:
        contact = _contacts(session, settings, [m.contact_id])[m.contact_id]
    if not contact.subscribed:
        return "skipped", _finish(
            session, m, "skipped", "msg.failed", error_message="contact is not following"
        )
    if m.marketing and contact.stage in send_rules.NO_MARKETING_STAGES:
        return "skipped", _finish(
            session, m, "skipped", "msg.failed", error_message=f"contact is {contact.stage}"
        )
    openid = contact.openid
    if openid is None:
        return "skipped", _finish(
            session, m, "skipped", "msg.failed", error_message="contact has no openid"
        )

    if _capped(m):
        talking = send_rules.in_conversation(contact.last_interaction_at, now, pol)
        resume = None if talking else send_rules.quiet_until(now, pol)
        if resume is not None:
            _finish(session, m, "scheduled", None, not_before=resume)
            return "scheduled", resume
        if recent is None:
            since = now - pol.cap_window
            recent = _recent_marketing(session, [m.contact_id], [m.id], since).get(m.contact_id, 0)
        if send_rules.over_cap(recent, pol):
            reason = f"frequency cap: {pol.marketing_cap} marketing messages per 24 h"
            return "skipped", _finish(session, m, "skipped", "msg.failed", error_message=reason)

    kind, payload = m.kind, m.payload
    if kind in send_rules.CUSTOMER_SERVICE_KINDS and not send_rules.in_window(
        contact.last_interaction_at, now
    ):
        outcome, outbox = _outside_window(session, m, "outside the 48-hour customer-service window")
        if outcome != "fallback":
            return outcome, outbox
        kind, payload = "template", m.fallback
    path, body = oa_request(
        kind, payload, openid, client_msg_id=m.idempotency_key or f"yuchi-msg-{m.id}"
    )
    return "send", _Plan(path, body, kind, "oa")


def deliver(settings: Settings, message_id: int, now: datetime | None = None) -> str:
    """Deliver one message row (idempotent; safe to call again for any reason)."""
    now = now or utcnow()
    outbox_ids: list[int] = []
    with session_scope(settings.database_url) as session:
        m = session.execute(
            sa.select(Message).where(Message.id == message_id).with_for_update()
        ).scalar_one_or_none()
        if m is None:
            return "missing"
        if m.status not in CLAIMABLE:
            return m.status  # sent, held, failed, … or another worker is sending it
        if _not_yet(m, now):
            outcome: str = "scheduled"
            at = m.not_before
        else:
            outcome, plan = _plan(session, settings, m, now)
            if outcome == "send":  # committed before the call: at most once
                session.execute(
                    sa.update(Message.__table__)
                    .where(Message.__table__.c.id == m.id)
                    .values(
                        status="sending",
                        attempts=m.attempts + 1,
                        updated_at=now,
                        sent_kind=plan.sent_kind,
                    )
                )
            elif outcome == "scheduled":
                at = plan
            elif plan is not None:
                outbox_ids.append(plan)
    _after_commit(settings, outbox_ids)
    if outcome == "scheduled":
        enqueue(settings, [message_id], at=at)
        return "scheduled"
    if outcome != "send":
        return outcome
    return _call(settings, message_id, plan)


def deliver_now(settings: Settings, ids: list[int]) -> None:
    """Deliver these messages in this process, now (after the caller's commit); any that
    raises is enqueued instead, for a worker to try."""
    for message_id in ids:
        try:
            deliver(settings, message_id)
        except Exception:
            log.exception("message %s: delivering now failed; enqueued", message_id)
            enqueue(settings, [message_id], urgent=True)


CLAIM_ATTEMPTS = 3


def _claim(
    settings: Settings, ids: list[int], now: datetime
) -> tuple[dict[str, int], list[tuple[int, _Plan]], list[tuple[int, datetime]], list[int | None]]:
    """Phase 1 of a batch, in one transaction (see deliver_batch): (outcome counts so far, the
    rows to send with their plans, the rows to deliver later, outbox rows recorded)."""
    t = Message.__table__
    counts: dict[str, int] = {}

    def count(outcome: str) -> None:
        counts[outcome] = counts.get(outcome, 0) + 1

    plans: list[tuple[int, _Plan]] = []
    later: list[tuple[int, datetime]] = []
    outbox_ids: list[int | None] = []
    with session_scope(settings.database_url) as session:
        query = (
            sa.select(Message)
            .where(Message.id.in_(sorted(set(ids))), Message.status.in_(CLAIMABLE))
            .order_by(Message.id)
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)  # held by another job: theirs
        rows = list(session.execute(query).scalars())
        for _ in range(len(set(ids)) - len(rows)):
            count("elsewhere")
        due = [m for m in rows if not _not_yet(m, now)]
        oa = [m.contact_id for m in due if m.channel != "wecom" and m.contact_id is not None]
        contacts = _contacts(session, settings, oa) if oa else {}
        capped = [m.contact_id for m in due if _capped(m)]
        since = now - policy(settings).cap_window
        recent = _recent_marketing(session, capped, [m.id for m in rows], since) if capped else {}
        claimed: list[int] = []
        for m in rows:
            if _not_yet(m, now):
                later.append((m.id, m.not_before))
                count("scheduled")
                continue
            contact = contacts.get(m.contact_id)
            outcome, plan = _plan(session, settings, m, now, contact, recent.get(m.contact_id, 0))
            if outcome == "send":
                claimed.append(m.id)
                plans.append((m.id, plan))
                if m.marketing and m.contact_id is not None:  # the next one's cap counts it
                    recent[m.contact_id] = recent.get(m.contact_id, 0) + 1
            elif outcome == "scheduled":
                later.append((m.id, plan))
                count("scheduled")
            else:
                outbox_ids.append(plan)
                count(outcome)
        if claimed:
            session.execute(
                sa.update(t).where(t.c.id.in_(claimed)).values(status="claimed", updated_at=now)
            )
    return counts, plans, later, outbox_ids


def deliver_batch(
    settings: Settings,
    ids: list[int],
    until: float | None = None,
    now: datetime | None = None,
    between: Callable[[], bool] | None = None,
) -> tuple[dict[str, int], list[int]]:
    """Deliver these rows as ``deliver`` would one by one, with phase 1 done for all of them in
    one transaction: rows, contacts and caps read once, and every row to send marked
    ``claimed`` (counted by the cap, never sent by anyone yet). Each is then moved claimed →
    sending on its own, committed just before its call, so at most once holds as before.

    Returns (outcome counts, the claimed ids not reached by ``until``, a ``time.monotonic()``
    moment, or by ``between`` answering False: it runs before each send, the job's chance to
    pause or stop). A row another job holds or has finished counts as "elsewhere"."""
    now = now or utcnow()
    t = Message.__table__
    for attempt in range(1, CLAIM_ATTEMPTS + 1):
        try:
            counts, plans, later, outbox_ids = _claim(settings, ids, now)
            break
        except sa.exc.OperationalError as exc:
            # a drain holds some of these contacts while it waits for others (it locks them
            # in event order, we in id order): the database broke the deadlock; go again
            if attempt == CLAIM_ATTEMPTS or not conflict(exc):
                raise
            log.info("delivery batch: %s; claiming again", exc.orig)
    _after_commit(settings, outbox_ids)
    for message_id, at in later:
        enqueue(settings, [message_id], at=at)

    for n, (message_id, plan) in enumerate(plans):
        go_on = between() if between is not None else True
        if n and (not go_on or (until is not None and time.monotonic() > until)):
            return counts, [i for i, _ in plans[n:]]
        with session_scope(settings.database_url) as session:
            took = session.execute(
                sa.update(t)
                .where(t.c.id == message_id, t.c.status == "claimed")
                .values(
                    status="sending",
                    attempts=t.c.attempts + 1,
                    updated_at=utcnow(),
                    sent_kind=plan.sent_kind,
                )
            ).rowcount
        outcome = _call(settings, message_id, plan) if took else "elsewhere"
        counts[outcome] = counts.get(outcome, 0) + 1
    return counts, []


class NotSent(Exception):
    """Redis failed before the API call (the token or the rate slot): nothing reached the
    platform, so the row may go out later."""


def _send(settings: Settings, plan: _Plan) -> tuple[dict, wechat.PlatformError | None]:
    platform = wechat.oa(settings) if plan.channel == "oa" else wechat.wecom(settings)
    try:
        try:
            platform.tokens.get()  # fetch a missing token before taking a rate slot
            limiter = wechat.RateLimiter(
                queue.get_redis(settings), platform.app, settings.send_rate
            )
            limiter.acquire()
        except queue.REDIS_ERRORS as exc:
            raise NotSent(str(exc)) from exc
        return platform.call("post", plan.path, data=plan.body), None
    except wechat.PlatformError as exc:
        return {}, exc


# One piece: the at-most-once sequence (sending committed → call → outcome recorded) is read
# and reviewed as one; each branch is an outcome of the same call.
def _call(settings: Settings, message_id: int, plan: _Plan) -> str:
    """Phase 2: the API call (outside any transaction); phase 3: record the outcome. When
    Redis fails before the call, the row goes back to ``claimed`` (decided, nothing sent) and
    the error is raised: its job fails, and a recovered job or the sweeper sends it later."""
    try:
        result, error = _send(settings, plan)
    except NotSent:
        t = Message.__table__
        with session_scope(settings.database_url) as session:
            session.execute(
                sa.update(t)
                .where(t.c.id == message_id, t.c.status == "sending")
                .values(status="claimed", attempts=t.c.attempts - 1, updated_at=utcnow())
            )
        raise
    if error is not None and error.errcode == 45015:
        # The platform's view of the window differs from ours: apply the row's policy now.
        with session_scope(settings.database_url) as session:
            m = session.get(Message, message_id)
            if m.outside_window == "fallback" and m.fallback:
                openid = plan.body["touser"]
                path, body = oa_request(
                    "template", m.fallback, openid, f"yuchi-msg-{m.id}-fallback"
                )
                plan = _Plan(path, body, "template", "oa")
                m.sent_kind = "template"
                session.add(m)
                outcome, outbox = "fallback", None
            else:
                outcome, outbox = _outside_window(session, m, f"platform: {error.errmsg}")
        if outcome != "fallback":
            _after_commit(settings, [outbox] if outbox else [])
            return outcome
        result, error = _send(settings, plan)
    if error is None:
        _mark_sent(settings, message_id, result.get("msgid"))
        return "sent"

    outbox_ids: list[int | None] = []
    retry_at: datetime | None = None
    with session_scope(settings.database_url) as session:
        m = session.execute(
            sa.select(Message).where(Message.id == message_id).with_for_update()
        ).scalar_one()
        if error.transient and m.attempts < policy(settings).max_attempts:
            delay = send_rules.backoff(m.attempts, policy(settings))
            retry_at = utcnow() + timedelta(seconds=delay)
            _finish(
                session,
                m,
                "queued",
                None,
                not_before=retry_at,
                error_code=error.errcode,
                error_message=error.errmsg,
            )
            status = "retrying"
            log.info("message %s: %s; retry %d in %.1fs", message_id, error, m.attempts, delay)
        else:
            outbox_ids.append(
                _finish(
                    session,
                    m,
                    "failed",
                    "msg.failed",
                    error_code=error.errcode,
                    error_message=error.errmsg,
                )
            )
            status = "failed"
    _after_commit(settings, outbox_ids)
    if retry_at is not None:
        enqueue(settings, [message_id], at=retry_at)
    return status


def _mark_sent(settings: Settings, message_id: int, msgid: Any) -> None:
    """Phase 3 when the platform took it: the row and its timeline event, two statements."""
    t = Message.__table__
    now = utcnow()
    platform_msgid = msgid and str(msgid)
    with session_scope(settings.database_url) as session:
        row = session.execute(
            sa.update(t)
            .where(t.c.id == message_id)
            .values(status="sent", sent_at=now, updated_at=now, platform_msgid=platform_msgid)
            .returning(t.c.contact_id, t.c.kind, t.c.sent_kind, t.c.marketing, t.c.attempts)
        ).one()
        if row.contact_id is None:
            return
        props = {
            "message_id": message_id,
            "kind": row.sent_kind or row.kind,
            "marketing": row.marketing,
            "platform_msgid": platform_msgid,
        }
        # on the timeline only, like every msg.sent (see QUIET_EVENTS)
        key = f"msg:{message_id}:msg.sent:{row.attempts}"
        events.timeline(session, [(row.contact_id, "msg.sent", props, key)])


def _after_commit(settings: Settings, outbox_ids: list[int | None]) -> None:
    if any(ob is not None for ob in outbox_ids):
        queue.kick_outbox(settings)


# --- held messages and the sweeper ---------------------------------------------------------


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
            _finish(session, m, "unknown", "msg.failed", error_message=reason) for m in stuck
        ]
    _after_commit(settings, outbox_ids)
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
