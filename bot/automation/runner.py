"""The journey runner: the database side of the pure engine in journeys/.

For every stored event about a contact (a pipeline step, last in bot.background.pipeline.STEPS), it advances
the contact's enrollments that wait for an event or ask a question, then starts the published
journeys whose trigger matches and whose entry rule lets the contact in; then it does the same
for the changes earlier steps noted (bot.core.changes: a tag added, the score moving). ``wake``
advances an enrollment whose ``wake_at`` has come (an rq job scheduled with ``enqueue_at``;
the sweeper re-enqueues any that Redis lost). ``answer_now`` is the web path's way in: the
reply to an open question is advanced inside the callback's transaction, so the next message
goes back as the instant passive reply.

Each command ``advance`` returns runs once: a StepRun row keyed (enrollment, step, visit, idx),
inserted with ON CONFLICT DO NOTHING in the transaction that stores the new state; only the
commands whose row was inserted are executed. ``idx`` is the enrollment's turn (derived from
the state the call started from) times 1000 plus the command's position in the call, so the
same transition run twice yields the same keys.

Enrollments run on the journey version they entered (journey_version rows never change). A
paused journey neither enrolls nor advances anyone (its due wakes run on resume); a stopped
one ends every open enrollment.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.orm import Session

import journeys
from bot.automation import webhooks as journey_webhooks
from bot.contacts import identity as contacts
from bot.contacts import record as events
from bot.core import changes, queue, redact
from bot.core.config import Settings
from bot.core.db import any_of, dialect_insert, session_scope
from bot.core.models import (
    Contact,
    ContactTag,
    Enrollment,
    Event,
    Journey,
    JourneyVersion,
    Message,
    StepRun,
    utcnow,
)
from bot.messaging import outbox as messaging
from bot.messaging.payloads import SendRequest
from bot.sales import handoff
from bot.scoring import ledger as scoring
from bot.tagging import tags as tagging
from journeys import commands as c
from journeys.engine import FINAL, REPLY_KINDS, SCORE_CHANGED, STAGE_CHANGED, TAG_ADDED
from journeys.predicates import type_matches

if TYPE_CHECKING:
    from bot.core.context import Context

log = logging.getLogger(__name__)

WAKE_DUE_JOB = "bot.background.jobs.wake_due"
WAKE_BATCH = 500
SWEEP_WAKE = "journey-wakes-sweep"
EARLY_START = 1.5  # seconds: rq's scheduler may run a job this much before its time, at most
DELIVERY_BATCH = 25  # journey sends per delivery job (answers to a contact go one by one)
WAKE_SLICE = 2.0  # seconds of waking before a job hands the rest to a fresh one
OPEN = ("active", "waiting", "asking")
UNSUBSCRIBE = "oa.unsubscribe"
# A contact leaving a journey goes on their timeline; no background step needs to see it.
TIMELINE_ONLY = frozenset({"journey.done", "journey.exited"})
MAX_CHANGE_ROUNDS = 10  # journeys that tag contacts that start journeys that tag …
After = list[Callable[[], object]]


@dataclass
class Tx:
    """One transaction's work: where commands write, and what runs after commit."""

    settings: Settings
    session: Session
    now: datetime
    after: After
    passive: list[tuple[str, dict[str, Any]]] | None = None  # the callback's reply, if any
    enrolled: set[tuple[int, int]] = field(default_factory=set)  # (journey, contact) this tx
    wakes: set[int] = field(default_factory=set)  # seconds with a wake to schedule
    deliveries: dict[bool, list[int]] = field(default_factory=dict)  # urgent? -> message ids
    sends: list[tuple[dict[str, Any], bool]] = field(default_factory=list)  # (row, urgent?)
    # In a background job: answers to the contact are delivered right after commit, in this
    # process, instead of waiting for a worker to take their job.
    inline: bool = False
    timeline: list[events.TimelineItem] = field(default_factory=list)  # done, exited
    _journeys: list[Any] | None = None

    def published(self) -> list[Any]:
        """The published journeys (id, name, version), read once per transaction."""
        if self._journeys is None:
            self._journeys = _published(self.session)
        return self._journeys

    def wake_at(self, at: datetime) -> None:
        """Schedule a wake for ``at`` after commit (one job per second, for the whole tx)."""
        if not self.wakes:
            self.after.append(lambda: enqueue_wakes(self.settings, self.wakes))
        self.wakes.add(math.ceil(at.timestamp()))

    def deliver(self, ids: list[int], urgent: bool = False) -> None:
        """Enqueue these messages' delivery after commit (one Redis pipeline per kind)."""
        if not ids:
            return
        if urgent and self.inline:
            self.after.append(functools.partial(messaging.deliver_now, self.settings, ids))
            return
        if urgent not in self.deliveries:
            self.deliveries[urgent] = []
            # answers to the contact: a job each, first in line; the rest in batches
            batch = 1 if urgent else DELIVERY_BATCH
            self.after.append(
                lambda: messaging.enqueue(
                    self.settings,
                    self.deliveries[urgent],
                    batch=batch,
                    urgent=urgent,
                    name=None if urgent else queue.QUEUE_NAME,
                )
            )
        self.deliveries[urgent].extend(ids)


