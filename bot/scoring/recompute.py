"""Recomputing ledgers: after a publish, every contact's ledger is rebuilt under the new active
version, in batches of contacts per transaction. A recompute that sees a newer version
published stops: that version's own recompute takes over.

The publish queues ``recompute_job``, which splits the contact ids into PARTS ranges (rows of
``score_recompute``) and queues one bulk job per range, so every background worker takes a
share. Each part commits its cursor with each batch: a part whose worker died resumes where
it stopped (rq's abandoned-job recovery, or the sweeper when Redis lost the job), and
``progress`` sums the parts. `yuchi scoring recompute` rebuilds in this process instead."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.core import queue
from bot.core.config import Settings, load_settings
from bot.core.db import dialect_insert, session_scope
from bot.core.models import Contact, ScoreRecompute, utcnow
from bot.scoring.ledger import build, kick, lock_contacts
from bot.scoring.versions import active

log = logging.getLogger(__name__)

RECOMPUTE_JOB = "bot.scoring.recompute.recompute_job"
PART_JOB = "bot.scoring.recompute.recompute_part_job"
BATCH = 500  # contacts per recompute transaction
PARTS = 8  # id ranges per recompute: more than workers, so no worker waits for the last one
JOB_TTLS = {"job_timeout": 24 * 3600, "result_ttl": 7 * 24 * 3600, "failure_ttl": 7 * 24 * 3600}

C = Contact.__table__
R = ScoreRecompute.__table__


def recompute_job_id(version: int) -> str:
    return f"scoring-recompute-v{version}"


def enqueue_recompute(settings: Settings, version: int) -> bool:
    """Queue the full recompute for ``version``; False (logged) when Redis is unreachable."""
    try:
        queue.get_queue(settings, queue.BULK).enqueue(
            RECOMPUTE_JOB, version, job_id=recompute_job_id(version), **JOB_TTLS
        )
    except queue.REDIS_ERRORS as exc:
        log.warning(
            "scoring recompute v%s not enqueued (%s): run `yuchi scoring recompute`", version, exc
        )
        return False
    return True


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
            locked = lock_contacts(s, ids)
            act = active(s)
            if act.version != version:
                result.superseded = True
                break
            built = build(s, act, locked, utcnow())
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
    """rq job queued by a publish: split everyone into parts and queue a job for each, unless
    a newer version took over."""
    settings = load_settings()
    with session_scope(settings.database_url) as s:
        if active(s).version != version:
            return {"version": version, "superseded": True}
    parts = plan(settings, version)
    queued = [p for p in parts if enqueue_part(settings, version, p)]
    return {"version": version, "parts": len(parts), "queued": len(queued)}


# --- the parts of a parallel recompute -----------------------------------------------------


def part_job_id(version: int, part: int) -> str:
    return f"scoring-recompute-v{version}-p{part}"


def plan(settings: Settings, version: int, parts: int = PARTS) -> list[int]:
    """Split the contact ids into ``parts`` ranges (the last one open-ended: contacts created
    meanwhile are built by their first scored event anyway), stored once per version; returns
    the parts not done yet."""
    with session_scope(settings.database_url) as s:
        low, high = s.execute(sa.select(sa.func.min(C.c.id), sa.func.max(C.c.id))).one()
        low, high = low or 1, high or 1
        step = max(1, -(-(high - low + 1) // parts))
        rows = [
            {
                "version": version,
                "part": p,
                "first_id": low + p * step,
                "last_id": None if p == parts - 1 else low + (p + 1) * step - 1,
                "next_id": low + p * step,
                "contacts": 0,
                "events": 0,
                "lines": 0,
                "stage_changes": 0,
                "updated_at": utcnow(),
            }
            for p in range(parts)
        ]
        s.execute(dialect_insert(s, R).values(rows).on_conflict_do_nothing())
        s.commit()
        return list(
            s.execute(
                sa.select(R.c.part)
                .where(R.c.version == version, R.c.done_at.is_(None))
                .order_by(R.c.part)
            ).scalars()
        )


def enqueue_part(settings: Settings, version: int, part: int) -> bool:
    """Queue one part's job unless it is waiting or running already."""
    job_id = part_job_id(version, part)
    if queue.job_alive(settings, job_id):
        return False
    queue.drop_job(settings, job_id)
    queue.get_queue(settings, queue.BULK).enqueue(
        PART_JOB, version, part, job_id=job_id, **JOB_TTLS
    )
    return True


