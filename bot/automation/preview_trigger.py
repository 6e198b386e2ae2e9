"""The synthetic event that starts a journey in a preview, and what the default contact is
assumed to be so that a segment trigger holds (bot.automation.preview)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

import journeys
from bot.automation.preview_transcript import STAGE_LABELS
from journeys import engine
from journeys.model import Cmp, Definition, Pred
from journeys.predicates import compare, holds

ABSENT = object()


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) else value


def _example(cmp: Cmp) -> Any:
    """A value that meets ``cmp`` (for a synthetic trigger event), or ABSENT."""
    if cmp.eq is not None:
        value = cmp.eq
    elif cmp.in_:
        value = cmp.in_[0]
    elif cmp.prefix is not None:
        value = f"{_first(cmp.prefix)}preview"
    elif cmp.contains is not None:
        value = _first(cmp.contains)
    elif cmp.keywords:
        value = cmp.keywords[0]
    elif any(b is not None for b in (cmp.gt, cmp.gte, cmp.lt, cmp.lte)):
        low = cmp.gte if cmp.gte is not None else (cmp.gt + 1 if cmp.gt is not None else None)
        high = cmp.lte if cmp.lte is not None else (cmp.lt - 1 if cmp.lt is not None else None)
        value = low if low is not None else high
        value = int(value) if float(value).is_integer() else value
    elif cmp.exists is False:
        return ABSENT
    else:
        value = "preview"
    return value if compare(cmp, value) else ABSENT


def _event_type(pattern: str) -> str:
    if pattern == "*":
        return "api.preview"
    if pattern.endswith(".*"):
        return pattern[:-1] + ("subscribe" if pattern == "oa.*" else "preview")
    return pattern


def _assume(pred: Pred, k: journeys.Contact, now: datetime, notes: list[str]) -> journeys.Contact:
    """Change the default contact so that a segment condition holds (best effort)."""
    if pred.tag is not None:
        notes.append(f"有标签「{pred.tag}」")
        return dataclasses.replace(k, tags=k.tags | {pred.tag})
    if pred.no_tag is not None:
        return dataclasses.replace(k, tags=k.tags - {pred.no_tag})
    if pred.score is not None and (v := _example(pred.score)) is not ABSENT:
        notes.append(f"得分 {v}")
        return dataclasses.replace(k, score=float(v))
    if pred.stage is not None and (v := _example(pred.stage)) is not ABSENT:
        notes.append(f"阶段为 {STAGE_LABELS.get(str(v), v)}")
        return dataclasses.replace(k, stage=str(v))
    if pred.field is not None and pred.is_ is not None:
        v = _example(pred.is_)
        if v is not ABSENT:
            notes.append(f"字段 {pred.field} = {v}")
            return dataclasses.replace(k, fields={**k.fields, pred.field: v})
    if pred.silent_days is not None and (v := _example(pred.silent_days)) is not ABSENT:
        notes.append(f"已 {v} 天没有互动")
        return dataclasses.replace(k, last_seen_at=now - timedelta(days=float(v), minutes=1))
    if pred.event is not None:
        n = _example(pred.count) if pred.count is not None else 1
        if n is not ABSENT:
            notes.append(f"有过 {n} 次 {pred.event}")
            return dataclasses.replace(k, event_counts={**k.event_counts, pred.event: int(n)})
    if pred.all is not None:
        for p in pred.all:
            k = _assume(p, k, now, notes)
        return k
    if pred.any is not None:
        return _assume(pred.any[0], k, now, notes)
    return k


def trigger_event(
    d: Definition, contact: journeys.Contact, now: datetime, assume: bool = True
) -> tuple[journeys.Event | None, journeys.Contact, list[str]]:
    """(an event that starts the journey, the contact as it then is, what was assumed).
    ``assume``: may the contact be changed to fit a segment (only for the default contact)."""
    t, notes = d.trigger, []
    if t.on == "event":
        assert t.event is not None
        props: dict[str, Any] = {}
        for key, cmp in t.conditions.items():
            value = _example(cmp)
            if value is not ABSENT:
                props[key] = value
        return journeys.Event(_event_type(t.event), props, now), contact, notes
    if t.on == "tag_added":
        assert t.tag is not None
        k = dataclasses.replace(contact, tags=contact.tags | {t.tag})
        return journeys.Event(engine.TAG_ADDED, {"tag": t.tag}, now), k, notes
    if t.on == "score":
        assert t.score_gte is not None
        before = contact.score if contact.score < t.score_gte else t.score_gte - 1
        after = max(contact.score, t.score_gte)
        k = dataclasses.replace(contact, score=after)
        props = {"from": before, "to": after}
        return journeys.Event(engine.SCORE_CHANGED, props, now), k, notes
    if t.on == "stage":
        props = {"from": contact.stage, "to": t.stage}
        k = dataclasses.replace(contact, stage=str(t.stage))
        return journeys.Event(engine.STAGE_CHANGED, props, now), k, notes
    if t.on in ("segment_entered", "segment_left"):
        verb = "进入" if t.on == "segment_entered" else "离开"
        notes.append(f"{verb}分群 {t.segment_id}")
        return None, contact, notes
    assert t.segment is not None
    k = contact
    if assume and not holds(t.segment, contact, {}, now):
        k = _assume(t.segment, contact, now, notes)
    return None, k, notes
