"""Per-step counters for the console, from the enrollments' paths. Pure.

For each step: ``entered`` (contacts who reached it), ``waiting`` (there now, waiting or asking),
``passed`` (went on to a next step, or finished there), ``branches`` (for conditions and asks:
which step came next, and how often), ``failed`` (ended there by an error, or a message of the
step that could not be delivered), ``exited`` and ``converted`` (the goal held while there).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from journeys.engine import ASKING, CONVERTED, DONE, EXITED, WAITING
from journeys.model import Ask, Condition, Definition

# Exit reasons that mean something went wrong (journeys.engine), not a planned exit.
FAILURES = ("loop guard", "unknown step", "is not in this version")


@dataclass(frozen=True)
class Path:
    """What the counters need of one enrollment."""

    status: str
    step: str | None
    history: tuple[str, ...]
    reason: str | None = None


@dataclass
class StepCount:
    entered: int = 0
    waiting: int = 0
    passed: int = 0
    failed: int = 0
    exited: int = 0
    converted: int = 0
    branches: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "entered": self.entered,
            "waiting": self.waiting,
            "passed": self.passed,
            "failed": self.failed,
            "exited": self.exited,
            "converted": self.converted,
            "branches": dict(self.branches),
        }


def _failed(reason: str | None) -> bool:
    return bool(reason) and any(f in reason for f in FAILURES)


def count(
    definition: Definition,
    paths: Iterable[Path],
    failed_sends: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """``{"steps": {step id: counters}, "totals": {...}}`` in the definition's step order."""
    steps = {s.id: StepCount() for s in definition.steps}
    branching = {s.id for s in definition.steps if isinstance(s, Condition | Ask)}
    totals = {"enrolled": 0, "open": 0, "done": 0, "exited": 0, "converted": 0, "failed": 0}
    for p in paths:
        totals["enrolled"] += 1
        seen: set[str] = set()
        went_on: set[str] = set()
        for i, sid in enumerate(p.history):
            sc = steps.setdefault(sid, StepCount())
            if sid not in seen:
                sc.entered += 1
                seen.add(sid)
            if i + 1 < len(p.history):
                went_on.add(sid)
                if sid in branching:
                    nxt = p.history[i + 1]
                    sc.branches[nxt] = sc.branches.get(nxt, 0) + 1
        if p.status == DONE and p.step is not None:
            went_on.add(p.step)
        for sid in went_on:
            steps.setdefault(sid, StepCount()).passed += 1
        here = steps.setdefault(p.step, StepCount()) if p.step is not None else None
        if p.status in (WAITING, ASKING):
            totals["open"] += 1
            if here is not None:
                here.waiting += 1
        elif p.status == CONVERTED:
            totals["converted"] += 1
            if here is not None:
                here.converted += 1
        elif p.status == EXITED:
            failed = _failed(p.reason)
            totals["failed" if failed else "exited"] += 1
            if here is not None:
                if failed:
                    here.failed += 1
                else:
                    here.exited += 1
        elif p.status == DONE:
            totals["done"] += 1
        else:
            totals["open"] += 1
    for sid, n in (failed_sends or {}).items():
        steps.setdefault(sid, StepCount()).failed += n
    rate = totals["converted"] / totals["enrolled"] if totals["enrolled"] else 0.0
    return {
        "steps": {sid: sc.as_dict() for sid, sc in steps.items()},
        "order": list(steps),  # the definition's order (JSON objects may come back sorted)
        "totals": {**totals, "conversion_rate": round(rate, 4)},
    }
