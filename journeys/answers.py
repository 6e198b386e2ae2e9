"""How the engine understands an answer to an ask step: which reply an event is, and which
choice a reply picks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from journeys import words
from journeys.model import Ask, Choice


def reply_of(event_type: str, properties: Mapping[str, Any]) -> tuple[str, str] | None:
    """("text", what they wrote) or ("click", the menu key); None for other events."""
    if event_type.endswith(".text"):
        return "text", str(properties.get("content", ""))
    if event_type.endswith(".click"):
        return "click", str(properties.get("key", ""))
    return None


def understand(step: Ask, kind: str, text: str) -> Choice | None:
    """The choice an answer picks: a menu key; a number (「2」「第二个」); a label said
    exactly; else the choice with the longest label or synonym that is a whole word of it."""
    if not step.choices:
        return None
    if kind == "click":
        return next((ch for ch in step.choices if ch.click_key and ch.click_key == text), None)
    n = words.numbered(text)
    if n is not None and 1 <= n <= len(step.choices):
        return step.choices[n - 1]
    raw = words.normalize(text)
    for ch in step.choices:
        if raw in (words.normalize(ch.label), words.normalize(ch.saved)):
            return ch
    toks = words.tokens(raw)
    best: tuple[int, Choice] | None = None
    for ch in step.choices:
        for w in (ch.label, *ch.synonyms):
            if (best is None or len(w) > best[0]) and words.word_in(w, toks, raw):
                best = (len(w), ch)
    return best[1] if best else None
