"""The OA mass send for a broadcast's rows outside the 48-hour window (policy ``mass``).

Delivery decides each row (``send_rules.decide``); a row routed ``mass`` waits as
``mass_queued`` and kicks this job. The job waits until no row of the broadcast is still
undecided, decides each waiting row again (the same rules, now, with the contacts locked),
and sends them in as few calls as it can:

- ``message/mass/sendall`` by the OA tag that tag sync keeps for a Yuchi tag, when the
  broadcast's audience is that one tag, the tag is synced (its OA id known, no change of it
  pending) and every row of the broadcast goes in this send — the platform sends to the
  tag's members, so it is used only when they are exactly the rows we route to mass;
- otherwise ``message/mass/send`` by openid list, 2 to 10,000 openids a call (WeChat's
  limits); a lone row cannot be mass-sent and is held (it goes on their next message).

Each call is a ``mass_send`` row with a ``clientmsgid`` of its own: the rows are marked
``sending`` and committed before the call (at most once); a repeated call after a crash is
answered 45065 with the first call's msg_id, which is taken as its result. 45028 (no
mass-send quota) holds the rows; ``MASSSENDJOBFINISH`` is matched in bot.messaging.results.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from bot.contacts import record as events
from bot.core import queue, wechat
from bot.core.config import Settings
from bot.core.db import session_scope
from bot.core.models import Broadcast, MassSend, Message, PlatformTag, TagSync, utcnow
from bot.messaging import media, recipients, results, send_rules
from bot.messaging.outbox import (
    enqueue,
    finish,
    kick_after_commit,
    kick_mass,
    mass_flag,
    mass_job_key,
    policy,
)

log = logging.getLogger(__name__)

MAX_OPENIDS = 10_000
MIN_OPENIDS = 2
WAIT_SECONDS = 5.0  # between looks while rows of the broadcast are still being decided
UNDECIDED = ("queued", "claimed")


def sweep(settings: Settings) -> int:
    """Broadcasts with rows waiting for a mass send and no job alive (Redis lost it, a
    worker died): kick them."""
    cutoff = utcnow() - timedelta(seconds=settings.message_sweep_grace_seconds)
    t = Message.__table__.c
    with session_scope(settings.database_url) as session:
        ids = list(
            session.execute(
                sa.select(t.broadcast_id)
                .where(t.status == "mass_queued", t.updated_at < cutoff)
                .distinct()
            ).scalars()
        )
    conn = queue.get_redis(settings)
    kicked = 0
    for bid in ids:
        last = conn.get(mass_job_key(bid))
        if last and queue.job_alive(settings, last.decode()):
            continue
        conn.delete(mass_flag(bid))
        kick_mass(settings, bid)
        kicked += 1
    return kicked


def _undecided(session: Any, broadcast_id: int, now: datetime) -> int:
    t = Message.__table__.c
    return session.execute(
        sa.select(sa.func.count()).where(
            t.broadcast_id == broadcast_id,
            t.status.in_(UNDECIDED),
            sa.or_(t.not_before.is_(None), t.not_before <= now),
        )
    ).scalar_one()


def tag_target(session: Any, audience: dict[str, Any], everyone: bool) -> int | None:
    """The OA tag id to mass-send by, when that reaches exactly the rows routed to mass:
    the audience is one tag, synced (OA id known, no change of it pending), and ``everyone``
    in the audience goes by this mass send."""
    from bot.audiences.resolve import Audience

    if not everyone or set(audience) != {"tags"}:
        return None
    tag = Audience.model_validate(audience).single_tag()
    if tag is None:
        return None
    known = session.get(PlatformTag, tag)
    if known is None or known.oa_tag_id is None:
        return None
    s = TagSync.__table__.c
    pending = session.execute(
        sa.select(sa.func.count()).where(s.platform == "oa", s.tag == tag, s.status == "pending")
    ).scalar_one()
    return known.oa_tag_id if pending == 0 else None


def _by_tag(session: Any, b: Broadcast, rows: int) -> int | None:
    t = Message.__table__.c
    total = session.execute(sa.select(sa.func.count()).where(t.broadcast_id == b.id)).scalar_one()
    return tag_target(session, b.audience, total == rows)


def chunks(items: list[Any]) -> list[list[Any]]:
    """Openid-list calls of 2..10,000 (the last two share out a remainder of one)."""
    out = [items[n : n + MAX_OPENIDS] for n in range(0, len(items), MAX_OPENIDS)]
    if len(out) > 1 and len(out[-1]) < MIN_OPENIDS:
        out[-1] = [out[-2].pop(), *out[-1]]
    return out


def message_body(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The mass-send message part (``msgtype`` and its object) for a broadcast's kind."""
    if kind == "text":
        return {"msgtype": "text", "text": {"content": payload["content"]}}
    return {"msgtype": "image", "image": {k: v for k, v in payload.items()}}


