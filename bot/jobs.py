"""Background jobs, importable by dotted path for rq. Each is idempotent."""

from __future__ import annotations

import logging

import sqlalchemy as sa

from bot import messaging, pipeline
from bot.config import load_settings
from bot.db import session_scope
from bot.models import Event, Outbox, utcnow

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 5



def process_event(outbox_id: int) -> str:
    """Run the background steps for one stored event, once."""
    settings = load_settings()
    with session_scope(settings.database_url) as session:
        t = Outbox.__table__
        row = session.execute(
            sa.select(t).where(t.c.id == outbox_id).with_for_update()
        ).one_or_none()
        if row is None:
            return "missing"
        if row.status != "pending":
            return row.status
        if row.attempts >= MAX_ATTEMPTS:
            session.execute(sa.update(t).where(t.c.id == outbox_id).values(status="failed"))
            return "failed"
        session.execute(sa.update(t).where(t.c.id == outbox_id).values(attempts=t.c.attempts + 1))
    with session_scope(settings.database_url) as session:
        event = session.get(Event, row.event_id)
        contact_id = event.contact_id
        ctx = pipeline.Context(settings, session, event)
        for step in pipeline.STEPS:
            step(ctx)
        now = utcnow()
        event.processed_at = now
        session.add(event)
        session.execute(
            sa.update(Outbox.__table__)
            .where(Outbox.__table__.c.id == outbox_id, Outbox.__table__.c.status == "pending")
            .values(status="done", done_at=now)
        )
    for action in ctx.after_commit:
        action()
    if not event.type.startswith("msg."):
        messaging.release_held(settings, contact_id)  # they interacted: held messages may go
    return "done"


def deliver_message(message_id: int) -> str:
    return messaging.deliver(load_settings(), message_id)


def deliver_messages(message_ids: list[int]) -> dict[str, int]:
    """A batch (broadcasts): each message is delivered on its own, idempotently."""
    settings = load_settings()
    outcomes: dict[str, int] = {}
    for message_id in message_ids:
        status = messaging.deliver(settings, message_id)
        outcomes[status] = outcomes.get(status, 0) + 1
    return outcomes


def fan_out_broadcast(broadcast_id: int) -> int:
    from bot import broadcasts

    return broadcasts.fan_out(load_settings(), broadcast_id)
