"""Lead scoring on the database: the active rule set, the ledger (``score_entry``), stages and
recomputes. The rules and the arithmetic are pure, in bot/scoring/rules.py.

- ``Contact.score`` is the contact's ledger sum under the active version, *undecayed*, kept
  incrementally (each line written is added to it); ``score_updated_at`` is when it last
  changed. The score shown is that sum decayed to the moment it is read (``explain``): decay
  depends on the reader's clock, so it is never written.
- "Last activity" for decay is the later of ``Contact.last_interaction_at`` and the contact's
  last line with positive points (reading an article, ``oa.view``, is activity although it does
  not open WeChat's 48-hour window).
- A contact's ledger under a version begins with a zero-point ``@ledger`` marker line, written
  when the ledger is built from the contact's whole history: by a recompute, or by the first
  event of that contact scored under the version. Lines are only ever added to a built ledger,
  so a score never mixes versions, and publishing a version is safe while events flow. The
  marker's event_id is minus the contact's id, so a One ID merge can move two ledgers into one
  contact without a clash (it then recomputes the survivor).
- Every write holds the contact's row lock (``FOR UPDATE``), so two workers scoring the same
  contact take turns and caps hold.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bot.contacts import record as events
from bot.core import changes, queue
from bot.core.config import Settings, load_settings
from bot.core.db import dialect_insert, session_scope
from bot.core.models import Contact, Event, ScoreEntry, ScoringRuleSet, utcnow
from bot.scoring import rules as score_rules
from bot.scoring.rules import MARKER, ReplayedEvent, RuleSet, cents

if TYPE_CHECKING:
    from bot.core.context import Context

log = logging.getLogger(__name__)

DEFAULT_RULES = Path(__file__).parent.parent / "defaults" / "scoring.yaml"
STAGE_CHANGED = "contact.stage_changed"
RECOMPUTE_JOB = "bot.scoring.ledger.recompute_job"
BATCH = 500  # contacts per recompute transaction

C = Contact.__table__
E = Event.__table__
S = ScoreEntry.__table__
R = ScoringRuleSet.__table__
LEDGER_KEY = ["contact_id", "event_id", "rule_id", "ruleset_version"]

# The per-event statements, built once (building a statement costs more than running it).
_ACTIVE = (
    sa.select(R.c.version, R.c.created_at)
    .where(R.c.active.is_(True))
    .order_by(R.c.version.desc())
    .limit(1)
)
_LOCK_ONE = (
    sa.select(C.c.id, C.c.score, C.c.stage, C.c.stage_manual)
    .where(C.c.id == sa.bindparam("cid"))
    .with_for_update()
)
_TOTALS = (
    sa.select(
        S.c.rule_id,
        sa.func.sum(
            sa.case(
                (
                    sa.and_(
                        S.c.occurred_at >= sa.bindparam("start"),
                        S.c.occurred_at < sa.bindparam("end"),
                    ),
                    S.c.points,
                ),
                else_=0.0,
            )
        ),
        sa.func.sum(S.c.points),
    )
    .where(S.c.contact_id == sa.bindparam("cid"), S.c.ruleset_version == sa.bindparam("v"))
    .group_by(S.c.rule_id)
)
_SET_SCORE = (
    sa.update(C)
    .where(C.c.id == sa.bindparam("_id"))
    .values(
        score=sa.bindparam("_score"),
        score_updated_at=sa.bindparam("_now"),
        stage=sa.bindparam("_stage"),
    )
)
_INSERT_LINES = {
    name: insert(S).on_conflict_do_nothing(index_elements=LEDGER_KEY).returning(S.c.rule_id)
    for name, insert in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
}


class UnknownContact(Exception):
    pass


# --- the active rule set -------------------------------------------------------------------


@dataclass(frozen=True)
class Active:
    version: int
    rules: RuleSet
    created_at: datetime


# Parsed rule sets by (database, version, created_at). A version's rules never change, so
# nothing here goes stale; the active version itself is read on every use (one small query),
# which keeps every process on the same version the moment a new one is published.
_parsed: dict[tuple[str, int, datetime], RuleSet] = {}
_parsed_lock = threading.Lock()


def default_rules() -> RuleSet:
    return score_rules.parse_yaml(DEFAULT_RULES.read_text(encoding="utf-8"))


def install(session: Session, rules: RuleSet) -> int | None:
    """Make ``rules`` version 1 if there is no rule set yet; None if there is one."""
    if session.execute(sa.select(R.c.version).limit(1)).first() is not None:
        return None
    return session.execute(
        dialect_insert(session, R)
        .values(version=1, rules=rules.to_json(), active=True, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["version"])
        .returning(R.c.version)
    ).scalar()


def active(session: Session) -> Active:
    """The active rule set; the default one is installed as version 1 on first use."""
    row = session.connection().execute(_ACTIVE).first()
    if row is None:
        install(session, default_rules())
        row = session.connection().execute(_ACTIVE).first()
        if row is None:
            raise RuntimeError("scoring_ruleset has versions but none is active")
    key = (str(session.get_bind().url), row.version, row.created_at)
    rules = _parsed.get(key)
    if rules is None:
        data = session.execute(sa.select(R.c.rules).where(R.c.version == row.version)).scalar_one()
        rules = RuleSet.model_validate(data)
        with _parsed_lock:
            _parsed[key] = rules
    return Active(row.version, rules, row.created_at)


def publish(session: Session, rules: RuleSet) -> int:
    """Store ``rules`` as a new version and make it the active one (the caller commits, then
    calls ``enqueue_recompute``)."""
    if session.get_bind().dialect.name == "postgresql":  # one publisher at a time
        session.execute(sa.text("SELECT pg_advisory_xact_lock(7271001)"))
    session.execute(sa.update(R).where(R.c.active.is_(True)).values(active=False))
    version = (session.execute(sa.select(sa.func.max(R.c.version))).scalar() or 0) + 1
    session.execute(
        sa.insert(R).values(
            version=version, rules=rules.to_json(), active=True, created_at=utcnow()
        )
    )
    return version


def ruleset_json(act: Active) -> dict[str, Any]:
    return {
        "version": act.version,
        "active": True,
        "created_at": act.created_at.isoformat(),
        "rules": act.rules.to_json(),
    }


def recompute_job_id(version: int) -> str:
    return f"scoring-recompute-v{version}"


def enqueue_recompute(settings: Settings, version: int) -> bool:
    """Queue the full recompute for ``version``; False (logged) when Redis is unreachable."""
    try:
        queue.get_queue(settings, queue.BULK).enqueue(
            RECOMPUTE_JOB,
            version,
            job_id=recompute_job_id(version),
            job_timeout=24 * 3600,
            result_ttl=7 * 24 * 3600,
            failure_ttl=7 * 24 * 3600,
        )
    except queue.REDIS_ERRORS as exc:
        log.warning(
            "scoring recompute v%s not enqueued (%s): run `yuchi scoring recompute`", version, exc
        )
        return False
    return True


def kick(settings: Settings, outbox_ids: Sequence[int]) -> None:
    """After commit: have the background path pick up the events this module appended."""
    if outbox_ids:
        queue.kick_outbox(settings)


# --- writing the ledger --------------------------------------------------------------------


@dataclass
class Built:
    contacts: int = 0
    events: int = 0
    lines: int = 0
    stage_changes: int = 0
    outbox_ids: list[int] = field(default_factory=list)


def _lock_contacts(session: Session, ids: Sequence[int]) -> list[Any]:
    if len(ids) == 1:
        return list(session.connection().execute(_LOCK_ONE, {"cid": ids[0]}))
    return list(
        session.execute(
            sa.select(C.c.id, C.c.score, C.c.stage, C.c.stage_manual)
            .where(C.c.id.in_(ids))
            .order_by(C.c.id)
            .with_for_update()
        )
    )


def _stage_event(
    session: Session,
    contact_id: int,
    old: str,
    new: str,
    score: float,
    reason: str,
    dedupe_key: str | None,
    **extra: Any,
) -> int | None:
    props = {"from": old, "to": new, "score": score, "reason": reason, **extra}
    return events.append(session, contact_id, STAGE_CHANGED, props, dedupe_key)


def _threshold_reason(rules: RuleSet, stage: str, raw: int) -> str:
    if stage in ("lead", "mql", "sql"):
        return f"score {raw / 100:g} reached the {stage} threshold {getattr(rules.stages, stage):g}"
    return f"rule set stage {stage}"


def _replayable(rows: Iterable[Any]) -> dict[int, list[ReplayedEvent]]:
    by_contact: dict[int, list[ReplayedEvent]] = defaultdict(list)
    for r in rows:
        by_contact[r.contact_id].append(ReplayedEvent(r.id, r.type, r.properties, r.occurred_at))
    return by_contact


def _contact_events(session: Session, ids: Sequence[int]) -> Any:
    return session.execute(
        sa.select(E.c.id, E.c.contact_id, E.c.type, E.c.properties, E.c.occurred_at)
        .where(E.c.contact_id.in_(ids))
        .order_by(E.c.contact_id, E.c.occurred_at, E.c.id)
    ).all()


def _write_lines(session: Session, rows: list[tuple]) -> None:
    """Insert ledger rows (tuples in COLUMNS order): COPY on PostgreSQL, else executemany."""
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        raw = session.connection().connection.driver_connection
        cols = ", ".join(COLUMNS)
        with raw.cursor() as cur, cur.copy(f"COPY score_entry ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    session.execute(sa.insert(S), [dict(zip(COLUMNS, row, strict=True)) for row in rows])


COLUMNS = (
    "contact_id",
    "event_id",
    "rule_id",
    "ruleset_version",
    "points",
    "reason",
    "occurred_at",
    "created_at",
)


def _build(session: Session, act: Active, contacts: Sequence[Any], now: datetime) -> Built:
    """Rebuild the ledgers of locked ``contacts`` under ``act`` from all their events."""
    out = Built(contacts=len(contacts))
    if not contacts:
        return out
    ids = [c.id for c in contacts]
    history = _replayable(_contact_events(session, ids))
    session.execute(sa.delete(S).where(S.c.contact_id.in_(ids), S.c.ruleset_version == act.version))
    rows: list[tuple] = []
    updates: list[dict[str, Any]] = []
    for c in contacts:
        evs = history.get(c.id, [])
        out.events += len(evs)
        result = score_rules.replay(act.rules, evs, c.stage, c.stage_manual)
        marker = (c.id, -c.id, MARKER, act.version, 0.0, f"built from {len(evs)} events", now, now)
        rows.append(marker)
        rows += [
            (c.id, ev.key, ln.rule_id, act.version, ln.points, ln.reason, ev.occurred_at, now)
            for ev, ln in result.lines
        ]
        out.lines += len(result.lines)
        if result.raw_cents != cents(c.score) or result.stage != c.stage:
            updates.append(
                {"_id": c.id, "_score": result.raw_cents / 100, "_now": now, "_stage": result.stage}
            )
        if result.stage != c.stage:
            out.stage_changes += 1
            cause = result.changed_by
            outbox_id = _stage_event(
                session,
                c.id,
                c.stage,
                result.stage,
                result.raw_cents / 100,
                _threshold_reason(act.rules, result.stage, result.raw_cents)
                + f" (ledger rebuilt under version {act.version})",
                f"stage:{c.id}:v{act.version}:{result.stage}",
                by="rules",
                ruleset_version=act.version,
                event_id=cause.key if cause else None,
            )
            if outbox_id is not None:
                out.outbox_ids.append(outbox_id)
    _write_lines(session, rows)
    if updates:
        session.connection().execute(_SET_SCORE, updates)
    return out


def _totals(session: Session, act: Active, contact_id: int, ev: Event) -> dict:
    """What each rule has given the contact under ``act``: on the event's local day, and ever."""
    start, end = act.rules.day_bounds(act.rules.day_of(ev.occurred_at))
    rows = session.connection().execute(
        _TOTALS, {"cid": contact_id, "v": act.version, "start": start, "end": end}
    )
    return {r[0]: score_rules.Totals(r[1] or 0.0, r[2] or 0.0) for r in rows}


