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
from collections.abc import Iterable, Iterator, Mapping, Sequence
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

from journeys.conditions import Cmp, Conditions, compare, meets, number

STAGES = ("subscriber", "lead", "mql", "sql", "customer", "disqualified")
AUTO_STAGES = ("subscriber", "lead", "mql", "sql")  # the ones thresholds move, forward only
FINAL_STAGES = ("customer", "disqualified")  # a person or an explicit rule only
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


def _text(value: Any) -> str:
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


# --- points for one event ------------------------------------------------------------------


@dataclass(frozen=True)
class Totals:
    """What a rule has given one contact so far: on the event's local day, and ever."""

    today: float = 0.0
    lifetime: float = 0.0


@dataclass(frozen=True)
class Line:
    rule_id: str
    points: float
    reason: str
    set_stage: str | None = None


def _capped(points: float, rule: EventRule, totals: Totals) -> tuple[int, str]:
    want = cents(points)
    sign = 1 if want > 0 else -1
    allowed = abs(want)
    note = ""
    if rule.cap_per_day is not None:
        room = max(0, cents(rule.cap_per_day) - sign * cents(totals.today))
        if room < allowed:
            allowed, note = room, f"daily cap {rule.cap_per_day:g}"
    if rule.cap_lifetime is not None:
        room = max(0, cents(rule.cap_lifetime) - sign * cents(totals.lifetime))
        if room < allowed:
            allowed, note = room, f"lifetime cap {rule.cap_lifetime:g}"
    return sign * allowed, note


def _fmt(c: int) -> str:
    """Signed points from cents: +5, -0.5, +12.25."""
    return f"{c / 100:+.2f}".rstrip("0").rstrip(".")


def points_for(
    ruleset: RuleSet,
    event_type: str,
    properties: Mapping[str, Any],
    history: Mapping[str, Totals],
) -> list[Line]:
    """The ledger lines one event earns, given what each rule has already given the contact
    (``history``: rule id -> Totals for the event's day and lifetime)."""
    lines: list[Line] = []
    none = Totals()
    index = ruleset.index
    if event_type == DIRECT_POINTS:
        got = number(properties.get("points"))
        if got is not None and math.isfinite(got) and cents(got) != 0:
            reason = f"{properties.get('reason') or 'journey'} {_fmt(cents(got))}"
            lines.append(Line(DIRECT, cents(got) / 100, reason[:200]))
    for rule in index.by_type.get(event_type, ()):
        if not meets(rule.conditions, properties):
            continue
        name = rule.label or rule.id
        got, note = (
            _capped(rule.points, rule, history.get(rule.id, none)) if rule.points else (0, "")
        )
        if got == 0 and rule.set_stage is None:
            continue
        reason = f"{name} {_fmt(got)}"
        if note:
            reason += f" of {_fmt(cents(rule.points))} ({note})"
        if rule.set_stage:
            reason += f", stage → {rule.set_stage}"
        lines.append(Line(rule.id, got / 100, reason[:200], rule.set_stage))
    for attribute, value in attributes_of(properties).items():
        for rule in index.by_attribute.get(attribute, ()):
            held = cents(history.get(rule.id, none).lifetime)
            shown = _text(value)[:60]
            if compare(rule, value):
                if held == 0:
                    reason = (
                        f"{rule.label or rule.id}: {attribute} = {shown} {_fmt(cents(rule.points))}"
                    )
                    lines.append(Line(rule.id, rule.points, reason[:200]))
            elif held != 0:
                reason = f"{rule.label or rule.id}: {attribute} = {shown} no longer matches {_fmt(-held)}"
                lines.append(Line(rule.id, -held / 100, reason[:200]))
    return lines


# --- decay, stages, explanation ------------------------------------------------------------


def decay_factor(
    last_activity: datetime | None, now: datetime, half_life_days: float | None
) -> float:
    """0.5 ** (days since last activity / half-life); 1 without a half-life or activity."""
    if half_life_days is None or last_activity is None:
        return 1.0
    days = max(0.0, (now - last_activity).total_seconds() / 86400)
    return 0.5 ** (days / half_life_days)


def decayed(
    total: float, last_activity: datetime | None, now: datetime, half_life_days: float | None
) -> float:
    return round(cents(total) * decay_factor(last_activity, now, half_life_days)) / 100


