"""The one condition language: conditions on a value, on an event's properties, their
validation and the property lookup. Tag rules, score rules, journey conditions and segments all
use it. Pure.

A condition on one value is a bare value (equal), a list (any of) or an operator object whose
operators must all hold::

    {eq: 618}                 equal; numbers compare as numbers when both sides read as one
    {in: [a, b]}              equal to any of them
    {prefix: lead_}           starts with (a list: any of them)
    {contains: 价格}           contains, ignoring case (a list: any of them)
    {keywords: [价格, 报价]}    a whole word of the text (NFKC, jieba tokens), any of them
    {gt|gte|lt|lte: 50000}    numeric comparison; numeric text counts, only finite numbers
    {exists: true|false}      present (not absent, null, "" or []) or not

A value that is a list (a form's checkboxes) matches when any element does. Conditions on an
event are ``{property: condition}``; ``a.b`` reaches into nested objects.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from journeys import words

OPERATORS = ("eq", "in", "prefix", "contains", "keywords", "gt", "gte", "lt", "lte", "exists")
BOUNDS = ("gt", "gte", "lt", "lte")
MAX_VALUES = 200  # values in one list operand
MAX_TEXT = 500  # characters in one text operand
MAX_CONDITIONS = 20  # properties in one conditions object
MAX_PROPERTY = 128  # characters in a property name
MISSING = object()

Scalar = str | int | float | bool
# YAML reads a bare 618 as a number; a word, prefix or property name is always text.
Word = Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, int | float) else v)]
Tokenizer = Callable[[str], AbstractSet[str]]


# --- reading values --------------------------------------------------------------------------


def number(value: Any) -> float | None:
    """A finite number from a number or numeric text ("50,000"); None for anything else."""
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


def same(a: Any, b: Any) -> bool:
    """Equal: true/false only to themselves, numbers as numbers, else trimmed text."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    na, nb = number(a), number(b)
    if na is not None and nb is not None:
        return na == nb
    return str(a).strip() == str(b).strip()


def listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def present(value: Any) -> bool:
    return value is not MISSING and value is not None and value != "" and value != []


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


def type_matches(pattern: str, event_type: str) -> bool:
    """``oa.click`` exactly, ``oa.*`` any OA event, ``*`` any event."""
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


class Tokens:
    """jieba tokens of normalized texts, each text cut once (one evaluation's cache)."""

    def __init__(self, known: Mapping[str, AbstractSet[str]] | None = None):
        self.cut: dict[str, AbstractSet[str]] = dict(known or {})

    def __call__(self, normalized: str) -> AbstractSet[str]:
        found = self.cut.get(normalized)
        if found is None:
            found = self.cut[normalized] = words.tokens(normalized)
        return found


# --- validation ------------------------------------------------------------------------------


def _texts_problem(arg: Any, what: str) -> str | None:
    items = listed(arg)
    if not items or not all(isinstance(i, str | int | float) and str(i).strip() for i in items):
        return f"must be {what} or a non-empty list of them"
    if len(items) > MAX_VALUES:
        return f"at most {MAX_VALUES} values"
    if any(len(str(i)) > MAX_TEXT for i in items):
        return f"at most {MAX_TEXT} characters each"
    return None


def operator_problem(op: str, arg: Any) -> str | None:
    """What is wrong with one operator and its operand (None: nothing)."""
    if op == "eq":
        return None if isinstance(arg, Scalar) else "must be text, a number or true/false"
    if op == "in":
        if not isinstance(arg, list) or not arg:
            return "must be a non-empty list"
        if not all(isinstance(a, Scalar) for a in arg):
            return "every value must be text, a number or true/false"
        return None if len(arg) <= MAX_VALUES else f"at most {MAX_VALUES} values"
    if op in ("prefix", "contains"):
        return _texts_problem(arg, "non-empty text")
    if op == "keywords":
        return _texts_problem(arg, "a word")
    if op in BOUNDS:
        return None if number(arg) is not None else "must be a number"
    if op == "exists":
        return None if isinstance(arg, bool) else "must be true or false"
    return f"unknown operator {op!r}; use one of {', '.join(OPERATORS)}"


