"""What the platform reports after a send, matched to the message rows.

- ``TEMPLATESENDJOBFINISH`` (``oa.template_send_finished``, about the contact): the row whose
  template went out with that msgid is ``delivered`` (``success``) or ``failed`` with the
  platform's status as its reason (``failed:user block``, ``failed: system failed``).
- ``MASSSENDJOBFINISH`` (``oa.mass_send_finished``, about no one): the ``mass_send`` row of that
  msg_id takes the counts; its messages are ``delivered`` when the platform sent to all of
  them, ``failed`` when the job failed (``send fail``, ``err(…)``: a review refusal). When only
  some were sent the platform does not say which: the rows stay ``sent``, and say so.

The pipeline steps apply a report when it is processed; a report processed before its rows
were marked sent (the platform answered, its report overtook our bookkeeping) is found and
applied by ``late_template`` / ``late_mass`` when they are.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.core.context import Context
from bot.core.models import Event, MassSend, Message, utcnow

TEMPLATE_FINISHED = "oa.template_send_finished"
MASS_FINISHED = "oa.mass_send_finished"
OVERTAKE = timedelta(minutes=10)  # how far back a report that overtook its send is looked for


def _int(props: dict[str, Any], key: str) -> int | None:
    try:
        return int(props[key])
    except (KeyError, TypeError, ValueError):
        return None


def apply_template(session: Session, contact_id: int | None, props: dict[str, Any]) -> int:
    """A template report onto its row; how many rows it matched (0 or 1)."""
    msg_id, status = str(props.get("msg_id") or ""), str(props.get("status") or "")
    if not msg_id:
        return 0
    t = Message.__table__.c
    now = utcnow()
    if status == "success":
        values: dict[str, Any] = {"status": "delivered", "updated_at": now}
    else:
        values = {"status": "failed", "updated_at": now, "error_message": f"platform: {status}"}
    return session.execute(
        sa.update(Message.__table__)
        .where(
            t.platform_msgid == msg_id,
            t.sent_kind == "template",
            t.contact_id == contact_id,
            t.status == "sent",
        )
        .values(**values)
    ).rowcount


def apply_mass(session: Session, props: dict[str, Any]) -> bool:
    """A mass report onto its ``mass_send`` and message rows; False if none has its msg_id."""
    msg_id = str(props.get("msg_id") or "")
    if not msg_id:
        return False
    ms = session.execute(
        sa.select(MassSend).where(MassSend.msg_id == msg_id).with_for_update()
    ).scalar_one_or_none()
    if ms is None:
        return False  # not ours yet, or a mass send made elsewhere (the web console)
    status = str(props.get("status") or "")
    ms.platform_status = status[:64]
    ms.total_count, ms.filter_count = _int(props, "total"), _int(props, "filtered")
    ms.sent_count, ms.error_count = _int(props, "sent"), _int(props, "errors")
    ms.finished_at = utcnow()
    ms.status = "finished" if status == "send success" else "failed"
    session.add(ms)
    t = Message.__table__.c
    rows = sa.update(Message.__table__).where(
        t.platform_msgid == msg_id, t.sent_kind == "mass", t.status == "sent"
    )
    now = utcnow()
    if ms.status == "failed":
        session.execute(
            rows.values(status="failed", updated_at=now, error_message=f"platform: {status}")
        )
        return True
    everyone = (
        ms.error_count == 0
        and ms.filter_count == ms.total_count
        and (ms.sent_count or 0) >= ms.recipients
    )
    if everyone:
        session.execute(rows.values(status="delivered", updated_at=now))
        return True
    note = (
        f"platform: sent to {ms.sent_count} of {ms.total_count} (filtered to {ms.filter_count}, "
        f"{ms.error_count} failed); which ones it does not say"
    )
    session.execute(rows.values(error_message=note, updated_at=now))
    return True


def on_event(ctx: Context) -> None:
    """Pipeline step (events about a contact): a template send's outcome."""
    if ctx.event.type == TEMPLATE_FINISHED:
        apply_template(ctx.session, ctx.event.contact_id, ctx.event.properties or {})


def on_system_event(ctx: Context) -> None:
    """Pipeline step (events about no one): a mass send's outcome."""
    if ctx.event.type == MASS_FINISHED:
        apply_mass(ctx.session, ctx.event.properties or {})


def _reports(session: Session, where: list[Any], since: datetime) -> list[dict[str, Any]]:
    e = Event.__table__.c
    return [
        p or {}
        for p in session.execute(
            sa.select(e.properties).where(*where, e.occurred_at >= since).order_by(e.id)
        ).scalars()
    ]


def late_template(session: Session, contact_id: int, msg_id: str, since: datetime) -> None:
    """A template row just marked sent: its report, if it came first (ix_event_contact_type)."""
    e = Event.__table__.c
    where = [e.contact_id == contact_id, e.type == TEMPLATE_FINISHED]
    for props in _reports(session, where, since - OVERTAKE):
        if str(props.get("msg_id")) == msg_id:
            apply_template(session, contact_id, props)


def late_mass(session: Session, msg_id: str, since: datetime) -> None:
    """A mass send just submitted: its report, if it came first (ix_event_type_time_contact)."""
    e = Event.__table__.c
    for props in _reports(session, [e.type == MASS_FINISHED], since - OVERTAKE):
        if str(props.get("msg_id")) == msg_id:
            apply_mass(session, props)
