"""Chinese text with jieba, the one tokenizer (loaded once per process): tokens, whole-word
matching, numbered choices. Pure apart from jieba's own word list."""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections.abc import Set as AbstractSet
from functools import lru_cache

import jieba

jieba.setLogLevel(logging.WARNING)
_lock = threading.Lock()
_known_words: set[str] = set()

_CN_DIGITS = {
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
_NUMBERED = re.compile(
    r"^(?:选择?|选项|我选)?\s*(?:第\s*)?([0-9]{1,2}|[一二两三四五六七八九十]{1,3})\s*"
    r"(?:个|项|条|种|号|个吧|吧)?\s*$"
)
_TRAILING = "。.!！?？~～,，、)）】 "


def normalize(text: str) -> str:
    """NFKC (full-width digits and letters become ASCII), lower case, trimmed."""
    return unicodedata.normalize("NFKC", text).strip().lower()


def tokens(text: str) -> frozenset[str]:
    """Every token jieba finds in search mode (long words and the words inside them). Short
    texts are remembered: a campaign's "回复1领取" brings the same few answers thousands of
    times, and reply rules, tag rules and journeys all cut the same text."""
    return _cut_short(text) if len(text) <= 64 else _cut(text)


def _cut(text: str) -> frozenset[str]:
    return frozenset(t.strip().lower() for t in jieba.cut_for_search(text) if t.strip())


_cut_short = lru_cache(maxsize=8192)(_cut)


def initialize() -> None:
    """Load jieba's dictionary now (about a second) instead of on the first message."""
    jieba.initialize()


def add_words(words: list[str]) -> None:
    """Teach jieba words it should keep whole (rule keywords, choice synonyms, product names)."""
    with _lock:
        for word in words:
            word = word.strip()
            if len(word) > 1 and word not in _known_words:
                jieba.add_word(word)
                _known_words.add(word)
                _cut_short.cache_clear()  # the same text may cut differently now


def _cn_number(text: str) -> int | None:
    if text.isdigit():
        return int(text)
    if text == "十":
        return 10
    if len(text) == 1:
        return _CN_DIGITS.get(text)
    if text.startswith("十") and len(text) == 2:
        unit = _CN_DIGITS.get(text[1])
        return 10 + unit if unit else None
    return None


def numbered(text: str) -> int | None:
    """The choice number in 「2」「２」「二」「第二个」「选2」「2.」; None when it is not one."""
    folded = normalize(text).rstrip(_TRAILING)
    m = _NUMBERED.fullmatch(folded)
    return _cn_number(m.group(1)) if m else None


def word_in(word: str, toks: AbstractSet[str], raw: str) -> bool:
    """Is ``word`` a whole word of the text: one of its tokens, or (a word jieba does not
    know) all of the word's own tokens are tokens of the text and it appears in it."""
    w = normalize(word)
    if not w:
        return False
    if w in toks:
        return True
    parts = tokens(w) - {w}
    return bool(parts) and parts <= toks and w in raw
