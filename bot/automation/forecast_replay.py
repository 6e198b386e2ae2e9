"""One contact's replay through a journey for the forecast (bot.automation.forecast): their
events in time order, the waits waking as the clock passes them, the sends judged by
bot.automation.send_outcomes. What a command changes about the contact is in ``EFFECTS``
(the same shape as the runner's bot.automation.execute.HANDLERS)."""

from __future__ import annotations

import bisect
import dataclasses
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import journeys
from bot.automation.forecast_history import STORED_STAGE_CHANGED, History
from bot.automation.send_outcomes import Deliveries, Outcome, conversational, is_interaction
from bot.messaging import send_rules
from journeys import commands as c
from journeys import engine
from journeys.model import Definition

if TYPE_CHECKING:
    from bot.automation.forecast import Forecast, StepForecast

SWEEP_AT = time(0, 0)
TAG_GRACE = timedelta(minutes=1)
MAX_ADVANCES_PER_CONTACT = 10_000
OPEN = ("active", "waiting", "asking")


@dataclass
class Open:
    state: journeys.State
    started_at: datetime
    ended_at: datetime | None = None


class Replay:
    """One contact through the journey; adds what happened to the forecast."""

    def __init__(self, d: Definition, h: History, policy: send_rules.Policy, f: Forecast):
        self.d, self.h, self.f = d, h, f
        self.tz = ZoneInfo(d.timezone)
        self.counts = Counter(h.counts)
        self.last_seen = h.last_seen
        self.stage = h.stage
        self.subscribed = h.subscribed
        self.added: set[str] = set()
        self.removed: set[str] = set()
        self.points = 0.0
        self.fields: dict[str, Any] = dict(h.fields)
        self.deliveries = Deliveries(policy, last_interaction=h.last_interaction)
        self.enrollments: list[Open] = []
        self.visited: Counter = Counter()
        self.advances = 0

    # --- the contact as the runner's snapshot would show it --------------------------------

    def contact(self, at: datetime) -> journeys.Contact:
        h = self.h
        tags = {t for t, created in h.tags if created <= at + TAG_GRACE}
        i = bisect.bisect_right(h.score_times, at)
        score = (h.score_sums[i - 1] if i else 0.0) + self.points
        return journeys.Contact(
            id=h.contact_id,
            name=h.name,
            tags=frozenset((tags | self.added) - self.removed),
            fields=dict(self.fields),
            score=score,
            stage=self.stage,
            event_counts=dict(self.counts),
            last_seen_at=self.last_seen,
        )

    # --- applying ---------------------------------------------------------------------------

    def apply(
        self,
        e: Open,
        before: journeys.State,
        new: journeys.State,
        cmds: list,
        at: datetime,
        event: journeys.Event | None,
    ) -> None:
        marketing = not conversational(event)
        e.state = new
        if new.finished and e.ended_at is None:
            e.ended_at = at
        self.visited.update(new.history[len(before.history) :])
        for cmd in cmds:
            effect = EFFECTS.get(type(cmd))
            if effect is not None:
                effect(self, cmd, at, marketing)

    def count(self, outcome: Outcome) -> None:
        if outcome.status == "sent":
            day = outcome.at.astimezone(self.tz).date().isoformat()
            self.f.per_day[day] = self.f.per_day.get(day, 0) + 1
            self.f.messages += 1
        elif outcome.status == "skipped":
            self.f.skipped += 1
        elif outcome.status == "invalid":
            self.f.invalid += 1
        # held: counted at the end, when we know whether an interaction released it

    def advance(self, e: Open, event: journeys.Event | None, at: datetime) -> None:
        self.advances += 1
        before = e.state
        new, cmds = journeys.advance(self.d, before, event, at, self.contact(at))
        if new != before or cmds:
            self.apply(e, before, new, cmds, at, event)

    # --- the clock --------------------------------------------------------------------------

    def wake_until(self, t: datetime) -> None:
        """Advance every enrollment whose wake_at is not after ``t``, earliest first."""
        while self.advances < MAX_ADVANCES_PER_CONTACT:
            due = [
                e
                for e in self.enrollments
                if e.state.status in ("waiting", "asking")
                and e.state.wake_at is not None
                and e.state.wake_at <= t
            ]
            if not due:
                return
            e = min(due, key=lambda x: x.state.wake_at)
            self.advance(e, None, e.state.wake_at)

    def try_start(self, event: journeys.Event | None, at: datetime) -> None:
        k = self.contact(at)
        if not journeys.triggered_by(self.d, event, k, at):
            return
        past = [journeys.Enrollment(e.started_at, e.ended_at) for e in self.enrollments]
        if not journeys.may_enter(self.d.trigger.entry, past, at):
            return
        e = Open(journeys.State(), at)
        self.enrollments.append(e)
        self.f.enrollments += 1
        self.advances += 1
        new, cmds = journeys.start(self.d, event, at, k)
        self.apply(e, journeys.State(), new, cmds, at, event)

    def on_event(self, at: datetime, type_: str, props: Mapping[str, Any]) -> None:
        self.counts[type_] += 1
        self.last_seen = at if self.last_seen is None or at > self.last_seen else self.last_seen
        if type_ == STORED_STAGE_CHANGED and props.get("to"):
            self.stage = str(props["to"])
        if is_interaction(type_):
            for _cmd, outcome in self.deliveries.interacted(at):
                self.count(outcome)
        if type_ == "oa.subscribe":
            self.subscribed = True
        if type_ == "oa.unsubscribe":  # the runner ends every enrollment (exit_all)
            self.subscribed = False
            for e in self.enrollments:
                if e.state.status in OPEN:
                    e.state = dataclasses.replace(e.state, status=engine.EXITED, wake_at=None)
                    e.ended_at = at
            return
        event = journeys.Event(type_, dict(props), at)
        for e in list(self.enrollments):
            if e.state.status in ("waiting", "asking"):
                self.advance(e, event, at)
        self.try_start(event, at)

    def run(self, since: datetime, until: datetime) -> None:
        for at, kind, type_, props in self._timeline(since, until):
            self.wake_until(at)
            if self.advances >= MAX_ADVANCES_PER_CONTACT:
                break
            if kind == "event":
                self.f.events += 1
                self.on_event(at, type_, props)
            elif kind == "sweep":
                if self.subscribed and at >= self.h.first_seen:
                    self.try_start(None, at)
            else:  # a synthetic tag.added or score.changed
                self.try_start(journeys.Event(type_, props, at), at)
        self.wake_until(until)
        self.finish()

    def _timeline(
        self, since: datetime, until: datetime
    ) -> list[tuple[datetime, str, str, dict[str, Any]]]:
        items = [(at, "event", t, p) for at, _id, t, p in self.h.events]
        t = self.d.trigger
        if t.on == "segment":
            items += [(at, "sweep", "", {}) for at in _sweeps(since, until, self.tz)]
        elif t.on == "tag_added":
            items += [
                (created, "synthetic", engine.TAG_ADDED, {"tag": tag})
                for tag, created in self.h.tags
                if tag == t.tag and since <= created < until
            ]
        elif t.on == "score":
            sums = [0.0, *self.h.score_sums]
            for i, at in enumerate(self.h.score_times):
                if since <= at < until and sums[i] != sums[i + 1]:
                    props = {"from": sums[i], "to": sums[i + 1]}
                    items.append((at, "synthetic", engine.SCORE_CHANGED, props))
        order = {"event": 0, "synthetic": 1, "sweep": 2}
        return sorted(items, key=lambda x: (x[0], order[x[1]]))

    def finish(self) -> None:
        f = self.f
        if self.enrollments:
            f.entered += 1
        for step_id in self.visited:
            s = _step(f, step_id)
            if s is not None:
                s.contacts += 1
                s.visits += self.visited[step_id]
        for e in self.enrollments:
            status = e.state.status if e.state.status not in OPEN else "open"
            f.outcomes[status] = f.outcomes.get(status, 0) + 1
        f.held += len(self.deliveries.held)


