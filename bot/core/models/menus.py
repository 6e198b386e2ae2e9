"""Official Account menus as data: the menus staff edit, and each published set of them."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from bot.core.models.columns import JSONType, ts_column, utcnow


class Menu(SQLModel, table=True):
    """One menu: the default (``tag`` None, one at most) or a conditional menu shown to
    followers carrying the Yuchi tag ``tag`` (through the OA tag that tag sync keeps).
    ``position`` orders conditional menus: the lowest wins when a follower matches several."""

    __tablename__ = "menu"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    tag: str | None = Field(default=None, max_length=64, unique=True)
    position: int = Field(default=0)
    buttons: list = Field(default_factory=list, sa_column=sa.Column(JSONType, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())


class MenuVersion(SQLModel, table=True):
    """A published set of menus, never changed: ``menus`` is a list of {menu_id, name, tag,
    tag_id, platform_menu_id, buttons}. ``published`` when every platform call succeeded
    (the live version is the newest published one), ``failed`` with ``error`` otherwise."""

    __tablename__ = "menu_version"

    id: int | None = Field(default=None, primary_key=True)
    status: str = Field(default="published", max_length=16)
    menus: list = Field(default_factory=list, sa_column=sa.Column(JSONType, nullable=False))
    error: str | None = Field(default=None, max_length=500)
    published_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
