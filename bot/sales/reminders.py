"""Next-follow-up reminders: a rep sets one for a contact (when, and what to do); when it is
due the rep gets a WeCom app message, exactly once.

The row (``follow_up_reminder``) is the truth; Redis only carries the job that delivers it:
one rq job per due second (``reminders-<epoch>``, scheduled with enqueue_at) sends every
reminder due by then. Sending is claim, then message: the row goes ``pending`` → ``sent`` in
one guarded UPDATE (so a reminder cancelled meanwhile never goes out, and only one job claims
it), then the app message is created with the idempotency key ``reminder-<id>``, and its id
noted on the row. A job that dies between the two, a job run twice, or two jobs at once, find
a claimed row without its message and create it again under the same key: the outbox keeps
one message row, delivered at most once (bot.messaging.outbox). The sweeper enqueues a job
for anything overdue whose job Redis lost.
"""

from __future__ import annotations

import html
import logging
import math
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.contacts import record as events
from bot.core import queue
from bot.core.config import Settings
from bot.core.db import session_scope
from bot.core.models import Contact, FollowUpReminder, Rep, utcnow
from bot.messaging import outbox as messaging
from bot.messaging.payloads import SendRequest

log = logging.getLogger(__name__)

SEND_JOB = "bot.background.jobs.send_reminders"
SWEEP_JOB = "reminders-sweep"
BATCH = 200
PAST_ALLOWED = timedelta(minutes=1)  # a due time this far back is "now" (clock skew)


class ReminderError(Exception):
    """A reminder that cannot be set (unknown contact or rep, a time gone, no text)."""


def reminder_json(r: FollowUpReminder) -> dict[str, Any]:
    return {
        "id": r.id,
        "contact_id": r.contact_id,
        "userid": r.userid,
        "due_at": r.due_at.isoformat(),
        "text": r.text,
        "status": r.status,
        "message_id": r.message_id,
        "created_by": r.created_by,
        "sent_at": r.sent_at.isoformat() if r.sent_at else None,
    }


def job_id(epoch: int) -> str:
    return f"reminders-{epoch}"


def schedule(settings: Settings, at: datetime) -> bool:
    """Ask rq for the job of ``at``'s second (skipped when alive); False when Redis is down
    (the sweeper finds the row when it is due)."""
    epoch = math.ceil(at.timestamp())
    try:
        if queue.job_alive(settings, job_id(epoch)):
            return True
        queue.drop_job(settings, job_id(epoch))
        queue.get_queue(settings, queue.WAKES).enqueue_at(
            datetime.fromtimestamp(epoch, UTC), SEND_JOB, job_id=job_id(epoch), result_ttl=300
        )
    except queue.REDIS_ERRORS as exc:
        log.warning("reminder job not scheduled (%s); the sweeper will", exc)
        return False
    return True


# --- setting and cancelling ---------------------------------------------------------------------


def _check(session: Session, contact_id: int, userid: str, due_at: datetime, text: str) -> None:
    if session.get(Contact, contact_id) is None:
        raise ReminderError(f"no contact {contact_id}")
    rep = session.get(Rep, userid)
    if rep is None or not rep.active:
        raise ReminderError(f"{userid} is not an active rep")
    if due_at.tzinfo is None:
        raise ReminderError("due_at: a time with its zone")
    if due_at < utcnow() - PAST_ALLOWED:
        raise ReminderError("due_at: that time has passed")
    if not text.strip() or len(text) > 500:
        raise ReminderError("text: 1 to 500 characters")


def set_reminder(
    settings: Settings, contact_id: int, userid: str, due_at: datetime, text: str, by: str = ""
) -> FollowUpReminder:
    """Set ``userid``'s next follow-up with the contact (replacing a pending one of theirs),
    noted on the contact's timeline; ReminderError."""
    with session_scope(settings.database_url) as session:
        _check(session, contact_id, userid, due_at, text)
        t = FollowUpReminder.__table__.c
        session.execute(
            sa.update(FollowUpReminder.__table__)
            .where(t.contact_id == contact_id, t.userid == userid, t.status == "pending")
            .values(status="cancelled")
        )
        row = FollowUpReminder(
            contact_id=contact_id,
            userid=userid,
            due_at=due_at.astimezone(UTC),
            text=text.strip(),
            created_by=by or userid,
        )
        session.add(row)
        session.flush()
        props = {
            "reminder_id": row.id,
            "userid": userid,
            "due_at": row.due_at.isoformat(),
            "text": row.text,
        }
        events.append(
            session, contact_id, "sales.reminder_set", props, f"reminder:{row.id}", pipeline=False
        )
    schedule(settings, row.due_at)
    return row


