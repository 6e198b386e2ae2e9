"""Segment triggers: contacts who come to match a journey's saved filter without doing anything
(silent for 30 days, a score reached by decay, …) are found by a periodic sweep over every
followed contact; those who match on an event are enrolled by the runner right then.

Saved segments (``on: segment_entered`` / ``segment_left`` with ``segment_id``): the sweep runs
the segment's one query, compares its members with the ones remembered in ``segment_member``
(one INSERT … RETURNING for who entered, one DELETE … RETURNING for who left, in SQL) and
enrolls them, in the same transaction. The first sweep of a segment only remembers its
members: entering means entering after the segment is first watched.

The sweep runs from the sweeper at most every ``segment_interval_seconds`` (a Redis key says
when it last ran; if Redis forgot, it runs again, harmlessly: entry rules still apply)."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from typing import Any

import sqlalchemy as sa

import journeys
from bot.audiences import segments as saved_segments
from bot.automation.definitions import definition_for
from bot.automation.enroll import OPEN
from bot.automation.moves import enroll_contact
from bot.automation.runner import drain_changes
from bot.automation.snapshots import snapshots
from bot.automation.tx import After, Tx
from bot.core import queue
from bot.core.config import Settings
from bot.core.db import session_scope
from bot.core.models import Contact, Enrollment, Event, Journey, Segment, SegmentMember, utcnow

log = logging.getLogger(__name__)
THROTTLE_KEY = "yuchi:journey-segments:ran"
BATCH = 500


def _segment_journeys(session: Any) -> list[tuple[Any, journeys.Definition]]:
    found = []
    j = Journey.__table__.c
    for row in session.execute(
        sa.select(j.id, j.name, j.version).where(j.status == "published").order_by(j.id)
    ):
        try:
            d = definition_for(session, row.id, row.version)
        except journeys.DefinitionError:
            continue
        if d.trigger.on == "segment":
            found.append((row, d))
    return found


def _saved_segment_journeys(session: Any) -> dict[int, list[tuple[Any, journeys.Definition]]]:
    """Published journeys on entering or leaving a saved segment, by segment id."""
    found: dict[int, list[tuple[Any, journeys.Definition]]] = defaultdict(list)
    j = Journey.__table__.c
    for row in session.execute(
        sa.select(j.id, j.name, j.version).where(j.status == "published").order_by(j.id)
    ):
        try:
            d = definition_for(session, row.id, row.version)
        except journeys.DefinitionError:
            continue
        if d.trigger.on in ("segment_entered", "segment_left") and d.trigger.segment_id:
            found[d.trigger.segment_id].append((row, d))
    return found


def membership_changes(session: Any, segment_id: int, now: Any) -> tuple[list[int], list[int]]:
    """Who entered and who left the segment since the last sweep; the remembered members are
    brought up to date (the first time: remembered, nobody entered)."""
    seg, sm = Segment.__table__.c, SegmentMember.__table__
    first = session.execute(sa.select(seg.swept_at).where(seg.id == segment_id)).scalar() is None
    members = saved_segments.member_ids(session, segment_id, now)
    known = sa.select(sm.c.contact_id).where(sm.c.segment_id == segment_id)
    new = members.where(Contact.__table__.c.id.not_in(known)).with_only_columns(
        sa.literal(segment_id), Contact.__table__.c.id, sa.literal(now, sm.c.since.type)
    )
    entered = list(
        session.execute(
            sa.insert(sm)
            .from_select(["segment_id", "contact_id", "since"], new)
            .returning(sm.c.contact_id)
        ).scalars()
    )
    left = list(
        session.execute(
            sa.delete(sm)
            .where(sm.c.segment_id == segment_id, sm.c.contact_id.not_in(members))
            .returning(sm.c.contact_id)
        ).scalars()
    )
    session.execute(sa.update(Segment.__table__).where(seg.id == segment_id).values(swept_at=now))
    return ([], []) if first else (sorted(entered), sorted(left))


def sweep_saved(settings: Settings, now: Any = None) -> dict[str, int]:
    """Enroll who entered or left each saved segment a published journey's trigger names.
    Returns {"segments", "entered", "left", "enrolled"}."""
    out = {"segments": 0, "entered": 0, "left": 0, "enrolled": 0}
    now = now or utcnow()
    with session_scope(settings.database_url) as session:
        targets = _saved_segment_journeys(session)
    for segment_id, watching in targets.items():
        after: After = []
        with session_scope(settings.database_url) as session:
            try:
                entered, left = membership_changes(session, segment_id, now)
            except saved_segments.UnknownSegment:
                continue
            out["segments"] += 1
            out["entered"] += len(entered)
            out["left"] += len(left)
            tx = Tx(settings, session, now, after)
            for j, d in watching:
                ids = entered if d.trigger.on == "segment_entered" else left
                found = snapshots(session, ids)
                for cid in ids:
                    if cid in found:
                        row = enroll_contact(tx, j, d, cid, None, None, found[cid])
                        out["enrolled"] += row is not None
            drain_changes(tx)
            session.commit()
        for action in after:
            action()
    return out


def _needs_events(d: journeys.Definition) -> bool:
    segment = d.trigger.segment
    dumped = segment.model_dump(by_alias=True, exclude_none=True) if segment else {}
    return '"event"' in json.dumps(dumped)


def _snapshots(session: Any, ids: list[int], with_events: bool) -> list[journeys.Contact]:
    counts: dict[int, dict[str, int]] | None = None
    if with_events:  # one grouped count for the batch, not one per contact
        counts = defaultdict(dict)
        e = Event.__table__.c
        for cid, type_, n in session.execute(
            sa.select(e.contact_id, e.type, sa.func.count())
            .where(e.contact_id.in_(ids))
            .group_by(e.contact_id, e.type)
        ):
            counts[cid][type_] = n
    found = snapshots(session, ids, counts)
    return [found[i] for i in ids if i in found]


def _due(settings: Settings) -> bool:
    try:
        return bool(
            queue.get_redis(settings).set(
                THROTTLE_KEY, "1", nx=True, ex=max(1, int(settings.segment_interval_seconds))
            )
        )
    except queue.REDIS_ERRORS:
        return False


def sweep(settings: Settings, force: bool = False) -> dict[str, int]:
    """Enroll every followed contact who matches a published segment journey and whose entry
    rule lets them in. Returns {"journeys", "checked", "entered"}."""
    out = {"journeys": 0, "checked": 0, "entered": 0}
    if not force and not _due(settings):
        return out
    now = utcnow()
    out["entered"] += sweep_saved(settings, now)["enrolled"]
    with session_scope(settings.database_url) as session:
        targets = _segment_journeys(session)
    out["journeys"] = len(targets)
    k = Contact.__table__.c
    for j, d in targets:
        with_events = _needs_events(d)
        last = 0
        while True:
            after: After = []
            with session_scope(settings.database_url) as session:
                ids = list(
                    session.execute(
                        sa.select(k.id)
                        .where(k.subscribed.is_(True), k.merged_into_id.is_(None), k.id > last)
                        .order_by(k.id)
                        .limit(BATCH)
                    ).scalars()
                )
                if not ids:
                    break
                last = ids[-1]
                out["checked"] += len(ids)
                matching = [
                    c
                    for c in _snapshots(session, ids, with_events)
                    if journeys.triggered_by(d, None, c, now)
                ]
                inside = _open(session, j.id, [c.id for c in matching])
                tx = Tx(settings, session, now, after)
                for contact in matching:
                    if contact.id in inside:
                        continue
                    row = enroll_contact(tx, j, d, int(contact.id), None, None, contact)
                    out["entered"] += row is not None
                drain_changes(tx)
            for action in after:
                action()
    if out["entered"]:
        log.info("journey segments: %(entered)d entered of %(checked)d checked", out)
    return out


def _open(session: Any, journey_id: int, contact_ids: list[Any]) -> set[int]:
    if not contact_ids:
        return set()
    en = Enrollment.__table__.c
    return set(
        session.execute(
            sa.select(en.contact_id).where(
                en.journey_id == journey_id,
                en.contact_id.in_(contact_ids),
                en.status.in_(OPEN),
            )
        ).scalars()
    )