def _part_batch(s: Session, version: int, part: int, batch: int) -> tuple[Any, list[int]] | None:
    """The part's row (locked: one job at a time works on a part) and its next contact ids;
    None when the part is done or its version superseded."""
    row = s.execute(
        sa.select(R).where(R.c.version == version, R.c.part == part).with_for_update()
    ).one_or_none()
    if row is None or row.done_at is not None:
        return None
    query = sa.select(C.c.id).where(C.c.id >= row.next_id).order_by(C.c.id).limit(batch)
    if row.last_id is not None:
        query = query.where(C.c.id <= row.last_id)
    return row, list(s.execute(query).scalars())


def run_part(settings: Settings, version: int, part: int, batch: int = BATCH) -> Recomputed:
    """Work through one part from its cursor, ``batch`` contacts per transaction, the cursor
    and the counts committed with each batch."""
    started = time.monotonic()
    result = Recomputed(version)
    while True:
        with session_scope(settings.database_url) as s:
            found = _part_batch(s, version, part, batch)
            if found is None:
                break
            row, ids = found
            now, act = utcnow(), active(s)
            if act.version != version:
                result.superseded = True
                break
            built = build(s, act, lock_contacts(s, ids), now) if ids else None
            values: dict[str, Any] = {"updated_at": now, "started_at": row.started_at or now}
            if built is None:
                values["done_at"] = now
            else:
                values.update(
                    next_id=ids[-1] + 1,
                    contacts=R.c.contacts + built.contacts,
                    events=R.c.events + built.events,
                    lines=R.c.lines + built.lines,
                    stage_changes=R.c.stage_changes + built.stage_changes,
                )
            s.execute(sa.update(R).where(R.c.id == row.id).values(**values))
            s.commit()
        if built is None:
            break
        kick(settings, built.outbox_ids)
        result.contacts += built.contacts
        result.events += built.events
        result.lines += built.lines
        result.stage_changes += built.stage_changes
    result.seconds = time.monotonic() - started
    return result


def recompute_part_job(version: int, part: int) -> dict[str, Any]:
    """rq job: one part of a version's recompute (resumes from its cursor)."""
    return run_part(load_settings(), version, part).as_dict()


def progress(session: Session, version: int) -> dict[str, Any]:
    """How far the version's parallel recompute is: parts done, contacts and events rebuilt,
    the rate so far, and the contact ids still ahead of the cursors (an estimate of what is
    left: ids are dense)."""
    rows = session.execute(sa.select(R).where(R.c.version == version).order_by(R.c.part)).all()
    high = session.execute(sa.select(sa.func.max(C.c.id))).scalar() or 0
    started = [r.started_at for r in rows if r.started_at]
    updated = max((r.updated_at for r in rows), default=None)
    events = sum(r.events for r in rows)
    span = (updated - min(started)).total_seconds() if started and updated else 0.0
    return {
        "version": version,
        "parts": len(rows),
        "parts_done": sum(1 for r in rows if r.done_at is not None),
        "contacts": sum(r.contacts for r in rows),
        "events": events,
        "lines": sum(r.lines for r in rows),
        "stage_changes": sum(r.stage_changes for r in rows),
        "ids_left": sum(
            max(0, (r.last_id if r.last_id is not None else high) - r.next_id + 1)
            for r in rows
            if r.done_at is None
        ),
        "events_per_second": round(events / span) if span > 0 else None,
        "started_at": min(started).isoformat() if started else None,
        "updated_at": updated.isoformat() if updated else None,
    }


def sweep(settings: Settings) -> int:
    """Queue again the unfinished parts of the active version's recompute whose job Redis no
    longer holds (a worker's death is rq's abandoned-job recovery). Returns how many."""
    grace = utcnow() - timedelta(seconds=settings.sweep_grace_seconds)
    with session_scope(settings.database_url) as s:
        waiting = s.execute(
            sa.select(R.c.version, R.c.part).where(R.c.done_at.is_(None), R.c.updated_at <= grace)
        ).all()
        if not waiting:
            return 0
        version = active(s).version  # a superseded version's parts are left alone
    return sum(1 for v, p in waiting if v == version and enqueue_part(settings, version, p))