# --- definitions and states ----------------------------------------------------------------


@functools.lru_cache(maxsize=512)
def _definition(journey_id: int, version: int, raw: str) -> journeys.Definition:
    return journeys.check(json.loads(raw))


_versions: dict[tuple[int, int], journeys.Definition] = {}


def definition_for(session: Session, journey_id: int, version: int) -> journeys.Definition:
    """The published definition of this journey version (versions never change: cached)."""
    key = (journey_id, version)
    found = _versions.get(key)
    if found is None:
        raw = session.execute(
            sa.select(JourneyVersion.definition).where(
                JourneyVersion.journey_id == journey_id, JourneyVersion.version == version
            )
        ).scalar()
        if raw is None:
            raise journeys.DefinitionError([journeys.Problem(None, "version", f"no v{version}")])
        found = journeys.check(raw)
        if len(_versions) > 512:
            _versions.clear()
        _versions[key] = found
    return found


def invalidate() -> None:
    """Forget the cached versions (the tests reuse journey ids; Yuchi never deletes one)."""
    _versions.clear()


def draft_of(j: Journey) -> journeys.Definition:
    return _definition(j.id, -1, json.dumps(j.definition, sort_keys=True, ensure_ascii=False))


def publish(session: Session, j: Journey, now: datetime | None = None) -> JourneyVersion | None:
    """Make the draft the journey's new version (unless it equals the latest one) and let
    contacts in. Returns the new version, or None when the draft was already published."""
    now = now or utcnow()
    latest = None
    if j.version:
        latest = session.execute(
            sa.select(JourneyVersion).where(
                JourneyVersion.journey_id == j.id, JourneyVersion.version == j.version
            )
        ).scalar()
    draft = dict(j.definition)
    if latest is not None and _same(latest.definition, draft):
        return None
    number = (j.version or 0) + 1
    draft["version"] = number
    row = JourneyVersion(journey_id=j.id, version=number, definition=draft, published_at=now)
    session.add(row)
    j.version, j.definition, j.published_at = number, draft, now
    session.add(j)
    session.flush()
    return row


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return {**a, "version": 0} == {**b, "version": 0}


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


class EventCounts(Mapping[str, int]):
    """The contact's events by type, counted on first use: only a condition on past events
    (``{event: ..., count: ...}``) needs them, and the query reads the contact's whole
    timeline."""

    def __init__(self, session: Session, contact_id: int) -> None:
        self._session, self._contact_id = session, contact_id
        self._counts: dict[str, int] | None = None

    def _load(self) -> dict[str, int]:
        if self._counts is None:
            e = Event.__table__.c
            self._counts = dict(
                self._session.execute(
                    sa.select(e.type, sa.func.count())
                    .where(e.contact_id == self._contact_id)
                    .group_by(e.type)
                ).all()
            )
        return self._counts

    def __getitem__(self, key: str) -> int:
        return self._load()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())


def snapshot(session: Session, contact_id: int) -> journeys.Contact:
    return snapshots(session, [contact_id]).get(contact_id) or journeys.Contact(id=contact_id)


def snapshots(
    session: Session,
    contact_ids: Iterable[int],
    counts: Mapping[int, Mapping[str, int]] | None = None,
) -> dict[int, journeys.Contact]:
    """The contacts as the engine sees them, in two queries. ``counts``: their events by type
    when the caller counted them in bulk (else each is counted on first use)."""
    ids = sorted(set(contact_ids))
    tags: dict[int, set[str]] = {i: set() for i in ids}
    ct, k = ContactTag.__table__.c, Contact.__table__.c
    for cid, tag in session.execute(
        sa.select(ct.contact_id, ct.tag).where(any_of(session, ct.contact_id, ids))
    ):
        tags[cid].add(tag)
    out = {}
    for r in session.execute(
        sa.select(k.id, k.name, k.fields, k.score, k.stage, k.last_seen_at).where(
            any_of(session, k.id, ids)
        )
    ):
        out[r.id] = journeys.Contact(
            id=r.id,
            name=r.name or "",
            tags=frozenset(tags[r.id]),
            fields=dict(r.fields or {}),
            score=float(r.score or 0.0),
            stage=r.stage or "subscriber",
            event_counts=counts.get(r.id, {}) if counts is not None else EventCounts(session, r.id),
            last_seen_at=r.last_seen_at,
        )
    return out


def _event_of(ev: Event) -> journeys.Event:
    return journeys.Event(type=ev.type, properties=dict(ev.properties), occurred_at=ev.occurred_at)


