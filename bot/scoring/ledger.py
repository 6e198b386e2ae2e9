"""The score ledger (``score_entry``): scoring each event, building a contact's ledger from
its whole history, stages (moved by thresholds, by rules, or by hand). The active rule set is
in bot/scoring/versions.py, recomputes in recompute.py, reading (explain, verify) in explain.py;
the rules and the arithmetic are pure, in bot/scoring/rules.py and points.py.

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bot.contacts import record as events
from bot.core import changes, queue
from bot.core.config import Settings
from bot.core.context import BATCH_MEMO
from bot.core.models import Contact, Event, ScoreEntry, utcnow
from bot.scoring import points as score_points
from bot.scoring import rules as score_rules
from bot.scoring.explain import UnknownContact, contact_history, explain
from bot.scoring.points import Line
from bot.scoring.rules import MARKER, RuleSet, cents
from bot.scoring.versions import Active, R, active

if TYPE_CHECKING:
    from bot.core.context import Context

log = logging.getLogger(__name__)

STAGE_CHANGED = "contact.stage_changed"

C = Contact.__table__
E = Event.__table__
S = ScoreEntry.__table__
LEDGER_KEY = ["contact_id", "event_id", "rule_id", "ruleset_version"]

# The per-event statements, built once (building a statement costs more than running it).
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
# PostgreSQL, under the contact's lock: the active version (read again, so that a version
# published meanwhile wins) and the contact's totals under it, in one round trip.
_ACTIVE_TOTALS = (
    sa.select(R.c.version, R.c.created_at, *_TOTALS.selected_columns)
    .select_from(
        R.outerjoin(
            S, sa.and_(S.c.ruleset_version == R.c.version, S.c.contact_id == sa.bindparam("cid"))
        )
    )
    .where(R.c.active.is_(True))
    .group_by(R.c.version, R.c.created_at, S.c.rule_id)
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
# Decay's "last activity" as a column (segments read it in SQL): a later positive line moves it.
_ACTIVITY = (
    sa.update(C)
    .where(
        C.c.id == sa.bindparam("_id"),
        sa.or_(C.c.score_activity_at.is_(None), C.c.score_activity_at < sa.bindparam("_at")),
    )
    .values(score_activity_at=sa.bindparam("_at"))
)
_AT = sa.bindparam("_at", type_=C.c.score_activity_at.type)
# Both in one statement, for an event whose new lines include a positive one.
_SET_SCORE_ACTIVE = _SET_SCORE.values(
    score_activity_at=sa.case(
        (sa.or_(C.c.score_activity_at.is_(None), C.c.score_activity_at < _AT), _AT),
        else_=C.c.score_activity_at,
    )
)
_INSERT_LINES = {
    name: insert(S).on_conflict_do_nothing(index_elements=LEDGER_KEY).returning(S.c.rule_id)
    for name, insert in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
}


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


def lock_contacts(session: Session, ids: Sequence[int]) -> list[Any]:
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


def build(session: Session, act: Active, contacts: Sequence[Any], now: datetime) -> Built:
    """Rebuild the ledgers of locked ``contacts`` under ``act`` from all their events."""
    out = Built(contacts=len(contacts))
    if not contacts:
        return out
    ids = [c.id for c in contacts]
    history = contact_history(session, ids)
    session.execute(sa.delete(S).where(S.c.contact_id.in_(ids), S.c.ruleset_version == act.version))
    rows: list[tuple] = []
    updates: list[dict[str, Any]] = []
    activity: list[dict[str, Any]] = []
    for c in contacts:
        evs = history.get(c.id, [])
        out.events += len(evs)
        result = score_points.replay(act.rules, evs, c.stage, c.stage_manual)
        marker = (c.id, -c.id, MARKER, act.version, 0.0, f"built from {len(evs)} events", now, now)
        rows.append(marker)
        rows += [
            (c.id, ev.key, ln.rule_id, act.version, ln.points, ln.reason, ev.occurred_at, now)
            for ev, ln in result.lines
        ]
        out.lines += len(result.lines)
        positive = [ev.occurred_at for ev, ln in result.lines if cents(ln.points) > 0]
        if positive:
            activity.append({"_id": c.id, "_at": max(positive)})
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
    if activity:
        session.connection().execute(_ACTIVITY, activity)
    return out


def _totals(session: Session, act: Active, contact_id: int, ev: Event) -> dict:
    """What each rule has given the contact under ``act``: on the event's local day, and ever."""
    start, end = act.rules.day_bounds(act.rules.day_of(ev.occurred_at))
    rows = session.connection().execute(
        _TOTALS, {"cid": contact_id, "v": act.version, "start": start, "end": end}
    )
    return {r[0]: score_points.Totals(r[1] or 0.0, r[2] or 0.0) for r in rows}