def score_event(session: Session, act: Active, contact: Any, ev: Event, now: datetime) -> Built:
    """Score one stored event for its locked contact (incrementally, once its ledger is built)."""
    rules = act.rules
    history = _totals(session, act, contact.id, ev)
    if MARKER not in history:  # first event under this version: build from the whole history
        built = _build(session, act, [contact], now)
        after = session.execute(sa.select(C.c.score).where(C.c.id == contact.id)).scalar()
        if after is not None and cents(after) != cents(contact.score):
            changes.note(
                session, contact.id, changes.SCORE_CHANGED, {"from": contact.score, "to": after}
            )
        return built
    lines = score_rules.points_for(rules, ev.type, ev.properties, history)
    out = Built(contacts=1, events=1)
    if not lines:
        return out
    # One cached statement run for each line (insertmanyvalues): a line already written by an
    # earlier run of this event is skipped and not returned.
    inserted = (
        session.connection()
        .execute(
            _INSERT_LINES[session.get_bind().dialect.name],
            [
                {
                    "contact_id": contact.id,
                    "event_id": ev.id,
                    "rule_id": ln.rule_id,
                    "ruleset_version": act.version,
                    "points": ln.points,
                    "reason": ln.reason,
                    "occurred_at": ev.occurred_at,
                    "created_at": now,
                }
                for ln in lines
            ],
        )
        .scalars()
    )
    new_ids = set(inserted)
    written = [ln for ln in lines if ln.rule_id in new_ids]  # a re-run writes nothing
    if not written:
        return out
    out.lines = len(written)
    raw = cents(contact.score) + sum(cents(ln.points) for ln in written)
    stage = score_rules.next_stage(rules, contact.stage, contact.stage_manual, raw, written)
    session.connection().execute(
        _SET_SCORE, {"_id": contact.id, "_score": raw / 100, "_now": now, "_stage": stage}
    )
    changes.note(
        session, contact.id, changes.SCORE_CHANGED, {"from": contact.score, "to": raw / 100}
    )
    if stage != contact.stage:
        out.stage_changes = 1
        explicit = next((ln for ln in written if ln.set_stage), None)
        reason = (
            f"rule {explicit.rule_id} sets stage {stage}"
            if explicit
            else _threshold_reason(rules, stage, raw)
        )
        outbox_id = _stage_event(
            session,
            contact.id,
            contact.stage,
            stage,
            raw / 100,
            reason,
            f"stage:{contact.id}:{ev.id}:v{act.version}:{stage}",
            by="rules",
            ruleset_version=act.version,
            event_id=ev.id,
            rules=[ln.rule_id for ln in written],
        )
        if outbox_id is not None:
            out.outbox_ids.append(outbox_id)
    return out


