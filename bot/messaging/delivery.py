"""Delivering outbox rows: phase 1 decides (window, caps, quiet hours, unsubscribed) in a
transaction, phase 2 marks the row ``sending`` and commits, phase 3 calls the platform and
records the outcome. ``deliver`` takes one row, ``deliver_batch`` claims many in one
transaction first; see ``bot.messaging.outbox`` for the row states and the at-most-once rule.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.contacts import record as events
from bot.core import queue, wechat
from bot.core.config import Settings
from bot.core.db import conflict, session_scope
from bot.core.models import Message, utcnow
from bot.messaging import links, media, results, send_rules
from bot.messaging.outbox import CLAIMABLE, enqueue, finish, kick_after_commit, kick_mass, policy
from bot.messaging.payloads import oa_request, wecom_request
from bot.messaging.recipients import contacts, mass_this_month, recent_marketing, recipient, send_of

log = logging.getLogger(__name__)


@dataclass
class _Plan:
    """What phase 1 decided: call this API with this body (or nothing)."""

    path: str
    body: dict
    sent_kind: str
    channel: str


def _not_yet(m: Message, now: datetime) -> bool:
    """Is the row held back until a time still ahead (quiet hours, a retry's backoff)?"""
    return m.not_before is not None and m.not_before > now


def _capped(m: Message) -> bool:
    """Does the frequency cap (and quiet hours) apply to this row?"""
    return m.channel != "wecom" and m.marketing and m.reply_to_event_id is None


def _outside_window(session: Session, m: Message, reason: str) -> tuple[str, int | None]:
    """Apply the row's policy when the platform says the 48-hour window is closed."""
    if m.outside_window == "fallback" and m.fallback:
        return "fallback", None
    if m.outside_window == "mass":
        finish(session, m, "mass_queued", None, error_message=reason)
        return "mass_queued", None
    if m.outside_window == "hold":
        return "held", finish(session, m, "held", "msg.held", error_message=reason)
    return "failed", finish(
        session, m, "failed", "msg.failed", error_code=45015, error_message=reason
    )


def _plan(
    session: Session,
    settings: Settings,
    m: Message,
    now: datetime,
    contact: Any = None,
    recent: int | None = None,
    mass: int | None = None,
) -> tuple[str, Any]:
    """Phase 1, inside the claim transaction: decide what to do with the row (by
    ``send_rules.decide``). ``contact`` (see ``contacts``), ``recent`` (its marketing count)
    and ``mass`` (its mass messages this month) when the caller read them already.
    Returns ("send", _Plan), ("scheduled", when), ("mass_queued", broadcast id) or
    (status, outbox id of the event recorded)."""
    pol = policy(settings)
    if m.channel == "wecom":
        path, body = wecom_request(m.kind, m.payload, m.to_user or "", settings.wecom_agent_id)
        return "send", _Plan(path, body, m.kind, "wecom")

    if contact is None:
        contact = contacts(session, settings, [m.contact_id])[m.contact_id]
    if recent is None and _capped(m):
        since = now - pol.cap_window
        recent = recent_marketing(session, [m.contact_id], [m.id], since).get(m.contact_id, 0)
    if mass is None and m.outside_window == "mass":
        since = send_rules.month_start(now, pol)
        mass = mass_this_month(session, [m.contact_id], since).get(m.contact_id, 0)
    d = send_rules.decide(recipient(contact, recent or 0, mass or 0), send_of(m), now, pol)
    if d.route in ("skip", "capped"):
        return "skipped", finish(session, m, "skipped", "msg.failed", error_message=d.reason)
    if d.route == "quiet":
        finish(session, m, "scheduled", None, not_before=d.resume)
        return "scheduled", d.resume
    if d.route in ("hold", "quota"):
        return "held", finish(session, m, "held", "msg.held", error_message=d.reason)
    if d.route == "fail":
        return "failed", finish(
            session, m, "failed", "msg.failed", error_code=45015, error_message=d.reason
        )
    if d.route == "mass":
        finish(session, m, "mass_queued", None, not_before=None)
        return "mass_queued", m.broadcast_id
    kind, payload = m.kind, m.payload
    if d.route == "template" and kind not in send_rules.TEMPLATE_KINDS:
        kind, payload = "template", m.fallback
        offset = len(links.links_in(m.kind, m.payload))  # the fallback's links come after
    else:
        offset = 0
    payload = links.rewrite(settings, m.id, kind, payload, offset)
    path, body = oa_request(
        kind, payload, contact.openid, client_msg_id=m.idempotency_key or f"yuchi-msg-{m.id}"
    )
    return "send", _Plan(path, body, kind, "oa")


def _kick_mass(settings: Settings, broadcast_ids: set[int | None]) -> None:
    for bid in sorted(b for b in broadcast_ids if b is not None):
        kick_mass(settings, bid)


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
            elif outcome == "mass_queued":
                massed = {plan}
            elif plan is not None:
                outbox_ids.append(plan)
    kick_after_commit(settings, outbox_ids)
    if outcome == "mass_queued":
        _kick_mass(settings, massed)
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
) -> tuple[
    dict[str, int],
    list[tuple[int, _Plan]],
    list[tuple[int, datetime]],
    list[int | None],
    set[int | None],
]:
    """Phase 1 of a batch, in one transaction (see deliver_batch): (outcome counts so far, the
    rows to send with their plans, the rows to deliver later, outbox rows recorded, the
    broadcasts whose mass send now has rows waiting)."""
    t = Message.__table__
    counts: dict[str, int] = {}

    def count(outcome: str) -> None:
        counts[outcome] = counts.get(outcome, 0) + 1

    plans: list[tuple[int, _Plan]] = []
    later: list[tuple[int, datetime]] = []
    outbox_ids: list[int | None] = []
    massed: set[int | None] = set()
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
        found = contacts(session, settings, oa) if oa else {}
        capped = [m.contact_id for m in due if _capped(m)]
        pol = policy(settings)
        since = now - pol.cap_window
        recent = recent_marketing(session, capped, [m.id for m in rows], since) if capped else {}
        by_mass = [m.contact_id for m in due if m.outside_window == "mass"]
        month = send_rules.month_start(now, pol)
        mass = mass_this_month(session, by_mass, month) if by_mass else {}
        claimed: list[int] = []
        for m in rows:
            if _not_yet(m, now):
                later.append((m.id, m.not_before))
                count("scheduled")
                continue
            contact = found.get(m.contact_id)
            outcome, plan = _plan(
                session,
                settings,
                m,
                now,
                contact,
                recent.get(m.contact_id, 0),
                mass.get(m.contact_id, 0),
            )
            if outcome == "send":
                claimed.append(m.id)
                plans.append((m.id, plan))
                if m.marketing and m.contact_id is not None:  # the next one's cap counts it
                    recent[m.contact_id] = recent.get(m.contact_id, 0) + 1
            elif outcome == "scheduled":
                later.append((m.id, plan))
                count("scheduled")
            elif outcome == "mass_queued":
                massed.add(plan)
                count(outcome)
            else:
                outbox_ids.append(plan)
                count(outcome)
        if claimed:
            session.execute(
                sa.update(t).where(t.c.id.in_(claimed)).values(status="claimed", updated_at=now)
            )
    return counts, plans, later, outbox_ids, massed


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
            counts, plans, later, outbox_ids, massed = _claim(settings, ids, now)
            break
        except sa.exc.OperationalError as exc:
            # a drain holds some of these contacts while it waits for others (it locks them
            # in event order, we in id order): the database broke the deadlock; go again
            if attempt == CLAIM_ATTEMPTS or not conflict(exc):
                raise
            log.info("delivery batch: %s; claiming again", exc.orig)
    kick_after_commit(settings, outbox_ids)
    _kick_mass(settings, massed)
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


