"""A journey definition as pydantic models: steps with ids, joined by ``next`` and branches.

A definition is a list of steps discriminated on ``type`` (trigger, wait, condition, action,
ask, goal). Shape-level rules live here; everything that needs the whole graph (targets exist,
reachability, cycles, known tags and templates) is in journeys/validate.py.

Conditions on a contact (``Pred``), one subject each::

    {tag: 意向:价格}                     has the tag          {no_tag: 已购买}
    {field: city, is: {eq: 上海}}         a contact field      {answer: budget, is: {in: [...]}}
    {score: {gte: 50}}                    the score            {stage: {in: [mql, sql]}}
    {event: h5.form_submit, count: {gte: 1}}   past events of a type (default: at least once)
    {silent_days: {gte: 30}}              days since the contact was last seen
    {all: [...]} {any: [...]} {not: {...}}
    {segment: 12}                         a member of saved segment 12 (bot/audiences)

An event condition narrows with ``conditions`` (the event's properties) and ``within`` (only
the last 14d): ``{event: oa.click, conditions: {key: V1001}, count: {gte: 2}, within: 14d}``.
Saved segments also read what a journey's contact snapshot does not carry (SEGMENT_ONLY)::

    {subscribed: true}                    follows the Official Account now
    {owner: {exists: true}}               the sales rep's userid      {source: 3}  channel id
    {identity: unionid}                   has one of that kind        (``is`` on its value)

Conditions on one value (``is``, ``score``, ``count``, ...) and on an event's properties
(``conditions``) are the one condition language of journeys/conditions.py: a value (equal), a
list (any of) or an operator object such as ``{prefix: lead_}``.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from journeys.conditions import Cmp, Conditions, ValueCondition
from journeys.tag_names import tag_problem
from journeys.timing import valid_zone

STEP_TYPES = ("trigger", "wait", "condition", "action", "ask", "goal")
ACTIONS = (
    "send",
    "add_tag",
    "remove_tag",
    "add_points",
    "set_field",
    "set_stage",
    "handoff",
    "notify_rep",
    "webhook",
    "enter_journey",
    "exit",
)
STAGES = ("subscriber", "lead", "mql", "sql", "customer", "disqualified")
STEP_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


def _duration(value: Any) -> Any:
    """``2d``, ``1d12h``, ``30m``, seconds as a number, or anything pydantic reads (ISO 8601)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    if isinstance(value, str):
        m = _DURATION.fullmatch(value.strip())
        if m and any(m.groups()):
            d, h, mi, s = (int(g or 0) for g in m.groups())
            return timedelta(days=d, hours=h, minutes=mi, seconds=s)
    return value


Duration = Annotated[timedelta, BeforeValidator(_duration)]
# YAML reads a bare 618 as a number; tags, labels and words are always text.
Word = Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, int | float) else v)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


EventConditions = Conditions


SUBJECTS = (
    "tag",
    "no_tag",
    "field",
    "answer",
    "score",
    "stage",
    "event",
    "silent_days",
    "subscribed",
    "owner",
    "source",
    "identity",
    "segment",
    "all",
    "any",
    "not_",
)
# Clauses only a saved segment reads (compiled to SQL by bot/audiences): a journey reaches
# them through {segment: id}. ``event`` with ``within`` or ``conditions`` is one of them.
SEGMENT_ONLY = ("subscribed", "owner", "source", "identity", "within", "conditions")
IDENTITY_KINDS = ("openid", "unionid", "external_userid", "phone")


