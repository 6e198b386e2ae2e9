"""Journey forecast: replay a journey over the stored history of real contacts, dry.

``forecast(session, definition, since=…, until=…, now=…)`` walks every contact (not merged
away), in batches of contact ids, through their stored events between ``since`` and ``until``
in time order, exactly as the runner would see them: open enrollments are advanced with each
event, the trigger and entry rule decide enrollments (``triggered_by``, ``may_enter``), and
waits wake when the clock passes their ``wake_at`` (also after the last event, up to
``until``). Sends are judged by bot.automation.preview.Deliveries (quiet hours, frequency cap,
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
- segment journeys are checked once a day at SWEEP_AT (the journey's time zone) for contacts
  who follow the account; the real sweep (bot.automation.segments) runs every
  YUCHI_SEGMENT_INTERVAL, so a segment entry can come up to a day later here;
- the frequency cap counts only this journey's sends; held messages go out at the contact's
  next interaction, or stay held.

Memory: one batch of contacts at a time (their tags, score lines and events in the window).
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

import journeys
from bot.automation.preview import (
    Deliveries,
    Outcome,
    conversational,
    is_interaction,
    load_definition,
    policy_for,
)
from bot.core.config import Settings
from bot.core.models import Contact, ContactTag, Event, ScoreEntry, utcnow
from bot.messaging import send_rules
from journeys import commands as c
from journeys import engine
from journeys.model import Definition

BATCH = 500
SWEEP_AT = time(0, 0)
TAG_GRACE = timedelta(minutes=1)
MAX_ADVANCES_PER_CONTACT = 10_000
LEFT_OUT = ("journey.", "msg.")
STORED_STAGE_CHANGED = "contact.stage_changed"
OPEN = ("active", "waiting", "asking")


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


# --- one contact's history -----------------------------------------------------------------


@dataclass
class _History:
    """What is known about one contact before and during the window (one batch's rows)."""

    contact_id: int
    name: str
    subscribed: bool
    first_seen: datetime
    fields: dict[str, Any] = field(default_factory=dict)  # the current ones
    counts: Counter = field(default_factory=Counter)  # events before the window, by type
    last_seen: datetime | None = None
    last_interaction: datetime | None = None
    stage: str = "subscriber"
    tags: list[tuple[str, datetime]] = field(default_factory=list)
    score_times: list[datetime] = field(default_factory=list)
    score_sums: list[float] = field(default_factory=list)  # cumulative, aligned with times
    events: list[tuple[datetime, int, str, dict[str, Any]]] = field(default_factory=list)


@dataclass
class _Open:
    state: journeys.State
    started_at: datetime
    ended_at: datetime | None = None


class _Replay:
    """One contact through the journey; adds what happened to the forecast."""

    def __init__(self, d: Definition, h: _History, policy: send_rules.Policy, f: Forecast):
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
        self.enrollments: list[_Open] = []
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
        e: _Open,
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
            if isinstance(cmd, c.AddTag):
                self.added.add(cmd.tag)
                self.removed.discard(cmd.tag)
            elif isinstance(cmd, c.RemoveTag):
                self.removed.add(cmd.tag)
                self.added.discard(cmd.tag)
            elif isinstance(cmd, c.AddPoints):
                self.points += cmd.points
            elif isinstance(cmd, c.SetField):
                self.fields[cmd.field] = cmd.value
            elif isinstance(cmd, c.SetStage):
                self.stage = cmd.stage
            elif isinstance(cmd, c.HandOff):
                self.f.handoffs += 1
            elif isinstance(cmd, c.Send):
                self.count(self.deliveries.send(cmd, at, marketing))

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

    def advance(self, e: _Open, event: journeys.Event | None, at: datetime) -> None:
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
        e = _Open(journeys.State(), at)
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


# --- reading the history in batches --------------------------------------------------------


def _batches(session: Session, size: int) -> Iterator[list[sa.Row]]:
    k = Contact.__table__.c
    last = 0
    while True:
        rows = session.execute(
            sa.select(k.id, k.name, k.subscribed, k.first_seen_at, k.fields)
            .where(k.merged_into_id.is_(None), k.id > last)
            .order_by(k.id)
            .limit(size)
        ).all()
        if not rows:
            return
        yield rows
        last = rows[-1].id


def _load(session: Session, rows: list[sa.Row], since: datetime, until: datetime) -> list[_History]:
    ids = [r.id for r in rows]
    hs = {
        r.id: _History(
            r.id, r.name or "", bool(r.subscribed), r.first_seen_at, dict(r.fields or {})
        )
        for r in rows
    }
    e = Event.__table__.c

    # before the window: counts, last seen, last interaction, following or not
    subs: dict[int, dict[str, datetime]] = defaultdict(dict)
    for cid, type_, n, last in session.execute(
        sa.select(e.contact_id, e.type, sa.func.count(), sa.func.max(e.occurred_at))
        .where(e.contact_id.in_(ids), e.occurred_at < since)
        .group_by(e.contact_id, e.type)
    ):
        if type_.startswith(LEFT_OUT):
            continue
        h = hs[cid]
        h.counts[type_] = n
        h.last_seen = max(filter(None, (h.last_seen, last)))
        if is_interaction(type_):
            h.last_interaction = max(filter(None, (h.last_interaction, last)))
        if type_ in ("oa.subscribe", "oa.unsubscribe"):
            subs[cid][type_] = last
    for cid, seen in subs.items():
        on, off = seen.get("oa.subscribe"), seen.get("oa.unsubscribe")
        hs[cid].subscribed = off is None or (on is not None and on > off)

    for cid, props in session.execute(
        sa.select(e.contact_id, e.properties)
        .where(e.contact_id.in_(ids), e.type == STORED_STAGE_CHANGED, e.occurred_at < since)
        .order_by(e.contact_id, e.occurred_at, e.id)
    ):
        if (props or {}).get("to"):
            hs[cid].stage = str(props["to"])

    t = ContactTag.__table__.c
    for cid, tag, created in session.execute(
        sa.select(t.contact_id, t.tag, t.created_at).where(t.contact_id.in_(ids))
    ):
        hs[cid].tags.append((tag, created))

    s = ScoreEntry.__table__.c
    lines: dict[int, list[tuple[int, datetime, float]]] = defaultdict(list)
    for cid, version, points, at in session.execute(
        sa.select(s.contact_id, s.ruleset_version, s.points, s.occurred_at)
        .where(s.contact_id.in_(ids), s.occurred_at < until)
        .order_by(s.contact_id, s.occurred_at, s.id)
    ):
        lines[cid].append((version, at, points))
    for cid, ls in lines.items():
        newest = max(v for v, _, _ in ls)
        total, h = 0.0, hs[cid]
        for v, at, points in ls:
            if v == newest:
                total += points
                h.score_times.append(at)
                h.score_sums.append(total)

    stream = session.execute(
        sa.select(e.contact_id, e.id, e.occurred_at, e.type, e.properties)
        .where(e.contact_id.in_(ids), e.occurred_at >= since, e.occurred_at < until)
        .order_by(e.contact_id, e.occurred_at, e.id)
        .execution_options(yield_per=1000)
    )
    for cid, group in itertools.groupby(stream, key=lambda r: r.contact_id):
        hs[cid].events = [
            (r.occurred_at, r.id, r.type, dict(r.properties or {}))
            for r in group
            if not r.type.startswith(LEFT_OUT)
        ]
    return [hs[i] for i in ids]


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
    for rows in _batches(session, batch_size):
        for h in _load(session, rows, since, until):
            f.contacts += 1
            if h.events:
                f.contacts_with_events += 1
            elif d.trigger.on not in ("segment", "tag_added", "score"):
                continue  # nothing can start or move without an event
            _Replay(d, h, policy, f).run(since, until)
    f.per_day = dict(sorted(f.per_day.items()))
    return f


def _days(since: datetime, until: datetime, tz: ZoneInfo) -> list[date]:
    first, last = since.astimezone(tz).date(), (until - timedelta(microseconds=1)).astimezone(tz)
    days, day = [], first
    while day <= last.date():
        days.append(day)
        day += timedelta(days=1)
    return days