def on_event(ctx: Context) -> None:
    """Pipeline step: score the event, move the stage, record the change."""
    session, ev = ctx.session, ctx.event
    if ev.contact_id is None or not active(session).rules.can_score(ev.type, ev.properties):
        return  # the common case costs one small query and no lock
    locked = _lock_contacts(session, [ev.contact_id])
    if not locked:
        return
    act = active(session)  # read again under the lock: a version published meanwhile wins
    if not act.rules.can_score(ev.type, ev.properties):
        return
    built = score_event(session, act, locked[0], ev, utcnow())
    if built.outbox_ids:
        ctx.after_commit.append(functools.partial(kick, ctx.settings, built.outbox_ids))


# --- recompute -----------------------------------------------------------------------------


@dataclass
class Recomputed:
    version: int
    contacts: int = 0
    events: int = 0
    lines: int = 0
    stage_changes: int = 0
    seconds: float = 0.0
    superseded: bool = False  # a newer version was published while this ran

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _id_batches(
    settings: Settings, contact_ids: Sequence[int] | None, size: int
) -> Iterator[list[int]]:
    if contact_ids is not None:
        ids = sorted(set(contact_ids))
        for i in range(0, len(ids), size):
            yield ids[i : i + size]
        return
    last = 0
    while True:
        with session_scope(settings.database_url) as s:
            ids = list(
                s.execute(
                    sa.select(C.c.id).where(C.c.id > last).order_by(C.c.id).limit(size)
                ).scalars()
            )
        if not ids:
            return
        yield ids
        last = ids[-1]