def cancel_reminder(settings: Settings, reminder_id: int, userid: str) -> bool:
    """Cancel a pending reminder of ``userid``'s; False if there was none to cancel."""
    t = FollowUpReminder.__table__.c
    with session_scope(settings.database_url) as session:
        done = session.execute(
            sa.update(FollowUpReminder.__table__)
            .where(t.id == reminder_id, t.userid == userid, t.status == "pending")
            .values(status="cancelled")
        ).rowcount
    return bool(done)


def reminders_for(
    session: Session, contact_id: int, pending_only: bool = True
) -> list[FollowUpReminder]:
    """The contact's reminders, soonest first."""
    t = FollowUpReminder.__table__.c
    query = sa.select(FollowUpReminder).where(t.contact_id == contact_id)
    if pending_only:
        query = query.where(t.status == "pending")
    return list(session.execute(query.order_by(t.due_at, t.id)).scalars())


# --- sending -------------------------------------------------------------------------------------


def _due(session: Session, now: datetime) -> list[int]:
    """Pending reminders due by ``now``, and claimed ones whose message is not noted yet."""
    t = FollowUpReminder.__table__.c
    return list(
        session.execute(
            sa.select(t.id)
            .where(
                sa.or_(
                    sa.and_(t.status == "pending", t.due_at <= now),
                    sa.and_(t.status == "sent", t.message_id.is_(None)),
                )
            )
            .order_by(t.due_at, t.id)
            .limit(BATCH)
        ).scalars()
    )


def _claim(
    settings: Settings, reminder_id: int, now: datetime
) -> tuple[FollowUpReminder, str] | None:
    """pending → sent (one job wins); a claimed row without its message is returned too,
    with the contact's name."""
    t = FollowUpReminder.__table__.c
    with session_scope(settings.database_url) as session:
        session.execute(
            sa.update(FollowUpReminder.__table__)
            .where(t.id == reminder_id, t.status == "pending")
            .values(status="sent", sent_at=now)
        )
        row = session.get(FollowUpReminder, reminder_id)
        if row is None or row.status != "sent" or row.message_id is not None:
            return None
        contact = session.get(Contact, row.contact_id)
        return row, contact.name or f"客户 #{contact.id}"


def _message(settings: Settings, row: FollowUpReminder, name: str) -> int:
    """A text card whose link opens the customer's sidebar page (through the rep's OAuth)."""
    due = row.due_at.astimezone(ZoneInfo(settings.timezone)).strftime("%m-%d %H:%M")
    req = SendRequest.model_validate(
        {
            "kind": "wecom_textcard",
            "to_user": [row.userid],
            "payload": {
                "title": f"跟进提醒：{name}"[:128],
                "description": f'<div class="normal">{html.escape(row.text[:400])}</div>'
                f'<div class="gray">{due} 到期</div>',
                "url": f"{settings.public_url}/sidebar/contacts/{row.contact_id}",
                "btntxt": "查看客户",
            },
            "idempotency_key": f"reminder-{row.id}",
        }
    )
    message, _ = messaging.create(settings, req)
    return message.id


def send_due(settings: Settings, now: datetime | None = None) -> int:
    """Send every reminder due by ``now`` (the job; idempotent). Returns how many it sent."""
    now = now or utcnow()
    with session_scope(settings.database_url) as session:
        ids = _due(session, now)
    sent = 0
    for reminder_id in ids:
        claimed = _claim(settings, reminder_id, now)
        if claimed is None:
            continue
        message_id = _message(settings, *claimed)
        t = FollowUpReminder.__table__.c
        with session_scope(settings.database_url) as session:
            session.execute(
                sa.update(FollowUpReminder.__table__)
                .where(t.id == reminder_id)
                .values(message_id=message_id)
            )
        sent += 1
    return sent


def sweep(settings: Settings, grace: timedelta = timedelta(minutes=1)) -> int:
    """Enqueue a job now if a reminder is overdue by more than ``grace`` (or claimed without
    its message) and no sweep job is alive; how many are waiting (0: none, or a job is on its
    way)."""
    t = FollowUpReminder.__table__.c
    with session_scope(settings.database_url) as session:
        late = session.execute(
            sa.select(sa.func.count()).where(
                sa.or_(
                    sa.and_(t.status == "pending", t.due_at < utcnow() - grace),
                    sa.and_(
                        t.status == "sent", t.message_id.is_(None), t.sent_at < utcnow() - grace
                    ),
                )
            )
        ).scalar_one()
    if not late or queue.job_alive(settings, SWEEP_JOB):
        return 0
    queue.drop_job(settings, SWEEP_JOB)
    queue.get_queue(settings, queue.WAKES).enqueue(SEND_JOB, job_id=SWEEP_JOB, result_ttl=60)
    return late
