"""The rep's next follow-up with a customer, from the sidebar: set one (when, what to do),
cancel it, and the pending one the page shows. Each is checked against the access rules
first; the reminder itself (its job, its one app message) is bot.sales.reminders'."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from bot.core.config import Settings
from bot.core.db import session_scope
from bot.core.models import FollowUpReminder, utcnow
from bot.desk.actions import Forbidden, Invalid, Refused, visible
from bot.sales import reminders

MAX_AHEAD = timedelta(days=366)
DAYS_AHEAD = 31  # how many days the page's day picker offers
WEEKDAYS = "一二三四五六日"


def due_time(settings: Settings, raw: str) -> datetime:
    """The page's day and time (``2026-12-03T10:00``, in the app's zone) or an ISO time with
    its offset; Invalid when it is neither, gone, or more than a year ahead."""
    try:
        at = datetime.fromisoformat(raw)
    except ValueError:
        raise Invalid("提醒时间格式不正确") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=ZoneInfo(settings.timezone))
    now = utcnow()
    if at < now - reminders.PAST_ALLOWED:
        raise Invalid("提醒时间已经过去，请选择以后的时间")
    if at > now + MAX_AHEAD:
        raise Invalid("提醒时间最多设在一年以内")
    return at


def due_choices(settings: Settings, days: int = DAYS_AHEAD) -> dict[str, Any]:
    """The page's two pickers, in the app's zone and in Chinese: the next days ("明天 12月4日
    周五"), the times of day every half hour; tomorrow at 10:00 picked."""
    today = utcnow().astimezone(ZoneInfo(settings.timezone)).date()
    names = {0: "今天", 1: "明天", 2: "后天"}
    day_list = []
    for n in range(days):
        d = today + timedelta(days=n)
        label = f"{d.month}月{d.day}日 周{WEEKDAYS[d.weekday()]}"
        day_list.append((d.isoformat(), f"{names[n]} {label}" if n in names else label))
    times = [f"{h:02d}:{m:02d}" for h in range(7, 23) for m in (0, 30)]
    return {"days": day_list, "times": times, "day": day_list[1][0], "time": "10:00"}


def view(settings: Settings, r: FollowUpReminder) -> dict[str, Any]:
    """A reminder as the page shows it: reminder_json plus the local due time."""
    local = r.due_at.astimezone(ZoneInfo(settings.timezone))
    return {
        **reminders.reminder_json(r),
        "due_local": f"{local.month}月{local.day}日 {local:%H:%M}",
    }


def pending(settings: Settings, session: Session, contact_id: int, userid: str) -> dict | None:
    """This rep's pending reminder for the customer (at most one: a new one replaces it)."""
    mine = [r for r in reminders.reminders_for(session, contact_id) if r.userid == userid]
    return view(settings, mine[0]) if mine else None


def set_reminder(
    settings: Settings, userid: str, contact_id: int, due: str, text: str
) -> tuple[dict[str, Any], bool]:
    """(the reminder, whether it is new): the same time and text again changes nothing."""
    at, text = due_time(settings, due), text.strip()
    with session_scope(settings.database_url) as session:
        cid = visible(session, userid, contact_id)
        same = pending(settings, session, cid, userid)
        if same and same["text"] == text and datetime.fromisoformat(same["due_at"]) == at:
            return same, False
    try:
        row = reminders.set_reminder(settings, cid, userid, at, text, by=userid)
    except reminders.ReminderError:
        raise Refused("无法设置提醒：请检查时间和内容") from None
    return view(settings, row), True


def cancel_reminder(settings: Settings, userid: str, contact_id: int, reminder_id: int) -> str:
    """Cancel this rep's reminder for the customer; its status afterwards (``cancelled``, or
    ``sent`` when it went out already). Forbidden: not this rep's, or not this customer's."""
    with session_scope(settings.database_url) as session:
        cid = visible(session, userid, contact_id)
        row = session.get(FollowUpReminder, reminder_id)
        if row is None or row.contact_id != cid or row.userid != userid:
            raise Forbidden(contact_id)
    if reminders.cancel_reminder(settings, reminder_id, userid):
        return "cancelled"
    with session_scope(settings.database_url) as session:
        return session.get(FollowUpReminder, reminder_id).status
