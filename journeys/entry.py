"""Entry rules: may this contact enter (again) now? Pure: the rule, their past enrollments in
this journey and the clock in.

- ``once``: never if they were ever enrolled.
- ``once_at_a_time``: not while an enrollment is still open.
- ``every_time``: always, even alongside an open one.

``cooldown`` (for the last two): not until that long after their last entry.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from journeys.model import EntryRule


@dataclass(frozen=True)
class Enrollment:
    started_at: datetime
    ended_at: datetime | None = None  # None: still in the journey

    @property
    def open(self) -> bool:
        return self.ended_at is None


def may_enter(rule: EntryRule, history_of_enrollments: Iterable[Enrollment], now: datetime) -> bool:
    past = list(history_of_enrollments)
    if not past:
        return True
    if rule.mode == "once":
        return False
    if rule.mode == "once_at_a_time" and any(e.open for e in past):
        return False
    if rule.cooldown is not None:
        last = max(e.started_at for e in past)
        if now - last < rule.cooldown:
            return False
    return True
