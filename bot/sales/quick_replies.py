"""Quick replies (话术库): groups of texts, links and images a rep puts into the chat from the
sidebar (``sendChatMessage``). Managed through /api/quick-replies; ``search`` is what the
sidebar's search box calls, ``chat_message`` the argument it hands to ``sendChatMessage``."""

from __future__ import annotations

from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator
from sqlalchemy.orm import Session

from bot.core.models import QuickReply, QuickReplyGroup, utcnow

SEARCH_LIMIT = 50


class DuplicateName(Exception):
    pass


class UnknownGroup(Exception):
    pass


class GroupIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: str = Field(min_length=1, max_length=64)
    position: int = Field(default=0, ge=0, le=10_000)


class ReplyIn(BaseModel):
    """A quick reply: ``text`` needs content; ``link`` a title and url (content is its
    description, image_url its picture); ``image`` a WeCom media_id."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    group_id: int = Field(ge=1, le=2**31 - 1)
    kind: Literal["text", "link", "image"]
    title: str = Field(min_length=1, max_length=64)
    content: str = Field(default="", max_length=2000)
    url: HttpUrl | None = None
    image_url: HttpUrl | None = None
    media_id: str | None = Field(default=None, min_length=1, max_length=128)
    position: int = Field(default=0, ge=0, le=10_000)

    @model_validator(mode="after")
    def _complete(self) -> ReplyIn:
        need = {"text": "content", "link": "url", "image": "media_id"}[self.kind]
        if not getattr(self, need):
            raise ValueError(f"{need}: a {self.kind} quick reply needs {need}")
        if len(str(self.url or "")) > 1000 or len(str(self.image_url or "")) > 1000:
            raise ValueError("url: at most 1000 characters")
        return self


# --- reading ---------------------------------------------------------------------------------


def reply_json(r: QuickReply) -> dict[str, Any]:
    return {
        "id": r.id,
        "group_id": r.group_id,
        "kind": r.kind,
        "title": r.title,
        "content": r.content,
        "url": r.url,
        "image_url": r.image_url,
        "media_id": r.media_id,
        "position": r.position,
        "updated_at": r.updated_at.isoformat(),
    }


def group_json(g: QuickReplyGroup, replies: list[QuickReply] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": g.id, "name": g.name, "position": g.position}
    if replies is not None:
        out["replies"] = [reply_json(r) for r in replies]
    return out


def library(session: Session) -> list[dict[str, Any]]:
    """Every group, in order, with its replies in order."""
    groups = list(
        session.execute(
            sa.select(QuickReplyGroup).order_by(QuickReplyGroup.position, QuickReplyGroup.id)
        ).scalars()
    )
    replies: dict[int, list[QuickReply]] = {g.id: [] for g in groups}
    for r in session.execute(
        sa.select(QuickReply).order_by(QuickReply.position, QuickReply.id)
    ).scalars():
        replies[r.group_id].append(r)
    return [group_json(g, replies[g.id]) for g in groups]


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped.lower()}%"


def search(
    session: Session, query: str, group_id: int | None = None, limit: int = SEARCH_LIMIT
) -> list[QuickReply]:
    """Replies whose title or text holds every word of ``query`` (case-insensitive; words
    split on spaces), those matching in the title first, then in the library's order."""
    q, g = QuickReply.__table__.c, QuickReplyGroup.__table__.c
    words = [w for w in query.split() if w][:8]
    stmt = sa.select(QuickReply).join(QuickReplyGroup.__table__, g.id == q.group_id)
    for word in words:
        pattern = _like(word)
        stmt = stmt.where(
            sa.or_(
                sa.func.lower(q.title).like(pattern, escape="\\"),
                sa.func.lower(q.content).like(pattern, escape="\\"),
            )
        )
    if group_id is not None:
        stmt = stmt.where(q.group_id == group_id)
    in_title = sa.and_(
        sa.true(), *(sa.func.lower(q.title).like(_like(w), escape="\\") for w in words)
    )
    order = sa.case((in_title, 0), else_=1)
    stmt = stmt.order_by(order, g.position, g.id, q.position, q.id).limit(limit)
    return list(session.execute(stmt).scalars())


def chat_message(r: QuickReply) -> dict[str, Any]:
    """The argument of the JS-SDK's ``wx.invoke('sendChatMessage', …)`` for this reply."""
    if r.kind == "text":
        return {"msgtype": "text", "text": {"content": r.content}}
    if r.kind == "image":
        return {"msgtype": "image", "image": {"mediaid": r.media_id}}
    news = {"link": r.url, "title": r.title, "desc": r.content, "imgUrl": r.image_url or ""}
    return {"msgtype": "news", "news": news}


# --- editing (each commits) -----------------------------------------------------------------------


def _name_taken(session: Session, name: str, other_than: int | None) -> bool:
    g = QuickReplyGroup.__table__.c
    query = sa.select(g.id).where(g.name == name)
    if other_than is not None:
        query = query.where(g.id != other_than)
    return session.execute(query).first() is not None


def save_group(
    session: Session, data: GroupIn, row: QuickReplyGroup | None = None
) -> QuickReplyGroup:
    """Create (``row`` None) or rename/reorder a group; DuplicateName."""
    if _name_taken(session, data.name, row.id if row else None):
        raise DuplicateName(data.name)
    row = row or QuickReplyGroup(name=data.name)
    row.name, row.position = data.name, data.position
    session.add(row)
    session.commit()
    return row


def delete_group(session: Session, row: QuickReplyGroup) -> int:
    """Delete a group and its replies; how many replies went with it."""
    gone = session.execute(sa.delete(QuickReply).where(QuickReply.group_id == row.id)).rowcount
    session.delete(row)
    session.commit()
    return gone


def save_reply(session: Session, data: ReplyIn, row: QuickReply | None = None) -> QuickReply:
    """Create (``row`` None) or replace a reply; UnknownGroup."""
    if session.get(QuickReplyGroup, data.group_id) is None:
        raise UnknownGroup(data.group_id)
    row = row or QuickReply(group_id=data.group_id, kind=data.kind, title=data.title)
    values = data.model_dump(mode="json")
    for key, value in values.items():
        setattr(row, key, value)
    row.updated_at = utcnow()
    session.add(row)
    session.commit()
    return row


def delete_reply(session: Session, row: QuickReply) -> None:
    session.delete(row)
    session.commit()