def _active_totals(session: Session, act: Active, contact_id: int, ev: Event) -> tuple:
    """(active rule set, the contact's totals under it), read under the contact's lock in one
    statement; ``act``, the batch's, gives the day's bounds and the parsed rules while it is
    still the active version (else both are read again)."""
    start, end = act.rules.day_bounds(act.rules.day_of(ev.occurred_at))
    rows = list(
        session.connection().execute(
            _ACTIVE_TOTALS, {"cid": contact_id, "start": start, "end": end}
        )
    )
    if not rows or (rows[0].version, rows[0].created_at) != (act.version, act.created_at):
        now_active = active(session)
        return now_active, _totals(session, now_active, contact_id, ev)
    totals = {r[2]: score_points.Totals(r[3] or 0.0, r[4] or 0.0) for r in rows if r[2] is not None}
    return act, totals


def _insert_new_lines(
    session: Session, act: Active, contact_id: int, ev: Event, lines: list[Line], now: datetime
) -> list[Line]:
    """Insert the event's lines; returns the ones written (an earlier run's are skipped)."""
    # One cached statement run for each line (insertmanyvalues): a line already written by an
    # earlier run of this event is skipped and not returned.
    inserted = (
        session.connection()
        .execute(
            _INSERT_LINES[session.get_bind().dialect.name],
            [
                {
                    "contact_id": contact_id,
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
    return [ln for ln in lines if ln.rule_id in new_ids]


def score_event(
    session: Session,
    act: Active,
    contact: Any,
    ev: Event,
    now: datetime,
    totals: dict | None = None,
) -> Built:
    """Score one stored event for its locked contact (incrementally, once its ledger is built);
    ``totals``: the contact's under ``act``, if the caller has read them."""
    rules = act.rules
    history = _totals(session, act, contact.id, ev) if totals is None else totals
    if MARKER not in history:  # first event under this version: build from the whole history
        built = build(session, act, [contact], now)
        after = session.execute(sa.select(C.c.score).where(C.c.id == contact.id)).scalar()
        if after is not None and cents(after) != cents(contact.score):
            changes.note(
                session, contact.id, changes.SCORE_CHANGED, {"from": contact.score, "to": after}
            )
        return built
    lines = score_points.points_for(rules, ev.type, ev.properties, history)
    out = Built(contacts=1, events=1)
    if not lines:
        return out
    written = _insert_new_lines(session, act, contact.id, ev, lines, now)
    if not written:  # a re-run writes nothing
        return out
    out.lines = len(written)
    raw = cents(contact.score) + sum(cents(ln.points) for ln in written)
    stage = score_points.next_stage(rules, contact.stage, contact.stage_manual, raw, written)
    values = {"_id": contact.id, "_score": raw / 100, "_now": now, "_stage": stage}
    if any(cents(ln.points) > 0 for ln in written):
        session.connection().execute(_SET_SCORE_ACTIVE, {**values, "_at": ev.occurred_at})
    else:
        session.connection().execute(_SET_SCORE, values)
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


def _batch_active(session: Session) -> Active:
    """The active rule set, read once per drain batch (and re-read under the contact's lock
    on PostgreSQL; on SQLite the batch's BEGIN IMMEDIATE keeps a publish out until it ends)."""
    batch = session.info.get(BATCH_MEMO)
    if batch is None:
        return active(session)
    if "scoring.active" not in batch:
        batch["scoring.active"] = active(session)
    return batch["scoring.active"]


def on_event(ctx: Context) -> None:
    """Pipeline step: score the event, move the stage, record the change."""
    session, ev = ctx.session, ctx.event
    if ev.contact_id is None:
        return
    act = _batch_active(session)
    if not act.rules.can_score(ev.type, ev.properties):
        return  # the common case costs no query and no lock
    locked = lock_contacts(session, [ev.contact_id])
    if not locked:
        return
    totals = None
    if session.get_bind().dialect.name != "sqlite":  # SQLite's BEGIN IMMEDIATE locked it all
        act, totals = _active_totals(session, act, ev.contact_id, ev)
        session.info.get(BATCH_MEMO, {})["scoring.active"] = act
        if not act.rules.can_score(ev.type, ev.properties):
            return
    built = score_event(session, act, locked[0], ev, utcnow(), totals)
    if built.outbox_ids:
        ctx.after_commit.append(functools.partial(kick, ctx.settings, built.outbox_ids))


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
    locked = lock_contacts(session, [contact_id])
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