def stage_for(
    score: float,
    current: str,
    manual: bool,
    thresholds: Thresholds,
    explicit: str | None = None,
) -> str:
    """The stage after a contact earned points (``score`` is their ledger sum then).

    A manual stage is never changed; an explicit rule stage (customer/disqualified) is taken;
    customer and disqualified are never left automatically; the others only move forward."""
    if manual:
        return current
    if explicit is not None:
        return explicit
    if current in FINAL_STAGES:
        return current
    target = thresholds.stage(score)
    known = current if current in AUTO_STAGES else "subscriber"
    return target if AUTO_STAGES.index(target) > AUTO_STAGES.index(known) else current


def next_stage(
    ruleset: RuleSet, current: str, manual: bool, raw_cents: int, lines: Sequence[Line]
) -> str:
    """The stage after ``lines`` were written (``raw_cents``: the ledger sum after them).
    The one rule both the incremental path and a recompute follow."""
    explicit = next((ln.set_stage for ln in reversed(lines) if ln.set_stage), None)
    if explicit is None and not any(cents(ln.points) > 0 for ln in lines):
        return current
    return stage_for(raw_cents / 100, current, manual, ruleset.stages, explicit)


def explain(lines: Sequence[Mapping[str, Any]], factor: float) -> list[dict[str, Any]]:
    """Each line (a mapping with ``points``) with ``decayed``: its share of the decayed total.
    Shares are whole cents (largest remainder), so they sum exactly to
    ``round(sum(points) × factor, 2)``."""
    raw = [cents(ln["points"]) for ln in lines]
    exact = [c * factor for c in raw]
    floors = [math.floor(x) for x in exact]
    short = min(len(raw), round(sum(raw) * factor) - sum(floors))
    order = sorted(range(len(lines)), key=lambda i: (floors[i] - exact[i], i))
    for i in order[: max(0, short)]:
        floors[i] += 1
    return [{**ln, "decayed": f / 100} for ln, f in zip(lines, floors, strict=True)]


# --- replaying a contact's history ---------------------------------------------------------


@dataclass
class Tally:
    """Per-rule totals by local day and lifetime, kept in cents while replaying events."""

    by_day: dict[tuple[str, date], int] = field(default_factory=dict)
    lifetime: dict[str, int] = field(default_factory=dict)
    raw: int = 0

    def history(self, day: date) -> Mapping[str, Totals]:
        return _DayView(self, day)

    def add(self, lines: Iterable[Line], day: date) -> None:
        for ln in lines:
            c = cents(ln.points)
            self.by_day[(ln.rule_id, day)] = self.by_day.get((ln.rule_id, day), 0) + c
            self.lifetime[ln.rule_id] = self.lifetime.get(ln.rule_id, 0) + c
            self.raw += c


class _DayView(Mapping[str, Totals]):
    """A Tally as ``points_for``'s history for one day, read lazily."""

    def __init__(self, tally: Tally, day: date):
        self.tally, self.day = tally, day

    def __getitem__(self, rule_id: str) -> Totals:
        if rule_id not in self.tally.lifetime:
            raise KeyError(rule_id)
        return Totals(
            self.tally.by_day.get((rule_id, self.day), 0) / 100, self.tally.lifetime[rule_id] / 100
        )

    def __iter__(self) -> Iterator[str]:
        return iter(self.tally.lifetime)

    def __len__(self) -> int:
        return len(self.tally.lifetime)


@dataclass(frozen=True)
class ReplayedEvent:
    key: Any  # the caller's handle (an event id)
    type: str
    properties: Mapping[str, Any]
    occurred_at: datetime


@dataclass
class Replay:
    lines: list[tuple[ReplayedEvent, Line]]
    raw_cents: int
    stage: str
    changed_by: ReplayedEvent | None  # the last event that moved the stage


def replay(ruleset: RuleSet, events: Iterable[ReplayedEvent], stage: str, manual: bool) -> Replay:
    """Score a contact's events from scratch, in the order given (by time), through the same
    functions as the incremental path."""
    tally = Tally()
    out: list[tuple[ReplayedEvent, Line]] = []
    changed_by = None
    for ev in events:
        if not ruleset.can_score(ev.type, ev.properties):
            continue
        day = ruleset.day_of(ev.occurred_at)
        lines = points_for(ruleset, ev.type, ev.properties, tally.history(day))
        if not lines:
            continue
        tally.add(lines, day)
        out += [(ev, ln) for ln in lines]
        new = next_stage(ruleset, stage, manual, tally.raw, lines)
        if new != stage:
            stage, changed_by = new, ev
    return Replay(out, tally.raw, stage, changed_by)