def _step(f: Forecast, step_id: str) -> StepForecast | None:
    return next((s for s in f.steps if s.id == step_id), None)


def _sweeps(since: datetime, until: datetime, tz: ZoneInfo) -> Iterator[datetime]:
    day = since.astimezone(tz).date()
    while True:
        at = datetime.combine(day, SWEEP_AT, tzinfo=tz)
        if at >= until:
            return
        if at >= since:
            yield at
        day += timedelta(days=1)


# --- what each command changes -------------------------------------------------------------


def _add_tag(r: Replay, cmd: c.AddTag, at: datetime, marketing: bool) -> None:
    r.added.add(cmd.tag)
    r.removed.discard(cmd.tag)


def _remove_tag(r: Replay, cmd: c.RemoveTag, at: datetime, marketing: bool) -> None:
    r.removed.add(cmd.tag)
    r.added.discard(cmd.tag)


def _add_points(r: Replay, cmd: c.AddPoints, at: datetime, marketing: bool) -> None:
    r.points += cmd.points


def _set_field(r: Replay, cmd: c.SetField, at: datetime, marketing: bool) -> None:
    r.fields[cmd.field] = cmd.value


def _set_stage(r: Replay, cmd: c.SetStage, at: datetime, marketing: bool) -> None:
    r.stage = cmd.stage


def _hand_off(r: Replay, cmd: c.HandOff, at: datetime, marketing: bool) -> None:
    r.f.handoffs += 1


def _send(r: Replay, cmd: c.Send, at: datetime, marketing: bool) -> None:
    r.count(r.deliveries.send(cmd, at, marketing))


# The other commands change nothing a forecast counts or a later condition sees.
EFFECTS: dict[type[c.Command], Callable[[Replay, Any, datetime, bool], None]] = {
    c.AddTag: _add_tag,
    c.RemoveTag: _remove_tag,
    c.AddPoints: _add_points,
    c.SetField: _set_field,
    c.SetStage: _set_stage,
    c.HandOff: _hand_off,
    c.Send: _send,
}
