"""The use case behind every callback: decide the instant reply, record the event with its
reply and tags in one transaction, enqueue the background job after commit."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlmodel import Session

from bot import autoreply, keywords, queue
from bot.config import Settings
from bot.db import get_engine
from bot.events import IncomingEvent, Recorded, TagGrant, record


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
) -> Recorded:
    """Store ``event`` (idempotently) and return what was recorded, with the reply to send.

    ``render`` turns the winning rule into the passive-reply document for this channel; a
    retried callback gets back the document stored the first time.
    """
    with Session(get_engine(settings.database_url), expire_on_commit=False) as session:
        reply, grants = None, []
        if trigger is not None:
            rules = autoreply.active_rules(session, settings.reply_cache_seconds)
            matched = keywords.match(rules, trigger.kind, trigger.text, trigger.click_key)
            grants = [TagGrant(t, "rule", str(r.id)) for r in matched for t in r.tags]
            winner = next((r for r in matched if r.has_reply), None)
            reply = render(winner) if winner else None
        result = record(session, event, reply=reply, tags=grants)
    if result.outbox_id is not None:
        queue.kick_outbox(settings)
    return result
