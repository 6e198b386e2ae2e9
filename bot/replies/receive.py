"""The use case behind every callback: decide the instant reply (``bot.replies.decide``),
record the event with its reply and tags in one transaction, enqueue the background job
after commit. The reply rules' answer is decided before the insert and written with the
event; a journey's answer (or a rule that tags) needs the event's id and comes after it. The reply comes back neutral; the channel's handler renders it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlmodel import Session

from bot.contacts import fast_record
from bot.contacts.record import IncomingEvent, record
from bot.core import queue
from bot.core.config import Settings
from bot.core.db import get_engine
from bot.replies.decide import ANSWERS, Reply, Trigger, decide, decide_early

__all__ = ["Received", "Reply", "Trigger", "receive"]


@dataclass(frozen=True)
class Received:
    event_id: int
    contact_id: int | None
    duplicate: bool
    reply: Reply | None  # the one decided the first time, for a retry too


def receive(settings: Settings, event: IncomingEvent, trigger: Trigger | None) -> Received:
    """Store ``event`` (idempotently) and return what was recorded, with the reply to send."""
    after: list[Callable[[], object]] = []

    def on_insert(session: Session, event_id: int, contact_id: int, asking: bool) -> str | None:
        after.clear()  # a retried transaction starts over
        if trigger is None:
            return None
        reply = decide(settings, session, trigger, event_id, contact_id, asking, after)
        return reply.to_json() if reply else None

    def early(session: Session, contact_id: int, asking: bool) -> object:
        if trigger is None:
            return None
        reply = decide_early(settings, session, trigger, asking)
        return reply.to_json() if isinstance(reply, Reply) else reply

    with Session(get_engine(settings.database_url), expire_on_commit=False) as session:

        def early_known(asking: bool) -> object:
            try:
                return early(session, 0, asking)
            finally:
                session.close()  # a reload of the rules read through it: let go of it now

        grouped = _kick_after_commit(settings) if settings.group_commit else None
        result = fast_record.record_known(
            settings.database_url,
            event,
            early_known,
            grouped,
            asking_matters=trigger is not None and trigger.kind in ANSWERS,
        )
        if result is None:
            result = record(session, event, on_insert=on_insert, early=early)
    if result.outbox_id is not None and not result.kicked:
        queue.kick_outbox(settings, contact_id=result.contact_id)
    for action in after:
        action()
    reply = Reply.from_json(result.reply) if result.reply else None
    return Received(result.event_id, result.contact_id, result.duplicate, reply)


def _kick_after_commit(settings: Settings) -> fast_record.Kick:
    """One outbox kick per drain for a group-committed batch (run by the writer thread)."""

    def kick(contact_id: int) -> tuple[int, Callable[[], object]]:
        part = queue.drain_part(settings, contact_id)
        return part, lambda: queue.kick_outbox(settings, contact_id=contact_id)

    return kick
