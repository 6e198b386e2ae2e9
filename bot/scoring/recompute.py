"""Recomputing ledgers: after a publish, every contact's ledger is rebuilt under the new active
version, in batches of contacts per transaction, by a bulk rq job (or `yuchi scoring
recompute`). A recompute that sees a newer version published stops: that version's own
recompute takes over."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from bot.core import queue
from bot.core.config import Settings, load_settings
from bot.core.db import session_scope
from bot.core.models import Contact, utcnow
from bot.scoring.ledger import build, kick, lock_contacts
from bot.scoring.versions import active

log = logging.getLogger(__name__)

RECOMPUTE_JOB = "bot.scoring.recompute.recompute_job"
BATCH = 500  # contacts per recompute transaction

C = Contact.__table__


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
    """rq job queued by a publish: recompute everyone, unless a newer version took over."""
    settings = load_settings()
    with session_scope(settings.database_url) as s:
        if active(s).version != version:
            return {"version": version, "superseded": True}
    return recompute(settings).as_dict()
