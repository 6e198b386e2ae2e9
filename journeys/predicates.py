"""Evaluating ``Cmp`` (one value), ``Pred`` (a contact) and event conditions. Pure."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from journeys import words
from journeys.model import Cmp, Pred

MISSING = object()


class ContactLike(Protocol):
    tags: frozenset[str]
    fields: Mapping[str, Any]
    score: float
    stage: str
    event_counts: Mapping[str, int]
    last_seen_at: datetime | None


def number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            n = float(value.strip().replace(",", ""))
        except ValueError:
            return None
        return n if math.isfinite(n) else None
    return None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    na, nb = number(a), number(b)
    if na is not None and nb is not None:
        return na == nb
    return str(a).strip() == str(b).strip()


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _scalar(cmp: Cmp, value: Any) -> bool:
    if cmp.eq is not None and not _same(value, cmp.eq):
        return False
    if cmp.in_ is not None and not any(_same(value, v) for v in cmp.in_):
        return False
    text = str(value)
    if cmp.prefix is not None and not any(text.startswith(p) for p in _listed(cmp.prefix)):
        return False
    if cmp.contains is not None and not any(
        c.lower() in text.lower() for c in _listed(cmp.contains)
    ):
        return False
    if cmp.keywords is not None:
        raw = words.normalize(text)
        toks = words.tokens(raw)
        if not any(words.word_in(k, toks, raw) for k in cmp.keywords):
            return False
    bounds = (("gt", cmp.gt), ("gte", cmp.gte), ("lt", cmp.lt), ("lte", cmp.lte))
    if any(b is not None for _, b in bounds):
        n = number(value)
        if n is None:
            return False
        for op, b in bounds:
            if b is None:
                continue
            if not {"gt": n > b, "gte": n >= b, "lt": n < b, "lte": n <= b}[op]:
                return False
    return True


def compare(cmp: Cmp, value: Any = MISSING) -> bool:
    """Does ``value`` (absent: ``MISSING``/None/""/[]) meet every comparison in ``cmp``?"""
    present = value is not MISSING and value is not None and value != "" and value != []
    if cmp.exists is not None and cmp.exists != present:
        return False
    if not cmp.model_dump(exclude_none=True, exclude={"exists"}):
        return True
    if not present:
        return False
    return any(_scalar(cmp, v) for v in _listed(value))


def holds(pred: Pred, contact: ContactLike, answers: Mapping[str, Any], now: datetime) -> bool:
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


def type_matches(pattern: str, event_type: str) -> bool:
    """``oa.click`` exactly, ``oa.*`` any OA event, ``*`` any event."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


def lookup(properties: Mapping[str, Any], key: str) -> Any:
    """A property (``a.b`` reaches into nested objects); MISSING when absent."""
    if key in properties:
        return properties[key]
    value: Any = properties
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return MISSING
        value = value[part]
    return value


def event_matches(
    patterns: str | list[str],
    conditions: Mapping[str, Cmp],
    event_type: str,
    properties: Mapping[str, Any],
) -> bool:
    if not any(type_matches(p, event_type) for p in _listed(patterns)):
        return False
    return all(compare(c, lookup(properties, k)) for k, c in conditions.items())
