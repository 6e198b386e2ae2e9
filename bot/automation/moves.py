"""Applying the engine's moves: store each enrollment's new state, claim its commands, run the
claimed ones (bot.automation.execute).

Each command ``advance`` returns runs once: a StepRun row keyed (enrollment, step, visit, idx),
inserted with ON CONFLICT DO NOTHING in the transaction that stores the new state; only the
commands whose row was inserted are executed. ``idx`` is the enrollment's turn (derived from
the state the call started from) times 1000 plus the command's position in the call, so the
same transition run twice yields the same keys.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

import journeys
from bot.automation import bandits, enroll, execute
from bot.automation.definitions import definition_for
from bot.automation.enroll import Move
from bot.automation.state import state_from_json, state_to_json, turn
from bot.automation.tx import Tx
from bot.core.db import any_of, dialect_insert
from bot.core.models import Enrollment, StepRun
from journeys import commands as c
from journeys.engine import FINAL

log = logging.getLogger(__name__)


def transition(
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
    weights = tx.split_weights(row.journey_id, d, row.contact_id)
    new, cmds = journeys.advance(d, state, event, tx.now, contact, weights)
    if new == state and not cmds:
        tx.session.add(row)
        return None
    return state, new, cmds


def advance(
    tx: Tx,
    row: Enrollment,
    event: journeys.Event | None,
    event_id: int | None,
    contact: journeys.Contact,
) -> bool:
    """Advance one enrollment; True if anything changed."""
    move = transition(tx, row, event, contact)
    if move is None:
        return False
    apply(tx, [(row, *move, event_id)])
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
    move = enroll.begin(tx, j, d, contact_id, event, event_id, contact)
    if move is None:
        return None
    apply(tx, [move])
    return move[0]


def apply(tx: Tx, moves: list[Move]) -> None:
    """Store the new states, claim every command in one statement, run the claimed ones in
    order (a journey a command enters runs its first steps there and then); the sends they
    make are inserted together at the end."""
    session = tx.session
    started, stopped = set(), set()
    for row, _before, new, cmds, _event_id in moves:
        if (row.status == "asking") != (new.status == "asking"):
            (started if new.status == "asking" else stopped).add(row.contact_id)
        _store(tx, row, new, cmds)
    session.flush()
    for row, before, new, _cmds, _event_id in moves:
        d = definition_for(session, row.journey_id, row.version)
        if tx.split_weights(row.journey_id, d) is not None:
            bandits.record(
                session,
                row.journey_id,
                row.id,
                row.contact_id,
                d,
                before.history,
                new.history,
                tx.now,
            )
    enroll.started_asking(session, started)
    enroll.stopped_asking(session, stopped - started)
    planned = [
        (row, cmd, turn(before) * 1000 + pos, event_id)
        for row, before, _new, cmds, event_id in moves
        for pos, cmd in enumerate(cmds)
    ]
    claimed = _claim(session, [(row.id, cmd, idx) for row, cmd, idx, _ in planned], tx.now)
    for row, cmd, idx, event_id in planned:
        if (row.id, cmd.step, cmd.visit, idx) in claimed:
            entered = execute.run(tx, row, cmd, idx, event_id)
            if entered is not None:
                apply(tx, [entered])
    execute.insert_buffered(tx)


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
