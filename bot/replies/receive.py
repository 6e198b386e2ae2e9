"""The use case behind every callback: decide the instant reply, record the event with its
reply and tags in one transaction, enqueue the background job after commit.

The instant reply is a journey's next message when the contact is answering its open question
(their text then goes to the journey, not to the keyword replies), else the reply rules'."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from bot.automation import runner as journey_runner
from bot.contacts.record import IncomingEvent, Recorded, TagGrant, add_tags, record
from bot.core import queue
from bot.core.config import Settings
from bot.core.db import get_engine
from bot.core.models import utcnow
from bot.replies import match as keywords
from bot.replies import rules as autoreply

ANSWERS = ("keyword", "click")  # the triggers that can answer a journey's question


@dataclass(frozen=True)
class Trigger:
    """What the reply rules are asked about: a keyword text, a follow, or a menu click."""

    kind: str  # keyword | subscribe | click
    text: str = ""
    click_key: str = ""


def receive(
    settings: Settings,
    event: IncomingEvent,
    trigger: Trigger | None,
    render: Callable[[keywords.Rule], str],
    render_message: Callable[[str, dict[str, Any]], str] | None = None,
) -> Recorded:
    """Store ``event`` (idempotently) and return what was recorded, with the reply to send.

    ``render`` turns the winning rule into the passive-reply document for this channel and
    ``render_message`` a journey's message (kind, payload); a retried callback gets back the
    document stored the first time.
    """
    after: list[Callable[[], object]] = []

    def decide(session: Session, event_id: int, contact_id: int) -> str | None:
        after.clear()  # a retried transaction starts over
        if trigger is None:
            return None
        if (
            render_message is not None
            and trigger.kind in ANSWERS
            and journey_runner.has_open_question(session, contact_id)
        ):
            answer = journey_runner.answer_now(settings, session, event_id, contact_id, after)
            if answer is not None:
                return render_message(*answer)
            if trigger.kind == "keyword":
                return None  # the text was the journey's; nothing to say right now
        rules = autoreply.active_rules(session, settings.reply_cache_seconds)
        matched = keywords.match(rules, trigger.kind, trigger.text, trigger.click_key)
        grants = [TagGrant(t, "rule", str(r.id)) for r in matched for t in r.tags]
        add_tags(session, contact_id, grants, utcnow())
        winner = next((r for r in matched if r.has_reply), None)
        return render(winner) if winner else None

    with Session(get_engine(settings.database_url), expire_on_commit=False) as session:
        result = record(session, event, on_insert=decide)
    if result.outbox_id is not None:
        queue.kick_outbox(settings, contact_id=result.contact_id)
    for action in after:
        action()
    return result
