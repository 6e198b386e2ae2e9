"""Tag rules and the interest dictionary. Pure: rules, an event's type and properties, and
jieba tokens in; the tags to add and remove out. No database, no clock, no network.

A rule names an event type (``oa.click``; a prefix ``oa.*``; or ``*``), conditions on the
event's properties, and tags to add and to remove. Every condition must hold. A condition on
a property (``a.b`` reaches into nested objects) is one of:

    "MENU_PRICE"                      equal (numbers compare as numbers)
    ["poster_a", "poster_b"]          any of
    {"eq": …} {"in": […]}             the same, spelled out
    {"prefix": "poster_"}             starts with (a list: any of them)
    {"contains": "pricing"}           contains, ignoring case (a list: any of them)
    {"keywords": ["价格", "报价"]}     a whole word of the text (jieba), any of them
    {"gt"|"gte"|"lt"|"lte": 50000}    numeric comparison (numeric strings count)
    {"exists": true|false}            present (and not empty) or absent

Several operators in one object must all hold. A property whose value is a list (a form's
checkboxes) matches when any element does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from bot.core import text
from journeys.predicates import MISSING, lookup, type_matches  # one property path language
from journeys.tag_names import checked_tag, tag_problem

OPERATORS = ("eq", "in", "prefix", "contains", "keywords", "gt", "gte", "lt", "lte", "exists")
NUMERIC = ("gt", "gte", "lt", "lte")

# YAML reads a bare 618 as a number; a tag, word or property name is always text.
Word = Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, int | float) else v)]


@dataclass(frozen=True)
class Rule:
    id: int | str
    event_type: str
    conditions: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)
    add_tags: tuple[str, ...] = ()
    remove_tags: tuple[str, ...] = ()
    name: str = ""


TagRef = tuple[str, int | str]  # (tag, the id of the rule that asked for it)


# --- evaluation ------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip().replace(",", ""))
        except ValueError:
            return None
    return None


def _equal(actual: Any, expected: Any) -> bool:
    if isinstance(actual, bool) or isinstance(expected, bool):
        return actual is expected
    if isinstance(actual, int | float) or isinstance(expected, int | float):
        a, b = _number(actual), _number(expected)
        return a is not None and a == b
    return str(actual) == str(expected)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


class _Tokens:
    """jieba tokens of property values, cut once per evaluation."""

    def __init__(self, properties: Mapping[str, Any], content_tokens: set[str] | None):
        self.cache: dict[str, set[str]] = {}
        content = properties.get("content")
        if content_tokens is not None and isinstance(content, str):
            self.cache[content] = content_tokens

    def of(self, value: str) -> set[str]:
        found = self.cache.get(value)
        if found is None:
            found = self.cache[value] = text.tokens(value)
        return found


def word_in(word: str, tokens: set[str], raw: str) -> bool:
    """Is ``word`` a whole word of the text (its jieba tokens, or all of the word's own
    tokens in a row)? 「请问价格」 has 价格; 「评价格式」 does not."""
    w = word.strip().lower()
    if not w:
        return False
    if w in tokens:
        return True
    parts = text.tokens(w) - {w}  # how jieba cuts the word when it does not know it
    return bool(parts) and parts <= tokens and w in raw.lower()


def _scalar_holds(op: str, arg: Any, value: Any, tokens: _Tokens) -> bool:
    if op == "eq":
        return _equal(value, arg)
    if op == "in":
        return any(_equal(value, a) for a in arg)
    if op == "prefix":
        return any(str(value).startswith(str(p)) for p in _as_list(arg))
    if op == "contains":
        return any(str(c).lower() in str(value).lower() for c in _as_list(arg))
    if op == "keywords":
        raw = str(value)
        toks = tokens.of(raw)
        return any(word_in(str(k), toks, raw) for k in _as_list(arg))
    if op in NUMERIC:
        a, b = _number(value), _number(arg)
        if a is None or b is None:
            return False
        return {"gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[op]
    return False


def _holds(condition: Any, value: Any, tokens: _Tokens) -> bool:
    if isinstance(condition, Mapping):
        ops = dict(condition)
    elif isinstance(condition, list | tuple):
        ops = {"in": list(condition)}
    else:
        ops = {"eq": condition}
    present = value is not MISSING and value is not None and value != "" and value != []
    for op, arg in ops.items():
        if op == "exists":
            if bool(arg) != present:
                return False
            continue
        if not present:
            return False
        values = value if isinstance(value, list) else [value]
        if not any(_scalar_holds(op, arg, v, tokens) for v in values):
            return False
    return True


def matches(
    rule: Rule, event_type: str, properties: Mapping[str, Any], tokens: _Tokens | None = None
) -> bool:
    if not type_matches(rule.event_type, event_type):
        return False
    tokens = tokens or _Tokens(properties, None)
    return all(_holds(c, lookup(properties, k), tokens) for k, c in rule.conditions.items())


def keywords_of(rule: Rule) -> list[str]:
    """The words a rule's ``keywords`` conditions look for (to teach jieba)."""
    return [
        str(k)
        for cond in rule.conditions.values()
        if isinstance(cond, Mapping) and "keywords" in cond
        for k in _as_list(cond["keywords"])
    ]


