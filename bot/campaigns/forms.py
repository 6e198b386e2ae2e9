"""A submitted form checked against the campaign's fields: the clean values, or the bad fields
with what is wrong (Chinese, shown beside each field)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MAINLAND_MOBILE = re.compile(r"^1[3-9]\d{9}$")
TEXT_LIMIT = 100


def _phone(value: str) -> tuple[str | None, str | None]:
    digits = re.sub(r"[\s-]", "", value).removeprefix("+86")
    if not MAINLAND_MOBILE.match(digits):
        return None, "请输入11位中国大陆手机号"
    return digits, None


def _one(field: dict[str, Any], values: list[str]) -> tuple[Any, str | None]:
    kind, options = field.get("type", "text"), field.get("options") or []
    values = [v.strip() for v in values if v.strip()]
    if not values:
        return None, ("请填写" + field["label"]) if field.get("required") else None
    if kind == "single":
        if len(values) != 1 or values[0] not in options:
            return None, "请选择一个选项"
        return values[0], None
    if kind == "multiple":
        if any(v not in options for v in values) or len(set(values)) != len(values):
            return None, "请从选项中选择"
        return values, None
    if len(values[0]) > TEXT_LIMIT:
        return None, f"不能超过{TEXT_LIMIT}个字"
    if field["name"] == "phone":
        return _phone(values[0])
    return values[0], None


def check(fields: list[dict[str, Any]], given: Mapping[str, list[str]]) -> tuple[dict, dict]:
    """(clean values by field name, errors by field name)."""
    clean: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for field in fields:
        value, problem = _one(field, list(given.get(field["name"], [])))
        if problem:
            errors[field["name"]] = problem
        elif value is not None:
            clean[field["name"]] = value
    return clean, errors
