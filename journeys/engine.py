"""``advance(definition, state, event, now, contact) -> (state, commands)``: pure, no I/O.

The runner keeps one ``State`` per enrollment and calls ``advance``:

- with the entering event and ``State()`` to enroll (``start``), after ``triggered_by`` and
  ``journeys.entry.may_enter`` said yes;
- with every later event of the contact (a reply to an open question, an awaited event);
- with ``event=None`` when a ``Schedule``'s ``wake_at`` has come (the clock moved).

One call runs through every step that does not wait (conditions, actions) until it reaches a
wait, an ask or the end; at most MAX_STEPS steps, then the contact exits ("loop guard").
Goals (``goal`` steps and the definition's ``goal``) are checked when a call starts, before
each wait or ask, and at the end; the contact snapshot seen by conditions and goals includes
what the call's own actions did (tags, points, fields, stage).

Event types the runner feeds in for the non-event triggers: ``tag.added`` (``{"tag": ...}``)
and ``score.changed`` (``{"from": 10, "to": 60}``), noted as the change happens, and the
timeline's own ``contact.stage_changed`` (``{"from": "lead", "to": "sql"}``). A segment
trigger is checked against the contact (``event`` may be None).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from journeys import bandit, timing, words
from journeys import commands as c
from journeys.answers import reply_of, understand
from journeys.model import Action, Ask, Condition, Definition, Goal, Trigger, Wait
from journeys.predicates import event_matches, holds, number, type_matches
from journeys.render import render, render_text

Weights = Mapping[str, Sequence[float]]  # bandit split step id -> weight per arm
ACTIVE, WAITING, ASKING = "active", "waiting", "asking"
DONE, EXITED, CONVERTED = "done", "exited", "converted"
FINAL = frozenset({DONE, EXITED, CONVERTED})
MAX_STEPS = 100
TAG_ADDED, SCORE_CHANGED, STAGE_CHANGED = "tag.added", "score.changed", "contact.stage_changed"
REPLY_KINDS = frozenset({"text", "news", "link", "image"})  # what a passive reply can carry
NO_REPLY_EVENTS = frozenset(
    {"oa.unsubscribe", "oa.template_send_finished", "oa.mass_send_finished"}
)


@dataclass(frozen=True)
class Event:
    type: str
    properties: Mapping[str, Any] = field(default_factory=dict, hash=False)
    occurred_at: datetime | None = None


@dataclass(frozen=True)
class WaitingFor:
    """What a waiting contact waits for: event type patterns and property conditions."""

    events: tuple[str, ...]
    conditions: Mapping[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class State:
    step: str | None = None  # None: not yet entered
    status: str = ACTIVE  # active | waiting | asking | done | exited | converted
    wake_at: datetime | None = None
    waiting_for: WaitingFor | None = None
    answers: Mapping[str, Any] = field(default_factory=dict, hash=False)
    re_asked: bool = False
    history: tuple[str, ...] = ()

    @property
    def finished(self) -> bool:
        return self.status in FINAL

    @property
    def asking(self) -> bool:
        """An open question: the contact's next text (or click) belongs to the journey."""
        return self.status == ASKING

    def visits(self, step: str) -> int:
        return self.history.count(step)


@dataclass(frozen=True)
class Contact:
    """A read-only snapshot of the contact, supplied by the runner."""

    id: int | str
    name: str = ""
    tags: frozenset[str] = frozenset()
    fields: Mapping[str, Any] = field(default_factory=dict, hash=False)
    score: float = 0.0
    stage: str = "subscriber"
    timezone: str | None = None
    event_counts: Mapping[str, int] = field(default_factory=dict, hash=False)
    last_seen_at: datetime | None = None
    # saved segment id -> member? (the runner's mapping asks the database on first use)
    segments: Mapping[int, bool] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.tags, frozenset):
            object.__setattr__(self, "tags", frozenset(self.tags))


def _aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")


