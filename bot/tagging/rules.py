"""Tag rules and the interest dictionary. Pure: rules, an event's type and properties, and
jieba tokens in; the tags to add and remove out. No database, no clock, no network.

A rule names an event type (``oa.click``; a prefix ``oa.*``; or ``*``), conditions on the
event's properties, and tags to add and to remove. Every condition must hold. The conditions
are the one condition language of journeys/conditions.py (the same as journeys and score
rules): a value (equal), a list (any of) or an operator object (``eq in prefix contains
keywords gt gte lt lte exists``), validated with the same limits and wording.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from journeys import conditions, words
from journeys.conditions import Cmp, Conditions, Tokens
from journeys.tag_names import checked_tag, tag_problem

log = logging.getLogger(__name__)
_CONDITIONS: TypeAdapter[dict[str, Cmp]] = TypeAdapter(Conditions)

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
    parsed: Mapping[str, Cmp] | None = field(default=None, init=False, hash=False, compare=False)

    def __post_init__(self) -> None:
        try:
            parsed: Mapping[str, Cmp] | None = _CONDITIONS.validate_python(dict(self.conditions))
        except ValidationError as exc:  # stored before a check it fails: it matches nothing
            log.warning("tag rule %s: conditions do not parse: %s", self.id, exc)
            parsed = None
        object.__setattr__(self, "parsed", parsed)


TagRef = tuple[str, int | str]  # (tag, the id of the rule that asked for it)


# --- evaluation ------------------------------------------------------------------------------


def matches(
    rule: Rule, event_type: str, properties: Mapping[str, Any], tokens: Tokens | None = None
) -> bool:
    if rule.parsed is None:
        return False
    return conditions.event_matches(rule.event_type, rule.parsed, event_type, properties, tokens)


def keywords_of(rule: Rule) -> list[str]:
    """The words a rule's ``keywords`` conditions look for (to teach jieba)."""
    return conditions.keywords_in(rule.parsed or {})


def content_tokens(content: str) -> frozenset[str]:
    """jieba tokens of an event's text, as ``evaluate`` and ``interest_matches`` take them."""
    return words.tokens(words.normalize(content))


def evaluate(
    rules: Iterable[Rule],
    event_type: str,
    properties: Mapping[str, Any],
    text_tokens: AbstractSet[str] | None = None,
) -> tuple[list[TagRef], list[TagRef]]:
    """The tags to add and to remove, each once, with the first rule (in the order given)
    that asked.

    ``text_tokens``: ``content_tokens(properties["content"])`` if the caller has them; other
    properties a ``keywords`` condition names are cut here, once each. A tag both added and
    removed by the same event is removed (the more cautious outcome)."""
    content = properties.get("content")
    known = (
        {words.normalize(content): text_tokens}
        if text_tokens and isinstance(content, str)
        else None
    )
    tokens = Tokens(known)
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
    dictionary: Mapping[str, str], tokens: AbstractSet[str], raw: str = ""
) -> list[tuple[str, str]]:
    """(tag, word) for each interest tag whose word is in the text, each tag once, in the
    dictionary's order. ``tokens``: ``content_tokens(raw)``; ``raw`` (the text itself) lets
    a word jieba cut apart still count."""
    found: dict[str, str] = {}
    normalized = words.normalize(raw)
    for word, tag in dictionary.items():
        if tag not in found and words.word_in(word, tokens, normalized):
            found[tag] = word
    return list(found.items())


def interest_tags(
    dictionary: Mapping[str, str], tokens: AbstractSet[str], raw: str = ""
) -> list[str]:
    return [tag for tag, _ in interest_matches(dictionary, tokens, raw)]


# --- validation ------------------------------------------------------------------------------


def condition_problems(conds: Mapping[Any, Any]) -> list[tuple[tuple[str, ...], str]]:
    """Every problem in a conditions object, each with where it is (property, operator)."""
    try:
        _CONDITIONS.validate_python(dict(conds))
    except ValidationError as exc:
        return [(tuple(str(p) for p in e["loc"]), str(e["msg"])) for e in exc.errors()]
    return []


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
