"""What the platform reports after a send, matched to the message rows (pipeline steps).

- ``TEMPLATESENDJOBFINISH`` (``oa.template_send_finished``, about the contact): the row whose
  template went out with that msgid is ``delivered`` (``success``) or ``failed`` with the
  platform's status as its reason (``failed:user block``, ``failed: system failed``).
- ``MASSSENDJOBFINISH`` (``oa.mass_send_finished``, about no one): the ``mass_send`` row of that
  msg_id takes the counts; its messages are ``delivered`` when the platform sent to all of
  them, ``failed`` when the job failed (``send fail``, ``err(…)``: a review refusal). When only
  some were sent the platform does not say which: the rows stay ``sent``, and say so.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from bot.core.context import Context
from bot.core.models import MassSend, Message, utcnow

TEMPLATE_FINISHED = "oa.template_send_finished"
MASS_FINISHED = "oa.mass_send_finished"


def _int(props: dict[str, Any], key: str) -> int | None:
    try:
        return int(props[key])
    except (KeyError, TypeError, ValueError):
        return None


def on_event(ctx: Context) -> None:
    """Pipeline step (events about a contact): a template send's outcome."""
    ev = ctx.event
    if ev.type != TEMPLATE_FINISHED:
        return
    props = ev.properties or {}
    msg_id, status = str(props.get("msg_id") or ""), str(props.get("status") or "")
    if not msg_id:
        return
    t = Message.__table__.c
    where = [
        t.platform_msgid == msg_id,
        t.sent_kind == "template",
        t.contact_id == ev.contact_id,
        t.status == "sent",
    ]
    now = utcnow()
    if status == "success":
        values: dict[str, Any] = {"status": "delivered", "updated_at": now}
    else:
        values = {"status": "failed", "updated_at": now, "error_message": f"platform: {status}"}
    ctx.session.execute(sa.update(Message.__table__).where(*where).values(**values))


def on_system_event(ctx: Context) -> None:
    """Pipeline step (events about no one): a mass send's outcome."""
    ev = ctx.event
    if ev.type != MASS_FINISHED:
        return
    props = ev.properties or {}
    msg_id = str(props.get("msg_id") or "")
    if not msg_id:
        return
    session = ctx.session
    ms = session.execute(
        sa.select(MassSend).where(MassSend.msg_id == msg_id).with_for_update()
    ).scalar_one_or_none()
    if ms is None:
        return  # a mass send made elsewhere (the platform's web console)
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
        return
    everyone = (
        ms.error_count == 0
        and ms.filter_count == ms.total_count
        and (ms.sent_count or 0) >= ms.recipients
    )
    if everyone:
        session.execute(rows.values(status="delivered", updated_at=now))
        return
    note = (
        f"platform: sent to {ms.sent_count} of {ms.total_count} (filtered to {ms.filter_count}, "
        f"{ms.error_count} failed); which ones it does not say"
    )
    session.execute(rows.values(error_message=note, updated_at=now))