def _lock(session: Session, query: Any) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return query


def _lock_contact(session: Session, contact_id: int) -> None:
    """Serialize entry decisions for one contact (PostgreSQL; SQLite has one writer)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            sa.select(Contact.__table__.c.id)
            .where(Contact.__table__.c.id == contact_id)
            .with_for_update()
        )


# --- the pipeline step ---------------------------------------------------------------------


def on_event(ctx: Context) -> None:
    """Pipeline step: advance the contact's open enrollments and start matching journeys, for
    the event and then for every change the earlier steps noted."""
    ev, session = ctx.event, ctx.session
    if ev.contact_id is None:
        changes.take(session)
        return
    tx = Tx(ctx.settings, session, utcnow(), ctx.after_commit, inline=True)
    contact_id = contacts.resolve(session, ev.contact_id)
    if ev.type == UNSUBSCRIBE:
        changes.take(session)
        exit_all(session, contact_id, tx.now, "unsubscribed")
        return
    quiet = ev.source == "bot" and ev.type != STAGE_CHANGED
    handle(tx, contact_id, _event_of(ev), ev.id, quiet)
    drain_changes(tx)


def drain_changes(tx: Tx) -> None:
    for _ in range(MAX_CHANGE_ROUNDS):
        noted = changes.take(tx.session)
        if not noted:
            return
        for contact_id, type_, props in noted:
            event = journeys.Event(type=type_, properties=props, occurred_at=tx.now)
            handle(tx, contacts.resolve(tx.session, contact_id), event, None)
    dropped = changes.take(tx.session)
    if dropped:
        log.warning("journeys: %d changes left after %d rounds", len(dropped), MAX_CHANGE_ROUNDS)


def _open_enrollments(session: Session, contact_id: int, statuses: tuple[str, ...]) -> list:
    en = Enrollment.__table__.c
    return list(
        session.execute(
            _lock(
                session,
                sa.select(Enrollment)
                .where(en.contact_id == contact_id, en.status.in_(statuses))
                .order_by(en.id),
            )
        ).scalars()
    )


def _published(session: Session) -> list[Any]:
    j = Journey.__table__.c
    return list(
        session.execute(
            sa.select(j.id, j.name, j.version).where(j.status == "published").order_by(j.id)
        )
    )


def _status_of(session: Session, journey_id: int) -> str | None:
    return session.execute(
        sa.select(Journey.__table__.c.status).where(Journey.__table__.c.id == journey_id)
    ).scalar()


def _could_start(d: journeys.Definition, event_type: str, quiet: bool) -> bool:
    """Could this kind of event start the journey? (Before any snapshot is read.)"""
    t = d.trigger
    if t.on == "event":
        return type_matches(t.event or "", event_type)
    if t.on == "segment":
        return not quiet
    return event_type == {"tag_added": TAG_ADDED, "score": SCORE_CHANGED}.get(t.on, STAGE_CHANGED)


def _awaits(row: Enrollment, event_type: str) -> bool:
    """Is this enrollment waiting for this type of event?"""
    wf = (row.state or {}).get("waiting_for") or {}
    return any(type_matches(p, event_type) for p in wf.get("events") or ())


def handle(
    tx: Tx,
    contact_id: int,
    event: journeys.Event,
    event_id: int | None,
    quiet: bool = False,
) -> None:
    """Advance the open enrollments this event concerns, then enroll where a trigger fires.
    ``quiet``: an event Yuchi made (a journey's own, a delivery outcome) that cannot answer a
    question, reach a goal or enter a segment; it only concerns waits and triggers on its type.
    """
    session = tx.session
    open_ones = _open_enrollments(session, contact_id, ("waiting", "asking"))
    if quiet:
        open_ones = [r for r in open_ones if _awaits(r, event.type)]
    published = tx.published()
    if not open_ones and not published:
        return  # the common case: nothing to do, and no snapshot queries
    live = {j.id for j in published}
    contact: journeys.Contact | None = None

    def current() -> journeys.Contact:
        nonlocal contact
        if contact is None:
            contact = snapshot(session, contact_id)
        return contact

    for row in open_ones:
        if event_id is not None and row.last_event_id is not None and row.last_event_id >= event_id:
            continue  # this event (or a later one) was applied already
        if row.journey_id not in live:
            continue  # paused: nothing moves
        if event_id is not None:
            row.last_event_id = event_id
        if _advance(tx, row, event, event_id, current()):
            contact = None  # read again: the actions changed it
    for j in published:
        if (j.id, contact_id) in tx.enrolled:
            continue
        try:
            d = definition_for(session, j.id, j.version)
        except journeys.DefinitionError:
            log.exception("journey %s v%s is not valid", j.id, j.version)
            continue
        if not _could_start(d, event.type, quiet):
            continue
        if not journeys.triggered_by(d, event, current(), tx.now):
            continue
        if enroll_contact(tx, j, d, contact_id, event, event_id, current()) is not None:
            contact = None


Move = tuple[Enrollment, journeys.State, journeys.State, list[c.Command], int | None]


def _transition(
    tx: Tx, row: Enrollment, event: journeys.Event | None, contact: journeys.Contact
) -> tuple[journeys.State, journeys.State, list[c.Command]] | None:
    """The engine's move for one enrollment: (state before, state after, commands), or None
    when nothing changes."""
    try:
        d = definition_for(tx.session, row.journey_id, row.version)
    except journeys.DefinitionError:
        log.exception("enrollment %s: journey %s v%s", row.id, row.journey_id, row.version)
        return None
    state = state_from_json(row.state)
    new, cmds = journeys.advance(d, state, event, tx.now, contact)
    if new == state and not cmds:
        tx.session.add(row)
        return None
    return state, new, cmds


def _advance(
    tx: Tx,
    row: Enrollment,
    event: journeys.Event | None,
    event_id: int | None,
    contact: journeys.Contact,
) -> bool:
    """Advance one enrollment; True if anything changed."""
    move = _transition(tx, row, event, contact)
    if move is None:
        return False
    _apply(tx, [(row, *move, event_id)])
    return True


def enroll_contact(
    tx: Tx,
    j: Any,
    d: journeys.Definition,
    contact_id: int,
    event: journeys.Event | None,
    event_id: int | None,
    contact: journeys.Contact,
) -> Enrollment | None:
    """Enroll the contact if the entry rule lets them in; run the journey's first steps."""
    session = tx.session
    _lock_contact(session, contact_id)
    en = Enrollment.__table__.c
    past = session.execute(
        sa.select(en.started_at, en.ended_at).where(
            en.journey_id == j.id, en.contact_id == contact_id
        )
    ).all()
    history = [journeys.Enrollment(r.started_at, r.ended_at) for r in past]
    if not journeys.may_enter(d.trigger.entry, history, tx.now):
        return None
    row = _enroll(session, j.id, j.version, contact_id, event_id, tx.now)
    if row is None:
        return None  # enrolled on this event already (a re-run)
    tx.enrolled.add((j.id, contact_id))
    before = journeys.State()
    if event is None:
        new, cmds = journeys.enter(d, tx.now, contact)
    else:
        new, cmds = journeys.start(d, event, tx.now, contact)
    _apply(tx, [(row, before, new, cmds, event_id)])
    return row


def _enroll(
    session: Session,
    journey_id: int,
    version: int,
    contact_id: int,
    event_id: int | None,
    now: datetime,
) -> Enrollment | None:
    t = Enrollment.__table__
    new_id = session.execute(
        dialect_insert(session, t)
        .values(
            journey_id=journey_id,
            version=version,
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


def exit_all(
    session: Session,
    contact_id: int,
    now: datetime,
    reason: str,
    journey_id: int | None = None,
) -> int:
    """End the contact's open enrollments (all, or in one journey): unsubscribed, removed."""
    en = Enrollment.__table__.c
    where = [en.contact_id == contact_id]
    if journey_id is not None:
        where.append(en.journey_id == journey_id)
    return _end_open(session, where, now, reason)


def stop_journey(session: Session, journey_id: int, now: datetime, reason: str) -> int:
    """End every open enrollment of a stopped journey; returns how many."""
    return _end_open(session, [Enrollment.__table__.c.journey_id == journey_id], now, reason)


def _end_open(session: Session, where: list[Any], now: datetime, reason: str) -> int:
    query = sa.select(Enrollment).where(*where, Enrollment.__table__.c.status.in_(OPEN))
    rows = session.execute(_lock(session, query)).scalars().all()
    for row in rows:
        _end(session, row, now, reason)
    session.flush()
    return len(rows)


def _end(session: Session, row: Enrollment, now: datetime, reason: str) -> None:
    state = state_from_json(row.state)
    row.state = {**state_to_json(state), "status": "exited", "wake_at": None}
    row.status, row.wake_at, row.ended_at, row.reason = "exited", None, now, reason[:200]
    session.add(row)
    events.append(
        session,
        row.contact_id,
        "journey.exited",
        {"enrollment_id": row.id, "journey_id": row.journey_id, "reason": reason},
        dedupe_key=f"j{row.id}:exit",
        pipeline=False,
    )


# --- the web path: an open question answered in the callback -------------------------------


def has_open_question(session: Session, contact_id: int) -> bool:
    """Is a published journey waiting for this contact's answer? (Their text belongs to it,
    not to the keyword replies.)"""
    en, j = Enrollment.__table__.c, Journey.__table__.c
    contact_id = contacts.resolve(session, contact_id)
    return (
        session.execute(
            sa.select(en.id)
            .join(Journey.__table__, j.id == en.journey_id)
            .where(en.contact_id == contact_id, en.status == "asking", j.status == "published")
            .limit(1)
        ).first()
        is not None
    )


def answer_now(
    settings: Settings, session: Session, event_id: int, contact_id: int, after: After
) -> tuple[str, dict[str, Any]] | None:
    """Advance the contact's open questions with their just-stored reply, in the callback's
    transaction; the first message that follows comes back as (kind, payload) to send as the
    passive reply (it is stored as sent). The background pipeline then skips this event for
    these enrollments (``last_event_id``)."""
    ev = session.get(Event, event_id)
    tx = Tx(settings, session, utcnow(), after, passive=[])
    cid = contacts.resolve(session, contact_id)
    contact = snapshot(session, cid)
    event = _event_of(ev)
    for row in _open_enrollments(session, cid, ("asking",)):
        if _status_of(session, row.journey_id) != "published":
            continue
        row.last_event_id = event_id
        if _advance(tx, row, event, event_id, contact):
            contact = snapshot(session, cid)
    drain_changes(tx)  # tags its steps gave may start other journeys
    return tx.passive[0] if tx.passive else None


# --- applying a transition -----------------------------------------------------------------


def _apply(tx: Tx, moves: list[Move]) -> None:
    """Store the new states, claim every command in one statement, run the claimed ones in
    order; the sends they make are inserted together at the end."""
    session = tx.session
    for row, _before, new, cmds, _event_id in moves:
        _store(tx, row, new, cmds)
    session.flush()
    planned = [
        (row, cmd, _turn(before) * 1000 + pos, event_id)
        for row, before, _new, cmds, event_id in moves
        for pos, cmd in enumerate(cmds)
    ]
    claimed = _claim(session, [(row.id, cmd, idx) for row, cmd, idx, _ in planned], tx.now)
    for row, cmd, idx, event_id in planned:
        if (row.id, cmd.step, cmd.visit, idx) in claimed:
            _execute(tx, row, cmd, idx, event_id)
    _insert_buffered(tx)


def _store(tx: Tx, row: Enrollment, new: journeys.State, cmds: list[c.Command]) -> None:
    row.state = state_to_json(new)
    row.step = new.step
    row.status = new.status
    row.wake_at = new.wake_at if new.status in ("waiting", "asking") else None
    if new.status in FINAL and row.ended_at is None:
        row.ended_at = tx.now
        ending = next((x for x in reversed(cmds) if isinstance(x, c.Exit | c.Converted)), None)
        if isinstance(ending, c.Exit):
            row.reason = ending.reason[:200]
        elif isinstance(ending, c.Converted):
            row.reason = f"goal: {ending.goal}"[:200]


def _claim(
    session: Session, items: list[tuple[int, c.Command, int]], now: datetime
) -> set[tuple[int, str, int, int]]:
    """Insert the StepRun rows; returns the keys (enrollment, step, visit, idx) this call
    inserted: the commands it may run. The caller holds these enrollments' rows (locked, or
    just inserted), so the keys stored already are read first and the rest inserted in one
    executemany (ON CONFLICT DO NOTHING all the same)."""
    if not items:
        return set()
    t = StepRun.__table__
    keys = [(eid, cmd.step, cmd.visit, idx) for eid, cmd, idx in items]
    ids = sorted({eid for eid, _cmd, _idx in items})
    stored = {
        tuple(r)
        for r in session.execute(
            sa.select(t.c.enrollment_id, t.c.step, t.c.visit, t.c.idx).where(
                any_of(session, t.c.enrollment_id, ids), t.c.idx >= min(k[3] for k in keys)
            )
        )
    }
    new = [(k, cmd) for k, (_eid, cmd, _idx) in zip(keys, items, strict=True) if k not in stored]
    if new:
        stmt = dialect_insert(session, t).on_conflict_do_nothing(
            index_elements=["enrollment_id", "step", "visit", "idx"]
        )
        session.execute(
            stmt,
            [
                {
                    "enrollment_id": k[0],
                    "step": k[1],
                    "visit": k[2],
                    "idx": k[3],
                    "kind": type(cmd).__name__,
                    "created_at": now,
                }
                for k, cmd in new
            ],
        )
    return {k for k, _cmd in new}  # type: ignore[misc]


def _key(row: Enrollment, cmd: c.Command, idx: int) -> str:
    return f"j{row.id}:{cmd.step}:{cmd.visit}:{idx}"


def _journey_name(session: Session, journey_id: int) -> str:
    return (
        session.execute(
            sa.select(Journey.__table__.c.name).where(Journey.__table__.c.id == journey_id)
        ).scalar()
        or f"#{journey_id}"
    )


def _execute(tx: Tx, row: Enrollment, cmd: c.Command, idx: int, event_id: int | None) -> None:
    session, settings, after, cid = tx.session, tx.settings, tx.after, row.contact_id
    if isinstance(cmd, c.Send):
        _send(tx, row, cmd, idx, event_id)
    elif isinstance(cmd, c.AddTag):
        tagging.add_tag(session, cid, cmd.tag, "journey", f"journey:{row.journey_id}")
        after.append(functools.partial(tagging.kick_sync, settings, session))
    elif isinstance(cmd, c.RemoveTag):
        tagging.remove_tag(session, cid, cmd.tag)
        after.append(functools.partial(tagging.kick_sync, settings, session))
    elif isinstance(cmd, c.SetStage):
        by = f"journey {_journey_name(session, row.journey_id)}"
        change = scoring.set_stage(session, cid, cmd.stage, by=by, manual=False)
        if change.outbox_id is not None:
            after.append(functools.partial(scoring.kick, settings, [change.outbox_id]))
    elif isinstance(cmd, c.SetField):
        _set_field(session, cid, cmd.field, cmd.value)
        _record(tx, row, cmd, idx, "journey.field")
    elif isinstance(cmd, c.AddPoints):
        # scoring turns this event into a ledger line (score_rules.DIRECT_POINTS)
        _record(tx, row, cmd, idx, "journey.points")
    elif isinstance(cmd, c.HandOff):
        reason = f"journey {_journey_name(session, row.journey_id)}"
        reason += f": {cmd.note}" if cmd.note else ""
        assignment = handoff.assign(session, cid, reason[:150])
        if assignment is not None:
            after.append(functools.partial(handoff.notify, settings, assignment.id))
        after.append(functools.partial(queue.kick_outbox, settings))
    elif isinstance(cmd, c.NotifyRep):
        _notify_rep(tx, row, cmd, idx)
    elif isinstance(cmd, c.CallWebhook):
        outbox_id = _record(tx, row, cmd, idx, "journey.webhook")
        if outbox_id is not None:  # a new key: the delivery row is the truth, its job follows
            key = _key(row, cmd, idx)
            journey_webhooks.record_pending(session, cid, key, cmd.url, cmd.body)
            after.append(functools.partial(_enqueue_webhook, settings, key))
    elif isinstance(cmd, c.EnterJourney):
        _enter_other(tx, row, cmd, idx)
    elif isinstance(cmd, c.Schedule):
        tx.wake_at(cmd.wake_at)
    elif isinstance(cmd, c.Exit | c.Converted):
        _record(tx, row, cmd, idx, "journey." + row.status)
    elif isinstance(cmd, c.Answered):
        _record(tx, row, cmd, idx, "journey.answer")
    else:
        _record(tx, row, cmd, idx, "journey.unknown_command")


def _props(cmd: c.Command) -> dict[str, Any]:
    data = asdict(cmd)
    for k, v in list(data.items()):
        if isinstance(v, datetime):
            data[k] = v.isoformat()
    return data


def _record(tx: Tx, row: Enrollment, cmd: c.Command, idx: int, type_: str) -> int | None:
    props = {"enrollment_id": row.id, "journey_id": row.journey_id, **_props(cmd)}
    if isinstance(cmd, c.Answered):
        props["attribute"] = cmd.key
    if type_ in TIMELINE_ONLY:  # stored with the others at the end (_insert_buffered)
        tx.timeline.append((row.contact_id, type_, props, _key(row, cmd, idx)))
        return None
    outbox_id = events.append(tx.session, row.contact_id, type_, props, _key(row, cmd, idx))
    if outbox_id is not None:
        tx.after.append(functools.partial(queue.kick_outbox, tx.settings))
    return outbox_id


def _set_field(session: Session, contact_id: int, name: str, value: Any) -> None:
    k = session.execute(_lock(session, sa.select(Contact).where(Contact.id == contact_id))).scalar()
    if k is None:
        return
    k.fields = {**(k.fields or {}), name: value}
    session.add(k)
    session.flush()


def _notify_rep(tx: Tx, row: Enrollment, cmd: c.NotifyRep, idx: int) -> None:
    session = tx.session
    k = session.get(Contact, row.contact_id)
    rep = cmd.rep or (k.owner_userid if k else None)
    if not rep:
        props = {"enrollment_id": row.id, "step": cmd.step, "error": "没有负责的销售"}
        events.append(session, row.contact_id, "journey.notify_failed", props, _key(row, cmd, idx))
        tx.after.append(functools.partial(queue.kick_outbox, tx.settings))
        return
    name = (k.name if k else None) or f"客户 #{row.contact_id}"
    req = SendRequest.model_validate(
        {
            "kind": "wecom_text",
            "to_user": [rep],
            "payload": {"content": f"【{name}】{cmd.message}"[:2048]},
            "idempotency_key": _key(row, cmd, idx),
        }
    )
    ids = messaging.insert_messages(session, [messaging.new_message_row(req)])
    tx.deliver(ids)
    _record(tx, row, cmd, idx, "journey.notify_rep")


def _enter_other(tx: Tx, row: Enrollment, cmd: c.EnterJourney, idx: int) -> None:
    """Start another published journey (by name or definition id) for this contact."""
    session = tx.session
    found = None
    for j in tx.published():
        try:
            d = definition_for(session, j.id, j.version)
        except journeys.DefinitionError:
            continue
        if cmd.journey in (j.name, d.id):
            found = (j, d)
            break
    if found is None:
        props = {"enrollment_id": row.id, "step": cmd.step, "journey": cmd.journey}
        props["error"] = "no published journey with this name"
        events.append(session, row.contact_id, "journey.enter_failed", props, _key(row, cmd, idx))
        tx.after.append(functools.partial(queue.kick_outbox, tx.settings))
        return
    j, d = found
    _record(tx, row, cmd, idx, "journey.enter")
    enroll_contact(tx, j, d, row.contact_id, None, None, snapshot(session, row.contact_id))


def _send(tx: Tx, row: Enrollment, cmd: c.Send, idx: int, event_id: int | None) -> None:
    session, key = tx.session, _key(row, cmd, idx)
    conversational = event_id is not None  # in answer to the contact's own event
    try:
        req = SendRequest.model_validate(
            {
                "kind": cmd.kind,
                "payload": dict(cmd.payload),
                "contact_id": row.contact_id,
                "idempotency_key": key,
                "marketing": not conversational,
                "outside_window": cmd.outside_window,
                "fallback": cmd.fallback,
                "reply_to_event_id": event_id if conversational else None,
            }
        )
    except ValidationError as exc:
        log.warning("journey send %s not valid: %s", key, exc)
        props = {"enrollment_id": row.id, "step": cmd.step, "error": redact.text(str(exc))[:500]}
        events.append(session, row.contact_id, "journey.send_invalid", props, key)
        tx.after.append(functools.partial(queue.kick_outbox, tx.settings))
        return
    new = messaging.new_message_row(req)
    passive = tx.passive is not None and not tx.passive and cmd.reply and cmd.kind in REPLY_KINDS
    if not passive:
        tx.sends.append((new, conversational))  # inserted with the others (_insert_buffered)
        return
    assert tx.passive is not None
    new.update(status="sent", sent_kind="passive", sent_at=tx.now, attempts=1)
    ids = messaging.insert_messages(session, [new])
    if not ids:
        return
    tx.passive.append((req.kind, req.payload))
    m = session.get(Message, ids[0])
    outbox_id = messaging.record_message_event(session, m, "msg.sent", {"passive": True})
    if outbox_id is not None:
        tx.after.append(functools.partial(queue.kick_outbox, tx.settings))


def _insert_buffered(tx: Tx) -> None:
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


def _enqueue_webhook(settings: Settings, key: str) -> None:
    try:
        journey_webhooks.enqueue(settings, key)
    except queue.REDIS_ERRORS as exc:
        log.warning("journey webhook %s not enqueued (%s); the sweeper will", key, exc)


# --- waking --------------------------------------------------------------------------------
#
# A wait is its enrollment's ``wake_at``. Wakes are delivered by one rq job per second of due
# time (``journey-wakes-<epoch>``, scheduled with enqueue_at): whichever runs first advances
# every enrollment due by then, in batches (SKIP LOCKED on PostgreSQL splits them between
# workers), so 100,000 waits that end in the same minute cost sixty jobs, not 100,000.


def wake_bucket_id(epoch: int) -> str:
    return f"journey-wakes-{epoch}"


def enqueue_wakes(settings: Settings, epochs: Iterable[int]) -> bool:
    """Schedule the wake job for each second (deterministic ids, skipped when alive); False if
    Redis is down (the sweeper finds the overdue rows)."""
    try:
        q = queue.get_queue(settings, queue.WAKES)
        for epoch in sorted(set(epochs)):
            job_id = wake_bucket_id(epoch)
            if queue.job_alive(settings, job_id):
                continue
            queue.drop_job(settings, job_id)
            at = datetime.fromtimestamp(epoch, UTC)
            q.enqueue_at(at, WAKE_DUE_JOB, epoch, job_id=job_id, result_ttl=300, job_timeout=3600)
    except queue.REDIS_ERRORS as exc:
        log.warning("journey wakes not enqueued (%s); the sweeper will", exc)
        return False
    return True


def enqueue_wake(settings: Settings, at: datetime) -> bool:
    return enqueue_wakes(settings, [math.ceil(at.timestamp())])


def _live_waits(*columns: Any) -> Any:
    """SELECT ``columns`` over the enrollments waiting (or asking) in published journeys."""
    en, j = Enrollment.__table__.c, Journey.__table__.c
    return (
        sa.select(*columns)
        .select_from(Enrollment.__table__.join(Journey.__table__, j.id == en.journey_id))
        .where(en.status.in_(("waiting", "asking")), j.status == "published")
    )


def _due_batch(session: Session, now: datetime, limit: int) -> list[Enrollment]:
    en = Enrollment.__table__.c
    query = _live_waits(Enrollment).where(en.wake_at <= now).order_by(en.wake_at).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=Enrollment)
    return list(session.execute(query).scalars())


def _resync(row: Enrollment, now: datetime) -> None:
    """A due row the engine did not move: its wake_at column disagrees with its state (set by
    hand?). Take the state's, so it is not picked again and again."""
    wake = state_from_json(row.state).wake_at
    log.warning("enrollment %s was due at %s but its state says %s", row.id, row.wake_at, wake)
    row.wake_at = wake if wake is not None and wake > now else None


def _continue_wakes(settings: Settings) -> None:
    try:
        queue.get_queue(settings, queue.WAKES).enqueue(
            WAKE_DUE_JOB, job_id=f"journey-wakes-more-{uuid.uuid4().hex[:12]}", result_ttl=60
        )
    except queue.REDIS_ERRORS as exc:
        log.warning("journey wakes: continuation not enqueued (%s); the sweeper will", exc)


def wake_due(
    settings: Settings,
    batch: int = WAKE_BATCH,
    due_by: float | None = None,
    on_batch: Callable[[], object] | None = None,
) -> dict[str, int]:
    """Advance every enrollment whose wake_at has come, ``batch`` per transaction, until none
    is left. ``due_by``: the second this job was scheduled for; rq may start it a little early,
    so it waits for that second first. ``on_batch`` runs before each batch. Idempotent: a row
    already advanced is no longer due."""
    out = {"batches": 0, "woken": 0}
    early = (due_by - time.time()) if due_by is not None else 0.0
    if 0 < early <= EARLY_START:
        time.sleep(early + 0.01)
    started = time.monotonic()
    while True:
        if on_batch is not None:
            on_batch()
        after: After = []
        now = utcnow()
        later = 0  # rows of a contact already moved in this batch
        with session_scope(settings.database_url) as session:
            rows = _due_batch(session, now, batch)
            if not rows:
                return out
            contacts_now = snapshots(session, (r.contact_id for r in rows))
            tx = Tx(settings, session, now, after)
            moves: list[Move] = []
            seen: set[int] = set()
            for row in rows:
                if row.contact_id in seen:
                    later += 1  # the next batch: with the contact as this one left it
                    continue
                contact = contacts_now.get(row.contact_id)
                move = None if contact is None else _transition(tx, row, None, contact)
                if move is None:
                    _resync(row, now)
                    continue
                seen.add(row.contact_id)
                moves.append((row, *move, None))
            _apply(tx, moves)
            drain_changes(tx)
        for action in after:
            action()
        out["batches"] += 1
        out["woken"] += len(rows) - later
        if time.monotonic() - started > WAKE_SLICE:
            # let the worker look at the urgent queue (answers to contacts) in between
            _continue_wakes(settings)
            return out


def wake(settings: Settings, enrollment_id: int, now: datetime | None = None) -> str:
    """Advance an enrollment whose wake_at has come (event None). Idempotent: an early, a
    repeated or a stale call changes nothing. Returns the enrollment's status, or "missing",
    "not_due", "paused"."""
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
        if _status_of(session, row.journey_id) != "published":
            return "paused"
        tx = Tx(settings, session, now, after)
        _advance(tx, row, None, None, snapshot(session, row.contact_id))
        drain_changes(tx)
        status = row.status
    for action in after:
        action()
    return status


def sweep(settings: Settings, grace: timedelta = timedelta(minutes=1)) -> int:
    """If any wake (of a published journey) is overdue by more than ``grace`` and no sweep's
    wake job is alive, enqueue one now (Redis lost the scheduled one, or no worker ran).
    Returns how many overdue wakes it enqueued a job for (0: none, or one is on its way)."""
    cutoff = utcnow() - grace
    with session_scope(settings.database_url) as session:
        overdue = session.execute(
            _live_waits(sa.func.count()).where(Enrollment.__table__.c.wake_at < cutoff)
        ).scalar_one()
    if not overdue or queue.job_alive(settings, SWEEP_WAKE):
        return 0
    queue.drop_job(settings, SWEEP_WAKE)
    queue.get_queue(settings, queue.WAKES).enqueue(WAKE_DUE_JOB, job_id=SWEEP_WAKE, result_ttl=60)
    return overdue


def resume_due(settings: Settings, journey_id: int) -> int:
    """After a resume: wake what came due while the journey was paused (returns how many)."""
    en = Enrollment.__table__.c
    with session_scope(settings.database_url) as session:
        due = session.execute(
            sa.select(sa.func.count()).where(
                en.journey_id == journey_id,
                en.status.in_(("waiting", "asking")),
                en.wake_at <= utcnow(),  # the others' jobs are scheduled (or the sweeper's)
            )
        ).scalar_one()
    if due:
        enqueue_wakes(settings, [math.floor(utcnow().timestamp())])
    return due