def evaluate(
    rules: Iterable[Rule],
    event_type: str,
    properties: Mapping[str, Any],
    text_tokens: set[str] | None = None,
) -> tuple[list[TagRef], list[TagRef]]:
    """The tags to add and to remove, each once, with the first rule (in the order given)
    that asked.

    ``text_tokens``: jieba tokens of ``properties["content"]`` if the caller has them; other
    properties a ``keywords`` condition names are cut here. A tag both added and removed by
    the same event is removed (the more cautious outcome)."""
    tokens = _Tokens(properties, text_tokens)
    add: dict[str, int | str] = {}
    remove: dict[str, int | str] = {}
    for rule in rules:
        if not matches(rule, event_type, properties, tokens):
            continue
        for tag in rule.add_tags:
            add.setdefault(tag, rule.id)
        for tag in rule.remove_tags:
            remove.setdefault(tag, rule.id)
    return (
        [(t, r) for t, r in add.items() if t not in remove],
        list(remove.items()),
    )


def interest_matches(
    dictionary: Mapping[str, str], tokens: set[str], raw: str = ""
) -> list[tuple[str, str]]:
    """(tag, word) for each interest tag whose word is in the text, each tag once, in the
    dictionary's order. ``raw`` (the text itself) lets a word jieba cut apart still count."""
    found: dict[str, str] = {}
    for word, tag in dictionary.items():
        if tag not in found and word_in(word, tokens, raw):
            found[tag] = word
    return list(found.items())


def interest_tags(dictionary: Mapping[str, str], tokens: set[str], raw: str = "") -> list[str]:
    return [tag for tag, _ in interest_matches(dictionary, tokens, raw)]


# --- validation ------------------------------------------------------------------------------


_SCALAR = (str, int, float, bool)


def _check_texts(arg: Any, what: str) -> str | None:
    items = _as_list(arg)
    if not items or not all(isinstance(i, str | int | float) and str(i).strip() for i in items):
        return f"must be {what} or a non-empty list of them"
    if len(items) > 100:
        return "at most 100 values"
    return None


def _operator_problem(op: str, arg: Any) -> str | None:
    if op == "eq":
        return None if isinstance(arg, _SCALAR) else "must be text, a number or true/false"
    if op == "in":
        if not isinstance(arg, list) or not arg:
            return "must be a non-empty list"
        if not all(isinstance(a, _SCALAR) for a in arg):
            return "every value must be text, a number or true/false"
        return None if len(arg) <= 100 else "at most 100 values"
    if op in ("prefix", "contains"):
        return _check_texts(arg, "non-empty text")
    if op == "keywords":
        return _check_texts(arg, "a word")
    if op in NUMERIC:
        return None if _number(arg) is not None and not isinstance(arg, str) else "must be a number"
    if op == "exists":
        return None if isinstance(arg, bool) else "must be true or false"
    return f"unknown operator {op!r}; use one of {', '.join(OPERATORS)}"


def condition_problems(conditions: Mapping[Any, Any]) -> list[tuple[tuple[str, ...], str]]:
    """Every problem in a conditions object, each with where it is (property, operator)."""
    problems: list[tuple[tuple[str, ...], str]] = []
    for key, cond in conditions.items():
        where: tuple[str, ...] = (str(key),)
        if not str(key).strip() or len(str(key)) > 128:
            problems.append((where, "a property name is 1 to 128 characters"))
        elif isinstance(cond, Mapping):
            if not cond:
                problems.append((where, f"give at least one operator: {', '.join(OPERATORS)}"))
            for op, arg in cond.items():
                problem = _operator_problem(str(op), arg)
                if problem:
                    problems.append(((*where, str(op)), problem))
        elif isinstance(cond, list):
            problem = _operator_problem("in", cond)
            if problem:
                problems.append((where, problem))
        elif cond is None:
            problems.append((where, "null is not a condition; use {exists: false}"))
        elif not isinstance(cond, _SCALAR):
            problems.append((where, "must be a value, a list of values or an operator object"))
    return problems


def _raise(problems: list[tuple[tuple[Any, ...], str]], data: Any) -> None:
    raise ValidationError.from_exception_data(
        "TagRule",
        [
            InitErrorDetails(type=PydanticCustomError("tag_rule", msg), loc=loc, input=data)
            for loc, msg in problems
        ],
    )


def _clean_tags(tags: list[str]) -> list[str]:
    out: list[str] = []
    for tag in (t.strip() for t in tags):
        if tag and tag not in out:
            out.append(tag)
    return out


