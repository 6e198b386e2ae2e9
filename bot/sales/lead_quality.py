"""The lead-quality report: which channels, campaigns, reps and journeys bring leads that
sales accept. One row per group: leads handed to a rep in the period, accepted, returned (by
reason), became SQL and won after being accepted, with rates and the median time to accept.

A lead is one LeadAssignment (a contact handed to a rep); a contact passed on to a second rep
counts once for each. The group of a lead: the contact's channel (渠道活码), its ``campaign``
field, the rep, or the journey the contact entered last before the handoff.
"""

from __future__ import annotations

import csv
import io
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.core.models import Channel, Contact, Enrollment, Event, Journey, LeadAssignment

GROUPINGS = ("channel", "campaign", "rep", "journey")
NONE_LABEL = {"channel": "（无渠道）", "campaign": "（无活动）", "rep": "", "journey": "（无旅程）"}


@dataclass
class Group:
    key: str
    created: int = 0
    accepted: int = 0
    returned: dict[str, int] = field(default_factory=dict)
    sql: int = 0
    won: int = 0
    hours_to_accept: list[float] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        rate = lambda n: round(n / self.created, 4) if self.created else None  # noqa: E731
        median = statistics.median(self.hours_to_accept) if self.hours_to_accept else None
        return {
            "key": self.key,
            "created": self.created,
            "accepted": self.accepted,
            "returned": sum(self.returned.values()),
            "returned_by_reason": dict(sorted(self.returned.items())),
            "sql": self.sql,
            "won": self.won,
            "accept_rate": rate(self.accepted),
            "return_rate": rate(sum(self.returned.values())),
            "sql_rate": rate(self.sql),
            "win_rate": rate(self.won),
            "median_hours_to_accept": round(median, 2) if median is not None else None,
        }


def _lead_columns() -> tuple:
    la = LeadAssignment.__table__.c
    return (la.id, la.contact_id, la.status, la.assigned_at, la.responded_at, la.return_reason)


def _last_journey() -> Any:
    """The journey the lead's contact entered last before the handoff (a correlated subquery)."""
    la, en, j = LeadAssignment.__table__.c, Enrollment.__table__.c, Journey.__table__.c
    return (
        sa.select(j.name)
        .select_from(Enrollment.__table__.join(Journey.__table__, j.id == en.journey_id))
        .where(en.contact_id == la.contact_id, en.started_at <= la.assigned_at)
        .order_by(en.started_at.desc(), en.id.desc())
        .limit(1)
        .scalar_subquery()
    )


# grouping -> the SQL expression of a lead's group
KEYS: dict[str, Callable[[], Any]] = {
    "channel": lambda: Channel.__table__.c.name,
    "campaign": lambda: Contact.__table__.c.fields["campaign"].as_string(),
    "rep": lambda: LeadAssignment.__table__.c.userid,
    "journey": _last_journey,
}


def _window(start: datetime, end: datetime) -> Any:
    la = LeadAssignment.__table__.c
    return sa.and_(la.assigned_at >= start, la.assigned_at < end)


def _leads(session: Session, start: datetime, end: datetime, by: str) -> list[Any]:
    """The leads handed over in the window, each with its group's ``key``, in one query."""
    la, c, ch = LeadAssignment.__table__.c, Contact.__table__.c, Channel.__table__.c
    joined = LeadAssignment.__table__.join(Contact.__table__, c.id == la.contact_id).outerjoin(
        Channel.__table__, ch.id == c.source_channel_id
    )
    query = sa.select(*_lead_columns(), KEYS[by]().label("key")).select_from(joined)
    return list(session.execute(query.where(_window(start, end)).order_by(la.id)).all())


def _stage_reached(session: Session, start: datetime, end: datetime) -> dict[int, list[tuple]]:
    """contact -> [(when, stage)] of the moves to sql or customer of the window's leads."""
    e, la = Event.__table__.c, LeadAssignment.__table__.c
    in_window = sa.select(la.contact_id).where(_window(start, end))
    rows = session.execute(
        sa.select(e.contact_id, e.occurred_at, e.properties).where(
            e.type == "contact.stage_changed", e.occurred_at >= start, e.contact_id.in_(in_window)
        )
    )
    found: dict[int, list[tuple]] = defaultdict(list)
    for cid, at, props in rows:
        if (props or {}).get("to") in ("sql", "customer"):
            found[cid].append((at, props["to"]))
    return found


def _count(group: Group, a: Any, reached: Iterable[tuple]) -> None:
    group.created += 1
    if a.status == "returned":
        label = a.return_reason or "（未说明）"
        group.returned[label] = group.returned.get(label, 0) + 1
    if a.status != "accepted" or a.responded_at is None:
        return
    group.accepted += 1
    group.hours_to_accept.append((a.responded_at - a.assigned_at).total_seconds() / 3600)
    later = {stage for at, stage in reached if at >= a.assigned_at}
    group.sql += bool(later)  # a lead won went through SQL, or skipped it
    group.won += "customer" in later


def period(start: str | None, end: str | None, tz: str, today: date) -> tuple[datetime, datetime]:
    """[start, end) as UTC datetimes from two days (``YYYY-MM-DD``, both included, in the
    account's time zone); the last 30 days by default. ValueError names what is wrong."""
    try:
        last = date.fromisoformat(end) if end else today
        first = date.fromisoformat(start) if start else last - timedelta(days=29)
    except ValueError:
        raise ValueError("from, to: dates as YYYY-MM-DD") from None
    if first > last:
        raise ValueError("from: must not be after to")
    zone = ZoneInfo(tz)
    begin = datetime.combine(first, time(), tzinfo=zone)
    stop = datetime.combine(last + timedelta(days=1), time(), tzinfo=zone)
    return begin.astimezone(UTC), stop.astimezone(UTC)


def lead_quality(session: Session, start: datetime, end: datetime, by: str) -> list[dict[str, Any]]:
    """The report's rows for leads handed over in [start, end), grouped ``by`` one of
    GROUPINGS, largest group first."""
    leads = _leads(session, start, end, by)
    if not leads:
        return []
    reached = _stage_reached(session, start, end)
    groups: dict[str, Group] = {}
    for a in leads:
        key = a.key or NONE_LABEL[by]
        _count(groups.setdefault(key, Group(key)), a, reached.get(a.contact_id, []))
    rows = [g.as_json() for g in groups.values()]
    return sorted(rows, key=lambda r: (-r["created"], r["key"]))


def as_csv(rows: list[dict[str, Any]], reasons: list[str]) -> str:
    """The report as CSV: one column per return reason (the configured ones first)."""
    seen = [r for row in rows for r in row["returned_by_reason"] if r not in reasons]
    labels = reasons + sorted(set(seen))
    head = ["key", "created", "accepted", "accept_rate", "returned", "return_rate"]
    tail = ["sql", "sql_rate", "won", "win_rate", "median_hours_to_accept"]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(head + [f"returned:{label}" for label in labels] + tail)
    for row in rows:
        by_reason = [row["returned_by_reason"].get(label, 0) for label in labels]
        writer.writerow(
            [row[k] if row[k] is not None else "" for k in head]
            + by_reason
            + [row[k] if row[k] is not None else "" for k in tail]
        )
    return out.getvalue()