@dataclass
class _Routed:
    counts: dict[str, int] = field(default_factory=dict)
    outbox_ids: list[int | None] = field(default_factory=list)
    back: list[int] = field(default_factory=list)  # to customer service or template
    later: list[tuple[int, datetime]] = field(default_factory=list)  # quiet hours


def _decide(
    session: Any, settings: Settings, rows: list[Message], now: datetime
) -> tuple[list[tuple[Message, str]], _Routed]:
    """Each waiting row decided again, now (``send_rules.decide``, the contacts locked):
    (the rows that go by mass with their openids, what happened to the others)."""
    pol = policy(settings)
    out = _Routed()
    counts, outbox_ids, back_to_delivery, later = out.counts, out.outbox_ids, out.back, out.later
    ids = [m.contact_id for m in rows]
    found = recipients.contacts(session, settings, ids)
    recent = recipients.recent_marketing(session, ids, [m.id for m in rows], now - pol.cap_window)
    month = recipients.mass_this_month(session, ids, send_rules.month_start(now, pol))
    going: list[tuple[Message, str]] = []
    for m in rows:
        contact = found[m.contact_id]
        r = recipients.recipient(contact, recent.get(m.contact_id, 0), month.get(m.contact_id, 0))
        d = send_rules.decide(r, recipients.send_of(m), now, pol)
        counts[d.route] = counts.get(d.route, 0) + 1
        if d.route == "mass":
            going.append((m, contact.openid))
        elif d.route == "quiet":
            finish(session, m, "scheduled", None, not_before=d.resume)
            later.append((m.id, d.resume))
        elif d.route in ("hold", "quota"):
            outbox_ids.append(finish(session, m, "held", "msg.held", error_message=d.reason))
        elif d.route in ("skip", "capped"):
            outbox_ids.append(finish(session, m, "skipped", "msg.failed", error_message=d.reason))
        elif d.route == "fail":
            outbox_ids.append(
                finish(session, m, "failed", "msg.failed", error_code=45015, error_message=d.reason)
            )
        else:  # cs or template: the window opened meanwhile
            finish(session, m, "queued", None)
            back_to_delivery.append(m.id)
    return going, out


def run(settings: Settings, broadcast_id: int, now: datetime | None = None) -> dict[str, int]:
    """Send this broadcast's ``mass_queued`` rows (see the module's docstring)."""
    now = now or utcnow()
    with contextlib.suppress(*queue.REDIS_ERRORS):
        queue.get_redis(settings).delete(mass_flag(broadcast_id))
    counts: dict[str, int] = {}
    outbox_ids: list[int | None] = []
    back_to_delivery: list[int] = []
    later: list[tuple[int, datetime]] = []
    calls: list[tuple[int, list[int], dict[str, Any]]] = []  # mass_send id, rows, body
    with session_scope(settings.database_url) as session:
        b = session.get(Broadcast, broadcast_id)
        if b is None:
            return {"missing": 1}
        if b.status == "fanning_out" or _undecided(session, broadcast_id, now):
            kick_mass(settings, broadcast_id, delay=WAIT_SECONDS)
            return {"waiting": 1}
        rows = list(
            session.execute(
                sa.select(Message)
                .where(Message.broadcast_id == broadcast_id, Message.status == "mass_queued")
                .order_by(Message.id)
                .with_for_update()
            ).scalars()
        )
        if not rows:
            return {}
        going, routed = _decide(session, settings, rows, now)
        counts.update(routed.counts)
        outbox_ids += routed.outbox_ids
        back_to_delivery += routed.back
        later += routed.later
        if len(going) == 1:
            m = going.pop()[0]
            reason = "a mass send needs at least 2 recipients: held for their next message"
            outbox_ids.append(finish(session, m, "held", "msg.held", error_message=reason))
            counts["lone"] = 1
        tag_id = _by_tag(session, b, len(going)) if going else None
        content = message_body(b.kind, b.payload)
        groups = [going] if tag_id is not None else chunks(going)
        for group in groups:
            if not group:
                continue
            ms = MassSend(
                broadcast_id=broadcast_id,
                client_msg_id="",
                target="tag" if tag_id is not None else "openids",
                tag_id=tag_id,
                recipients=len(group),
            )
            session.add(ms)
            session.flush()
            ms.client_msg_id = f"yuchi-b{broadcast_id}-m{ms.id}"
            if tag_id is not None:
                body = {"filter": {"is_to_all": False, "tag_id": tag_id}, **content}
            else:
                body = {"touser": [openid for _, openid in group], **content}
            body["clientmsgid"] = ms.client_msg_id
            row_ids = [m.id for m, _ in group]
            session.execute(
                sa.update(Message.__table__)
                .where(Message.__table__.c.id.in_(row_ids))
                .values(
                    status="sending",
                    sent_kind="mass",
                    attempts=Message.attempts + 1,
                    updated_at=now,
                )
            )
            calls.append((ms.id, row_ids, body))
    kick_after_commit(settings, outbox_ids)
    if back_to_delivery:
        enqueue(settings, back_to_delivery, batch=50)
    for message_id, at in later:
        enqueue(settings, [message_id], at=at)
    for mass_id, row_ids, body in calls:
        outcome = _call(settings, mass_id, row_ids, body, b.kind)
        counts[outcome] = counts.get(outcome, 0) + len(row_ids)
    return counts