class Pred(_Model):
    """One condition on the contact (see the module docstring)."""

    tag: Word | None = None
    no_tag: Word | None = None
    field: Word | None = None
    answer: Word | None = None
    is_: Cmp | None = Field(default=None, alias="is")
    score: Cmp | None = None
    stage: ValueCondition | None = None
    event: Word | None = None
    count: Cmp | None = None
    within: Duration | None = None
    conditions: Conditions | None = None
    silent_days: Cmp | None = None
    subscribed: bool | None = None
    owner: ValueCondition | None = None
    source: ValueCondition | None = None
    identity: Literal[IDENTITY_KINDS] | None = None  # type: ignore[valid-type]
    segment: int | None = Field(default=None, ge=1)
    all: list[Pred] | None = Field(default=None, min_length=1)
    any: list[Pred] | None = Field(default=None, min_length=1)
    not_: Pred | None = Field(default=None, alias="not")

    @model_validator(mode="after")
    def _one_subject(self) -> Pred:
        subjects = [k for k in SUBJECTS if getattr(self, k) is not None]
        if len(subjects) != 1:
            names = ", ".join(k.rstrip("_") for k in SUBJECTS)
            got = ", ".join(k.rstrip("_") for k in subjects) or "none"
            raise ValueError(f"a condition has exactly one of {names} (got {got})")
        if (self.field is not None or self.answer is not None) and self.is_ is None:
            raise ValueError("is: a field or answer condition needs `is`, e.g. {eq: 上海}")
        if self.is_ is not None and self.field is self.answer is self.identity is None:
            raise ValueError("is: only with field, answer or identity")
        for name in ("count", "within", "conditions"):
            if getattr(self, name) is not None and self.event is None:
                raise ValueError(f"{name}: only with event")
        if self.within is not None and self.within <= timedelta(0):
            raise ValueError("within: must be longer than zero")
        return self

    def walk(self, where: str) -> Iterator[tuple[str, Pred]]:
        """This condition and every one inside it, each with its path (``if.all[0]``)."""
        yield where, self
        for key in ("all", "any"):
            for i, sub in enumerate(getattr(self, key) or []):
                yield from sub.walk(f"{where}.{key}[{i}]")
        if self.not_ is not None:
            yield from self.not_.walk(f"{where}.not")

    def segment_only(self) -> list[str]:
        """The clauses of this condition (not inside it) that only a saved segment reads."""
        return [k for k in SEGMENT_ONLY if getattr(self, k) is not None]


class EntryRule(_Model):
    mode: Literal["once", "once_at_a_time", "every_time"] = "once"
    cooldown: Duration | None = None


class _Step(_Model):
    id: str = Field(pattern=STEP_ID.pattern)
    name: str = ""


class Trigger(_Step):
    """How a contact enters. ``on``: an event (type and property conditions), a tag added, a
    score crossing a threshold upwards, a stage reached, matching a segment (``segment``, a
    condition checked by a periodic sweep), or entering or leaving saved segment
    ``segment_id`` (``segment_entered``, ``segment_left``: the sweep compares its members
    with the ones it remembered)."""

    type: Literal["trigger"]
    on: Literal[
        "event", "tag_added", "score", "stage", "segment", "segment_entered", "segment_left"
    ] = "event"
    event: Word | None = None
    conditions: EventConditions = Field(default_factory=dict)
    tag: Word | None = None
    score_gte: float | None = None
    stage: Literal[STAGES] | None = None  # type: ignore[valid-type]
    segment: Pred | None = None
    segment_id: int | None = Field(default=None, ge=1)  # segment_entered, segment_left
    entry: EntryRule = Field(default_factory=EntryRule)
    next: str | None = None

    @model_validator(mode="after")
    def _needs(self) -> Trigger:
        need = {
            "event": "event",
            "tag_added": "tag",
            "score": "score_gte",
            "stage": "stage",
            "segment": "segment",
            "segment_entered": "segment_id",
            "segment_left": "segment_id",
        }[self.on]
        if getattr(self, need) is None:
            raise ValueError(f"{need}: a trigger on {self.on} needs {need}")
        return self


