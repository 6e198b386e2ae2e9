"""What each send did, per message, per broadcast and per journey step: one grouped query
over the message rows (each figure a CASE over correlated EXISTS on indexed columns), one for
the failures by error code and one for the clicks; no per-row Python.

- sent: left for the platform (``sent``, or ``delivered`` when a stream marks rows so);
  delivered: the platform said it arrived (the row's ``delivered`` status, e.g. from a mass
  or template job's finish callback); failed (``failed``/``unknown``, by error code), held,
  skipped, pending (not decided yet).
- reach: contacts who, within YUCHI_REACH_WINDOW after the send, clicked one of its tracked
  links (a page view through a tracked link is such a click: it is recorded at the redirect)
  or replied (any inbound message but a stop word); a contact counts once.
- negative: contacts who unfollowed or sent a stop word (退订, TD, 取消 …) within 24 h.
- conversions: contacts with the goal event within YUCHI_CONVERSION_WINDOW after the send.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.core.config import Settings
from bot.core.db import plus_seconds
from bot.core.models import Broadcast, Event, Message, MessageClick

SENT = ("sent", "delivered")
FAILED = ("failed", "unknown")
PENDING = ("queued", "scheduled", "claimed", "sending")
REPLIES = (
    "oa.text",
    "oa.image",
    "oa.voice",
    "oa.video",
    "oa.shortvideo",
    "oa.location",
    "oa.link",
    "oa.miniprogrampage",
)
UNFOLLOW = "oa.unsubscribe"
STOP_WORDS = ("退订", "TD", "T", "取消", "取消订阅", "退出", "STOP", "UNSUBSCRIBE")
NEGATIVE_WINDOW = timedelta(hours=24)
GOAL = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")


def valid_goal(goal: str | None) -> bool:
    return goal is None or (len(goal) <= 64 and GOAL.match(goal) is not None)


def _delivered(m: Any) -> Any:
    """The platform said it arrived: the ``delivered`` status, or a ``delivered_at`` if the
    row has one (the stream matching mass/template job reports may mark either)."""
    marked = m.status == "delivered"
    at = m.get("delivered_at")
    return sa.or_(marked, at.is_not(None)) if at is not None else marked


def _columns(session: Session, settings: Settings, goal: str | None) -> list[Any]:
    m, k = Message.__table__.c, MessageClick.__table__.c
    e = Event.__table__.alias("e")

    def within(seconds: float) -> Any:
        return sa.and_(
            e.c.contact_id == m.contact_id,
            e.c.occurred_at >= m.sent_at,
            e.c.occurred_at <= plus_seconds(session, m.sent_at, seconds),
        )

    stop = sa.and_(
        e.c.type == "oa.text",
        sa.func.upper(sa.func.trim(e.c.properties["content"].as_string())).in_(STOP_WORDS),
    )
    clicked = (
        sa.select(1)
        .where(
            k.message_id == m.id,
            k.clicked_at >= m.sent_at,
            k.clicked_at <= plus_seconds(session, m.sent_at, settings.reach_window),
        )
        .exists()
    )
    replied = (
        sa.select(1)
        .select_from(e)
        .where(within(settings.reach_window), e.c.type.in_(REPLIES), sa.not_(stop))
        .exists()
    )
    negative = (
        sa.select(1)
        .select_from(e)
        .where(
            within(NEGATIVE_WINDOW.total_seconds()),
            sa.or_(e.c.type == UNFOLLOW, stop),
        )
        .exists()
    )
    was_sent = m.sent_at.is_not(None)

    def contacts_where(cond: Any) -> Any:
        return sa.func.count(sa.distinct(sa.case((sa.and_(was_sent, cond), m.contact_id))))

    def rows_where(cond: Any) -> Any:
        return sa.func.coalesce(sa.func.sum(sa.case((cond, 1), else_=0)), 0)

    cols = [
        sa.func.count().label("messages"),
        rows_where(m.status.in_(SENT)).label("sent"),
        rows_where(_delivered(m)).label("delivered"),
        rows_where(m.status.in_(FAILED)).label("failed"),
        rows_where(m.status == "held").label("held"),
        rows_where(m.status == "skipped").label("skipped"),
        rows_where(m.status.in_(PENDING)).label("pending"),
        contacts_where(sa.or_(clicked, replied)).label("reach"),
        contacts_where(negative).label("negative"),
    ]
    if goal is not None:
        converted = (
            sa.select(1)
            .select_from(e)
            .where(within(settings.conversion_window), e.c.type == goal)
            .exists()
        )
        cols.append(contacts_where(converted).label("conversions"))
    return cols


def figures(
    session: Session,
    settings: Settings,
    where: Any,
    goal: str | None = None,
    by: Any = None,
) -> dict[Any, dict[str, Any]]:
    """The figures of the message rows matching ``where``, grouped by the column ``by``
    (None: one group, keyed None)."""
    if session.get_bind().dialect.name == "postgresql":
        # Index probes per row: the planner's cost invites JIT, whose compile time (seconds)
        # is all of the query's time (bench/send_reports.py). This transaction only.
        session.execute(sa.text("SET LOCAL jit = off"))
    m, k = Message.__table__.c, MessageClick.__table__.c
    key = (by if by is not None else sa.literal(None)).label("key")
    groups = sa.select(key, *_columns(session, settings, goal)).where(where)
    if by is not None:
        groups = groups.group_by(by)
    out: dict[Any, dict[str, Any]] = {}
    for row in session.execute(groups).mappings():
        fig = {name: int(value) for name, value in row.items() if name != "key"}
        fig.update(failed_by_code={}, clicks=0, clickers=0)
        fig["reach_rate"] = round(fig["reach"] / fig["sent"], 4) if fig["sent"] else 0.0
        if goal is not None:
            fig["conversion_rate"] = (
                round(fig["conversions"] / fig["sent"], 4) if fig["sent"] else 0.0
            )
        out[row["key"]] = fig
    if not out:
        return out
    failures = sa.select(key, m.error_code, sa.func.count()).where(where, m.status.in_(FAILED))
    failures = failures.group_by(*([by] if by is not None else []), m.error_code)
    for group, code, n in session.execute(failures):
        out[group]["failed_by_code"][str(code) if code is not None else "none"] = n
    clicks = (
        sa.select(key, sa.func.count(), sa.func.count(sa.distinct(k.contact_id)))
        .select_from(Message.__table__.join(MessageClick.__table__, k.message_id == m.id))
        .where(where)
    )
    if by is not None:
        clicks = clicks.group_by(by)
    for group, n, who in session.execute(clicks):
        if group in out:
            out[group].update(clicks=n, clickers=who)
    return out


def windows(settings: Settings) -> dict[str, float]:
    return {
        "reach_seconds": settings.reach_window,
        "negative_seconds": NEGATIVE_WINDOW.total_seconds(),
        "conversion_seconds": settings.conversion_window,
    }


def broadcast_report(
    session: Session, settings: Settings, broadcast_id: int, goal: str | None
) -> dict[str, Any]:
    m = Message.__table__.c
    fig = figures(session, settings, m.broadcast_id == broadcast_id, goal)
    out = {
        "broadcast_id": broadcast_id,
        "goal": goal,
        "windows": windows(settings),
        **(fig.get(None) or empty(goal)),
    }
    b = session.get(Broadcast, broadcast_id)
    if b is not None and b.variants:
        per = figures(session, settings, m.broadcast_id == broadcast_id, goal, by=m.variant)
        out["variants"] = [
            {"name": v["name"], "percent": v["percent"], **(per.get(i) or empty(goal))}
            for i, v in enumerate(b.variants)
        ]
    return out


def message_report(
    session: Session, settings: Settings, message_id: int, goal: str | None
) -> dict[str, Any]:
    fig = figures(session, settings, Message.__table__.c.id == message_id, goal)
    return {"message_id": message_id, "goal": goal, "windows": windows(settings), **fig[None]}


def step_figures(
    session: Session,
    settings: Settings,
    enrollment_ids: Any,
    goal: str | None,
) -> dict[str, dict[str, Any]]:
    """Per journey step, for the sends of these enrollments (a subquery of ids)."""
    m = Message.__table__.c
    where = sa.and_(m.enrollment_id.in_(enrollment_ids), m.step.is_not(None))
    return figures(session, settings, where, goal, by=m.step)


def empty(goal: str | None) -> dict[str, Any]:
    names = ("messages", "sent", "delivered", "failed", "held", "skipped", "pending")
    out: dict[str, Any] = {n: 0 for n in names}
    out.update(reach=0, negative=0, failed_by_code={}, clicks=0, clickers=0, reach_rate=0.0)
    if goal is not None:
        out.update(conversions=0, conversion_rate=0.0)
    return out