def recompute(
    settings: Settings,
    contact_ids: Sequence[int] | None = None,
    progress: Callable[[Recomputed], None] | None = None,
    batch: int = BATCH,
) -> Recomputed:
    """Rebuild the ledgers (and scores, and stages, forward only) of ``contact_ids`` (default:
    every contact) under the active version, ``batch`` contacts per transaction."""
    started = time.monotonic()
    with session_scope(settings.database_url) as s:
        version = active(s).version
    result = Recomputed(version)
    for ids in _id_batches(settings, contact_ids, batch):
        with session_scope(settings.database_url) as s:
            locked = _lock_contacts(s, ids)
            act = active(s)
            if act.version != version:
                result.superseded = True
                break
            built = _build(s, act, locked, utcnow())
        kick(settings, built.outbox_ids)
        result.contacts += built.contacts
        result.events += built.events
        result.lines += built.lines
        result.stage_changes += built.stage_changes
        result.seconds = time.monotonic() - started
        if progress:
            progress(result)
    result.seconds = time.monotonic() - started
    return result


def recompute_job(version: int) -> dict[str, Any]:
    """rq job queued by a publish: recompute everyone, unless a newer version took over."""
    settings = load_settings()
    with session_scope(settings.database_url) as s:
        if active(s).version != version:
            return {"version": version, "superseded": True}
    return recompute(settings).as_dict()


