"""Tags: tag rules, interest words, and the platform tag libraries and sync rows."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from bot.core.models.columns import JSONType, ts_column, utcnow


class TagRule(SQLModel, table=True):
    """Add or remove tags when an event matches: type plus conditions on its properties."""

    __tablename__ = "tag_rule"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    event_type: str = Field(max_length=64)
    conditions: dict = Field(default_factory=dict, sa_column=sa.Column(JSONType, nullable=False))
    add_tags: list = Field(default_factory=list, sa_column=sa.Column(JSONType, nullable=False))
    remove_tags: list = Field(default_factory=list, sa_column=sa.Column(JSONType, nullable=False))
    enabled: bool = Field(default=True)
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())


class InterestWord(SQLModel, table=True):
    """The interest dictionary: a word in free text (jieba tokens) -> an interest tag."""

    __tablename__ = "interest_word"

    word: str = Field(primary_key=True, max_length=64)
    tag: str = Field(max_length=64)


class CorpTag(SQLModel, table=True):
    """The local copy of WeCom's corp tag library (企业客户标签)."""

    __tablename__ = "corp_tag"

    tag_id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=64, index=True)
    group_id: str = Field(max_length=64)
    group_name: str = Field(max_length=64)
    deleted: bool = Field(default=False)
    synced_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())


class PlatformTag(SQLModel, table=True):
    """Our tag name -> the Official Account's user tag id (created on first sync)."""

    __tablename__ = "platform_tag"

    name: str = Field(primary_key=True, max_length=64)
    oa_tag_id: int | None = Field(default=None)


class TagSync(SQLModel, table=True):
    """A tag change owed to a platform (OA user tags, WeCom corp tags), batched by a job."""

    __tablename__ = "tag_sync"
    __table_args__ = (sa.Index("ix_tag_sync_pending", "status", "platform"),)

    id: int | None = Field(default=None, primary_key=True)
    contact_id: int = Field(foreign_key="contact.id", index=True)
    platform: str = Field(max_length=8)  # oa | wecom
    op: str = Field(max_length=8)  # add | remove
    tag: str = Field(max_length=64)
    status: str = Field(default="pending", max_length=16)  # pending | done | failed
    attempts: int = Field(default=0)
    error: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    done_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
