"""Changes to a contact made inside a transaction that journeys can start on — a tag added, the
score moving — noted on the session as they happen and taken by the journey runner (the last
pipeline step) before the transaction commits. These notes are the runner's feed only; the
record of a tag change is its ``tag.added`` / ``tag.removed`` timeline event
(bot.contacts.tag_history), written in the same transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

KEY = "yuchi.changes"
TAG_ADDED, SCORE_CHANGED = "tag.added", "score.changed"


def note(session: Session, contact_id: int, type_: str, properties: dict[str, Any]) -> None:
    session.info.setdefault(KEY, []).append((contact_id, type_, properties))


def take(session: Session) -> list[tuple[int, str, dict[str, Any]]]:
    """Every change noted so far (and forget them)."""
    return session.info.pop(KEY, None) or []