# --- reading: explain, verify --------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _ledger(session: Session, act: Active, contact_id: int) -> tuple[list[dict], bool]:
    """The contact's lines under ``act`` (oldest first) and whether the ledger is built; an
    unbuilt one is replayed in memory (nothing written)."""
    rows = session.execute(
        sa.select(
            S.c.id,
            S.c.event_id,
            S.c.rule_id,
            S.c.points,
            S.c.reason,
            S.c.occurred_at,
            E.c.type,
        )
        .select_from(S.outerjoin(E, E.c.id == S.c.event_id))
        .where(S.c.contact_id == contact_id, S.c.ruleset_version == act.version)
        .order_by(S.c.occurred_at, S.c.id)
    ).all()
    built = any(r.rule_id == MARKER for r in rows)
    if built:
        return [
            {
                "id": r.id,
                "event": {"id": r.event_id, "type": r.type, "occurred_at": r.occurred_at},
                "rule": r.rule_id,
                "points": r.points,
                "reason": r.reason,
            }
            for r in rows
            if r.rule_id != MARKER
        ], True
    contact = session.execute(
        sa.select(C.c.stage, C.c.stage_manual).where(C.c.id == contact_id)
    ).one()
    evs = _replayable(_contact_events(session, [contact_id])).get(contact_id, [])
    result = score_rules.replay(act.rules, evs, contact.stage, contact.stage_manual)
    return [
        {
            "id": None,
            "event": {"id": ev.key, "type": ev.type, "occurred_at": ev.occurred_at},
            "rule": ln.rule_id,
            "points": ln.points,
            "reason": ln.reason,
        }
        for ev, ln in result.lines
    ], False


def explain(session: Session, contact_id: int, now: datetime) -> dict[str, Any] | None:
    """The contact's score now, line by line: each ledger line with its decayed share; the
    shares sum to ``total`` to the cent. None for an unknown contact."""
    contact = session.get(Contact, contact_id)
    if contact is None:
        return None
    act = active(session)
    lines, built = _ledger(session, act, contact_id)
    positive = [ln["event"]["occurred_at"] for ln in lines if cents(ln["points"]) > 0]
    moments = [t for t in (contact.last_interaction_at, max(positive, default=None)) if t]
    last_activity = max(moments, default=None)
    factor = score_rules.decay_factor(last_activity, now, act.rules.half_life)
    raw = sum(cents(ln["points"]) for ln in lines)
    explained = score_rules.explain(lines, factor)
    for ln in explained:
        ln["event"]["occurred_at"] = _iso(ln["event"]["occurred_at"])
    return {
        "contact_id": contact_id,
        "total": round(raw * factor) / 100,
        "stage": contact.stage,
        "stage_manual": contact.stage_manual,
        "ledger_sum": raw / 100,
        "ruleset_version": act.version,
        "ledger_built": built,
        "decay": {
            "half_life_days": act.rules.half_life,
            "last_activity_at": _iso(last_activity),
            "factor": factor,
            "at": now.isoformat(),
        },
        "lines": explained,
    }


