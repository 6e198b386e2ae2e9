"""``{{contact.name}}``, ``{{answers.budget}}``, ``{{contact.name|朋友}}`` in send payloads:
a lookup and a default, nothing else (no expressions, no attribute access beyond the names
below, no eval)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[^\s|{}]+)*)\s*(?:\|([^{}]*))?\}\}")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def lookup(name: str, scope: Mapping[str, Mapping[str, Any]]) -> Any:
    head, _, rest = name.partition(".")
    value: Any = scope.get(head)
    for part in rest.split(".") if rest else []:
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return None if isinstance(value, Mapping) else value


def render_text(text: str, scope: Mapping[str, Mapping[str, Any]]) -> str:
    def one(m: re.Match[str]) -> str:
        value = lookup(m.group(1), scope)
        if value is None or value == "":
            return (m.group(2) or "").strip()
        return _text(value)

    return VARIABLE.sub(one, text)


def render(value: Any, scope: Mapping[str, Mapping[str, Any]]) -> Any:
    """A copy of ``value`` (a payload: dicts, lists, strings) with every string rendered."""
    if isinstance(value, str):
        return render_text(value, scope)
    if isinstance(value, Mapping):
        return {k: render(v, scope) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render(v, scope) for v in value]
    return value
