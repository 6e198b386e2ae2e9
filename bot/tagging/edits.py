"""What a marketer changes by hand, each as one committed unit: tag rules and the interest
dictionary (commit, then bump their version so every process reloads them), a contact's manual tags (commit,
then kick the sync to the platforms); and every tag known to Yuchi.

Each function commits the session it is given (the request's)."""

from __future__ import annotations

import functools
from typing import Any

import sqlalchemy as sa
import yaml
from sqlalchemy.orm import Session

import journeys
from bot.contacts import identity as contacts
from bot.core.config import Settings
from bot.core.models import (
    Contact,
    ContactTag,
    CorpTag,
    InterestWord,
    Journey,
    ReplyRule,
    TagRule,
)
from bot.tagging import store
from bot.tagging import tags as tagging
from bot.tagging.rules import TagRuleIn

DuplicateName = store.DuplicateName


class UnknownContact(LookupError):
    pass


# --- tag rules and the interest dictionary ---------------------------------------------------


def _committed(settings: Settings, session: Session) -> None:
    session.commit()
    tagging.changed(settings)  # every process reloads, this one too


def create_rule(settings: Settings, session: Session, data: TagRuleIn) -> TagRule:
    """A new tag rule; DuplicateName when its name is taken."""
    row = store.create_rule(session, data)
    _committed(settings, session)
    return row


def update_rule(settings: Settings, session: Session, row: TagRule, data: TagRuleIn) -> TagRule:
    store.update_rule(session, row, data)
    _committed(settings, session)
    return row


def delete_rule(settings: Settings, session: Session, row: TagRule) -> None:
    store.delete_rule(session, row)
    _committed(settings, session)


def replace_interest_words(
    settings: Settings, session: Session, words: dict[str, str]
) -> dict[str, str]:
    """Make ``words`` the whole dictionary; returns it as stored."""
    store.set_interest_words(session, words, replace=True)
    _committed(settings, session)
    return store.interest_words(session)


# --- a contact's manual tags -----------------------------------------------------------------


def contact_id_of(session: Session, contact_id: int) -> int:
    """The contact's current id (a merged contact's old id works too); UnknownContact."""
    if session.get(Contact, contact_id) is None:
        raise UnknownContact(contact_id)
    return contacts.resolve(session, contact_id)


def tag_contact(
    settings: Settings, session: Session, contact_id: int, tag: str, by: str = "api"
) -> tuple[ContactTag, bool]:
    """Give the contact ``tag`` by hand (``by``: the rep's userid, or "api"): (its tag row,
    whether it is new)."""
    cid = contact_id_of(session, contact_id)
    added = tagging.add_tag(session, cid, tag, "manual", by)
    session.commit()
    tagging.kick_sync(settings, session)
    row = session.execute(
        sa.select(ContactTag).where(ContactTag.contact_id == cid, ContactTag.tag == tag)
    ).scalar_one()
    return row, added


def untag_contact(
    settings: Settings, session: Session, contact_id: int, tag: str, by: str = "api"
) -> bool:
    """Take ``tag`` off the contact by hand; False when they did not have it."""
    cid = contact_id_of(session, contact_id)
    if not tagging.remove_tag(session, cid, tag, "manual", by):
        return False
    session.commit()
    tagging.kick_sync(settings, session)
    return True


def contact_tag_json(row: ContactTag) -> dict[str, Any]:
    return {
        "contact_id": row.contact_id,
        "tag": row.tag,
        "source": row.source,
        "source_ref": row.source_ref,
        "actor": row.source_ref,
        "cause_event_id": row.cause_event_id,
        "added_at": row.created_at.isoformat(),
    }


# --- every known tag -------------------------------------------------------------------------


def known_tags(session: Session) -> set[str]:
    """Every tag something can give a contact: tags in use, tag rules, reply rules, the interest
    dictionary (and the default one), WeCom's corp tags, and every journey's own add_tag."""
    found = set(session.execute(sa.select(ContactTag.tag).distinct()).scalars())
    found |= set(session.execute(sa.select(InterestWord.tag).distinct()).scalars())
    found |= set(session.execute(sa.select(CorpTag.name).distinct()).scalars())
    for (tags,) in session.execute(sa.select(TagRule.add_tags)):
        found |= set(tags or [])
    for (tags,) in session.execute(sa.select(ReplyRule.tags)):
        found |= set(tags or [])
    for (data,) in session.execute(sa.select(Journey.definition)):
        found |= journeys.added_tags(data)
    return found | _default_interest_tags()


@functools.cache
def _default_interest_tags() -> frozenset[str]:
    text = store.DEFAULT_INTEREST_WORDS.read_text(encoding="utf-8")
    data = yaml.safe_load(text) or {}
    return frozenset(str(t) for t in (data.get("interest_words") or {}).values())