@dataclass
class Verification:
    contact_id: int
    built: bool
    stored: float  # Contact.score: the incremental sum
    ledger: float  # the sum of the ledger lines
    replayed: float  # the events scored again from scratch
    rule_differences: dict[str, tuple[float, float]]  # rule -> (ledger, replayed)

    @property
    def ok(self) -> bool:
        return (
            self.built
            and cents(self.stored) == cents(self.ledger) == cents(self.replayed)
            and not self.rule_differences
        )


def verify(session: Session, contact_id: int) -> Verification:
    """Does the incremental score equal the ledger, and the ledger a replay from scratch (in
    total and per rule)?"""
    contact = session.get(Contact, contact_id)
    if contact is None:
        raise UnknownContact(contact_id)
    act = active(session)
    lines, built = _ledger(session, act, contact_id)
    evs = _replayable(_contact_events(session, [contact_id])).get(contact_id, [])
    result = score_rules.replay(act.rules, evs, contact.stage, contact.stage_manual)
    ledger_by_rule: dict[str, int] = defaultdict(int)
    for ln in lines:
        ledger_by_rule[ln["rule"]] += cents(ln["points"])
    replay_by_rule: dict[str, int] = defaultdict(int)
    for _ev, ln in result.lines:
        replay_by_rule[ln.rule_id] += cents(ln.points)
    diffs = {
        rule: (ledger_by_rule[rule] / 100, replay_by_rule[rule] / 100)
        for rule in set(ledger_by_rule) | set(replay_by_rule)
        if ledger_by_rule[rule] != replay_by_rule[rule]
    }
    return Verification(
        contact_id,
        built,
        contact.score,
        sum(ledger_by_rule.values()) / 100,
        result.raw_cents / 100,
        diffs,
    )


# --- manual stages -------------------------------------------------------------------------


@dataclass(frozen=True)
class StageChange:
    contact_id: int
    old: str
    new: str
    manual: bool
    outbox_id: int | None  # enqueue after commit


def set_stage(
    session: Session,
    contact_id: int,
    stage: str,
    by: str,
    manual: bool = True,
    note: str | None = None,
    now: datetime | None = None,
) -> StageChange:
    """Set a contact's stage by hand (``manual``: thresholds leave it alone from now on), or
    by a journey (``manual=False``). ``"auto"`` hands the stage back to the thresholds: it
    becomes the one the contact's score reaches now. Records ``contact.stage_changed``."""
    if stage != "auto" and stage not in score_rules.STAGES:
        raise ValueError(f"unknown stage {stage!r}")
    locked = _lock_contacts(session, [contact_id])
    if not locked:
        raise UnknownContact(contact_id)
    contact = locked[0]
    now = now or utcnow()
    score = None
    if stage == "auto":
        score = explain(session, contact_id, now)["total"]
        new, manual = active(session).rules.stages.stage(score), False
    else:
        new = stage
    session.execute(sa.update(C).where(C.c.id == contact_id).values(stage=new, stage_manual=manual))
    outbox_id = None
    if new != contact.stage:
        reason = f"set by {by}" + (f": {note}" if note else "")
        if stage == "auto":
            reason = f"handed back to the thresholds by {by} (score {score:g})"
        outbox_id = _stage_event(
            session,
            contact_id,
            contact.stage,
            new,
            score if score is not None else contact.score,
            reason,
            None,
            by=by,
            manual=manual,
        )
    return StageChange(contact_id, contact.stage, new, manual, outbox_id)
