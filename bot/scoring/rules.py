"""Lead-scoring rules, pure: the versioned rule set, points for one event, decay, stages and the
line-by-line explanation. No I/O; the clock is passed in. bot/scoring/ledger.py does the database side.

Conventions (also in README.md, "Lead scoring"):

- Points are kept to the cent (two decimals); sums are done in integer cents, so the ledger, the
  incremental score and a recompute always agree exactly.
- **Event rules** score an event of one type whose properties meet every condition in
  ``conditions``, the one condition language of journeys/conditions.py (``eq in prefix contains
  keywords gt gte lt lte exists``; a dotted name reaches into nested properties). Rule sets
  written before it keep loading: ``when`` is read as ``conditions`` and ``contains_any: [...]``
  as ``contains: [...]``; the next published version stores the new spelling. Negative points
  are negative rules. Caps bound the
  magnitude a rule may add per local day (``cap_per_day``, days in the rule set's ``timezone``, by
  the event's time) and per contact for ever (``cap_lifetime``); the event that reaches a cap gets
  the part of its points that still fits.
- **Attributes** come from an event's properties: ``{"attributes": {"budget": 80000, ...}}`` or
  a form's ``{"fields": {...}}`` (several, e.g. an H5 form submission) or ``{"attribute":
  "budget", "value": 80000}`` (one, e.g. a ``journey.answer``), on any event type. An **attribute rule** is held while the contact's
  latest value of its attribute matches: it adds its points when a value starts matching and
  takes exactly them back when a later value stops matching. Repeating or changing a value that
  keeps matching adds nothing.
- **Decay** applies to the whole score: ``score = ledger sum × 0.5 ** (days inactive /
  half_life_days)``, computed at read time and never written. The caller decides what "last
  activity" is (bot/scoring/ledger.py: the later of the contact's last interaction and its last line
  with positive points).
- **Stages**: subscriber → lead → mql → sql by thresholds, only ever forward; customer and
  disqualified only by a person (``stage_manual``) or a rule's explicit ``set_stage``. A manual
  stage is never changed automatically. Thresholds are checked when a contact earns points: at
  that moment they are active, so their decayed score is their ledger sum.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from journeys.conditions import Cmp, Conditions

STAGES = ("subscriber", "lead", "mql", "sql", "customer", "disqualified")
AUTO_STAGES = ("subscriber", "lead", "mql", "sql")  # the ones thresholds move, forward only
FINAL_STAGES = ("customer", "disqualified")  # a person or an explicit rule only
STAGE_LABELS = {  # each stage as reps read it (the sidebar, the lead card)
    "subscriber": "关注者",
    "lead": "潜在客户",
    "mql": "MQL",
    "sql": "SQL",
    "customer": "已成交",
    "disqualified": "已流失",
}
MARKER = "@ledger"  # rule id of the zero line saying "this ledger was built under this version"
# Points given directly (a journey's add_points): {"points": 5, "reason": "..."} on this event
# type becomes one line under this rule id, in every rule version.
DIRECT_POINTS, DIRECT = "journey.points", "@direct"

Stage = Literal["subscriber", "lead", "mql", "sql", "customer", "disqualified"]
RULE_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$")


def cents(value: float) -> int:
    return round(value * 100)


def _points(value: float, what: str, allow_zero: bool = True) -> float:
    if not math.isfinite(value) or abs(value) > 1_000_000:
        raise ValueError(f"{what} must be a number between -1000000 and 1000000")
    if abs(value * 100 - round(value * 100)) > 1e-6:
        raise ValueError(f"{what} may have at most two decimals")
    if not allow_zero and cents(value) == 0:
        raise ValueError(f"{what} must not be 0")
    return cents(value) / 100


# --- matching ------------------------------------------------------------------------------


def as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip()


def translated(condition: Any) -> Any:
    """A condition in the spelling rule sets had before the one condition language:
    ``contains_any: [...]`` (any of these substrings) is ``contains: [...]``."""
    if not isinstance(condition, Mapping) or "contains_any" not in condition:
        return condition
    if "contains" in condition:
        raise PydanticCustomError(
            "condition",
            "contains_any: give contains or contains_any (now contains with a list), not both",
        )
    new = {k: v for k, v in condition.items() if k != "contains_any"}
    return {**new, "contains": condition["contains_any"]}


def attributes_of(properties: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes an event carries (see the module docstring for the convention)."""
    found: dict[str, Any] = {}
    for key in ("fields", "attributes"):  # a form's fields, or attributes named as such
        many = properties.get(key)
        if isinstance(many, Mapping):
            found.update({str(k): v for k, v in many.items()})
    one = properties.get("attribute")
    if isinstance(one, str) and one and "value" in properties:
        found[one] = properties["value"]
    return found


# --- the rule set --------------------------------------------------------------------------


def _rule_id(value: str) -> str:
    if not RULE_ID.match(value):
        raise ValueError(
            "must be 1 to 64 letters, digits, '_', '.', ':' or '-', not starting with '.', ':' or '-'"
        )
    return value


