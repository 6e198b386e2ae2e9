"""Scoring one contact, pure: the points one event earns under a rule set (caps, attribute
rules held while they match), decay, the stage thresholds, the line-by-line explanation and the
replay of a whole history. The rule set itself and its conventions are in bot/scoring/rules.py.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from bot.scoring.rules import (
    AUTO_STAGES,
    DIRECT,
    DIRECT_POINTS,
    FINAL_STAGES,
    EventRule,
    RuleSet,
    Thresholds,
    as_text,
    attributes_of,
    cents,
)
from journeys.conditions import compare, meets, number

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
            shown = as_text(value)[:60]
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


def shares(raw: Sequence[int], factor: float) -> list[int]:
    """Each line's share (cents) of the decayed total of lines worth ``raw`` cents: whole
    cents by largest remainder, so they sum exactly to ``round(sum(raw) × factor)``."""
    exact = [c * factor for c in raw]
    floors = [math.floor(x) for x in exact]
    short = min(len(raw), round(sum(raw) * factor) - sum(floors))
    if short > 0:
        order = sorted(range(len(raw)), key=lambda i: (floors[i] - exact[i], i))
        for i in order[:short]:
            floors[i] += 1
    return floors


def explain(lines: Sequence[Mapping[str, Any]], factor: float) -> list[dict[str, Any]]:
    """Each line (a mapping with ``points``) with ``decayed``: its share of the decayed total
    (``shares``), so they sum exactly to ``round(sum(points) × factor, 2)``."""
    got = shares([cents(ln["points"]) for ln in lines], factor)
    return [{**ln, "decayed": f / 100} for ln, f in zip(lines, got, strict=True)]


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
