"""What a tag name may be: what the platform takes (OA tags/create and WeCom corp tags: 1 to
30 characters) and what reads as plain text in a tag list. Pure."""

from __future__ import annotations

import unicodedata

MAX_TAG = 30
# Control, format (U+202E, U+200B), surrogate, private-use, unassigned, line/paragraph separators.
_UNFIT_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def tag_problem(tag: str) -> str | None:
    """What the platform (or a person reading the tag list) cannot take in a tag name, or
    None. ``tag`` is already stripped."""
    if not tag:
        return f"a tag is 1 to {MAX_TAG} characters"
    if len(tag) > MAX_TAG:
        return f"{tag!r} is longer than {MAX_TAG} characters (the platform's limit)"
    for ch in tag:
        if unicodedata.category(ch) in _UNFIT_CATEGORIES:
            name = unicodedata.name(ch, "a control or format character")
            return f"{tag!r} contains U+{ord(ch):04X} ({name}); a tag is plain text"
        if ch in "<>":
            return f"{tag!r} contains {ch!r}; a tag cannot hold markup"
    return None


def checked_tag(tag: str) -> str:
    """``tag`` stripped, or ValueError saying what is wrong with it (a pydantic validator)."""
    tag = tag.strip()
    problem = tag_problem(tag)
    if problem:
        raise ValueError(problem)
    return tag
