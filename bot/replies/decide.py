"""decide(): the instant answer to one interaction, as a neutral ``Reply`` (kind, payload).

A journey's next message when the contact is answering its open question (their text then
goes to the journey, not to the keyword replies), else the best reply rule's. The reply is
stored with the event as JSON; the channel's handler renders it (XML for the Official
Account) after the transaction, and a retried callback renders the stored one again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from bot.automation import runner as journey_runner
from bot.contacts.record import LATER, TagGrant, add_tags
from bot.core.config import Settings
from bot.core.models import utcnow
from bot.replies import match as keywords
from bot.replies import rules as autoreply

ANSWERS = ("keyword", "click")  # the triggers that can answer a journey's question
LEGACY = "xml"  # a reply stored before replies were neutral: the rendered document itself


@dataclass(frozen=True)
class Trigger:
    """What the reply rules are asked about: a keyword text, a follow, or a menu click."""

    kind: str  # keyword | subscribe | click
    text: str = ""
    click_key: str = ""


@dataclass(frozen=True)
class Reply:
    """A passive reply, independent of the channel's format.

    ``kind`` is text ({content}), news ({title, description, image, url}) or image
    ({media_id}); ``at`` is when it was decided (Unix seconds), the document's CreateTime,
    so that every retry of the callback gets the very same document."""

    kind: str
    payload: dict[str, Any]
    at: int

    def to_json(self) -> str:
        return json.dumps(
            {"kind": self.kind, "payload": self.payload, "at": self.at}, ensure_ascii=False
        )

    @classmethod
    def from_json(cls, stored: str) -> Reply:
        if stored.lstrip().startswith("<"):
            return cls(LEGACY, {"xml": stored}, 0)
        data = json.loads(stored)
        return cls(data["kind"], data["payload"], data["at"])


def from_rule(rule: keywords.Rule, at: int) -> Reply:
    if rule.reply_type == "news":
        return Reply("news", _article(rule.reply, rule.reply.get("image")), at)
    return Reply("text", {"content": rule.reply.get("content", "")}, at)


def from_message(kind: str, payload: dict[str, Any], at: int) -> Reply:
    """A journey's message (a kind a passive reply can carry: text, news, link, image)."""
    if kind in ("news", "link"):
        return Reply("news", _article(payload, payload.get("picurl")), at)
    if kind == "image":
        return Reply("image", {"media_id": payload["media_id"]}, at)
    return Reply("text", {"content": payload.get("content", "")}, at)


def _article(data: dict[str, Any], image: Any) -> dict[str, Any]:
    return {
        "title": data.get("title", ""),
        "description": data.get("description", ""),
        "image": image or "",
        "url": data.get("url", ""),
    }


def decide_early(
    settings: Settings, session: Session, trigger: Trigger, asking: bool
) -> Reply | None | object:
    """The reply decided before the event is stored, so that it is written with the event:
    the reply rules' when neither a journey (``asking``) nor a rule's tags need the event's id;
    else LATER (``decide`` runs after the insert)."""
    if trigger.kind in ANSWERS and asking:
        return LATER
    rules = autoreply.active_rules(settings, session)
    matched = keywords.match(rules, trigger.kind, trigger.text, trigger.click_key)
    if any(r.tags for r in matched):
        return LATER
    winner = next((r for r in matched if r.has_reply), None)
    return from_rule(winner, int(time.time())) if winner else None


def decide(
    settings: Settings,
    session: Session,
    trigger: Trigger,
    event_id: int,
    contact_id: int,
    asking: bool,
    after: list[Callable[[], object]],
) -> Reply | None:
    """The reply to the just-stored event ``event_id``, in its transaction: a journey's
    answer (its after-commit work goes to ``after``) or the reply rules' (their tags are
    added here). ``asking``: the contact's flag that a journey asks it something; only then
    are the journeys looked at."""
    at = int(time.time())
    if trigger.kind in ANSWERS and asking and journey_runner.has_open_question(session, contact_id):
        answer = journey_runner.answer_now(settings, session, event_id, contact_id, after)
        if answer is not None:
            return from_message(*answer, at)
        if trigger.kind == "keyword":
            return None  # the text was the journey's; nothing to say right now
    rules = autoreply.active_rules(settings, session)
    matched = keywords.match(rules, trigger.kind, trigger.text, trigger.click_key)
    grants = [TagGrant(t, "reply_rule", f"reply_rule:{r.id}") for r in matched for t in r.tags]
    add_tags(session, contact_id, grants, utcnow(), event_id)
    winner = next((r for r in matched if r.has_reply), None)
    return from_rule(winner, at) if winner else None
