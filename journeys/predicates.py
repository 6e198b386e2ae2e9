"""Evaluating ``Pred`` (a condition on a contact). Conditions on one value and on an event's
properties are the one condition language of journeys/conditions.py. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from journeys.conditions import (
    MISSING,
    compare,
    event_matches,
    lookup,
    number,
    type_matches,
)
from journeys.model import Pred

__all__ = [
    "MISSING",
    "ContactLike",
    "compare",
    "event_matches",
    "holds",
    "lookup",
    "number",
    "type_matches",
]


class ContactLike(Protocol):
    tags: frozenset[str]
    fields: Mapping[str, Any]
    score: float
    stage: str
    event_counts: Mapping[str, int]
    last_seen_at: datetime | None
    segments: Mapping[int, bool]


def holds(pred: Pred, contact: ContactLike, answers: Mapping[str, Any], now: datetime) -> bool:
    """Does the condition hold for the contact? A clause only saved segments read
    (model.SEGMENT_ONLY; journeys.validate refuses them in a journey) never holds here."""
    if pred.segment_only():
        return False
    if pred.segment is not None:
        return bool(contact.segments.get(pred.segment, False))
    if pred.tag is not None:
        return pred.tag in contact.tags
    if pred.no_tag is not None:
        return pred.no_tag not in contact.tags
    if pred.field is not None:
        assert pred.is_ is not None
        return compare(pred.is_, contact.fields.get(pred.field, MISSING))
    if pred.answer is not None:
        assert pred.is_ is not None
        return compare(pred.is_, answers.get(pred.answer, MISSING))
    if pred.score is not None:
        return compare(pred.score, contact.score)
    if pred.stage is not None:
        return compare(pred.stage, contact.stage)
    if pred.event is not None:
        count = sum(n for t, n in contact.event_counts.items() if type_matches(pred.event, t))
        return compare(pred.count, count) if pred.count is not None else count >= 1
    if pred.silent_days is not None:
        if contact.last_seen_at is None:
            return compare(pred.silent_days)
        days = (now - contact.last_seen_at).total_seconds() / 86400
        return compare(pred.silent_days, days)
    if pred.all is not None:
        return all(holds(p, contact, answers, now) for p in pred.all)
    if pred.any is not None:
        return any(holds(p, contact, answers, now) for p in pred.any)
    assert pred.not_ is not None
    return not holds(pred.not_, contact, answers, now)
