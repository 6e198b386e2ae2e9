"""What no request may carry, whatever route it reaches: ids outside the id columns' range, JSON
nested deeper than any real body, and characters PostgreSQL cannot store (NUL, lone
surrogates) or the platform cannot send (other C0 controls). Pure, apart from the werkzeug
URL converter."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Annotated, Any

from pydantic import Field
from werkzeug.routing import BaseConverter, ValidationError

# Every id column is INTEGER (migrations 0001-0006): on PostgreSQL no row id can pass 2³¹−1,
# and a larger one in a query is an error there. Widen this with the columns, if ever.
MAX_ID = 2**31 - 1
Id = Annotated[int, Field(ge=1, le=MAX_ID)]  # a row id in a body
MAX_DEPTH = 32  # the deepest real body (a journey definition's branches) is about 10
_DIGITS = re.compile(r"[1-9][0-9]{0,18}")  # beyond 19 digits, too long to be an id
# NUL and the C0 controls other than tab, newline and carriage return; lone UTF-16 surrogates.
_UNFIT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]")


class UnfitBody(ValueError):
    """A decodable JSON body that holds something no route accepts; ``field`` says where."""

    def __init__(self, field: str, message: str):
        self.field, self.message = field, message
        super().__init__(f"{field}: {message}" if field else message)


def parse_id(raw: str) -> int | None:
    """``raw`` as an id (1 to MAX_ID, plain ASCII digits), or None."""
    if not _DIGITS.fullmatch(raw):
        return None
    value = int(raw)
    return value if value <= MAX_ID else None


class IdConverter(BaseConverter):
    """``<id:name>``: a row id, 1 to MAX_ID; anything else does not match the route (404)."""

    regex = r"[1-9][0-9]{0,18}"
    weight = 50

    def to_python(self, value: str) -> int:
        parsed = parse_id(value)
        if parsed is None:
            raise ValidationError()
        return parsed

    def to_url(self, value: Any) -> str:
        return str(int(value))


def unfit_text(value: str) -> str | None:
    """What is wrong with a string no route stores, or None."""
    found = _UNFIT.search(value)
    if found is None:
        return None
    return f"must not contain control character U+{ord(found.group()):04X}"


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is too large")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def load_json(raw: str | bytes, **kwargs: Any) -> Any:
    """json.loads that refuses NaN, infinities, nesting deeper than MAX_DEPTH and unfit
    characters: ValueError (malformed) or UnfitBody (well-formed but refused)."""
    kwargs.setdefault("parse_constant", _refuse_constant)
    kwargs.setdefault("parse_float", _finite)
    try:
        data = json.loads(raw, **kwargs)
    except RecursionError:
        raise UnfitBody("", f"JSON nested deeper than {MAX_DEPTH} levels") from None
    screen(data)
    return data


def screen(data: Any) -> None:
    """Raise UnfitBody for the first thing in ``data`` that is too deep or holds an unfit
    character (in a key or a value)."""
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack:
        value, where, depth = stack.pop()
        if isinstance(value, str):
            problem = unfit_text(value)
            if problem:
                raise UnfitBody(where, problem)
            continue
        if not isinstance(value, dict | list):
            continue
        if depth >= MAX_DEPTH:
            raise UnfitBody(where, f"nested deeper than {MAX_DEPTH} levels")
        items: Iterable[tuple[Any, Any]] = (
            value.items() if isinstance(value, dict) else enumerate(value)
        )
        for key, item in items:
            path = f"{where}.{key}" if where else str(key)
            if isinstance(key, str):
                problem = unfit_text(key)
                if problem:
                    raise UnfitBody(where or "body", f"a key {problem}")
            stack.append((item, path, depth + 1))


def unfit_query(pairs: Iterable[tuple[str, str]]) -> tuple[str, str] | None:
    """(name, problem) for the first query parameter no route accepts, or None."""
    for name, value in pairs:
        problem = unfit_text(name) or unfit_text(value)
        if problem:
            return name, problem
    return None