def split_bucket(journey_id: str, contact_id: int | str) -> float:
    """A number in [0, 100), the same for the same journey and contact every time."""
    digest = hashlib.sha256(f"{journey_id}:{contact_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


def goal_reached(
    definition: Definition, contact: Contact, answers: Mapping[str, Any], now: datetime
) -> bool:
    return any(holds(g, contact, answers, now) for g in definition.goals)


def triggered_by(
    definition: Definition, event: Event | None, contact: Contact, now: datetime
) -> bool:
    """Does this event (None: a segment sweep) start the journey for this contact?
    The entry rule is journeys.entry.may_enter's business."""
    t: Trigger = definition.trigger
    if t.on == "segment":
        assert t.segment is not None
        return holds(t.segment, contact, {}, now)
    if event is None or t.on in ("segment_entered", "segment_left"):
        return False  # saved segments: bot.automation.segments' sweep enrolls them
    props = event.properties
    if t.on == "event":
        assert t.event is not None
        return event_matches(t.event, t.conditions, event.type, props)
    if t.on == "tag_added":
        return event.type == TAG_ADDED and props.get("tag") == t.tag
    if t.on == "score":
        before, after = number(props.get("from")), number(props.get("to"))
        assert t.score_gte is not None
        return (
            event.type == SCORE_CHANGED
            and before is not None
            and after is not None
            and before < t.score_gte <= after
        )
    return event.type == STAGE_CHANGED and props.get("to") == t.stage


def could_start(definition: Definition, event_type: str, quiet: bool = False) -> bool:
    """Could an event of this type start the journey? A cheap test on the type alone, before
    any contact is read; ``triggered_by`` decides. ``quiet``: an event Yuchi made (it enters
    no segment)."""
    t = definition.trigger
    if t.on == "event":
        return type_matches(t.event or "", event_type)
    if t.on == "segment":
        return not quiet
    if t.on in ("segment_entered", "segment_left"):
        return False
    return event_type == {"tag_added": TAG_ADDED, "score": SCORE_CHANGED}.get(t.on, STAGE_CHANGED)


def awaits(state: State, event_type: str) -> bool:
    """Does this state wait for an event of this type (a wait step's ``until``)?"""
    wf = state.waiting_for
    return wf is not None and any(type_matches(p, event_type) for p in wf.events)


class _Run:
    """One call of advance: the working state and the commands so far."""

    def __init__(
        self,
        d: Definition,
        state: State,
        event: Event | None,
        now: datetime,
        contact: Contact,
        weights: Weights | None = None,
    ):
        self.d, self.state, self.event, self.now = d, state, event, now
        self.weights = weights or {}
        self.contact = contact  # replaced by an updated copy as actions run
        self.answers = dict(state.answers)
        self.history = list(state.history)
        self.commands: list[c.Command] = []
        self.steps_run = 0
        self.reply_open = (
            event is not None and event.type.startswith("oa.") and event.type not in NO_REPLY_EVENTS
        )

    # --- bookkeeping ---------------------------------------------------------------------

    def visit(self, step_id: str) -> None:
        self.history.append(step_id)

    def emit(self, cls: type[c.Command], step: str, **kwargs: Any) -> None:
        self.commands.append(cls(step=step, visit=max(1, self.history.count(step)), **kwargs))

    def take_reply(self, kind: str) -> bool:
        if self.reply_open and kind in REPLY_KINDS:
            self.reply_open = False
            return True
        return False

    def scope(self) -> dict[str, Mapping[str, Any]]:
        k = self.contact
        name = k.name or k.fields.get("name") or k.fields.get("nickname") or ""
        return {
            "contact": {
                **k.fields,
                "fields": dict(k.fields),
                "id": k.id,
                "name": name,
                "score": k.score,
                "stage": k.stage,
            },
            "answers": self.answers,
            "journey": {"id": self.d.id, "name": self.d.name, "version": self.d.version},
        }

    def result(self, step: str | None, status: str, **changes: Any) -> tuple[State, list]:
        new = replace(
            self.state,
            step=step,
            status=status,
            wake_at=changes.get("wake_at"),
            waiting_for=changes.get("waiting_for"),
            answers=self.answers,
            re_asked=changes.get("re_asked", False),
            history=tuple(self.history),
        )
        return new, self.commands

    def goal(self) -> bool:
        return goal_reached(self.d, self.contact, self.answers, self.now)

    def converted(self, step: str) -> tuple[State, list]:
        self.emit(c.Converted, step, goal="goal")
        return self.result(step, CONVERTED)

    def exit(self, step: str, reason: str) -> tuple[State, list]:
        self.emit(c.Exit, step, reason=reason)
        return self.result(step, EXITED)

    # --- the loop ------------------------------------------------------------------------

    def go(self, target: str | None, came_from: str) -> tuple[State, list]:
        last = came_from
        while target is not None:
            if self.steps_run >= MAX_STEPS:
                return self.exit(last, f"loop guard: more than {MAX_STEPS} steps in one go")
            step = self.d.index.get(target)
            if step is None:
                return self.exit(last, f"unknown step {target!r}")
            self.steps_run += 1
            if isinstance(step, Wait | Ask) and self.goal():
                return self.converted(last)
            self.visit(step.id)
            last = step.id
            if isinstance(step, Wait):
                outcome = self.wait(step)
                if isinstance(outcome, tuple):
                    return outcome
                target = outcome
            elif isinstance(step, Ask):
                return self.ask(step)
            elif isinstance(step, Condition):
                target = self.branch(step)
            elif isinstance(step, Action):
                if step.do == "exit":
                    return self.exit(step.id, step.reason or "exit")
                self.act(step)
                target = step.next
            elif isinstance(step, Trigger):
                target = step.next
            elif isinstance(step, Goal):
                target = None
        if self.goal():
            return self.converted(last)
        self.emit(c.Exit, last, reason="completed")
        return self.result(last, DONE)

    def wait(self, step: Wait) -> tuple[State, list] | str | None:
        tz_name = {"contact": self.contact.timezone, "account": self.d.timezone}.get(
            step.timezone, step.timezone
        )
        tz = timing.zone(tz_name, self.d.timezone)
        if step.event is not None:
            assert step.timeout is not None
            wake = timing.wake_at(self.now, tz, duration=step.timeout)
            events = tuple(step.event) if isinstance(step.event, list) else (step.event,)
            conditions = {
                k: v.model_dump(by_alias=True, exclude_none=True)
                for k, v in step.conditions.items()
            }
            self.emit(c.Schedule, step.id, wake_at=wake)
            return self.result(
                step.id, WAITING, wake_at=wake, waiting_for=WaitingFor(events, conditions)
            )
        wake = timing.wake_at(self.now, tz, step.duration, step.after, step.at, step.date)
        if wake <= self.now:
            return step.next
        self.emit(c.Schedule, step.id, wake_at=wake)
        return self.result(step.id, WAITING, wake_at=wake)

    def ask(self, step: Ask, re_ask: bool = False) -> tuple[State, list]:
        text = (step.hint or step.question) if re_ask else step.question
        content = render_text(text, self.scope())
        self.emit(
            c.Send,
            step.id,
            kind="text",
            payload={"content": content},
            reply=self.take_reply("text"),
        )
        if re_ask:
            return self.result(step.id, ASKING, wake_at=self.state.wake_at, re_asked=True)
        wake = timing.wake_at(self.now, timing.zone(None, self.d.timezone), duration=step.timeout)
        self.emit(c.Schedule, step.id, wake_at=wake)
        return self.result(step.id, ASKING, wake_at=wake)

    def branch(self, step: Condition) -> str | None:
        if step.if_ is not None:
            return step.yes if holds(step.if_, self.contact, self.answers, self.now) else step.no
        if step.branches is not None:
            for b in step.branches:
                if holds(b.when, self.contact, self.answers, self.now):
                    return b.next
            return step.default
        assert step.split is not None
        if step.mode == "bandit":
            return step.split[self.bandit_arm(step)].next
        bucket, edge = split_bucket(self.d.id, self.contact.id), 0.0
        for arm in step.split:
            edge += arm.percent
            if bucket < edge:
                return arm.next
        return step.split[-1].next

    def bandit_arm(self, step: Condition) -> int:
        """The arm of an earlier pass, else where the contact's draw falls in the weights
        given (the split's percentages when none are, or they do not fit its arms)."""
        assert step.split is not None
        kept = bandit.kept_arm(step, self.history)
        if kept is not None:
            return kept
        weights = self.weights.get(step.id)
        if not weights or len(weights) != len(step.split) or sum(weights) <= 0:
            weights = [arm.percent for arm in step.split]
        return bandit.arm_for(bandit.draw(self.d.id, step.id, self.contact.id), weights)

    def act(self, step: Action) -> None:
        k, do, sid = self.contact, step.do, step.id
        if do == "send":
            assert step.kind is not None
            payload = render(step.payload or {}, self.scope())
            self.emit(
                c.Send,
                sid,
                kind=step.kind,
                payload=payload,
                reply=self.take_reply(step.kind),
                outside_window=step.outside_window,
                fallback=render(step.fallback, self.scope()) if step.fallback else None,
            )
        elif do == "add_tag":
            self.emit(c.AddTag, sid, tag=step.tag)
            self.contact = replace(k, tags=k.tags | {step.tag})
        elif do == "remove_tag":
            self.emit(c.RemoveTag, sid, tag=step.tag)
            self.contact = replace(k, tags=k.tags - {step.tag})
        elif do == "add_points":
            assert step.points is not None
            self.emit(c.AddPoints, sid, points=step.points, reason=step.reason or step.name)
            self.contact = replace(k, score=k.score + step.points)
        elif do == "set_field":
            assert step.field is not None
            value = render(step.value, self.scope())
            self.emit(c.SetField, sid, field=step.field, value=value)
            self.contact = replace(k, fields={**k.fields, step.field: value})
        elif do == "set_stage":
            assert step.stage is not None
            self.emit(c.SetStage, sid, stage=step.stage)
            self.contact = replace(k, stage=step.stage)
        elif do == "handoff":
            self.emit(c.HandOff, sid, note=render_text(step.note, self.scope()), rep=step.rep)
        elif do == "notify_rep":
            self.emit(c.NotifyRep, sid, message=render_text(step.note, self.scope()), rep=step.rep)
        elif do == "webhook":
            body = {
                "journey": self.d.id,
                "version": self.d.version,
                "step": sid,
                "contact_id": k.id,
                "answers": dict(self.answers),
                **render(step.body or {}, self.scope()),
            }
            self.emit(c.CallWebhook, sid, url=step.url, body=body)
        elif do == "enter_journey":
            self.emit(c.EnterJourney, sid, journey=step.journey)

    # --- resuming ------------------------------------------------------------------------

    def resume_wait(self, step: Wait) -> tuple[State, list]:
        due = self.state.wake_at is not None and self.now >= self.state.wake_at
        if step.event is not None:
            e = self.event
            if e is not None and event_matches(step.event, step.conditions, e.type, e.properties):
                return self.go(step.next, step.id)
            if due:
                return self.go(step.timeout_next, step.id)
        elif due:
            return self.go(step.next, step.id)
        return self.state, []

    def resume_ask(self, step: Ask) -> tuple[State, list]:
        e = self.event
        reply = reply_of(e.type, e.properties) if e is not None else None
        if reply is None:
            if self.state.wake_at is not None and self.now >= self.state.wake_at:
                return self.go(step.timeout_next, step.id)
            return self.state, []
        kind, text = reply
        choice = understand(step, kind, text)
        if choice is None and kind == "click":
            return self.state, []  # a menu click that is not an answer: not ours
        if choice is not None or (step.free_text and text.strip()):
            value = choice.saved if choice is not None else text.strip()
            self.answers[step.save_as] = value
            self.emit(c.Answered, step.id, key=step.save_as, value=value, text=text)
            target = step.next
            if choice is not None:
                target = choice.next or step.next
                if choice.points:
                    self.emit(
                        c.AddPoints,
                        step.id,
                        points=choice.points,
                        reason=f"{step.save_as}: {value}",
                    )
                    self.contact = replace(self.contact, score=self.contact.score + choice.points)
                if choice.tag:
                    self.emit(c.AddTag, step.id, tag=choice.tag)
                    self.contact = replace(self.contact, tags=self.contact.tags | {choice.tag})
            return self.go(target, step.id)
        if not self.state.re_asked:
            return self.ask(step, re_ask=True)
        return self.go(step.no_match_next, step.id)


def advance(
    definition: Definition,
    state: State,
    event: Event | None,
    now: datetime,
    contact: Contact,
    weights: Weights | None = None,
) -> tuple[State, list[c.Command]]:
    """The next state and the commands to execute. Never raises for a well-formed definition
    (validate() first); an event that concerns no step leaves the state as it was.
    ``weights``: the current arm weights of bandit splits, by step id (journeys/bandit.py)."""
    _aware(now)
    if state.status in FINAL:
        return state, []
    run = _Run(definition, state, event, now, contact, weights)
    if state.step is None:
        if not triggered_by(definition, event, contact, now):
            return state, []
        trigger = definition.trigger
        run.visit(trigger.id)
        return run.go(trigger.next, trigger.id)
    step = definition.index.get(state.step)
    if step is None:
        return run.exit(state.step, f"step {state.step!r} is not in this version")
    if run.goal():
        return run.converted(state.step)
    if state.status == WAITING and isinstance(step, Wait):
        return run.resume_wait(step)
    if state.status == ASKING and isinstance(step, Ask):
        return run.resume_ask(step)
    return run.go(state.step, state.step)


def start(
    definition: Definition,
    event: Event | None,
    now: datetime,
    contact: Contact,
    weights: Weights | None = None,
) -> tuple[State, list[c.Command]]:
    """Enroll: advance from a fresh State (nothing happens if the trigger does not match)."""
    return advance(definition, State(), event, now, contact, weights)


def enter(
    definition: Definition, now: datetime, contact: Contact, weights: Weights | None = None
) -> tuple[State, list[c.Command]]:
    """Enroll without a trigger event (another journey's ``enter_journey``): run from the
    trigger's ``next``. The entry rule is still the caller's business."""
    _aware(now)
    run = _Run(definition, State(), None, now, contact, weights)
    trigger = definition.trigger
    run.visit(trigger.id)
    return run.go(trigger.next, trigger.id)


def teach_words(definitions: Iterable[Definition]) -> None:
    """Let jieba keep the definitions' choice labels and synonyms whole."""
    for d in definitions:
        for s in d.steps:
            if isinstance(s, Ask):
                words.add_words([w for ch in s.choices for w in (ch.label, *ch.synonyms)])
