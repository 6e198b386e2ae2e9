"""A forecast's input: the stored history of a batch of contacts, read in a few SELECTs
(bot.automation.forecast). Events of Yuchi's own (``journey.*``, ``msg.*``, and ``tag.*``:
tag changes, which the replay makes up from the tags) are left out."""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.automation.send_outcomes import is_interaction
from bot.core.models import Contact, ContactTag, Event, ScoreEntry

LEFT_OUT = ("journey.", "msg.", "tag.")
STORED_STAGE_CHANGED = "contact.stage_changed"


@dataclass
class History:
    """What is known about one contact before and during the window (one batch's rows)."""

    contact_id: int
    name: str
    subscribed: bool
    first_seen: datetime
    fields: dict[str, Any] = field(default_factory=dict)  # the current ones
    counts: Counter = field(default_factory=Counter)  # events before the window, by type
    last_seen: datetime | None = None
    last_interaction: datetime | None = None
    stage: str = "subscriber"
    tags: list[tuple[str, datetime]] = field(default_factory=list)
    score_times: list[datetime] = field(default_factory=list)
    score_sums: list[float] = field(default_factory=list)  # cumulative, aligned with times
    events: list[tuple[datetime, int, str, dict[str, Any]]] = field(default_factory=list)


def batches(session: Session, size: int) -> Iterator[list[sa.Row]]:
    k = Contact.__table__.c
    last = 0
    while True:
        rows = session.execute(
            sa.select(k.id, k.name, k.subscribed, k.first_seen_at, k.fields)
            .where(k.merged_into_id.is_(None), k.id > last)
            .order_by(k.id)
            .limit(size)
        ).all()
        if not rows:
            return
        yield rows
        last = rows[-1].id


def load_histories(
    session: Session, rows: list[sa.Row], since: datetime, until: datetime
) -> list[History]:
    """The histories of these contacts (rows of batches()) for the window [since, until)."""
    ids = [r.id for r in rows]
    hs = {
        r.id: History(r.id, r.name or "", bool(r.subscribed), r.first_seen_at, dict(r.fields or {}))
        for r in rows
    }
    _before(session, hs, ids, since)
    _tags(session, hs, ids)
    _scores(session, hs, ids, until)
    _events(session, hs, ids, since, until)
    return [hs[i] for i in ids]


def _before(session: Session, hs: dict[int, History], ids: list[int], since: datetime) -> None:
    """Before the window: counts, last seen, last interaction, following or not, stage."""
    e = Event.__table__.c
    subs: dict[int, dict[str, datetime]] = defaultdict(dict)
    for cid, type_, n, last in session.execute(
        sa.select(e.contact_id, e.type, sa.func.count(), sa.func.max(e.occurred_at))
        .where(e.contact_id.in_(ids), e.occurred_at < since)
        .group_by(e.contact_id, e.type)
    ):
        if type_.startswith(LEFT_OUT):
            continue
        h = hs[cid]
        h.counts[type_] = n
        h.last_seen = max(filter(None, (h.last_seen, last)))
        if is_interaction(type_):
            h.last_interaction = max(filter(None, (h.last_interaction, last)))
        if type_ in ("oa.subscribe", "oa.unsubscribe"):
            subs[cid][type_] = last
    for cid, seen in subs.items():
        on, off = seen.get("oa.subscribe"), seen.get("oa.unsubscribe")
        hs[cid].subscribed = off is None or (on is not None and on > off)

    for cid, props in session.execute(
        sa.select(e.contact_id, e.properties)
        .where(e.contact_id.in_(ids), e.type == STORED_STAGE_CHANGED, e.occurred_at < since)
        .order_by(e.contact_id, e.occurred_at, e.id)
    ):
        if (props or {}).get("to"):
            hs[cid].stage = str(props["to"])


def _tags(session: Session, hs: dict[int, History], ids: list[int]) -> None:
    t = ContactTag.__table__.c
    for cid, tag, created in session.execute(
        sa.select(t.contact_id, t.tag, t.created_at).where(t.contact_id.in_(ids))
    ):
        hs[cid].tags.append((tag, created))


def _scores(session: Session, hs: dict[int, History], ids: list[int], until: datetime) -> None:
    """The running sum of each contact's ledger lines of their newest scoring version."""
    s = ScoreEntry.__table__.c
    lines: dict[int, list[tuple[int, datetime, float]]] = defaultdict(list)
    for cid, version, points, at in session.execute(
        sa.select(s.contact_id, s.ruleset_version, s.points, s.occurred_at)
        .where(s.contact_id.in_(ids), s.occurred_at < until)
        .order_by(s.contact_id, s.occurred_at, s.id)
    ):
        lines[cid].append((version, at, points))
    for cid, ls in lines.items():
        newest = max(v for v, _, _ in ls)
        total, h = 0.0, hs[cid]
        for v, at, points in ls:
            if v == newest:
                total += points
                h.score_times.append(at)
                h.score_sums.append(total)


def _events(
    session: Session, hs: dict[int, History], ids: list[int], since: datetime, until: datetime
) -> None:
    e = Event.__table__.c
    stream = session.execute(
        sa.select(e.contact_id, e.id, e.occurred_at, e.type, e.properties)
        .where(e.contact_id.in_(ids), e.occurred_at >= since, e.occurred_at < until)
        .order_by(e.contact_id, e.occurred_at, e.id)
        .execution_options(yield_per=1000)
    )
    for cid, group in itertools.groupby(stream, key=lambda r: r.contact_id):
        hs[cid].events = [
            (r.occurred_at, r.id, r.type, dict(r.properties or {}))
            for r in group
            if not r.type.startswith(LEFT_OUT)
        ]
