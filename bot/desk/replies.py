"""Quick replies (话术库) for the sidebar: search the library as a rep, each hit with its
group and the argument the page hands to ``wx.invoke('sendChatMessage', …)``."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from bot.core.config import Settings
from bot.core.db import session_scope
from bot.core.models import QuickReply, QuickReplyGroup
from bot.desk.actions import Forbidden
from bot.sales import quick_replies
from bot.sales.access import staff

KINDS = {"text": "文字", "link": "链接", "image": "图片"}
PREVIEW = 60


def _hit(r: QuickReply, groups: dict[int, str]) -> dict[str, Any]:
    preview = r.content if r.kind != "image" else "图片"
    return {
        "id": r.id,
        "kind": r.kind,
        "kind_label": KINDS.get(r.kind, r.kind),
        "title": r.title,
        "preview": preview[:PREVIEW] + ("…" if len(preview) > PREVIEW else ""),
        "group": groups.get(r.group_id, ""),
        "message": quick_replies.chat_message(r),
    }


def search(settings: Settings, userid: str, query: str, group_id: int | None) -> dict[str, Any]:
    """The replies matching ``query`` (every group's when it is empty), and the groups to
    narrow by; Forbidden when ``userid`` is not on the staff."""
    with session_scope(settings.database_url) as session:
        if staff(session, userid) is None:
            raise Forbidden(0)
        g = QuickReplyGroup.__table__.c
        groups = dict(session.execute(sa.select(g.id, g.name).order_by(g.position, g.id)).all())
        hits = quick_replies.search(session, query, group_id)
        return {
            "groups": [{"id": k, "name": v} for k, v in groups.items()],
            "replies": [_hit(r, groups) for r in hits],
        }