class EventRule(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: str
    label: str | None = Field(default=None, max_length=100)
    event: str = Field(min_length=1, max_length=64)
    conditions: Conditions = Field(default_factory=dict)
    set_stage: Literal["customer", "disqualified"] | None = None
    points: float = 0
    cap_per_day: float | None = Field(default=None, gt=0)
    cap_lifetime: float | None = Field(default=None, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _old_spelling(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or "when" not in data:
            return data
        if "conditions" in data:
            raise ValueError("when: the old name of conditions; give only conditions")
        new = {k: v for k, v in data.items() if k != "when"}
        when = data["when"]
        if isinstance(when, Mapping):
            when = {path: translated(c) for path, c in when.items()}
        return {**new, "conditions": when}

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return _rule_id(value)

    @field_validator("points", "cap_per_day", "cap_lifetime")
    @classmethod
    def _cents(cls, value: float | None) -> float | None:
        return None if value is None else _points(value, "the value")

    @model_validator(mode="after")
    def _does_something(self) -> EventRule:
        if cents(self.points) == 0 and self.set_stage is None:
            raise ValueError("points: must not be 0 (unless the rule sets a stage)")
        return self


class AttributeRule(Cmp):
    """Points held while the contact's latest value of ``attribute`` meets the rule's operators
    (written beside the rule's own fields: ``{attribute: budget, gte: 50000, points: 20}``)."""

    id: str
    label: str | None = Field(default=None, max_length=100)
    attribute: str = Field(min_length=1, max_length=64)
    points: float

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return _rule_id(value)

    @model_validator(mode="before")
    @classmethod
    def _old_spelling(cls, data: Any) -> Any:
        return translated(data)

    @field_validator("points")
    @classmethod
    def _cents(cls, value: float) -> float:
        return _points(value, "points", allow_zero=False)


class Decay(BaseModel):
    model_config = ConfigDict(extra="forbid")
    half_life_days: float = Field(gt=0, le=3650)


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lead: float = Field(ge=0)
    mql: float = Field(ge=0)
    sql: float = Field(ge=0)

    @model_validator(mode="after")
    def _increasing(self) -> Thresholds:
        if not self.lead < self.mql:
            raise ValueError("mql: must be above lead")
        if not self.mql < self.sql:
            raise ValueError("sql: must be above mql")
        return self

    def stage(self, score: float) -> str:
        for name in ("sql", "mql", "lead"):
            if score >= getattr(self, name):
                return name
        return "subscriber"


class RuleSet(BaseModel):
    """One version of the scoring rules (stored as JSON in ``scoring_ruleset.rules``)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    note: str = Field(default="", max_length=200)
    timezone: str = "Asia/Shanghai"
    events: list[EventRule] = Field(default_factory=list, max_length=500)
    attributes: list[AttributeRule] = Field(default_factory=list, max_length=500)
    decay: Decay | None = None
    stages: Thresholds

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            _zone(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. Asia/Shanghai)") from None
        return value

    @model_validator(mode="after")
    def _unique_ids(self) -> RuleSet:
        seen: set[str] = set()
        for section, rules in (("events", self.events), ("attributes", self.attributes)):
            for i, rule in enumerate(rules):
                if rule.id in seen:
                    raise ValueError(f"{section}.{i}.id: duplicate rule id {rule.id!r}")
                seen.add(rule.id)
        return self

    @functools.cached_property
    def index(self) -> _Index:
        """Rules by event type and by attribute, and the zone (plain attributes: fast)."""
        index = _Index(_zone(self.timezone))
        for rule in self.events:
            index.by_type.setdefault(rule.event, []).append(rule)
        for rule in self.attributes:
            index.by_attribute.setdefault(rule.attribute, []).append(rule)
        return index

    @property
    def half_life(self) -> float | None:
        return self.decay.half_life_days if self.decay else None

    def can_score(self, event_type: str, properties: Mapping[str, Any]) -> bool:
        """Could this event produce a line at all (a cheap test before any database work)?"""
        index = self.index
        if event_type in index.by_type or event_type == DIRECT_POINTS:
            return True
        return bool(index.by_attribute) and any(
            name in index.by_attribute for name in attributes_of(properties)
        )

    def day_of(self, at: datetime) -> date:
        return at.astimezone(self.index.zone).date()

    def day_bounds(self, day: date) -> tuple[datetime, datetime]:
        """The local day as a [start, end) range in UTC."""
        zone = self.index.zone
        start = datetime.combine(day, time(), zone)
        end = datetime.combine(day + timedelta(days=1), time(), zone)
        return start.astimezone(UTC), end.astimezone(UTC)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


@functools.lru_cache(maxsize=32)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@dataclass
class _Index:
    zone: ZoneInfo
    by_type: dict[str, list[EventRule]] = field(default_factory=dict)
    by_attribute: dict[str, list[AttributeRule]] = field(default_factory=dict)


class RuleSetError(Exception):
    """Every problem found, each as ``where: what``."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


def field_errors(exc: ValidationError) -> dict[str, str]:
    """``{"events.2.cap_per_day": "Input should be greater than 0", ...}``: a check that spans
    fields names its field first in its message ("points: ..."), which is moved to the key."""
    fields: dict[str, str] = {}
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        msg = err["msg"].removeprefix("Value error, ")
        head, sep, rest = msg.partition(": ")
        if sep and re.fullmatch(r"[a-z_]+(\.[A-Za-z0-9_]+)*", head):
            loc.append(head)
            msg = rest
        fields[".".join(loc) or "rules"] = msg
    return fields


def parse(data: Any) -> RuleSet:
    """Validate a rule set given as a dict; RuleSetError lists every problem."""
    if not isinstance(data, Mapping):
        raise RuleSetError(["rules: must be a mapping with events, attributes, decay, stages"])
    try:
        return RuleSet.model_validate(data)
    except ValidationError as exc:
        raise RuleSetError([f"{k}: {v}" for k, v in field_errors(exc).items()]) from None


def parse_yaml(source: str) -> RuleSet:
    try:
        doc = yaml.safe_load(source)
    except yaml.YAMLError as exc:
        raise RuleSetError([f"not valid YAML: {exc}"]) from exc
    return parse(doc)
