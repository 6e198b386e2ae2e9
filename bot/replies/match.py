"""Which reply rules an interaction matches. Pure: rules and text in, rules out."""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from journeys import words

MATCH_ORDER = {"exact": 0, "jieba": 1, "contains": 2}


@dataclass(frozen=True)
class Rule:
    id: int
    name: str
    trigger: str  # keyword | subscribe | click
    match: str = "jieba"
    keywords: tuple[str, ...] = ()
    click_key: str | None = None
    reply_type: str = "text"
    reply: dict = field(default_factory=dict, hash=False, compare=False)
    tags: tuple[str, ...] = ()
    priority: int = 0

    @property
    def has_reply(self) -> bool:
        return bool(self.reply)


def _sort_key(rule: Rule) -> tuple[int, int, int]:
    return (-rule.priority, MATCH_ORDER.get(rule.match, 9), rule.id)


def keyword_matches(rule: Rule, message: str, message_tokens: AbstractSet[str]) -> bool:
    folded = message.strip().lower()
    for keyword in rule.keywords:
        kw = keyword.strip().lower()
        if not kw:
            continue
        if rule.match == "exact" and folded == kw:
            return True
        if rule.match == "contains" and kw in folded:
            return True
        if rule.match == "jieba":
            if kw in message_tokens:
                return True
            kw_tokens = _keyword_tokens(kw)
            if kw_tokens and kw_tokens <= message_tokens and kw in folded:
                return True
    return False


def _keyword_tokens(keyword: str) -> frozenset[str]:
    return words.tokens(keyword)


def _may_match_words(rules: list[Rule], message: str) -> bool:
    """A jieba keyword matches only text that contains it: cut the message into words only
    when some jieba rule's keyword is in it (most texts match no rule at all)."""
    folded = message.strip().lower()
    return any(
        kw.strip().lower() in folded
        for r in rules
        if r.match == "jieba"
        for kw in r.keywords
        if kw.strip()
    )


def match(rules: list[Rule], trigger: str, message: str = "", click_key: str = "") -> list[Rule]:
    """Every rule that matches, best first: priority, then exact before jieba before contains."""
    candidates = [r for r in rules if r.trigger == trigger]
    if trigger == "keyword":
        tokens = words.tokens(message) if _may_match_words(candidates, message) else set()
        found = [r for r in candidates if keyword_matches(r, message, tokens)]
    elif trigger == "click":
        found = [r for r in candidates if r.click_key == click_key]
    else:
        found = candidates
    return sorted(found, key=_sort_key)