def _send_bound(settings: Settings, plan: _Plan) -> tuple[dict, wechat.PlatformError | None]:
    """``_send`` with our media references swapped for the platform's (uploaded again when
    expired); when the platform answers 40007 anyway, once more after a new upload."""
    if plan.channel != "oa":
        return _send(settings, plan)
    for attempt in (1, 2):
        try:
            body, refs = media.bind(settings, plan.body)
        except media.MediaError as exc:
            return {}, wechat.PlatformError(None, str(exc), transient=False)
        result, error = _send(settings, _Plan(plan.path, body, plan.sent_kind, plan.channel))
        if error is None or error.errcode != 40007 or not refs or attempt == 2:
            return result, error
        for ref in refs:
            media.forget(settings, ref)
    return result, error


# One piece: the at-most-once sequence (sending committed → call → outcome recorded) is read
# and reviewed as one; each branch is an outcome of the same call.
def _call(settings: Settings, message_id: int, plan: _Plan) -> str:
    """Phase 2: the API call (outside any transaction); phase 3: record the outcome. When
    Redis fails before the call, the row goes back to ``claimed`` (decided, nothing sent) and
    the error is raised: its job fails, and a recovered job or the sweeper sends it later."""
    try:
        result, error = _send_bound(settings, plan)
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
                broadcast_id = m.broadcast_id
        if outcome == "mass_queued":
            _kick_mass(settings, {broadcast_id})
            return outcome
        if outcome != "fallback":
            kick_after_commit(settings, [outbox] if outbox else [])
            return outcome
        result, error = _send_bound(settings, plan)
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
            finish(
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
                finish(
                    session,
                    m,
                    "failed",
                    "msg.failed",
                    error_code=error.errcode,
                    error_message=error.errmsg,
                )
            )
            status = "failed"
    kick_after_commit(settings, outbox_ids)
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
        if row.sent_kind == "template" and platform_msgid:  # its report may have come first
            results.late_template(session, row.contact_id, platform_msgid, now)
        props = {
            "message_id": message_id,
            "kind": row.sent_kind or row.kind,
            "marketing": row.marketing,
            "platform_msgid": platform_msgid,
        }
        # on the timeline only, like every msg.sent (see QUIET_EVENTS)
        key = f"msg:{message_id}:msg.sent:{row.attempts}"
        events.timeline(session, [(row.contact_id, "msg.sent", props, key)])
