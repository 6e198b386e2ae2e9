"""The journey runner: the database side of the pure engine in journeys/.

For every stored event about a contact (a pipeline step, last in bot.pipeline.STEPS), it advances
the contact's enrollments that wait for an event or ask a question, then starts the published
journeys whose trigger matches and whose entry rule lets the contact in. ``wake`` advances an
enrollment whose ``wake_at`` has come (an rq job scheduled with ``enqueue_at``; the sweeper
re-enqueues any that Redis lost).

Each command ``advance`` returns runs once: a StepRun row keyed (enrollment, step, visit, idx),
inserted with ON CONFLICT DO NOTHING in the transaction that stores the new state; only the
commands whose row was inserted are executed. ``idx`` is the enrollment's turn (derived from
the state the call started from) times 1000 plus the command's position in the call, so the
same transition run twice yields the same keys.

Executed: Send (a message row in this transaction, delivery enqueued after commit), AddTag,
RemoveTag, SetStage, HandOff (+ the rep's notification), Schedule (wake_at + a wake job),
Exit / Converted (status, ended_at). Only recorded as events, for now: AddPoints
(``journey.points``), SetField (``journey.field``), NotifyRep (``journey.notify_rep``),
CallWebhook (``journey.webhook``), EnterJourney (``journey.enter``), Answered
(``journey.answer``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.orm import Session

import journeys
from bot import contacts, events, handoff, messaging, queue, scoring, tagging
from bot.config import Settings
from bot.db import session_scope
from bot.message_payloads import SendRequest
from bot.models import Contact, ContactTag, Enrollment, Event, Journey, StepRun, utcnow
from journeys import commands as c
from journeys.engine import FINAL

if TYPE_CHECKING:
    from bot.pipeline import Context

log = logging.getLogger(__name__)

WAKE_JOB = "bot.jobs.wake_enrollment"
OPEN = ("active", "waiting", "asking")
UNSUBSCRIBE = "oa.unsubscribe"
RECORDED = {
    c.AddPoints: "journey.points",
    c.SetField: "journey.field",
    c.NotifyRep: "journey.notify_rep",
    c.CallWebhook: "journey.webhook",
    c.EnterJourney: "journey.enter",
    c.Answered: "journey.answer",
}
After = list[Callable[[], object]]


# --- definitions and states ----------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _parse(journey_id: int, version: int, raw: str) -> journeys.Definition:
    import json

    return journeys.check(json.loads(raw))


def definition_of(j: Journey) -> journeys.Definition:
    import json

    return _parse(j.id, j.version, json.dumps(j.definition, sort_keys=True, ensure_ascii=False))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def state_to_json(s: journeys.State) -> dict[str, Any]:
    return {
        "step": s.step,
        "status": s.status,
        "wake_at": _iso(s.wake_at),
        "waiting_for": (
            {"events": list(s.waiting_for.events), "conditions": dict(s.waiting_for.conditions)}
            if s.waiting_for is not None
            else None
        ),
        "answers": dict(s.answers),
        "re_asked": s.re_asked,
        "history": list(s.history),
    }


def state_from_json(data: dict[str, Any]) -> journeys.State:
    if not data:
        return journeys.State()
    wf = data.get("waiting_for")
    wake = data.get("wake_at")
    return journeys.State(
        step=data.get("step"),
        status=data.get("status", "active"),
        wake_at=datetime.fromisoformat(wake) if wake else None,
        waiting_for=(
            journeys.WaitingFor(tuple(wf["events"]), wf.get("conditions") or {}) if wf else None
        ),
        answers=data.get("answers") or {},
        re_asked=bool(data.get("re_asked")),
        history=tuple(data.get("history") or ()),
    )


def _turn(s: journeys.State) -> int:
    """Which transition of the enrollment a call from this state is (the same every time)."""
    return len(s.history) * 2 + int(s.re_asked)


def snapshot(session: Session, contact_id: int) -> journeys.Contact:
    k = session.get(Contact, contact_id)
    tags = session.execute(
        sa.select(ContactTag.tag).where(ContactTag.contact_id == contact_id)
    ).scalars()
    e = Event.__table__
    counts = dict(
        session.execute(
            sa.select(e.c.type, sa.func.count())
            .where(e.c.contact_id == contact_id)
            .group_by(e.c.type)
        ).all()
    )
    return journeys.Contact(
        id=contact_id,
        name=(k.name or "") if k else "",
        tags=frozenset(tags),
        score=float(k.score or 0.0) if k else 0.0,
        stage=(k.stage if k else None) or "subscriber",
        event_counts=counts,
        last_seen_at=k.last_seen_at if k else None,
    )


def _event_of(ev: Event) -> journeys.Event:
    return journeys.Event(type=ev.type, properties=dict(ev.properties), occurred_at=ev.occurred_at)


def _lock(session: Session, query: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return query


# --- the pipeline step ---------------------------------------------------------------------


def on_event(ctx: Context) -> None:
    """Pipeline step: advance the contact's open enrollments, then start matching journeys."""
    ev, session = ctx.event, ctx.session
    if ev.contact_id is None:
        return
    contact_id = contacts.resolve(session, ev.contact_id)
    now = utcnow()
    if ev.type == UNSUBSCRIBE:
        exit_all(session, contact_id, now, "unsubscribed")
        return
    event = _event_of(ev)
    en = Enrollment.__table__.c
    open_ones = (
        session.execute(
            _lock(
                session,
                sa.select(Enrollment)
                .where(en.contact_id == contact_id, en.status.in_(("waiting", "asking")))
                .order_by(en.id),
            )
        )
        .scalars()
        .all()
    )
    published = (
        session.execute(
            sa.select(Journey).where(Journey.status == "published").order_by(Journey.id)
        )
        .scalars()
        .all()
    )
    if not open_ones and not published:
        return  # the common case: nothing to do, and no snapshot queries
    contact = snapshot(session, contact_id)
    for row in open_ones:
        if row.last_event_id is not None and row.last_event_id >= ev.id:
            continue  # this event (or a later one) was applied already
        j = session.get(Journey, row.journey_id)
        if j is None:
            continue
        state = state_from_json(row.state)
        new, cmds = journeys.advance(definition_of(j), state, event, now, contact)
        row.last_event_id = ev.id
        if new == state and not cmds:
            continue
        _apply(ctx.settings, session, j, row, state, new, cmds, now, ev.id, ctx.after_commit)
        contact = snapshot(session, contact_id)
    for j in published:
        try:
            d = definition_of(j)
        except journeys.DefinitionError:
            log.exception("journey %s no longer valid", j.id)
            continue
        if not journeys.triggered_by(d, event, contact, now):
            continue
        past = session.execute(
            sa.select(en.started_at, en.ended_at).where(
                en.journey_id == j.id, en.contact_id == contact_id
            )
        ).all()
        history = [journeys.Enrollment(r.started_at, r.ended_at) for r in past]
        if not journeys.may_enter(d.trigger.entry, history, now):
            continue
        row = _enroll(session, j, contact_id, ev.id, now)
        if row is None:
            continue  # enrolled on this event already (a re-run)
        state = journeys.State()
        new, cmds = journeys.start(d, event, now, contact)
        _apply(ctx.settings, session, j, row, state, new, cmds, now, ev.id, ctx.after_commit)
        contact = snapshot(session, contact_id)


