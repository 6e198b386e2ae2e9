"""What the sales sidebar shows an employee of the campaigns: the open ones with their
personal link, QR code and poster, and sending that link to their WeCom."""

from __future__ import annotations

from typing import Any

from bot.campaigns import actions, sharing, store
from bot.core.config import Settings
from bot.core.db import session_scope
from bot.core.models import Campaign

KIND_LABELS = {"landing": "活动报名", "resource": "资料下载", "event": "会议 / 直播"}


class NoSuchCampaign(Exception):
    pass


def open_campaigns(settings: Settings, userid: str) -> list[dict[str, Any]]:
    """The campaigns open now, newest first, each with this employee's link."""
    with session_scope(settings.database_url) as session:
        rows = [c for c in store.all_campaigns(session) if actions.status(c) == "open"]
        session.expunge_all()
    rows.sort(key=lambda c: c.id or 0, reverse=True)
    return [
        {
            "id": c.id,
            "title": c.title,
            "kind": KIND_LABELS.get(c.kind, c.kind),
            **sharing.employee_link(settings, c, userid),
        }
        for c in rows
    ]


def send_my_link(settings: Settings, campaign_id: int, userid: str, request_key: str) -> int:
    """The employee's link and poster to their own WeCom (once per ``request_key``)."""
    with session_scope(settings.database_url) as session:
        camp: Campaign | None = store.get(session, campaign_id)
        if camp is None or actions.status(camp) != "open":
            raise NoSuchCampaign(campaign_id)
        session.expunge(camp)
    return sharing.send_link(settings, camp, userid, request_key)
