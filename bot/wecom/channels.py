"""Channel QR codes (渠道活码): a WeCom contact way per channel, with its own ``state``.
A customer added through it is tagged with the channel's tags, greeted with its welcome message
and remembers the channel as their source (see bot/wecom/sync.py)."""

from __future__ import annotations

import secrets
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.orm import Session

from bot.core import wechat
from bot.core.config import Settings
from bot.core.db import session_scope
from bot.core.models import Channel
from journeys.tag_names import checked_tag


class ChannelIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=100)
    reps: list[str] = Field(min_length=1, max_length=100)  # WeCom userids: one rep or a pool
    tags: list[str] = Field(default_factory=list, max_length=20)
    welcome_text: str | None = Field(default=None, min_length=1, max_length=4000)
    state: str | None = Field(
        default=None, min_length=1, max_length=30, pattern=r"^[A-Za-z0-9_\-]+$"
    )

    @field_validator("reps", "tags")
    @classmethod
    def _no_blanks(cls, values: list[str]) -> list[str]:
        cleaned = [v.strip() for v in values]
        if any(not v or len(v) > 64 for v in cleaned):
            raise ValueError("every entry must be 1 to 64 characters")
        return list(dict.fromkeys(cleaned))

    @field_validator("tags")
    @classmethod
    def _tag_names(cls, tags: list[str]) -> list[str]:
        return [checked_tag(t) for t in tags]


class ChannelError(Exception):
    """The platform refused the contact way; ``errcode``/``errmsg`` as WeChat gave them."""

    def __init__(self, errcode: int | None, errmsg: str):
        self.errcode, self.errmsg = errcode, errmsg
        super().__init__(f"{errcode}: {errmsg}")


def channel_json(c: Channel) -> dict[str, Any]:
    return {
        "id": c.id,
        "name": c.name,
        "state": c.state,
        "config_id": c.config_id,
        "qr_code": c.qr_code,
        "reps": c.reps,
        "tags": c.tags,
        "welcome_text": c.welcome_text,
        "created_at": c.created_at.isoformat(),
    }


def create(settings: Settings, data: ChannelIn) -> Channel:
    """Create the contact way on WeCom (one rep: type 1; a pool: type 2), then store it."""
    state = data.state or f"ch{secrets.token_hex(6)}"
    body = {
        "type": 1 if len(data.reps) == 1 else 2,
        "scene": 2,  # a QR code
        "state": state,
        "user": data.reps,
        "skip_verify": True,
        "remark": data.name[:30],
    }
    try:
        result = wechat.wecom(settings).call("post", "externalcontact/add_contact_way", data=body)
    except wechat.PlatformError as exc:
        raise ChannelError(exc.errcode, exc.errmsg) from exc
    with session_scope(settings.database_url) as session:
        row = Channel(
            name=data.name,
            state=state,
            config_id=result.get("config_id"),
            qr_code=result.get("qr_code"),
            reps=data.reps,
            tags=data.tags,
            welcome_text=data.welcome_text,
        )
        session.add(row)
        session.flush()
        return row


def state_taken(session: Session, state: str) -> bool:
    return session.execute(sa.select(Channel.id).where(Channel.state == state)).first() is not None


def list_channels(session: Session) -> list[Channel]:
    import sqlalchemy as sa

    return list(session.execute(sa.select(Channel).order_by(Channel.id)).scalars())