def _enroll(
    session: Session, j: Journey, contact_id: int, event_id: int, now: datetime
) -> Enrollment | None:
    t = Enrollment.__table__
    new_id = session.execute(
        events._insert(session, t)
        .values(
            journey_id=j.id,
            version=j.version,
            contact_id=contact_id,
            status="active",
            state={},
            start_event_id=event_id,
            last_event_id=event_id,
            started_at=now,
        )
        .on_conflict_do_nothing(index_elements=["journey_id", "start_event_id"])
        .returning(t.c.id)
    ).scalar()
    return None if new_id is None else session.get(Enrollment, new_id)


def exit_all(session: Session, contact_id: int, now: datetime, reason: str) -> int:
    """End every open enrollment of the contact (they unsubscribed)."""
    en = Enrollment.__table__.c
    rows = (
        session.execute(
            _lock(
                session,
                sa.select(Enrollment).where(en.contact_id == contact_id, en.status.in_(OPEN)),
            )
        )
        .scalars()
        .all()
    )
    for row in rows:
        state = state_from_json(row.state)
        row.state = {**state_to_json(state), "status": "exited", "wake_at": None}
        row.status, row.wake_at, row.ended_at = "exited", None, now
        session.add(row)
        events.append(
            session,
            contact_id,
            "journey.exited",
            {"enrollment_id": row.id, "journey_id": row.journey_id, "reason": reason},
            dedupe_key=f"j{row.id}:exit",
        )
    session.flush()
    return len(rows)


