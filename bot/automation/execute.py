"""What each command of the engine does to the database: one function per command type in
``HANDLERS`` (the same shape as the preview's and the forecast's tables). A handler runs once
per claimed step run (bot.automation.moves); ``key`` is that run's idempotency key.

Sends are buffered on the Tx and inserted together by ``insert_buffered``; a send that is the
instant passive reply to the contact's message is stored as sent at once.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.orm import Session

import journeys
from bot.automation import enroll
from bot.automation import webhooks as journey_webhooks
from bot.automation.definitions import definition_for, journey_name
from bot.automation.snapshots import snapshot
from bot.automation.tx import Tx, locked
from bot.contacts import record as events
from bot.core import queue, redact
from bot.core.config import Settings
from bot.core.models import Contact, Enrollment, Message
from bot.messaging import links
from bot.messaging import outbox as messaging
from bot.messaging.payloads import SendRequest
from bot.sales import handoff
from bot.scoring import ledger as scoring
from bot.tagging import tags as tagging
from journeys import commands as c
from journeys.engine import REPLY_KINDS

log = logging.getLogger(__name__)

# A contact leaving a journey goes on their timeline; no background step needs to see it.
TIMELINE_ONLY = frozenset({"journey.done", "journey.exited"})
# (tx, enrollment, command, idx, event id) -> the move of an enrollment the command began
Handler = Callable[[Tx, Enrollment, Any, int, "int | None"], "enroll.Move | None"]


def run(tx: Tx, row: Enrollment, cmd: c.Command, idx: int, event_id: int | None) -> Any:
    """Execute one claimed command; returns the move of a journey it entered, to apply."""
    return HANDLERS.get(type(cmd), _unknown)(tx, row, cmd, idx, event_id)


def key(row: Enrollment, cmd: c.Command, idx: int) -> str:
    return f"j{row.id}:{cmd.step}:{cmd.visit}:{idx}"


def record(tx: Tx, row: Enrollment, cmd: c.Command, idx: int, type_: str) -> int | None:
    """Store the command as an event on the contact's timeline; the outbox row's id, if any."""
    props = {"enrollment_id": row.id, "journey_id": row.journey_id, **_props(cmd)}
    if isinstance(cmd, c.Answered):
        props["attribute"] = cmd.key
    if type_ in TIMELINE_ONLY:  # stored with the others at the end (insert_buffered)
        tx.timeline.append((row.contact_id, type_, props, key(row, cmd, idx)))
        return None
    outbox_id = events.append(tx.session, row.contact_id, type_, props, key(row, cmd, idx))
    if outbox_id is not None:
        tx.kick_outbox()
    return outbox_id


def _props(cmd: c.Command) -> dict[str, Any]:
    data = asdict(cmd)
    for k, v in list(data.items()):
        if isinstance(v, datetime):
            data[k] = v.isoformat()
    return data


def _failed(tx: Tx, row: Enrollment, cmd: c.Command, idx: int, type_: str, **props: Any) -> None:
    props = {"enrollment_id": row.id, "step": cmd.step, **props}
    events.append(tx.session, row.contact_id, type_, props, key(row, cmd, idx))
    tx.kick_outbox()


def insert_buffered(tx: Tx) -> None:
    """Insert what the commands buffered, one statement per kind: the sends (enqueued after
    commit; a key stored already, a re-run, inserts nothing) and the timeline-only events."""
    pending, tx.sends = tx.sends, []
    for urgent in (True, False):
        rows = [row for row, u in pending if u is urgent]
        if rows:
            # each key is its command's, claimed in this transaction: none can exist yet
            ids = messaging.insert_messages(tx.session, rows, new_keys=True)
            tx.deliver(ids, urgent=urgent)
    done, tx.timeline = tx.timeline, []
    events.timeline(tx.session, done)


# --- the handlers --------------------------------------------------------------------------


def _send(tx: Tx, row: Enrollment, cmd: c.Send, idx: int, event_id: int | None) -> None:
    session, k = tx.session, key(row, cmd, idx)
    conversational = event_id is not None  # in answer to the contact's own event
    try:
        req = SendRequest.model_validate(
            {
                "kind": cmd.kind,
                "payload": dict(cmd.payload),
                "contact_id": row.contact_id,
                "idempotency_key": k,
                "marketing": not conversational,
                "outside_window": cmd.outside_window,
                "fallback": cmd.fallback,
                "reply_to_event_id": event_id if conversational else None,
            }
        )
    except ValidationError as exc:
        log.warning("journey send %s not valid: %s", k, exc)
        _failed(tx, row, cmd, idx, "journey.send_invalid", error=redact.text(str(exc))[:500])
        return
    new = messaging.new_message_row(req)
    new.update(enrollment_id=row.id, step=cmd.step)
    passive = tx.passive is not None and not tx.passive and cmd.reply and cmd.kind in REPLY_KINDS
    if not passive:
        tx.sends.append((new, conversational))  # inserted with the others (insert_buffered)
        return
    assert tx.passive is not None
    new.update(status="sent", sent_kind="passive", sent_at=tx.now, attempts=1)
    ids = messaging.insert_messages(session, [new])
    if not ids:
        return
    tx.passive.append((req.kind, links.rewrite(tx.settings, ids[0], req.kind, req.payload)))
    m = session.get(Message, ids[0])
    outbox_id = messaging.record_message_event(session, m, "msg.sent", {"passive": True})
    if outbox_id is not None:
        tx.kick_outbox()


def _add_tag(tx: Tx, row: Enrollment, cmd: c.AddTag, idx: int, event_id: int | None) -> None:
    step = f"journey:{row.journey_id}:{cmd.step}"
    tagging.add_tag(tx.session, row.contact_id, cmd.tag, "journey", step, event_id=event_id)
    tx.after.append(functools.partial(tagging.kick_sync, tx.settings, tx.session))


def _remove_tag(tx: Tx, row: Enrollment, cmd: c.RemoveTag, idx: int, event_id: int | None) -> None:
    step = f"journey:{row.journey_id}:{cmd.step}"
    tagging.remove_tag(tx.session, row.contact_id, cmd.tag, "journey", step, event_id=event_id)
    tx.after.append(functools.partial(tagging.kick_sync, tx.settings, tx.session))


def _set_stage(tx: Tx, row: Enrollment, cmd: c.SetStage, idx: int, event_id: int | None) -> None:
    by = f"journey {journey_name(tx.session, row.journey_id)}"
    change = scoring.set_stage(tx.session, row.contact_id, cmd.stage, by=by, manual=False)
    if change.outbox_id is not None:
        tx.after.append(functools.partial(scoring.kick, tx.settings, [change.outbox_id]))


def _set_field(tx: Tx, row: Enrollment, cmd: c.SetField, idx: int, event_id: int | None) -> None:
    _store_field(tx.session, row.contact_id, cmd.field, cmd.value)
    record(tx, row, cmd, idx, "journey.field")


def _store_field(session: Session, contact_id: int, name: str, value: Any) -> None:
    query = sa.select(Contact).where(Contact.id == contact_id)
    k = session.execute(locked(session, query)).scalar()
    if k is None:
        return
    k.fields = {**(k.fields or {}), name: value}
    session.add(k)
    session.flush()


def _add_points(tx: Tx, row: Enrollment, cmd: c.AddPoints, idx: int, event_id: int | None) -> None:
    # scoring turns this event into a ledger line (score_rules.DIRECT_POINTS)
    record(tx, row, cmd, idx, "journey.points")


def _hand_off(tx: Tx, row: Enrollment, cmd: c.HandOff, idx: int, event_id: int | None) -> None:
    reason = f"journey {journey_name(tx.session, row.journey_id)}"
    reason += f": {cmd.note}" if cmd.note else ""
    assignment = handoff.assign(
        tx.session, row.contact_id, reason[:150], cooldown=handoff.cooldown(tx.settings)
    )
    if assignment is not None:
        tx.after.append(functools.partial(handoff.notify, tx.settings, assignment.id))
    tx.kick_outbox()


def _notify_rep(tx: Tx, row: Enrollment, cmd: c.NotifyRep, idx: int, event_id: int | None) -> None:
    session = tx.session
    k = session.get(Contact, row.contact_id)
    rep = cmd.rep or (k.owner_userid if k else None)
    if not rep:
        _failed(tx, row, cmd, idx, "journey.notify_failed", error="没有负责的销售")
        return
    name = (k.name if k else None) or f"客户 #{row.contact_id}"
    req = SendRequest.model_validate(
        {
            "kind": "wecom_text",
            "to_user": [rep],
            "payload": {"content": f"【{name}】{cmd.message}"[:2048]},
            "idempotency_key": key(row, cmd, idx),
        }
    )
    new = messaging.new_message_row(req)
    new.update(enrollment_id=row.id, step=cmd.step)
    ids = messaging.insert_messages(session, [new])
    tx.deliver(ids)
    record(tx, row, cmd, idx, "journey.notify_rep")


def _call_webhook(
    tx: Tx, row: Enrollment, cmd: c.CallWebhook, idx: int, event_id: int | None
) -> None:
    outbox_id = record(tx, row, cmd, idx, "journey.webhook")
    if outbox_id is not None:  # a new key: the delivery row is the truth, its job follows
        k = key(row, cmd, idx)
        journey_webhooks.record_pending(tx.session, row.contact_id, k, cmd.url, cmd.body)
        tx.after.append(functools.partial(_enqueue_webhook, tx.settings, k))


def _enqueue_webhook(settings: Settings, k: str) -> None:
    try:
        journey_webhooks.enqueue(settings, k)
    except queue.REDIS_ERRORS as exc:
        log.warning("journey webhook %s not enqueued (%s); the sweeper will", k, exc)


def _enter_journey(
    tx: Tx, row: Enrollment, cmd: c.EnterJourney, idx: int, event_id: int | None
) -> enroll.Move | None:
    """Start another published journey (by name or definition id) for this contact."""
    session = tx.session
    for j in tx.published():
        try:
            d = definition_for(session, j.id, j.version)
        except journeys.DefinitionError:
            continue
        if cmd.journey in (j.name, d.id):
            record(tx, row, cmd, idx, "journey.enter")
            contact = snapshot(session, row.contact_id)
            return enroll.begin(tx, j, d, row.contact_id, None, None, contact)
    error = "no published journey with this name"
    _failed(tx, row, cmd, idx, "journey.enter_failed", journey=cmd.journey, error=error)
    return None


def _schedule(tx: Tx, row: Enrollment, cmd: c.Schedule, idx: int, event_id: int | None) -> None:
    tx.wake_at(cmd.wake_at)


def _ended(tx: Tx, row: Enrollment, cmd: c.Exit, idx: int, event_id: int | None) -> None:
    record(tx, row, cmd, idx, "journey." + row.status)


def _answered(tx: Tx, row: Enrollment, cmd: c.Answered, idx: int, event_id: int | None) -> None:
    record(tx, row, cmd, idx, "journey.answer")


def _unknown(tx: Tx, row: Enrollment, cmd: c.Command, idx: int, event_id: int | None) -> None:
    record(tx, row, cmd, idx, "journey.unknown_command")


HANDLERS: dict[type[c.Command], Handler] = {
    c.Send: _send,
    c.AddTag: _add_tag,
    c.RemoveTag: _remove_tag,
    c.SetStage: _set_stage,
    c.SetField: _set_field,
    c.AddPoints: _add_points,
    c.HandOff: _hand_off,
    c.NotifyRep: _notify_rep,
    c.CallWebhook: _call_webhook,
    c.EnterJourney: _enter_journey,
    c.Schedule: _schedule,
    c.Exit: _ended,
    c.Converted: _ended,
    c.Answered: _answered,
}