class Wait(_Step):
    """Wait for a duration; until a time of day (``at``, after at least ``after``) or a date;
    or until an event (``event`` with ``conditions``), with ``timeout`` to ``timeout_next``.
    ``timezone``: ``contact`` (the contact's, else the journey's), ``account`` (the journey's)
    or an IANA name."""

    type: Literal["wait"]
    duration: Duration | None = None
    after: Duration | None = None
    at: dt.time | None = None
    date: dt.date | None = None
    timezone: str = "contact"
    event: Word | list[Word] | None = None
    conditions: EventConditions = Field(default_factory=dict)
    timeout: Duration | None = None
    timeout_next: str | None = None
    next: str | None = None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        if value not in ("contact", "account") and not valid_zone(value):
            raise ValueError(f"unknown time zone {value!r}; contact, account or an IANA name")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Wait:
        kinds = [
            k
            for k, on in (
                ("duration", self.duration is not None),
                ("at/date", self.at is not None or self.date is not None),
                ("event", self.event is not None),
            )
            if on
        ]
        if len(kinds) != 1:
            raise ValueError(
                "a wait has exactly one of duration, at/date (time of day or date), event "
                f"(got {', '.join(kinds) or 'none'})"
            )
        if self.after is not None and self.at is None:
            raise ValueError("after: only with at (e.g. after: 1d, at: '10:00')")
        if self.event is None and (self.timeout is not None or self.timeout_next is not None):
            raise ValueError("timeout: only a wait for an event has a timeout")
        if self.event is not None and self.timeout is None:
            raise ValueError("timeout: a wait for an event needs a timeout, e.g. 2d")
        for name in ("duration", "after", "timeout"):
            value = getattr(self, name)
            if value is not None and value <= timedelta(0):
                raise ValueError(f"{name}: must be longer than zero")
        return self


class Branch(_Model):
    when: Pred
    next: str | None = None


class Arm(_Model):
    percent: float = Field(ge=0, le=100)
    next: str | None = None
    name: str = ""


EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")


class Condition(_Step):
    """Yes/no (``if`` with ``yes``/``no``), multi-way (``branches``, first that holds, else
    ``default``) or an A/B ``split`` by percentage, deterministic per contact. A split with
    ``mode: bandit`` learns: its percentages are the starting weights, then the weights the
    runner passes in (Thompson sampling over conversions to ``goal_event``, at least
    ``min_share`` per arm; journeys/bandit.py)."""

    type: Literal["condition"]
    if_: Pred | None = Field(default=None, alias="if")
    yes: str | None = None
    no: str | None = None
    branches: list[Branch] | None = Field(default=None, min_length=1)
    default: str | None = None
    split: list[Arm] | None = Field(default=None, min_length=2)
    mode: Literal["percent", "bandit"] = "percent"
    goal_event: str | None = Field(default=None, max_length=64)  # bandit: what converts
    min_share: float = Field(default=0.05, gt=0, lt=0.5)  # bandit: each arm's least share

    @field_validator("goal_event")
    @classmethod
    def _event_type(cls, value: str | None) -> str | None:
        if value is not None and not EVENT_TYPE.match(value):
            raise ValueError(f"{value!r} is not an event type such as h5.form_submitted")
        return value

    @model_validator(mode="after")
    def _one_form(self) -> Condition:
        forms = [
            f
            for f, on in (("if", self.if_), ("branches", self.branches), ("split", self.split))
            if on is not None
        ]
        if len(forms) != 1:
            raise ValueError(
                "a condition has exactly one of if (with yes/no), branches (with default) or "
                f"split (got {', '.join(forms) or 'none'})"
            )
        return self


class Action(_Step):
    """One thing to do (``do``) with its arguments; see ACTION_NEEDS."""

    type: Literal["action"]
    do: Literal[ACTIONS]  # type: ignore[valid-type]
    kind: str | None = None  # send
    payload: dict[str, Any] | None = None  # send
    # send, outside WeChat's 48-hour window: hold (until they interact), fallback, fail
    outside_window: Literal["hold", "fallback", "fail"] = "hold"
    fallback: dict[str, Any] | None = None  # send: the template sent instead ({template_id, data})
    tag: Word | None = None  # add_tag, remove_tag
    points: float | None = None  # add_points
    reason: str = ""  # add_points, exit
    field: Word | None = None  # set_field
    value: Any = None  # set_field
    stage: Literal[STAGES] | None = None  # type: ignore[valid-type]
    note: str = ""  # handoff, notify_rep (message)
    rep: str | None = None  # handoff, notify_rep: a rep's userid (else the contact's owner)
    url: str | None = None  # webhook
    body: dict[str, Any] | None = None  # webhook
    journey: str | None = None  # enter_journey
    next: str | None = None

    @model_validator(mode="after")
    def _arguments(self) -> Action:
        for arg in ACTION_NEEDS[self.do]:
            if getattr(self, arg) in (None, ""):
                raise ValueError(f"{arg}: do: {self.do} needs {arg}")
        if self.do == "webhook" and not str(self.url).startswith(("https://", "http://")):
            raise ValueError("url: a webhook url starts with https:// or http://")
        if self.outside_window == "fallback" and not self.fallback:
            raise ValueError("fallback: outside_window: fallback needs a template to send instead")
        if self.do == "exit" and self.next is not None:
            raise ValueError("next: nothing comes after exit")
        return self

    @model_validator(mode="after")
    def _tag_name(self) -> Action:
        if self.do in ("add_tag", "remove_tag") and self.tag:
            problem = tag_problem(self.tag.strip())
            if problem:
                raise ValueError(f"tag: {problem}")
        return self


