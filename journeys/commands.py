"""What ``advance`` asks the runner to do: plain frozen dataclasses, in order.

Every command carries the step that issued it and that step's visit number (1 for the first
time the contact reaches it in this enrollment), so the runner can key a run-log row on
(contact, journey version, step, visit) and never run a step twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, kw_only=True)
class Command:
    step: str
    visit: int = 1


@dataclass(frozen=True, kw_only=True)
class Send(Command):
    """A message of any kind the messaging service accepts (bot/messaging/payloads.py).
    ``reply``: send it as the instant passive reply to the contact's message."""

    kind: str
    payload: dict[str, Any] = field(hash=False)
    reply: bool = False
    outside_window: str = "hold"
    fallback: dict[str, Any] | None = field(default=None, hash=False)


@dataclass(frozen=True, kw_only=True)
class AddTag(Command):
    tag: str


@dataclass(frozen=True, kw_only=True)
class RemoveTag(Command):
    tag: str


@dataclass(frozen=True, kw_only=True)
class AddPoints(Command):
    points: float
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class SetField(Command):
    field: str
    value: Any = field(default=None, hash=False)


@dataclass(frozen=True, kw_only=True)
class SetStage(Command):
    stage: str


@dataclass(frozen=True, kw_only=True)
class HandOff(Command):
    note: str = ""
    rep: str | None = None


@dataclass(frozen=True, kw_only=True)
class NotifyRep(Command):
    message: str
    rep: str | None = None


@dataclass(frozen=True, kw_only=True)
class CallWebhook(Command):
    url: str
    body: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, kw_only=True)
class EnterJourney(Command):
    journey: str


@dataclass(frozen=True, kw_only=True)
class Answered(Command):
    """The contact answered an ask step: ``value`` is what was saved (a choice's value or
    the free text), ``text`` what they wrote. The runner may record a ``journey.answer``
    event (``{"attribute": key, "value": value}``) for scoring."""

    key: str
    value: str
    text: str = ""


@dataclass(frozen=True, kw_only=True)
class Schedule(Command):
    """Call ``advance`` with ``event=None`` at ``wake_at`` (a wait or an ask timeout)."""

    wake_at: datetime


@dataclass(frozen=True, kw_only=True)
class Exit(Command):
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class Converted(Command):
    """A goal holds: the contact leaves the journey and counts as converted."""

    goal: str = ""
