"""Event history as a segment reads it: "contacts with at least N events of a type between two
moments" ("≥ 2 oa.click in the last 14 days").

It reads the event table itself through ``ix_event_type_time_contact`` (type, occurred_at,
contact_id): an index-only range scan of the window, grouped by contact. Per-contact daily
counts kept by the pipeline were measured beside it (bench/scale.py prints both): at 1M
contacts / 10M events the window holds 946k click events against 836k daily rows, and the
two answered in 688 ms and 645 ms (p50) — the grouping costs the same either way, since most
contacts do a thing at most once a day. The daily table would add a write per event, a second
truth to keep right through merges, and whole-day windows instead of exact ones, for about
6 %. So a clause over a busy type and a long window is a background computation (a segment
sweep), not something to run per request."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.core.models import Event

E = Event.__table__.c


def contacts_with_events(
    type_: str, at_least: int, since: datetime, until: datetime | None = None
) -> sa.Select:
    """The ids of the contacts with at least ``at_least`` events of ``type_`` in [since,
    until); a query to count, page or join (a segment clause)."""
    query = sa.select(E.contact_id).where(
        E.type == type_, E.occurred_at >= since, E.contact_id.is_not(None)
    )
    if until is not None:
        query = query.where(E.occurred_at < until)
    return query.group_by(E.contact_id).having(sa.func.count() >= at_least)


def count_contacts_with_events(
    session: Session, type_: str, at_least: int, since: datetime, until: datetime | None = None
) -> int:
    inner = contacts_with_events(type_, at_least, since, until).subquery()
    return session.execute(sa.select(sa.func.count()).select_from(inner)).scalar_one()
