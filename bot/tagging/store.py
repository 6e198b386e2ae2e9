"""Tag rules and the interest dictionary in the database: CRUD, the YAML import, and the tag
overview (every tag with its contact count, and the WeCom corp tag library)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.core.db import upsert_by_name
from bot.core.models import ContactTag, CorpTag, InterestWord, TagRule
from bot.tagging import tags as tagging
from bot.tagging.rules import TagRuleIn

DEFAULT_INTEREST_WORDS = Path(__file__).parent.parent / "defaults" / "interest_words.yaml"


class DuplicateName(Exception):
    pass


def rule_to_json(row: TagRule) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "event_type": row.event_type,
        "conditions": row.conditions,
        "add_tags": row.add_tags,
        "remove_tags": row.remove_tags,
        "enabled": row.enabled,
        "created_at": row.created_at.isoformat(),
    }


def list_rules(session: Session) -> list[TagRule]:
    return list(session.execute(sa.select(TagRule).order_by(TagRule.id)).scalars())


def _check_name(session: Session, name: str, rule_id: int | None = None) -> None:
    query = sa.select(TagRule.id).where(TagRule.name == name)
    if rule_id is not None:
        query = query.where(TagRule.id != rule_id)
    if session.execute(query).first():
        raise DuplicateName(name)


def create_rule(session: Session, data: TagRuleIn) -> TagRule:
    _check_name(session, data.name)
    row = TagRule(**data.columns())
    session.add(row)
    session.flush()
    tagging.invalidate()
    return row


def update_rule(session: Session, row: TagRule, data: TagRuleIn) -> TagRule:
    _check_name(session, data.name, row.id)
    for key, value in data.columns().items():
        setattr(row, key, value)
    session.add(row)
    session.flush()
    tagging.invalidate()
    return row


def delete_rule(session: Session, row: TagRule) -> None:
    session.delete(row)
    session.flush()
    tagging.invalidate()


def interest_words(session: Session) -> dict[str, str]:
    return dict(
        session.execute(
            sa.select(InterestWord.word, InterestWord.tag).order_by(InterestWord.word)
        ).all()
    )


def set_interest_words(session: Session, words: dict[str, str], replace: bool) -> int:
    """Write the dictionary: the whole of it (``replace``) or these words added/updated."""
    t = InterestWord.__table__
    if replace:
        session.execute(sa.delete(t))
    elif words:
        session.execute(sa.delete(t).where(t.c.word.in_(list(words))))
    if words:
        session.execute(sa.insert(t), [{"word": w, "tag": tag} for w, tag in words.items()])
    tagging.invalidate()
    return len(words)


def import_file(session: Session, rules: list[TagRuleIn], words: dict[str, str]) -> dict[str, int]:
    """Upsert rules by name and merge the words, in the caller's transaction."""
    created, updated = upsert_by_name(session, TagRule, rules, create_rule, update_rule)
    set_interest_words(session, words, replace=False)
    return {"created": created, "updated": updated, "words": len(words)}


def overview(session: Session) -> dict[str, Any]:
    """Every tag in use with how many contacts have it (by source), and the corp tags."""
    t = ContactTag.__table__.c
    tags: dict[str, dict[str, Any]] = {}
    for tag, source, count in session.execute(
        sa.select(t.tag, t.source, sa.func.count()).group_by(t.tag, t.source).order_by(t.tag)
    ).all():
        entry = tags.setdefault(tag, {"tag": tag, "contacts": 0, "sources": {}})
        entry["contacts"] += count
        entry["sources"][source] = count
    corp = [
        {
            "tag_id": c.tag_id,
            "name": c.name,
            "group_id": c.group_id,
            "group_name": c.group_name,
            "synced_at": c.synced_at.isoformat(),
        }
        for c in session.execute(
            sa.select(CorpTag)
            .where(CorpTag.deleted.is_(False))
            .order_by(CorpTag.group_name, CorpTag.name)
        ).scalars()
    ]
    return {"tags": list(tags.values()), "corp_tags": corp}