def _invalid(title: str, problems: list[tuple[tuple[str, ...], str]], data: Any) -> ValidationError:
    return ValidationError.from_exception_data(
        title,
        [
            InitErrorDetails(type=PydanticCustomError("condition", msg), loc=loc, input=data)
            for loc, msg in problems
        ],
    )


class Cmp(BaseModel):
    """Comparisons on one value; every one given must hold (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    eq: Scalar | None = None
    in_: list[Scalar] | None = Field(default=None, alias="in")
    prefix: Word | list[Word] | None = None
    contains: Word | list[Word] | None = None
    keywords: list[Word] | None = None  # whole words, jieba
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None
    exists: bool | None = None

    @model_validator(mode="before")
    @classmethod
    def _operators(cls, data: Any) -> Any:
        """Every operator checked, every problem reported under its operator. Fields a
        subclass adds (a score attribute rule's ``id``, ``points``) are left to it."""
        if not isinstance(data, Mapping):
            return data
        others = {k for name, f in cls.model_fields.items() for k in (name, f.alias)} - {
            "in_",
            *OPERATORS,
        }
        given = {
            "in" if k == "in_" else str(k): v
            for k, v in data.items()
            if k not in others and v is not None
        }
        problems = [((op,), p) for op, arg in given.items() if (p := operator_problem(op, arg))]
        if not given:
            problems.append(((), f"give at least one operator: {', '.join(OPERATORS)}"))
        if problems:
            raise _invalid(cls.__name__, problems, data)
        cleaned = {k: v for k, v in data.items() if v is not None}
        for op in BOUNDS:
            if op in cleaned:
                cleaned[op] = number(cleaned[op])
        if "keywords" in cleaned:
            cleaned["keywords"] = listed(cleaned["keywords"])
        return cleaned

    @functools.cached_property
    def operands(self) -> bool:
        """Is there anything to check beyond ``exists``?"""
        return any(
            getattr(self, name) is not None
            for name in ("eq", "in_", "prefix", "contains", "keywords", *BOUNDS)
        )

    @functools.cached_property
    def plan(self) -> Plan:
        """The operands read once (numbers, trimmed and lower-cased text) for fast checks."""
        return Plan(
            None if self.eq is None else _expected(self.eq),
            None if self.in_ is None else tuple(_expected(v) for v in self.in_),
            None if self.prefix is None else tuple(listed(self.prefix)),
            None if self.contains is None else tuple(c.lower() for c in listed(self.contains)),
            any(b is not None for b in (self.gt, self.gte, self.lt, self.lte)),
        )


Expected = tuple[Any, float | None, str]  # (operand, its number, its trimmed text)


def _expected(operand: Any) -> Expected:
    return operand, number(operand), str(operand).strip()


@dataclass(frozen=True)
class Plan:
    eq: Expected | None
    in_: tuple[Expected, ...] | None
    prefix: tuple[str, ...] | None
    contains: tuple[str, ...] | None
    bounds: bool


def _condition(value: Any) -> Any:
    """A bare value means equal, a list means any of; both checked where they were written."""
    if isinstance(value, Mapping):
        return value
    if value is None:
        raise PydanticCustomError("condition", "null is not a condition; use {exists: false}")
    if isinstance(value, list):
        problem = operator_problem("in", value)
        if problem:
            raise PydanticCustomError("condition", problem)
        return {"in": value}
    if not isinstance(value, Scalar):
        raise PydanticCustomError(
            "condition", "must be a value, a list of values or an operator object"
        )
    return {"eq": value}


def _properties(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    """Property names and their number checked beside every condition, all reported at once."""
    problems: list[tuple[tuple[str, ...], str]] = []
    if isinstance(value, Mapping):
        problems = [
            ((str(k),), f"a property name is 1 to {MAX_PROPERTY} characters")
            for k in value
            if not str(k).strip() or len(str(k)) > MAX_PROPERTY
        ]
        if len(value) > MAX_CONDITIONS:
            problems.append(((), f"at most {MAX_CONDITIONS} conditions"))
    try:
        parsed = handler(value)
    except ValidationError as exc:
        found = [(tuple(str(p) for p in e["loc"]), e["msg"]) for e in exc.errors()]
        raise _invalid("Conditions", problems + found, value) from None
    if problems:
        raise _invalid("Conditions", problems, value)
    return parsed


ValueCondition = Annotated[Cmp, BeforeValidator(_condition)]
Conditions = Annotated[dict[Word, ValueCondition], WrapValidator(_properties)]


# --- evaluation ------------------------------------------------------------------------------


class _Value:
    """One value being checked, its number and texts read at most once."""

    __slots__ = ("value", "_number", "_text")

    def __init__(self, value: Any):
        self.value = value
        self._number: float | None | object = MISSING
        self._text: str | None = None

    @property
    def number(self) -> float | None:
        if self._number is MISSING:
            self._number = number(self.value)
        return self._number  # type: ignore[return-value]

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = str(self.value)
        return self._text

    def equals(self, expected: Expected) -> bool:
        """``same(value, operand)``, with the operand read beforehand."""
        operand, n, text = expected
        if isinstance(self.value, bool) or isinstance(operand, bool):
            return self.value is operand
        if n is not None and self.number is not None:
            return self.number == n
        return self.text.strip() == text


def _scalar(cmp: Cmp, raw: Any, tokens: Tokenizer) -> bool:
    plan, value = cmp.plan, _Value(raw)
    if plan.eq is not None and not value.equals(plan.eq):
        return False
    if plan.in_ is not None and not any(value.equals(e) for e in plan.in_):
        return False
    if plan.prefix is not None and not value.text.startswith(plan.prefix):
        return False
    if plan.contains is not None:
        lowered = value.text.lower()
        if not any(c in lowered for c in plan.contains):
            return False
    if cmp.keywords is not None:
        normalized = words.normalize(value.text)
        toks = tokens(normalized)
        if not any(words.word_in(k, toks, normalized) for k in cmp.keywords):
            return False
    if not plan.bounds:
        return True
    n = value.number
    return (
        n is not None
        and (cmp.gt is None or n > cmp.gt)
        and (cmp.gte is None or n >= cmp.gte)
        and (cmp.lt is None or n < cmp.lt)
        and (cmp.lte is None or n <= cmp.lte)
    )


def compare(cmp: Cmp, value: Any = MISSING, tokens: Tokenizer | None = None) -> bool:
    """Does ``value`` (absent: ``MISSING``/None/""/[]) meet every comparison in ``cmp``?"""
    here = value is not MISSING and value is not None and value != "" and value != []
    if cmp.exists is not None and cmp.exists != here:
        return False
    if not cmp.operands:
        return True
    if not here:
        return False
    cut = tokens or words.tokens
    if isinstance(value, (list, tuple)):  # noqa: UP038 (a tuple is faster on this hot path)
        return any(_scalar(cmp, v, cut) for v in value)
    return _scalar(cmp, value, cut)


def meets(
    conditions: Mapping[str, Cmp], properties: Mapping[str, Any], tokens: Tokenizer | None = None
) -> bool:
    """Does every ``{property: condition}`` hold for these properties?"""
    for key, cmp in conditions.items():  # noqa: SIM110 (a loop: no generator per event)
        if not compare(cmp, lookup(properties, key), tokens):
            return False
    return True


def event_matches(
    patterns: str | list[str],
    conditions: Mapping[str, Cmp],
    event_type: str,
    properties: Mapping[str, Any],
    tokens: Tokenizer | None = None,
) -> bool:
    if isinstance(patterns, str):
        if not type_matches(patterns, event_type):
            return False
    elif not any(type_matches(p, event_type) for p in patterns):
        return False
    return meets(conditions, properties, tokens)


def keywords_in(conditions: Mapping[str, Cmp]) -> list[str]:
    """The words ``keywords`` conditions look for (to teach jieba)."""
    return [k for c in conditions.values() for k in c.keywords or ()]