# --- applying a transition -----------------------------------------------------------------


def _apply(
    settings: Settings,
    session: Session,
    j: Journey,
    row: Enrollment,
    before: journeys.State,
    new: journeys.State,
    cmds: list[c.Command],
    now: datetime,
    event_id: int | None,
    after: After,
) -> None:
    row.state = state_to_json(new)
    row.step = new.step
    row.status = new.status
    row.wake_at = new.wake_at if new.status in ("waiting", "asking") else None
    if new.status in FINAL and row.ended_at is None:
        row.ended_at = now
    session.add(row)
    session.flush()
    turn = _turn(before)
    for pos, cmd in enumerate(cmds):
        idx = turn * 1000 + pos
        if _claim(session, row.id, cmd, idx, now):
            _execute(settings, session, j, row, cmd, idx, event_id, after)


def _claim(session: Session, enrollment_id: int, cmd: c.Command, idx: int, now: datetime) -> bool:
    t = StepRun.__table__
    inserted = session.execute(
        events._insert(session, t)
        .values(
            enrollment_id=enrollment_id,
            step=cmd.step,
            visit=cmd.visit,
            idx=idx,
            kind=type(cmd).__name__,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["enrollment_id", "step", "visit", "idx"])
        .returning(t.c.id)
    ).scalar()
    return inserted is not None


def _key(row: Enrollment, cmd: c.Command, idx: int) -> str:
    return f"j{row.id}:{cmd.step}:{cmd.visit}:{idx}"


def _execute(
    settings: Settings,
    session: Session,
    j: Journey,
    row: Enrollment,
    cmd: c.Command,
    idx: int,
    event_id: int | None,
    after: After,
) -> None:
    cid, ref = row.contact_id, f"journey:{j.id}"
    if isinstance(cmd, c.Send):
        _send(settings, session, row, cmd, idx, event_id, after)
    elif isinstance(cmd, c.AddTag):
        tagging.add_tag(session, cid, cmd.tag, "journey", ref)
        after.append(functools.partial(tagging.kick_sync, settings, session))
    elif isinstance(cmd, c.RemoveTag):
        tagging.remove_tag(session, cid, cmd.tag)
        after.append(functools.partial(tagging.kick_sync, settings, session))
    elif isinstance(cmd, c.SetStage):
        change = scoring.set_stage(session, cid, cmd.stage, by=f"journey {j.name}", manual=False)
        if change.outbox_id is not None:
            after.append(functools.partial(scoring.kick, settings, [change.outbox_id]))
    elif isinstance(cmd, c.HandOff):
        reason = f"journey {j.name}" + (f": {cmd.note}" if cmd.note else "")
        assignment = handoff.assign(session, cid, reason[:150])
        if assignment is not None:
            after.append(functools.partial(handoff.notify, settings, assignment.id))
        after.append(functools.partial(queue.kick_outbox, settings))
    elif isinstance(cmd, c.Schedule):
        after.append(functools.partial(enqueue_wake, settings, row.id, cmd.visit, cmd.wake_at))
    elif isinstance(cmd, c.Exit | c.Converted):
        _record(settings, session, row, cmd, idx, "journey." + row.status, after)
    elif type(cmd) in RECORDED:
        _record(settings, session, row, cmd, idx, RECORDED[type(cmd)], after)
    else:
        _record(settings, session, row, cmd, idx, "journey.unknown_command", after)


def _props(cmd: c.Command) -> dict[str, Any]:
    data = asdict(cmd)
    for k, v in list(data.items()):
        if isinstance(v, datetime):
            data[k] = v.isoformat()
    return data