def _path(body: dict[str, Any]) -> str:
    return "message/mass/sendall" if "filter" in body else "message/mass/send"


def _call(
    settings: Settings, mass_id: int, row_ids: list[int], body: dict[str, Any], kind: str
) -> str:
    """Phase 2 and 3 of one mass call: the call (outside any transaction), its outcome."""
    oa = wechat.oa(settings)
    msg_id: str | None = None
    error: wechat.PlatformError | None = None
    try:
        if kind == "image":
            body = {**body, "image": media.bind_image(settings, body["image"])}
        result = oa.call("post", _path(body), data=body)
        msg_id = str(result.get("msg_id"))
    except wechat.PlatformError as exc:
        if exc.errcode == 45065 and exc.answer.get("msg_id"):  # our earlier call went through
            msg_id = str(exc.answer["msg_id"])
        else:
            error = exc
    except media.MediaError as exc:
        error = wechat.PlatformError(None, f"media: {exc}", transient=False)
    now = utcnow()
    t = Message.__table__
    with session_scope(settings.database_url) as session:
        ms = session.get(MassSend, mass_id)
        if error is None:
            ms.status, ms.msg_id = "submitted", msg_id
            session.execute(
                sa.update(t)
                .where(t.c.id.in_(row_ids), t.c.status == "sending")
                .values(
                    status="sent",
                    sent_at=now,
                    updated_at=now,
                    platform_msgid=msg_id,
                    error_code=None,
                    error_message=None,
                )
            )
            rows = session.execute(
                sa.select(t.c.id, t.c.contact_id, t.c.marketing, t.c.attempts).where(
                    t.c.id.in_(row_ids)
                )
            ).all()
            events.timeline(
                session,
                [
                    (
                        r.contact_id,
                        "msg.sent",
                        {
                            "message_id": r.id,
                            "kind": "mass",
                            "marketing": r.marketing,
                            "platform_msgid": msg_id,
                        },
                        f"msg:{r.id}:msg.sent:{r.attempts}",
                    )
                    for r in rows
                ],
            )
            session.add(ms)
            session.flush()
            results.late_mass(session, msg_id, now)  # its report may have come first
            return "sent"
        ms.status, ms.error_code, ms.error_message = "failed", error.errcode, error.errmsg
        ms.finished_at = now
        session.add(ms)
        rows = list(
            session.execute(
                sa.select(Message).where(Message.id.in_(row_ids), Message.status == "sending")
            ).scalars()
        )
        outbox_ids: list[int | None] = []
        retry = error.transient and all(m.attempts < policy(settings).max_attempts for m in rows)
        for m in rows:
            if retry:
                finish(
                    session,
                    m,
                    "mass_queued",
                    None,
                    error_code=error.errcode,
                    error_message=error.errmsg,
                )
            elif error.errcode == 45028:
                reason = f"platform: no mass-send quota ({error.errmsg})"
                outbox_ids.append(
                    finish(session, m, "held", "msg.held", error_code=45028, error_message=reason)
                )
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
        broadcast_id = ms.broadcast_id
        attempts = max((m.attempts for m in rows), default=1)
    kick_after_commit(settings, outbox_ids)
    if retry:
        kick_mass(settings, broadcast_id, delay=send_rules.backoff(attempts, policy(settings)))
        return "retrying"
    return "held" if error.errcode == 45028 else "failed"
