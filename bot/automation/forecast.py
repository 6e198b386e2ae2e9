"""Journey forecast: replay a journey over the stored history of real contacts, dry.

``forecast(session, definition, since=…, until=…, now=…)`` walks every contact (not merged
away), in batches of contact ids, through their stored events between ``since`` and ``until``
in time order, exactly as the runner would see them: open enrollments are advanced with each
event, the trigger and entry rule decide enrollments (``triggered_by``, ``may_enter``), and
waits wake when the clock passes their ``wake_at`` (also after the last event, up to
``until``). Sends are judged by bot.automation.send_outcomes.Deliveries (quiet hours, frequency cap,
48-hour window). Nothing is written: no enrollment, step run, message or event; only SELECTs.

Reconstructed as of each moment: the event counts and last-seen time (from the events), the
stage (from ``contact.stage_changed`` events), the score (the undecayed ledger of the
contact's newest scoring version), the window (the last interaction event).

Approximated:

- tags are the contact's current tags, each counted from its ``created_at`` (a minute of
  grace, as tagging runs just after the event); tags removed since are not seen;
- the score ignores decay; the journey's own tags, points, stage and fields are applied on top
  of the history, but not what other journeys or rules would have done in reaction to them;
- ``journey.*`` and ``msg.*`` events (what journeys and sends really did) are left out;
- the runner notes tag and score changes as they happen (bot.core.changes) and stores none of
  them: tag triggers see the tag's ``created_at``, score triggers each ledger line (as
  ``score.changed``); stage triggers see the stored ``contact.stage_changed`` events;
- fields are the contact's current ones;
- segment journeys are checked once a day at forecast_replay.SWEEP_AT (the journey's time zone) for contacts
  who follow the account; the real sweep (bot.automation.segments) runs every
  YUCHI_SEGMENT_INTERVAL, so a segment entry can come up to a day later here;
- the frequency cap counts only this journey's sends; held messages go out at the contact's
  next interaction, or stay held.

Memory: one batch of contacts at a time (their tags, score lines and events in the window).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from bot.automation.forecast_history import batches, load_histories
from bot.automation.forecast_replay import Replay
from bot.automation.preview_input import load_definition
from bot.automation.send_outcomes import policy_for
from bot.core.config import Settings
from bot.core.models import utcnow
from bot.messaging import send_rules
from journeys.model import Definition

BATCH = 500


@dataclass
class StepForecast:
    id: str
    type: str
    name: str = ""
    contacts: int = 0  # contacts who would reach the step at least once
    visits: int = 0  # times it would be reached


@dataclass
class Forecast:
    journey: str
    name: str
    since: datetime
    until: datetime
    timezone: str
    steps: list[StepForecast]
    contacts: int = 0  # considered
    contacts_with_events: int = 0
    events: int = 0  # replayed
    entered: int = 0  # contacts who would enter at least once
    enrollments: int = 0
    per_day: dict[str, int] = field(default_factory=dict)  # local date -> messages sent
    messages: int = 0  # would go out
    held: int = 0  # outside the 48-hour window, still held at the end
    skipped: int = 0  # over the frequency cap
    invalid: int = 0
    handoffs: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)  # converted, done, exited, open

    def to_json(self) -> dict[str, Any]:
        return {
            "journey": self.journey,
            "name": self.name,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "timezone": self.timezone,
            "contacts": self.contacts,
            "contacts_with_events": self.contacts_with_events,
            "events": self.events,
            "entered": self.entered,
            "enrollments": self.enrollments,
            "steps": [vars(s) for s in self.steps],
            "per_day": self.per_day,
            "totals": {
                "messages": self.messages,
                "held": self.held,
                "skipped": self.skipped,
                "invalid": self.invalid,
                "handoffs": self.handoffs,
            },
            "outcomes": self.outcomes,
        }

    def table(self) -> str:
        """The forecast as plain-text tables (for the CLI)."""
        tz = ZoneInfo(self.timezone)
        out = [
            f"旅程「{self.name}」（{self.journey}）预测："
            f"{self.since.astimezone(tz):%Y-%m-%d %H:%M} 至 {self.until.astimezone(tz):%Y-%m-%d %H:%M}",
            f"考察联系人 {self.contacts}（其中 {self.contacts_with_events} 人有事件，"
            f"共 {self.events} 条事件）；会进入 {self.entered} 人，共 {self.enrollments} 次",
            "",
            f"{'步骤':<24}{'类型':<12}{'人数':>8}{'次数':>8}",
        ]
        for s in self.steps:
            label = s.id + (f" {s.name}" if s.name else "")
            out.append(f"{label:<24}{s.type:<12}{s.contacts:>8}{s.visits:>8}")
        out += ["", f"{'日期':<14}{'消息数':>8}"]
        out += [f"{day:<14}{n:>8}" for day, n in self.per_day.items()]
        out += [
            "",
            f"发出 {self.messages} 条；暂存（48 小时窗口外）{self.held} 条；"
            f"超频次跳过 {self.skipped} 条；无效 {self.invalid} 条；转交销售 {self.handoffs} 次",
            "结局："
            + "，".join(f"{_OUTCOME_LABELS.get(k, k)} {v}" for k, v in self.outcomes.items()),
        ]
        return "\n".join(out)


_OUTCOME_LABELS = {"converted": "转化", "done": "走完", "exited": "退出", "open": "仍在旅程中"}


def forecast(
    session: Session,
    definition: Definition | Mapping[str, Any],
    *,
    since: datetime,
    until: datetime | None = None,
    now: datetime | None = None,
    policy: send_rules.Policy | None = None,
    settings: Settings | None = None,
    batch_size: int = BATCH,
) -> Forecast:
    """Replay ``definition`` over every contact's events in [since, until) and count what
    would happen (see the module docstring). ``until`` defaults to, and is capped at,
    ``now`` (default: the current time). Reads only; the caller's session is left with
    nothing to commit. Raises journeys.DefinitionError for an invalid definition."""
    d = load_definition(definition)
    now = now or utcnow()
    until = min(until or now, now)
    if since.tzinfo is None or until.tzinfo is None:
        raise ValueError("since and until must be timezone-aware")
    policy = policy_for(policy, settings)
    tz = ZoneInfo(d.timezone)
    f = Forecast(
        d.id,
        d.name,
        since,
        until,
        d.timezone,
        steps=[StepForecast(s.id, s.type, s.name) for s in d.steps],
        per_day={day.isoformat(): 0 for day in _days(since, until, tz)},
    )
    if since >= until:
        return f
    for rows in batches(session, batch_size):
        for h in load_histories(session, rows, since, until):
            f.contacts += 1
            if h.events:
                f.contacts_with_events += 1
            elif d.trigger.on not in ("segment", "tag_added", "score"):
                continue  # nothing can start or move without an event
            Replay(d, h, policy, f).run(since, until)
    f.per_day = dict(sorted(f.per_day.items()))
    return f


def _days(since: datetime, until: datetime, tz: ZoneInfo) -> list[date]:
    first, last = since.astimezone(tz).date(), (until - timedelta(microseconds=1)).astimezone(tz)
    days, day = [], first
    while day <= last.date():
        days.append(day)
        day += timedelta(days=1)
    return days
