"""The enrollment state codec: ``journeys.State`` to and from the JSON of ``enrollment.state``,
and the turn number that keys a transition's step runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import journeys


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def state_to_json(s: journeys.State) -> dict[str, Any]:
    return {
        "step": s.step,
        "status": s.status,
        "wake_at": _iso(s.wake_at),
        "waiting_for": (
            {"events": list(s.waiting_for.events), "conditions": dict(s.waiting_for.conditions)}
            if s.waiting_for is not None
            else None
        ),
        "answers": dict(s.answers),
        "re_asked": s.re_asked,
        "history": list(s.history),
    }


def state_from_json(data: dict[str, Any]) -> journeys.State:
    if not data:
        return journeys.State()
    wf = data.get("waiting_for")
    wake = data.get("wake_at")
    return journeys.State(
        step=data.get("step"),
        status=data.get("status", "active"),
        wake_at=datetime.fromisoformat(wake) if wake else None,
        waiting_for=(
            journeys.WaitingFor(tuple(wf["events"]), wf.get("conditions") or {}) if wf else None
        ),
        answers=data.get("answers") or {},
        re_asked=bool(data.get("re_asked")),
        history=tuple(data.get("history") or ()),
    )


def turn(s: journeys.State) -> int:
    """Which transition of the enrollment a call from this state is (the same every time)."""
    return len(s.history) * 2 + int(s.re_asked)
