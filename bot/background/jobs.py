"""Background jobs, importable by dotted path for rq. Each is idempotent."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable

import sqlalchemy as sa
from rq import get_current_job
from sqlalchemy.orm import Session

from bot.background import pipeline
from bot.contacts import identity as contacts
from bot.contacts import record
from bot.core import changes, queue, redact
from bot.core.config import Settings, load_settings
from bot.core.context import BATCH_CONTACTS, BATCH_MEMO
from bot.core.db import session_scope
from bot.core.models import Event, Outbox, utcnow
from bot.messaging import delivery, requeue
from bot.messaging import outbox as messaging

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 5


BATCH = 100
DRAIN_SLICE = 2.0  # s: a drain hands on to a new job of its own after this long
# s: a drain that finds nothing looks again every LINGER_POLL for up to LINGER, while its
# worker has nothing else to do (queue.may_linger): a steady stream of callbacks is then one
# drain job, not a job each (an rq job costs more CPU than the event it processes).
LINGER, LINGER_POLL = 0.2, 0.02


def drain_outbox(part: int = 0, parts: int = 1) -> int:
    """Process every pending outbox row of this drain's contacts (``contact_id % parts ==
    part``; events about no one go to drain 0), in batches; returns how many were processed.

    While a drain runs, its "drain pending" flag stays set, so callbacks skip enqueueing
    another job (one Redis command each). Only when it finds nothing left does it clear the
    flag — and then looks once more, since a row committed just before the clear found the flag
    set and relied on this drain. After DRAIN_SLICE seconds of steady work it hands on to a new
    job at the back of the urgent queue (the flag stays set), so one busy drain cannot keep an
    urgent worker from the other drains. Before it clears the flag, it lingers (LINGER)."""
    settings = load_settings()
    started = time.monotonic()
    total = 0
    query = pending_query(part, parts)
    cleared = False
    idle = 0.0
    while True:
        with session_scope(settings.database_url) as session:
            rows = session.execute(query).all()
        ids = [r.id for r in rows]
        people = [r.created_at for r in rows if r.priority == 0]  # not Yuchi's own events
        if people:
            queue.note_lag(settings, (utcnow() - min(people)).total_seconds())
        if not ids:
            if cleared:
                return total
            if idle < LINGER and queue.may_linger(settings):
                time.sleep(LINGER_POLL)  # the next callbacks find the flag set: no new job
                idle += LINGER_POLL
                continue
            try:
                queue.drain_started(settings, part)  # from now on, new rows kick a new drain
            except queue.REDIS_ERRORS as exc:
                _redis_away(exc)
                continue  # callbacks cannot kick anyone now: keep watching the table
            cleared = True
            continue
        cleared, idle = False, 0.0
        outcome = process_batch(settings, ids)
        if not outcome:  # another drain holds every one of these rows: it carries on from here
            return total
        total += sum(1 for status in outcome.values() if status == "done")
        if time.monotonic() - started > DRAIN_SLICE:
            try:
                queue.hand_on_drain(settings, part)
            except queue.REDIS_ERRORS as exc:
                _redis_away(exc)
                started = time.monotonic()  # no successor can be queued: this drain goes on
                continue
            return total


def pending_query(part: int, parts: int) -> sa.Select:
    """The next BATCH pending rows of this drain, people's events first. Whose event a row is
    is a lookup by the event's primary key for each pending row, not a join: PostgreSQL
    planned the join from statistics taken while the tables were nearly empty (a burst grows
    them faster than autovacuum analyzes) as a loop over the event table for every pending
    row, about a second a batch at 5,000 pending rows; a lookup per row cannot go so."""
    t, e = Outbox.__table__, Event.__table__
    query = sa.select(t.c.id, t.c.priority, t.c.created_at).where(t.c.status == "pending")
    if parts > 1:
        whose = (
            sa.select(sa.func.coalesce(e.c.contact_id, 0))
            .where(e.c.id == t.c.event_id)
            .scalar_subquery()
        )
        query = query.where(whose % parts == part)
    return query.order_by(t.c.priority, t.c.id).limit(BATCH)


OUTAGE_POLL = 0.5  # s: how often a drain looks at the table while Redis is away


def _redis_away(exc: Exception) -> None:
    """A drain outlives a Redis outage: it goes on processing what callbacks store meanwhile
    (they answer without Redis), and ends normally once Redis is back."""
    log.warning("drain: Redis unreachable (%s); draining on without it", exc)
    time.sleep(OUTAGE_POLL)


def process_event(outbox_id: int) -> str:
    """Process one outbox row (the sweeper's and the tests' way in)."""
    return process_batch(load_settings(), [outbox_id]).get(outbox_id, "missing")


class _EventFailed(Exception):
    """An event failed in a batch run without savepoints: run the batch again with them."""


def process_batch(settings: Settings, outbox_ids: list[int]) -> dict[int, str]:
    """Run the pipeline steps for these outbox rows' events, each once, in one transaction.
    First without a savepoint per event (two statements each); should one event fail, the
    whole batch is rolled back and run again with them, so that the failing event is retried
    later without the others."""
    try:
        return _process_batch(settings, outbox_ids, isolated=False)
    except _EventFailed as failed:
        log.warning("a batch runs again event by event after %r", failed.__cause__)
        return _process_batch(settings, outbox_ids, isolated=True)


# One piece: one transaction, the events (each in a savepoint when ``isolated``) and the
# after-commit work of all of them; split up, the commit would be spread over several functions.
def _process_batch(settings: Settings, outbox_ids: list[int], isolated: bool) -> dict[int, str]:
    t, e = Outbox.__table__, Event.__table__
    outcome: dict[int, str] = {}
    actions: list = []
    interacted: set[int] = set()
    with session_scope(settings.database_url) as session:
        session.info[BATCH_MEMO] = {}
        query = sa.select(t.c.id, t.c.event_id, t.c.status, t.c.attempts, t.c.interacted_at).where(
            t.c.id.in_(outbox_ids)
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)  # parallel drains split the work
        rows = session.execute(query.order_by(t.c.id)).all()
        events = {
            ev.id: ev
            for ev in session.execute(
                sa.select(Event).where(e.c.id.in_([r.event_id for r in rows]))
            ).scalars()
        }
        batch_contacts = {ev.contact_id for ev in events.values() if ev.contact_id is not None}
        session.info[BATCH_MEMO][BATCH_CONTACTS] = batch_contacts
        contacts.read_alive(session, batch_contacts)
        record.apply_touches(session, _touches(session, rows, events))
        done: list[int] = []
        for row in rows:
            if row.status != "pending":
                outcome[row.id] = row.status
                continue
            event = events[row.event_id]
            ctx = pipeline.Context(settings, session, event)
            try:
                with session.begin_nested() if isolated else contextlib.nullcontext():
                    _run_steps(ctx)
            except Exception as exc:  # this event is retried by a later drain; the rest go on
                if not isolated:
                    raise _EventFailed from exc  # session_scope rolls the whole batch back
                changes.take(session)  # what its steps noted was rolled back with them
                failed = row.attempts + 1 >= MAX_ATTEMPTS
                log.exception("outbox %s (event %s) failed", row.id, event.id)
                session.execute(
                    sa.update(t)
                    .where(t.c.id == row.id)
                    .values(
                        attempts=row.attempts + 1,
                        last_error=redact.text(repr(exc))[:2000],
                        status="failed" if failed else "pending",
                    )
                )
                outcome[row.id] = "failed" if failed else "retry"
                continue
            actions += ctx.after_commit
            done.append(row.id)
            outcome[row.id] = "done"
            if event.contact_id is not None and not event.type.startswith("msg."):
                interacted.add(event.contact_id)
        if done:
            now = utcnow()
            session.execute(
                sa.update(t)
                .where(t.c.id.in_(done))
                .values(status="done", done_at=now, attempts=t.c.attempts + 1)
            )
            session.execute(
                sa.update(e)
                .where(e.c.id.in_([r.event_id for r in rows if outcome[r.id] == "done"]))
                .values(processed_at=now)
            )
    for action in actions:
        action()
    if interacted:
        requeue.release_held_for(settings, interacted)  # they interacted: held messages may go
    return outcome


def _touches(session: Session, rows: list, events: dict[int, Event]) -> list[tuple]:
    """The deferred touches of the batch's pending events (their survivors', if merged)."""
    return [
        (contacts.resolve(session, ev.contact_id), ev.occurred_at, row.interacted_at)
        for row in rows
        if row.status == "pending"
        and row.interacted_at is not None
        and (ev := events[row.event_id]).contact_id is not None
    ]


def _run_steps(ctx: pipeline.Context) -> None:
    event = ctx.event
    steps = pipeline.STEPS if event.contact_id is not None else pipeline.SYSTEM_STEPS
    for step in steps:
        step(ctx)


def deliver_message(message_id: int) -> str:
    return delivery.deliver(load_settings(), message_id)


DELIVERY_SLICE = 1.0  # s: a batch job hands what is left to a new job after this long


YIELD_STEP, YIELD_MAX, YIELD_CHECK = 0.05, 1.0, 0.02  # s


def give_way(
    settings: Settings, sleep: Callable[[float], object] = time.sleep
) -> Callable[[], bool]:
    """Between two messages of a batch (see queue.waiting): while answers to contacts are
    behind or wakes run late, sleep in steps of YIELD_STEP, up to YIELD_MAX; when a wake is
    queued, say stop (False), so the batch hands the rest on and this worker takes the wake.
    Redis is asked at most every YIELD_CHECK."""
    last: float | None = None

    def go_on() -> bool:
        nonlocal last
        if last is not None and time.monotonic() - last < YIELD_CHECK:
            return True
        waited = 0.0
        w = queue.waiting(settings)
        while (w.behind or w.wakes_late) and not w.wakes_queued and waited < YIELD_MAX:
            sleep(YIELD_STEP)
            waited += YIELD_STEP
            w = queue.waiting(settings)
        last = time.monotonic()
        return not w.wakes_queued

    return go_on


def deliver_messages(message_ids: list[int]) -> dict[str, int]:
    """A batch (broadcasts, journeys), claimed in one transaction and sent one by one (see
    delivery.deliver_batch). After DELIVERY_SLICE seconds the rest goes back to the end of
    the job's queue, so due wakes and answers do not wait behind a long batch for a worker.
    If Redis cannot take the rest, the job fails (it is run again whole: its rows are
    ``claimed``, and no one else would send them before the sweeper's grace period)."""
    settings = load_settings()
    outcomes, rest = delivery.deliver_batch(
        settings,
        message_ids,
        until=time.monotonic() + DELIVERY_SLICE,
        between=give_way(settings),
    )
    if rest:
        job = get_current_job()
        name = job.origin if job is not None else queue.BULK
        messaging.enqueue(settings, rest, batch=len(rest), name=name, must=True)
        outcomes["handed_on"] = len(rest)
    return outcomes


def fan_out_broadcast(broadcast_id: int) -> int:
    from bot.messaging import broadcasts

    return broadcasts.fan_out(load_settings(), broadcast_id)


def decide_broadcast(broadcast_id: int) -> int:
    """A bandit broadcast's decision: weights from the explore share, then the rest."""
    from bot.messaging import broadcast_bandit

    return broadcast_bandit.decide(load_settings(), broadcast_id)


def send_mass(broadcast_id: int) -> dict[str, int]:
    """A broadcast's rows waiting for the OA mass send (see bot.messaging.mass)."""
    from bot.messaging import mass

    return mass.run(load_settings(), broadcast_id)


def sync_tags(platform: str, retry: bool = False) -> dict[str, int]:
    """Send pending tag changes (TagSync rows) to one platform: "oa" or "wecom"."""
    from bot.tagging import sync as tag_sync

    return tag_sync.run(load_settings(), platform, retry)


def wake_due(due_by: float | None = None) -> dict[str, int]:
    """Journey waits that have come due by ``due_by`` (epoch seconds) or now (see
    bot.automation.wake_jobs)."""
    from bot.automation import wakes as journey_wakes

    settings = load_settings()
    # bulk deliveries give way while its batches run late (see give_way); of the wake jobs
    # with nothing due, one waits for the next wake, the others free their workers
    token = uuid.uuid4().hex
    try:
        return journey_wakes.wake_due(
            settings,
            due_by=due_by,
            on_batch=wake_gives_way(settings),
            may_wait=lambda seconds: queue.claim_wake_idler(settings, token, seconds),
        )
    finally:
        queue.let_go_wake_idler(settings, token)


WAKE_YIELD_STEP, WAKE_YIELD_MAX = 0.02, 0.3  # s


def wake_gives_way(
    settings: Settings, sleep: Callable[[float], object] = time.sleep
) -> Callable[[float], None]:
    """Before each batch of a wake job, told how late its previous batch ran: say so when
    late (bulk deliveries pause, see queue.note_waking), and while answers to contacts are
    behind (queue.note_lag) sleep in steps of WAKE_YIELD_STEP, up to WAKE_YIELD_MAX, so the
    CPU and the database go to the drain a person waits on. A wave of waits has seconds of
    slack (its target is 2 s at p99); an answer has one."""

    def before_batch(late: float) -> None:
        for _ in range(round(WAKE_YIELD_MAX / WAKE_YIELD_STEP)):
            if not queue.note_waking(settings, late):
                return
            sleep(WAKE_YIELD_STEP)

    return before_batch


def wake_enrollment(enrollment_id: int) -> str:
    """A journey enrollment's wait or question timeout has come (see bot.automation.wakes)."""
    from bot.automation import wakes as journey_wakes

    return journey_wakes.wake(load_settings(), enrollment_id)


def send_reminders() -> int:
    """Follow-up reminders that have come due (see bot.sales.reminders)."""
    from bot.sales import reminders

    return reminders.send_due(load_settings())


def call_webhook(key: str) -> int:
    """Deliver a journey's pending webhook (its ``webhook_delivery`` row, keyed like the
    ``journey.webhook`` event) and record the outcome as ``journey.webhook_result``; no answer
    or a 5xx with attempts left raises, for rq's retry."""
    from bot.automation import webhooks as journey_webhooks

    return journey_webhooks.call(load_settings(), key)
