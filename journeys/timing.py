"""When a wait comes due. Durations are absolute (``1d`` is 24 hours); times of day and
dates are wall-clock times in a time zone (zoneinfo), so they follow DST where it exists."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def zone(name: str | None, fallback: str) -> ZoneInfo:
    for candidate in (name, fallback, "Asia/Shanghai"):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def valid_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _wall(day: date, at: time, tz: ZoneInfo) -> datetime:
    """That wall-clock time in ``tz``, as UTC. A time skipped by DST (02:30 on the spring-
    forward night) means the same offset as before the jump, i.e. an hour later."""
    local = datetime.combine(day, at.replace(tzinfo=None), tzinfo=tz)
    return local.astimezone(UTC)


def next_time_of_day(base: datetime, at: time, tz: ZoneInfo) -> datetime:
    """The first ``at`` in ``tz`` strictly after ``base`` (or equal to it)."""
    local = base.astimezone(tz)
    candidate = _wall(local.date(), at, tz)
    if candidate < base:
        candidate = _wall(local.date() + timedelta(days=1), at, tz)
    return candidate


def wake_at(
    now: datetime,
    tz: ZoneInfo,
    duration: timedelta | None = None,
    after: timedelta | None = None,
    at: time | None = None,
    on: date | None = None,
) -> datetime:
    """When a wait started at ``now`` is due (UTC)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if duration is not None:
        return (now + duration).astimezone(UTC)
    if on is not None:
        return _wall(on, at or time(0, 0), tz)
    assert at is not None
    return next_time_of_day(now + (after or timedelta(0)), at, tz)