def _record(
    settings: Settings,
    session: Session,
    row: Enrollment,
    cmd: c.Command,
    idx: int,
    type_: str,
    after: After,
) -> None:
    props = {"enrollment_id": row.id, "journey_id": row.journey_id, **_props(cmd)}
    if isinstance(cmd, c.Answered):
        props["attribute"] = cmd.key
    outbox_id = events.append(session, row.contact_id, type_, props, _key(row, cmd, idx))
    if outbox_id is not None:
        after.append(functools.partial(queue.kick_outbox, settings))


def _send(
    settings: Settings,
    session: Session,
    row: Enrollment,
    cmd: c.Send,
    idx: int,
    event_id: int | None,
    after: After,
) -> None:
    try:
        req = SendRequest.model_validate(
            {
                "kind": cmd.kind,
                "payload": dict(cmd.payload),
                "contact_id": row.contact_id,
                "idempotency_key": _key(row, cmd, idx),
                "reply_to_event_id": event_id if cmd.reply and event_id else None,
            }
        )
    except ValidationError as exc:
        log.warning("journey send %s not valid: %s", _key(row, cmd, idx), exc)
        props = {"enrollment_id": row.id, "step": cmd.step, "error": str(exc)[:500]}
        events.append(session, row.contact_id, "journey.send_invalid", props, _key(row, cmd, idx))
        after.append(functools.partial(queue.kick_outbox, settings))
        return
    ids = messaging.insert_messages(session, [messaging._new_row(req)])
    if ids:
        after.append(functools.partial(messaging.enqueue, settings, ids))


# --- waking --------------------------------------------------------------------------------


def wake_job_id(enrollment_id: int, visit: int) -> str:
    return f"journey-wake-{enrollment_id}-{visit}"


def enqueue_wake(settings: Settings, enrollment_id: int, visit: int, at: datetime) -> bool:
    """Schedule the wake job (deterministic id); False if Redis is down (the sweeper finds it)."""
    job_id = wake_job_id(enrollment_id, visit)
    try:
        if queue.job_alive(settings, job_id):
            return True
        queue.drop_job(settings, job_id)
        queue.get_queue(settings).enqueue_at(
            at, WAKE_JOB, enrollment_id, job_id=job_id, result_ttl=300
        )
    except queue.REDIS_ERRORS as exc:
        log.warning("journey wake %s not enqueued (%s); the sweeper will", job_id, exc)
        return False
    return True


def wake(settings: Settings, enrollment_id: int, now: datetime | None = None) -> str:
    """Advance an enrollment whose wake_at has come (event None). Idempotent: an early, a
    repeated or a stale call changes nothing. Returns the enrollment's status, or "missing",
    "not_due"."""
    now = now or utcnow()
    after: After = []
    with session_scope(settings.database_url) as session:
        row = session.execute(
            _lock(session, sa.select(Enrollment).where(Enrollment.id == enrollment_id))
        ).scalar()
        if row is None:
            return "missing"
        if row.status not in ("waiting", "asking") or row.wake_at is None:
            return row.status
        if now < row.wake_at:
            return "not_due"
        j = session.get(Journey, row.journey_id)
        state = state_from_json(row.state)
        contact = snapshot(session, row.contact_id)
        new, cmds = journeys.advance(definition_of(j), state, None, now, contact)
        if new != state or cmds:
            _apply(settings, session, j, row, state, new, cmds, now, None, after)
        status = row.status
    for action in after:
        action()
    return status


def sweep(settings: Settings, grace: timedelta = timedelta(minutes=1)) -> int:
    """Re-enqueue overdue wakes whose job is not alive in Redis; returns how many."""
    cutoff = utcnow() - grace
    en = Enrollment.__table__.c
    with session_scope(settings.database_url) as session:
        due = session.execute(
            sa.select(en.id, en.state)
            .where(en.status.in_(("waiting", "asking")), en.wake_at.is_not(None))
            .where(en.wake_at < cutoff)
            .limit(1000)
        ).all()
    count = 0
    for eid, state in due:
        step = (state or {}).get("step")
        visit = max(1, list((state or {}).get("history") or []).count(step))
        job_id = wake_job_id(eid, visit)
        if queue.job_alive(settings, job_id):
            continue
        queue.drop_job(settings, job_id)
        queue.get_queue(settings).enqueue(WAKE_JOB, eid, job_id=job_id, result_ttl=300)
        count += 1
    return count
