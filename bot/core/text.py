"""Chinese text with jieba: one tokenizer, loaded once per process."""

from __future__ import annotations

import logging
import threading

import jieba

jieba.setLogLevel(logging.WARNING)
_lock = threading.Lock()
_known_words: set[str] = set()


def initialize() -> None:
    """Load jieba's dictionary now (about a second) instead of on the first message."""
    jieba.initialize()


def add_words(words: list[str]) -> None:
    """Teach jieba words it should keep whole (rule keywords, product names)."""
    with _lock:
        for word in words:
            word = word.strip()
            if len(word) > 1 and word not in _known_words:
                jieba.add_word(word)
                _known_words.add(word)


def tokens(text: str) -> set[str]:
    """Every token jieba finds, in search mode (long words and the words inside them)."""
    return {t.strip().lower() for t in jieba.cut_for_search(text) if t.strip()}
