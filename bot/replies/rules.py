"""Reply rules in the database: validation, CRUD, YAML import, and the per-process copy read
on every callback (bot.core.versioned: reloaded when a committed change bumps its version in
Redis, within a quarter second in every process)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import sqlalchemy as sa
import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationError,
    model_validator,
)
from sqlalchemy.orm import Session

from bot.core.config import Settings
from bot.core.db import upsert_by_name
from bot.core.models import ReplyRule, utcnow
from bot.core.versioned import Versioned
from bot.replies.match import Rule
from journeys import words
from journeys.tag_names import tag_problem

# YAML reads a bare 618 or 2024 as a number; a keyword or tag is always text.
Word = Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, int | float) else v)]


class Article(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=64)
    description: str = Field(default="", max_length=512)
    url: HttpUrl
    image: HttpUrl | None = None


class ReplyRuleIn(BaseModel):
    """What the API and the YAML import accept for one rule."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=100)
    trigger: Literal["keyword", "subscribe", "click"] = "keyword"
    match: Literal["exact", "contains", "jieba"] = "jieba"
    keywords: list[Word] = Field(default_factory=list, max_length=50)
    click_key: str | None = Field(default=None, min_length=1, max_length=128)
    reply: str | None = Field(default=None, min_length=1, max_length=2000)
    news: Article | None = None
    tags: list[Word] = Field(default_factory=list, max_length=20)
    priority: int = Field(default=0, ge=-1000, le=1000)
    enabled: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> ReplyRuleIn:
        if self.trigger == "keyword":
            self.keywords = [k.strip() for k in self.keywords if k.strip()]
            if not self.keywords:
                raise ValueError("keywords: a keyword rule needs at least one keyword")
        if self.trigger == "click" and not self.click_key:
            raise ValueError("click_key: a click rule needs the menu key it answers")
        if self.reply and self.news:
            raise ValueError("reply: give either reply (text) or news, not both")
        if not (self.reply or self.news or self.tags):
            raise ValueError("reply: a rule needs a reply, a news article or tags to add")
        for tag in self.tags:
            problem = tag_problem(tag.strip())
            if problem:
                raise ValueError(f"tags: {problem}")
        return self

    def columns(self) -> dict[str, Any]:
        if self.news:
            reply_type = "news"
            reply: dict[str, Any] = self.news.model_dump(mode="json")
        else:
            reply_type, reply = "text", ({"content": self.reply} if self.reply else {})
        return {
            "name": self.name,
            "trigger": self.trigger,
            "match": self.match,
            "keywords": self.keywords if self.trigger == "keyword" else [],
            "click_key": self.click_key if self.trigger == "click" else None,
            "reply_type": reply_type,
            "reply": reply,
            "tags": self.tags,
            "priority": self.priority,
            "enabled": self.enabled,
        }


def rule_to_json(row: ReplyRule) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row.id,
        "name": row.name,
        "trigger": row.trigger,
        "match": row.match,
        "keywords": row.keywords,
        "click_key": row.click_key,
        "reply": row.reply.get("content") if row.reply_type == "text" else None,
        "news": row.reply if row.reply_type == "news" else None,
        "tags": row.tags,
        "priority": row.priority,
        "enabled": row.enabled,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }
    return out


def list_rules(session: Session) -> list[ReplyRule]:
    return list(session.execute(sa.select(ReplyRule).order_by(ReplyRule.id)).scalars())


class DuplicateName(Exception):
    pass


def create_rule(session: Session, data: ReplyRuleIn) -> ReplyRule:
    if session.execute(sa.select(ReplyRule.id).where(ReplyRule.name == data.name)).first():
        raise DuplicateName(data.name)
    row = ReplyRule(**data.columns())
    session.add(row)
    session.flush()
    invalidate()
    return row


def update_rule(session: Session, row: ReplyRule, data: ReplyRuleIn) -> ReplyRule:
    clash = session.execute(
        sa.select(ReplyRule.id).where(ReplyRule.name == data.name, ReplyRule.id != row.id)
    ).first()
    if clash:
        raise DuplicateName(data.name)
    for key, value in data.columns().items():
        setattr(row, key, value)
    row.updated_at = utcnow()
    session.add(row)
    session.flush()
    invalidate()
    return row


def delete_rule(session: Session, row: ReplyRule) -> None:
    session.delete(row)
    session.flush()
    invalidate()


class RuleImportError(Exception):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def parse_yaml(source: str) -> list[ReplyRuleIn]:
    """Validate a whole file before anything is written; every problem is reported."""
    try:
        doc = yaml.safe_load(source)
    except yaml.YAMLError as exc:
        raise RuleImportError([f"not valid YAML: {exc}"]) from exc
    items = doc.get("replies") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise RuleImportError(["the file must have a top-level 'replies:' list"])
    rules, problems = [], []
    for i, item in enumerate(items, 1):
        try:
            rules.append(ReplyRuleIn.model_validate(item))
        except ValidationError as exc:
            for err in exc.errors():
                where = ".".join(str(p) for p in err["loc"]) or "rule"
                problems.append(f"replies[{i}] {where}: {err['msg']}")
    names = [r.name for r in rules]
    problems += [
        f"name {n!r} appears more than once"
        for n in sorted({n for n in names if names.count(n) > 1})
    ]
    if problems:
        raise RuleImportError(problems)
    return rules


def import_rules(session: Session, rules: list[ReplyRuleIn]) -> tuple[int, int]:
    """Upsert by name in the caller's transaction. Returns (created, updated)."""
    return upsert_by_name(session, ReplyRule, rules, create_rule, update_rule)


# --- the per-process copy the callback reads -----------------------------------------------

_active: Versioned[list[Rule]] = Versioned("reply-rules")


def invalidate() -> None:
    """This process reloads the rules on its next read (the change's own transaction)."""
    _active.drop()


def changed(settings: Settings) -> None:
    """After the commit of a change: every process reloads the rules within a moment."""
    _active.changed(settings)


def active_rules(settings: Settings, session: Session) -> list[Rule]:
    return _active.get(settings, lambda: _load(session), settings.reply_cache_seconds)


def _load(session: Session) -> list[Rule]:
    rows = session.execute(sa.select(ReplyRule).where(ReplyRule.enabled.is_(True))).scalars()
    rules = [
        Rule(
            id=r.id or 0,
            name=r.name,
            trigger=r.trigger,
            match=r.match,
            keywords=tuple(r.keywords),
            click_key=r.click_key,
            reply_type=r.reply_type,
            reply=dict(r.reply),
            tags=tuple(r.tags),
            priority=r.priority,
        )
        for r in rows
    ]
    words.add_words([k for r in rules for k in r.keywords])
    return rules