ACTION_NEEDS: dict[str, tuple[str, ...]] = {
    "send": ("kind", "payload"),
    "add_tag": ("tag",),
    "remove_tag": ("tag",),
    "add_points": ("points",),
    "set_field": ("field",),
    "set_stage": ("stage",),
    "handoff": (),
    "notify_rep": ("note",),
    "webhook": ("url",),
    "enter_journey": ("journey",),
    "exit": (),
}


class Choice(_Model):
    label: Word = Field(min_length=1, max_length=64)
    value: Word | None = None  # saved as the answer; the label when not given
    synonyms: list[Word] = Field(default_factory=list, max_length=100)
    click_key: str | None = None  # a menu click that picks this choice
    points: float = 0
    tag: Word | None = None
    next: str | None = None

    @property
    def saved(self) -> str:
        return self.value if self.value is not None else self.label


class Ask(_Step):
    """Ask in chat and branch on the answer: a numbered choice (「2」「二」「第二个」), a
    choice's label or synonym (whole words, jieba), or (``free_text``) any text. No match:
    re-ask once with ``hint``, then ``no_match_next``. No reply within ``timeout``:
    ``timeout_next``. The answer is saved as ``answers[save_as]``."""

    type: Literal["ask"]
    question: str = Field(min_length=1, max_length=2048)
    save_as: Word = Field(min_length=1, max_length=64)
    choices: list[Choice] = Field(default_factory=list, max_length=20)
    free_text: bool = False
    hint: str | None = None
    timeout: Duration
    timeout_next: str | None = None
    no_match_next: str | None = None
    next: str | None = None

    @model_validator(mode="after")
    def _positive(self) -> Ask:
        if self.timeout <= timedelta(0):
            raise ValueError("timeout: must be longer than zero")
        return self


class Goal(_Step):
    """Checked on every advance, wherever the contact is: when it holds they leave, converted."""

    type: Literal["goal"]
    when: Pred


Step = Annotated[Trigger | Wait | Condition | Action | Ask | Goal, Field(discriminator="type")]


class Definition(_Model):
    id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=100)
    version: int = Field(default=1, ge=1)
    description: str = ""
    timezone: str = "Asia/Shanghai"  # the account's time zone
    goal: Pred | None = None
    steps: list[Step] = Field(min_length=1)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        if not valid_zone(value):
            raise ValueError(f"unknown time zone {value!r}; an IANA name such as Asia/Shanghai")
        return value

    def step(self, step_id: str) -> Trigger | Wait | Condition | Action | Ask | Goal:
        return self.index[step_id]

    @functools.cached_property
    def index(self) -> dict[str, Any]:
        return {s.id: s for s in self.steps}

    @property
    def trigger(self) -> Trigger:
        return next(s for s in self.steps if isinstance(s, Trigger))

    @property
    def goals(self) -> list[Pred]:
        found = [s.when for s in self.steps if isinstance(s, Goal)]
        return [self.goal, *found] if self.goal is not None else found


def parse(data: Any) -> Definition:
    """The definition, checked for shape only (raises pydantic's ValidationError). Use
    journeys.validate.check() to get a definition that is safe to publish."""
    return data if isinstance(data, Definition) else Definition.model_validate(data)