EVENT_TYPE = re.compile(r"\*|[a-z][a-z0-9_]*(\.[a-z0-9_]+)*(\.\*)?")


class TagRuleIn(BaseModel):
    """What the API and the YAML import accept for one rule."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=100)
    event_type: str = Field(min_length=1, max_length=64)
    conditions: dict[Word, Any] = Field(default_factory=dict, max_length=20)
    add_tags: list[Word] = Field(default_factory=list, max_length=20)
    remove_tags: list[Word] = Field(default_factory=list, max_length=20)
    enabled: bool = True

    @field_validator("event_type")
    @classmethod
    def _event_type(cls, value: str) -> str:
        if not EVENT_TYPE.fullmatch(value):
            raise ValueError("an event type such as oa.click, a prefix such as oa.*, or *")
        return value

    @field_validator("conditions")
    @classmethod
    def _conditions(cls, conditions: dict[str, Any]) -> dict[str, Any]:
        problems = condition_problems(conditions)
        if problems:
            _raise(problems, conditions)
        return conditions

    @field_validator("add_tags", "remove_tags")
    @classmethod
    def _tags(cls, tags: list[str]) -> list[str]:
        return [checked_tag(tag) for tag in _clean_tags(tags)]

    @model_validator(mode="after")
    def _consistent(self) -> TagRuleIn:
        if not self.add_tags and not self.remove_tags:
            raise ValueError("add_tags: a rule needs tags to add or to remove")
        both = [t for t in self.add_tags if t in self.remove_tags]
        if both:
            raise ValueError(f"remove_tags: also in add_tags: {', '.join(both)}")
        return self

    def columns(self) -> dict[str, Any]:
        return self.model_dump()


class InterestWordsIn(BaseModel):
    """The whole interest dictionary: word -> tag."""

    model_config = ConfigDict(extra="forbid")

    words: dict[Word, Word] = Field(max_length=5000)

    @model_validator(mode="after")
    def _clean(self) -> InterestWordsIn:
        cleaned: dict[str, str] = {}
        problems: list[tuple[tuple[Any, ...], str]] = []
        for word, tag in self.words.items():
            w, t = word.strip(), tag.strip()
            if not w or len(w) > 64:
                problems.append((("words", word), "a word is 1 to 64 characters"))
            elif tag_problem(t):
                problems.append((("words", word), str(tag_problem(t))))
            elif w in cleaned and cleaned[w] != t:
                problems.append((("words", word), f"given twice, as {cleaned[w]} and {t}"))
            else:
                cleaned[w] = t
        if problems:
            _raise(problems, self.words)
        self.words = cleaned
        return self


# --- the YAML file ---------------------------------------------------------------------------


class TagFileError(Exception):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def _where(prefix: str, loc: tuple[Any, ...]) -> str:
    return prefix + (" " + ".".join(str(p) for p in loc) if loc else "")


def _msg(error: Mapping[str, Any]) -> str:
    return str(error["msg"]).removeprefix("Value error, ")


def parse_yaml(source: str) -> tuple[list[TagRuleIn], dict[str, str]]:
    """Validate a whole file (``tag_rules:`` list, ``interest_words:`` mapping) before
    anything is written; every problem is reported."""
    try:
        doc = yaml.safe_load(source)
    except yaml.YAMLError as exc:
        raise TagFileError([f"not valid YAML: {exc}"]) from exc
    if not isinstance(doc, dict) or not ({"tag_rules", "interest_words"} & set(doc)):
        raise TagFileError(["the file needs a 'tag_rules:' list or an 'interest_words:' mapping"])
    problems = [f"unknown section {k!r}" for k in doc if k not in ("tag_rules", "interest_words")]
    rules: list[TagRuleIn] = []
    items = doc.get("tag_rules") or []
    if not isinstance(items, list):
        problems.append("tag_rules must be a list of rules")
        items = []
    for i, item in enumerate(items, 1):
        try:
            rules.append(TagRuleIn.model_validate(item))
        except ValidationError as exc:
            problems += [f"{_where(f'tag_rules[{i}]', e['loc'])}: {_msg(e)}" for e in exc.errors()]
    names = [r.name for r in rules]
    problems += [
        f"tag rule name {n!r} appears more than once"
        for n in sorted({n for n in names if names.count(n) > 1})
    ]
    words: dict[str, str] = {}
    raw_words = doc.get("interest_words") or {}
    if not isinstance(raw_words, dict):
        problems.append("interest_words must be a mapping of word: tag")
    else:
        try:
            words = InterestWordsIn.model_validate({"words": raw_words}).words
        except ValidationError as exc:
            problems += [
                f"interest_words[{e['loc'][1]!r}]: {_msg(e)}"
                if len(e["loc"]) > 1
                else f"interest_words: {_msg(e)}"
                for e in exc.errors()
            ]
    if problems:
        raise TagFileError(problems)
    return rules, words
