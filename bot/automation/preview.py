"""Journey preview: one simulated contact through a journey in accelerated time.

``preview(definition, replies=…, contact=…, start=…)`` drives the pure engine
(journeys.engine) with a fake clock. It enrolls the contact with a synthetic event that
matches the trigger, jumps the clock to every ``wake_at``, feeds the scripted replies when
the journey asks a question or waits for an event, and writes down what the contact would
receive and when, plus tags, points, stage, handoff and exit. Nothing is stored or sent.

Sends go through :class:`Deliveries`, which applies bot.messaging.send_rules as bot.messaging.outbox does.
As in bot.automation.runner, a send made while handling the contact's own (stored) event is a
reply to it and exempt; one made when a wait comes due, or on a tag or score change, is
marketing: in quiet hours it is moved to their end (unless the contact wrote in the last 30
minutes), over the frequency cap it is skipped. A customer-service message outside the
48-hour window is held until the contact next interacts.

Not modelled: what other parts of Yuchi do with the contact's replies (tag rules, interest
words, scoring rules on ``journey.answer``); pass the tags and score you want in ``contact``.

``SimulatorInbox`` plays a transcript against a running wxsim: the follower receives each
message in its inbox through the simulator's Official Account API, with the simulator's clock
moved along and real seconds standing for simulated days (``yuchi journeys preview --sim-url``).
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

import journeys
from bot.core.config import Settings
from bot.messaging import send_rules
from bot.messaging.payloads import SendRequest, oa_request
from journeys import commands as c
from journeys import engine
from journeys.model import STAGES, Ask, Cmp, Definition, Duration, Pred
from journeys.predicates import compare, holds
from journeys.timing import valid_zone

DEFAULT_MAX_DAYS = 60
MAX_ADVANCES = 1000
REPLY_DELAY = timedelta(minutes=1)
PREVIEW_CONTACT_ID = "preview"

# Event types that are not the person acting (bot.contacts.record.IncomingEvent.interaction=False).
NOT_INTERACTIONS = frozenset(
    {
        "oa.unsubscribe",
        "oa.location",
        "oa.view",
        "oa.template_send_finished",
        "oa.mass_send_finished",
        "oa.menu_photo",
        "oa.location_select",
        "oa.view_miniprogram",
        "wecom.contact_edited",
        "wecom.rep_deleted_customer",
        "wecom.customer_deleted_rep",
        "wecom.transfer_failed",
    }
)
UNSUBSCRIBE = "oa.unsubscribe"
ANSWER_LABELS = {
    "budget": "预算",
    "timeline": "时间",
    "authority": "决策权",
    "role": "角色",
    "need": "需求",
    "name": "姓名",
    "company": "公司",
    "city": "城市",
    "phone": "手机",
    "interest": "兴趣",
}
STAGE_LABELS = {
    "subscriber": "订阅者",
    "lead": "线索",
    "mql": "营销合格线索 MQL",
    "sql": "销售合格线索 SQL",
    "customer": "客户",
    "disqualified": "不合格",
}
SEND_VERBS = {"sent": "收到", "held": "暂存", "skipped": "跳过", "invalid": "无效"}
KIND_LABELS = {
    "text": "文本",
    "news": "图文",
    "link": "图文",
    "image": "图片",
    "miniprogram": "小程序卡片",
    "template": "模板消息",
    "wecom_text": "企业微信消息",
    "wecom_textcard": "企业微信卡片",
    "wecom_markdown": "企业微信消息",
}


class PreviewError(ValueError):
    """The preview cannot run as asked (a bad reply script or contact, an unknown journey)."""


def conversational(event: journeys.Event | None) -> bool:
    """Would the runner send in answer to this event (a stored one, with an id)? Not for a
    wake (None) nor for a noted change (tag.added, score.changed)."""
    return event is not None and event.type not in (engine.TAG_ADDED, engine.SCORE_CHANGED)


def is_interaction(event_type: str) -> bool:
    """Did the person act themself (opens the 48-hour customer-service window)?"""
    return event_type.startswith(("oa.", "wecom.")) and event_type not in NOT_INTERACTIONS


# --- input: the scripted replies and the contact -------------------------------------------


class ScriptedReply(BaseModel):
    """What the contact does next when the journey asks or waits: write ``text``, click the
    menu key ``click``, or cause ``event`` (with ``properties``); ``after`` the question or
    wait began (default one minute). A bare string is a text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str | None = Field(default=None, min_length=1, max_length=2048)
    click: str | None = Field(default=None, min_length=1, max_length=128)
    event: str | None = Field(default=None, min_length=1, max_length=64)
    properties: dict[str, Any] = Field(default_factory=dict)
    after: Duration = REPLY_DELAY

    @model_validator(mode="before")
    @classmethod
    def _bare_text(cls, value: Any) -> Any:
        return {"text": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one(self) -> ScriptedReply:
        given = [k for k in ("text", "click", "event") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"a reply has exactly one of text, click, event (got {', '.join(given) or 'none'})"
            )
        if self.properties and self.event is None:
            raise ValueError("properties: only with event")
        if self.after < timedelta(0):
            raise ValueError("after: must not be negative")
        return self

    def to_event(self) -> journeys.Event:
        if self.text is not None:
            return journeys.Event("oa.text", {"content": self.text})
        if self.click is not None:
            return journeys.Event("oa.click", {"key": self.click})
        assert self.event is not None
        return journeys.Event(self.event, dict(self.properties))

    def describe(self) -> str:
        if self.text is not None:
            return self.text
        if self.click is not None:
            return f"点击菜单 {self.click}"
        return f"事件 {self.event}"


class PreviewContact(BaseModel):
    """The simulated contact: what conditions and goals see. ``silent_days``: days since they
    were last seen (for "silent for 30 days" segments)."""

    model_config = ConfigDict(extra="forbid")

    id: int | str = PREVIEW_CONTACT_ID  # A/B splits are decided by the contact id
    name: str = Field(default="", max_length=128)
    tags: list[str] = Field(default_factory=list, max_length=500)
    score: float = Field(default=0.0, allow_inf_nan=False)
    stage: Literal[STAGES] = "subscriber"  # type: ignore[valid-type]
    fields: dict[str, Any] = Field(default_factory=dict)
    timezone: str | None = None
    silent_days: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None and not valid_zone(value):
            raise ValueError(f"unknown time zone {value!r}; an IANA name such as Asia/Shanghai")
        return value

    def to_contact(self, now: datetime) -> journeys.Contact:
        last_seen = now - timedelta(days=self.silent_days) if self.silent_days is not None else None
        return journeys.Contact(
            id=self.id,
            name=self.name,
            tags=frozenset(self.tags),
            fields=dict(self.fields),
            score=self.score,
            stage=self.stage,
            timezone=self.timezone,
            last_seen_at=last_seen,
        )


_REPLIES = TypeAdapter(list[ScriptedReply])


def _problems(exc: ValidationError, prefix: str) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        parts.append(f"{loc}: {str(err['msg']).removeprefix('Value error, ')}")
    return "; ".join(parts)


def parse_replies(replies: Iterable[Any]) -> list[ScriptedReply]:
    """Texts, ``{"after": "2h", "text": …}``, ``{"click": KEY}`` or ``{"event": type}``."""
    items = [r.model_dump() if isinstance(r, ScriptedReply) else r for r in replies]
    try:
        return _REPLIES.validate_python(items)
    except ValidationError as exc:
        raise PreviewError(_problems(exc, "replies")) from None


def _contact(value: Any, now: datetime) -> journeys.Contact:
    if isinstance(value, journeys.Contact):
        return value
    if isinstance(value, PreviewContact):
        return value.to_contact(now)
    try:
        return PreviewContact.model_validate(value).to_contact(now)
    except ValidationError as exc:
        raise PreviewError(_problems(exc, "contact")) from None


def load_definition(definition: Definition | Mapping[str, Any]) -> Definition:
    """A checked definition (journeys.DefinitionError lists the problems)."""
    d = definition if isinstance(definition, Definition) else journeys.check(definition)
    engine.teach_words([d])
    return d


# --- the trigger ---------------------------------------------------------------------------

_ABSENT = object()


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) else value


def _example(cmp: Cmp) -> Any:
    """A value that meets ``cmp`` (for a synthetic trigger event), or _ABSENT."""
    if cmp.eq is not None:
        value = cmp.eq
    elif cmp.in_:
        value = cmp.in_[0]
    elif cmp.prefix is not None:
        value = f"{_first(cmp.prefix)}preview"
    elif cmp.contains is not None:
        value = _first(cmp.contains)
    elif cmp.keywords:
        value = cmp.keywords[0]
    elif any(b is not None for b in (cmp.gt, cmp.gte, cmp.lt, cmp.lte)):
        low = cmp.gte if cmp.gte is not None else (cmp.gt + 1 if cmp.gt is not None else None)
        high = cmp.lte if cmp.lte is not None else (cmp.lt - 1 if cmp.lt is not None else None)
        value = low if low is not None else high
        value = int(value) if float(value).is_integer() else value
    elif cmp.exists is False:
        return _ABSENT
    else:
        value = "preview"
    return value if compare(cmp, value) else _ABSENT


def _event_type(pattern: str) -> str:
    if pattern == "*":
        return "api.preview"
    if pattern.endswith(".*"):
        return pattern[:-1] + ("subscribe" if pattern == "oa.*" else "preview")
    return pattern


def _assume(pred: Pred, k: journeys.Contact, now: datetime, notes: list[str]) -> journeys.Contact:
    """Change the default contact so that a segment condition holds (best effort)."""
    if pred.tag is not None:
        notes.append(f"有标签「{pred.tag}」")
        return dataclasses.replace(k, tags=k.tags | {pred.tag})
    if pred.no_tag is not None:
        return dataclasses.replace(k, tags=k.tags - {pred.no_tag})
    if pred.score is not None and (v := _example(pred.score)) is not _ABSENT:
        notes.append(f"得分 {v}")
        return dataclasses.replace(k, score=float(v))
    if pred.stage is not None and (v := _example(pred.stage)) is not _ABSENT:
        notes.append(f"阶段为 {STAGE_LABELS.get(str(v), v)}")
        return dataclasses.replace(k, stage=str(v))
    if pred.field is not None and pred.is_ is not None:
        v = _example(pred.is_)
        if v is not _ABSENT:
            notes.append(f"字段 {pred.field} = {v}")
            return dataclasses.replace(k, fields={**k.fields, pred.field: v})
    if pred.silent_days is not None and (v := _example(pred.silent_days)) is not _ABSENT:
        notes.append(f"已 {v} 天没有互动")
        return dataclasses.replace(k, last_seen_at=now - timedelta(days=float(v), minutes=1))
    if pred.event is not None:
        n = _example(pred.count) if pred.count is not None else 1
        if n is not _ABSENT:
            notes.append(f"有过 {n} 次 {pred.event}")
            return dataclasses.replace(k, event_counts={**k.event_counts, pred.event: int(n)})
    if pred.all is not None:
        for p in pred.all:
            k = _assume(p, k, now, notes)
        return k
    if pred.any is not None:
        return _assume(pred.any[0], k, now, notes)
    return k


def trigger_event(
    d: Definition, contact: journeys.Contact, now: datetime, assume: bool = True
) -> tuple[journeys.Event | None, journeys.Contact, list[str]]:
    """(an event that starts the journey, the contact as it then is, what was assumed).
    ``assume``: may the contact be changed to fit a segment (only for the default contact)."""
    t, notes = d.trigger, []
    if t.on == "event":
        assert t.event is not None
        props: dict[str, Any] = {}
        for key, cmp in t.conditions.items():
            value = _example(cmp)
            if value is not _ABSENT:
                props[key] = value
        return journeys.Event(_event_type(t.event), props, now), contact, notes
    if t.on == "tag_added":
        assert t.tag is not None
        k = dataclasses.replace(contact, tags=contact.tags | {t.tag})
        return journeys.Event(engine.TAG_ADDED, {"tag": t.tag}, now), k, notes
    if t.on == "score":
        assert t.score_gte is not None
        before = contact.score if contact.score < t.score_gte else t.score_gte - 1
        after = max(contact.score, t.score_gte)
        k = dataclasses.replace(contact, score=after)
        props = {"from": before, "to": after}
        return journeys.Event(engine.SCORE_CHANGED, props, now), k, notes
    if t.on == "stage":
        props = {"from": contact.stage, "to": t.stage}
        k = dataclasses.replace(contact, stage=str(t.stage))
        return journeys.Event(engine.STAGE_CHANGED, props, now), k, notes
    assert t.segment is not None
    k = contact
    if assume and not holds(t.segment, contact, {}, now):
        k = _assume(t.segment, contact, now, notes)
    return None, k, notes


# --- delivery rules (bot.messaging.outbox's, in simulated time) -----------------------------------


@dataclass(frozen=True)
class Outcome:
    """What the messaging service would do with one send: ``sent`` at ``at`` (``planned``
    earlier when moved out of quiet hours), ``held`` (outside the 48-hour window, until the
    contact interacts), ``skipped`` (frequency cap) or ``invalid`` (the payload)."""

    status: str
    at: datetime
    planned: datetime
    note: str = ""

    @property
    def moved(self) -> bool:
        return self.status == "sent" and self.at != self.planned


def send_problem(cmd: c.Send) -> str | None:
    """Why the runner would refuse this send (bot.messaging.payloads), or None."""
    try:
        SendRequest.model_validate(
            {"kind": cmd.kind, "payload": dict(cmd.payload), "contact_id": 1}
        )
    except ValidationError as exc:
        return _problems(exc, "")
    return None


class Deliveries:
    """One contact's journey sends as bot.messaging.outbox would treat them, decided when each is
    made (a reply between a send and the end of quiet hours does not change its fate)."""

    def __init__(
        self,
        policy: send_rules.Policy,
        *,
        last_interaction: datetime | None = None,
    ) -> None:
        self.policy = policy
        self.last_interaction = last_interaction
        self.marketing_sent: list[datetime] = []
        self.held: list[tuple[c.Send, bool]] = []

    def send(self, cmd: c.Send, at: datetime, marketing: bool) -> Outcome:
        """``marketing``: not in answer to the contact's own event (see ``conversational``)."""
        problem = send_problem(cmd)
        if problem is not None:
            return Outcome("invalid", at, at, f"消息无效，不会发送：{problem}")
        return self._plan(cmd, at, marketing)

    def interacted(self, at: datetime) -> list[tuple[c.Send, Outcome]]:
        """The contact acted: the window opens and held messages go out (release_held_for)."""
        if self.last_interaction is None or at > self.last_interaction:
            self.last_interaction = at
        held, self.held = self.held, []
        return [(cmd, self._plan(cmd, at, marketing)) for cmd, marketing in held]

    def _plan(self, cmd: c.Send, at: datetime, marketing: bool) -> Outcome:
        pol, when, notes = self.policy, at, []
        if marketing:
            talking = send_rules.in_conversation(self.last_interaction, at, pol)
            resume = None if talking else send_rules.quiet_until(at, pol)
            if resume is not None:
                when = resume
                notes.append("免打扰时段，顺延到结束时发送")
            since = when - pol.cap_window
            recent = sum(1 for t in self.marketing_sent if since <= t <= when)
            if send_rules.over_cap(recent, pol):
                hours = int(pol.cap_window.total_seconds() // 3600)
                note = f"超出营销频次上限（每 {hours} 小时 {pol.marketing_cap} 条），不会发送"
                return Outcome("skipped", when, at, note)
        if cmd.kind in send_rules.CUSTOMER_SERVICE_KINDS and not send_rules.in_window(
            self.last_interaction, when
        ):
            if cmd.outside_window == "fallback" and cmd.fallback:
                if marketing:
                    self.marketing_sent.append(when)
                tpl = cmd.fallback.get("template_id", "")
                return Outcome("sent", when, at, f"48 小时互动窗口已关闭：改发模板消息 {tpl}")
            if cmd.outside_window == "fail":
                return Outcome("skipped", when, at, "48 小时互动窗口已关闭：不发送")
            self.held.append((cmd, marketing))
            return Outcome("held", when, at, "48 小时互动窗口已关闭：暂存，联系人再次互动时发出")
        if marketing:
            self.marketing_sent.append(when)
        return Outcome("sent", when, at, "；".join(notes))


# --- the transcript ------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One thing that happens. ``kind``: enter, note, send, ask, reply, answer, timeout, tag,
    untag, points, field, stage, handoff, notify, webhook, journey, exit, converted, done,
    stop."""

    at: datetime
    day: int  # 1 = the day the contact entered (in the journey's time zone)
    clock: str  # "09:00" in the journey's time zone
    kind: str
    text: str
    step: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def line(self) -> str:
        head = f"第{self.day}天 {self.clock} "
        return head + self.text.replace("\n", "\n" + " " * 12)

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "day": self.day,
            "time": self.clock,
            "kind": self.kind,
            "step": self.step,
            "text": self.text,
            "line": self.line,
            **({"detail": dict(self.detail)} if self.detail else {}),
        }


@dataclass
class Transcript:
    journey: str
    name: str
    start: datetime
    timezone: str
    lines: list[Line]
    entered: bool
    status: str  # the engine's status at the end, or "not_entered"
    step: str | None = None  # where the contact is at the end
    stopped: str | None = None  # why the preview stopped before the journey ended
    unused_replies: list[str] = field(default_factory=list)
    interactions: list[datetime] = field(default_factory=list)  # when the contact acted
    last_interaction: datetime | None = None  # before the journey started

    @property
    def sends(self) -> list[Line]:
        return [ln for ln in self.lines if ln.kind in ("send", "ask")]

    @property
    def delivered(self) -> list[Line]:
        return [ln for ln in self.sends if ln.detail.get("status") == "sent"]

    @property
    def text(self) -> str:
        return "\n".join(ln.line for ln in self.lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "journey": self.journey,
            "name": self.name,
            "start": self.start.isoformat(),
            "timezone": self.timezone,
            "entered": self.entered,
            "status": self.status,
            "step": self.step,
            "stopped": self.stopped,
            "messages": len(self.delivered),
            "unused_replies": self.unused_replies,
            "transcript": [ln.to_json() for ln in self.lines],
            "text": self.text,
        }


def describe_send(kind: str, payload: Mapping[str, Any]) -> str:
    """「文本：…」「图文：标题 — 摘要（链接）」 for a send of ``kind``."""
    label = KIND_LABELS.get(kind, kind)
    if kind in ("text", "wecom_text", "wecom_markdown"):
        return f"{label}：{payload.get('content', '')}"
    if kind in ("news", "link", "wecom_textcard"):
        parts = [str(payload.get("title", "")), str(payload.get("description", ""))]
        url = payload.get("url")
        body = " — ".join(p for p in parts if p)
        return f"{label}：{body}" + (f"（{url}）" if url else "")
    if kind == "miniprogram":
        return f"{label}：{payload.get('title', '')}"
    if kind == "template":
        data = payload.get("data") or {}
        values = [
            str(v.get("value", "")) if isinstance(v, Mapping) else str(v) for v in data.values()
        ]
        return f"{label}：" + " / ".join(v for v in values if v)
    return label


def describe_event(event: journeys.Event | None) -> str:
    if event is None:
        return "符合分群条件"
    p = event.properties
    if event.type == "oa.subscribe":
        scene = p.get("scene")
        return "关注公众号" + (f"（扫码场景 {scene}）" if scene else "")
    if event.type == "oa.scan":
        return f"扫码（场景 {p.get('scene', '')}）"
    if event.type == "oa.text":
        return f"发来消息：{p.get('content', '')}"
    if event.type == "oa.click":
        return f"点击菜单 {p.get('key', '')}"
    if event.type == engine.TAG_ADDED:
        return f"获得标签「{p.get('tag')}」"
    if event.type == engine.SCORE_CHANGED:
        return f"得分从 {_num(p.get('from'))} 升到 {_num(p.get('to'))}"
    if event.type == engine.STAGE_CHANGED:
        return f"阶段变为 {STAGE_LABELS.get(str(p.get('to')), p.get('to'))}"
    return f"事件 {event.type}" + (f" {json.dumps(dict(p), ensure_ascii=False)}" if p else "")


def _num(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def apply_to_contact(k: journeys.Contact, cmd: c.Command) -> journeys.Contact:
    """The contact after the runner executed ``cmd`` (tags, points, fields, stage)."""
    if isinstance(cmd, c.AddTag):
        return dataclasses.replace(k, tags=k.tags | {cmd.tag})
    if isinstance(cmd, c.RemoveTag):
        return dataclasses.replace(k, tags=k.tags - {cmd.tag})
    if isinstance(cmd, c.AddPoints):
        return dataclasses.replace(k, score=k.score + cmd.points)
    if isinstance(cmd, c.SetField):
        return dataclasses.replace(k, fields={**k.fields, cmd.field: cmd.value})
    if isinstance(cmd, c.SetStage):
        return dataclasses.replace(k, stage=cmd.stage)
    return k


class _Recorder:
    """Turns the engine's commands into transcript lines and keeps the contact up to date."""

    def __init__(
        self,
        d: Definition,
        start: datetime,
        contact: journeys.Contact,
        deliveries: Deliveries,
    ) -> None:
        self.d, self.start, self.contact, self.deliveries = d, start, contact, deliveries
        self.tz = ZoneInfo(d.timezone)
        self.first_day = start.astimezone(self.tz).date()
        self.lines: list[Line] = []
        self.interactions: list[datetime] = []

    def add(self, at: datetime, kind: str, text: str, step: str | None = None, **detail: Any):
        local = at.astimezone(self.tz)
        day = (local.date() - self.first_day).days + 1
        self.lines.append(Line(local, day, local.strftime("%H:%M"), kind, text, step, detail))

    def saw(self, event: journeys.Event, at: datetime) -> list[tuple[c.Send, Outcome]]:
        """The contact caused ``event``: counts, last seen, the window. Returns the held
        messages that now go out (record them with ``released``)."""
        k = self.contact
        counts = {**k.event_counts, event.type: k.event_counts.get(event.type, 0) + 1}
        self.contact = dataclasses.replace(k, event_counts=counts, last_seen_at=at)
        if not is_interaction(event.type):
            return []
        self.interactions.append(at)
        return self.deliveries.interacted(at)

    def released(self, sends: list[tuple[c.Send, Outcome]]) -> None:
        for cmd, outcome in sends:
            self.send(cmd, outcome, released=True)

    def send(self, cmd: c.Send, outcome: Outcome, released: bool = False) -> None:
        step = self.d.index.get(cmd.step)
        asking = isinstance(step, Ask)
        verb = SEND_VERBS.get(outcome.status, "")
        if asking:
            prefix = "" if outcome.status == "sent" else verb
            text = f"{prefix}提问：{cmd.payload.get('content', '')}"
        else:
            text = (verb or "收到") + describe_send(cmd.kind, cmd.payload)
        notes = [outcome.note] if outcome.note else []
        if released:
            notes.insert(0, "此前暂存的消息，联系人互动后发出")
        if outcome.moved:
            notes.append(f"原定 {self._when(outcome.planned)}")
        if notes:
            text += f"（{'；'.join(notes)}）"
        self.add(
            outcome.at,
            "ask" if asking else "send",
            text,
            cmd.step,
            status=outcome.status,
            message_kind=cmd.kind,
            payload=dict(cmd.payload),
            reply=cmd.reply,
            planned=outcome.planned.astimezone(self.tz).isoformat(),
        )

    def _when(self, at: datetime) -> str:
        local = at.astimezone(self.tz)
        return f"第{(local.date() - self.first_day).days + 1}天 {local:%H:%M}"

    def answer_label(self, step_id: str, key: str) -> str:
        step = self.d.index.get(step_id)
        if isinstance(step, Ask) and step.name:
            return step.name
        return ANSWER_LABELS.get(key, key)

    def commands(self, cmds: list[c.Command], at: datetime, marketing: bool) -> None:
        for cmd in cmds:
            self.contact = apply_to_contact(self.contact, cmd)
            if isinstance(cmd, c.Send):
                self.send(cmd, self.deliveries.send(cmd, at, marketing))
            elif isinstance(cmd, c.Answered):
                label = self.answer_label(cmd.step, cmd.key)
                self.add(
                    at,
                    "answer",
                    f"回答：{cmd.text.strip()} → {label}={cmd.value}",
                    cmd.step,
                    key=cmd.key,
                    value=cmd.value,
                )
            elif isinstance(cmd, c.AddTag):
                self.add(at, "tag", f"打标签：{cmd.tag}", cmd.step, tag=cmd.tag)
            elif isinstance(cmd, c.RemoveTag):
                self.add(at, "untag", f"去掉标签：{cmd.tag}", cmd.step, tag=cmd.tag)
            elif isinstance(cmd, c.AddPoints):
                sign = "加分" if cmd.points >= 0 else "减分"
                why = f"（{cmd.reason}）" if cmd.reason else ""
                text = f"{sign}：{cmd.points:+g}{why}，现在 {self.contact.score:g} 分"
                self.add(at, "points", text, cmd.step, points=cmd.points)
            elif isinstance(cmd, c.SetField):
                self.add(at, "field", f"设置字段：{cmd.field} = {cmd.value}", cmd.step)
            elif isinstance(cmd, c.SetStage):
                label = STAGE_LABELS.get(cmd.stage, cmd.stage)
                self.add(at, "stage", f"阶段变为：{label}", cmd.step, stage=cmd.stage)
            elif isinstance(cmd, c.HandOff):
                note = f"：{cmd.note}" if cmd.note else ""
                self.add(at, "handoff", f"转交销售{note}", cmd.step, rep=cmd.rep)
            elif isinstance(cmd, c.NotifyRep):
                self.add(at, "notify", f"通知销售：{cmd.message}", cmd.step, rep=cmd.rep)
            elif isinstance(cmd, c.CallWebhook):
                self.add(at, "webhook", f"调用 Webhook：{cmd.url}", cmd.step)
            elif isinstance(cmd, c.EnterJourney):
                self.add(at, "journey", f"进入旅程：{cmd.journey}", cmd.step)
            elif isinstance(cmd, c.Converted):
                self.add(at, "converted", "达成旅程目标（转化），离开旅程", cmd.step)
            elif isinstance(cmd, c.Exit):
                if cmd.reason == "completed":
                    self.add(at, "done", "旅程结束", cmd.step)
                else:
                    self.add(at, "exit", f"退出旅程：{cmd.reason}", cmd.step, reason=cmd.reason)
            # Schedule: the clock jumps to it; no line of its own.

    def sorted_lines(self) -> list[Line]:
        """In time order (a send moved out of quiet hours lands where it goes out)."""
        return sorted(self.lines, key=lambda ln: ln.at)


# --- the preview ---------------------------------------------------------------------------


def _start(start: datetime | None, tz: ZoneInfo) -> datetime:
    if start is None:
        return datetime.now(tz).replace(hour=9, minute=0, second=0, microsecond=0)
    if start.tzinfo is None or start.utcoffset() is None:
        return start.replace(tzinfo=tz)
    return start


def policy_for(policy: send_rules.Policy | None, settings: Settings | None) -> send_rules.Policy:
    """``policy``, else the settings' (quiet hours, cap), else the defaults."""
    if policy is not None:
        return policy
    if settings is not None:
        from bot.messaging import outbox as messaging

        return messaging.policy(settings)
    return send_rules.Policy()


def preview(
    definition: Definition | Mapping[str, Any],
    *,
    replies: Iterable[str | Mapping[str, Any] | ScriptedReply] = (),
    contact: journeys.Contact | PreviewContact | Mapping[str, Any] | None = None,
    start: datetime | None = None,
    policy: send_rules.Policy | None = None,
    settings: Settings | None = None,
    max_days: float = DEFAULT_MAX_DAYS,
    event: journeys.Event | None = None,
) -> Transcript:
    """Run ``definition`` for one simulated contact and return what happens, in order.

    ``start``: when the contact enters (naive: the journey's time zone; default today 09:00).
    ``contact``: tags, score, stage, fields, name (default: a new follower; for a segment
    trigger, one changed to fit the segment). ``event``: the entering event (default: one
    made to match the trigger). ``policy`` or ``settings``: quiet hours and the cap (default
    send_rules.Policy()). Stops after ``max_days`` simulated days or MAX_ADVANCES steps.
    Raises journeys.DefinitionError for an invalid definition, PreviewError for bad input.
    """
    d = load_definition(definition)
    tz = ZoneInfo(d.timezone)
    now = _start(start, tz)
    script = parse_replies(replies)
    k = _contact(contact if contact is not None else {}, now)
    made, k, assumed = trigger_event(d, k, now, assume=contact is None)
    entering = event if event is not None else made
    if entering is not None and entering.occurred_at is None:
        entering = dataclasses.replace(entering, occurred_at=now)

    first_touch: datetime | None
    if entering is not None and is_interaction(entering.type):
        first_touch = None  # the entering event itself is the interaction
    elif d.trigger.on == "segment" or contact is not None:
        first_touch = k.last_seen_at
    else:  # a tag, score or stage change: assume the contact has just been active
        first_touch = now
        assumed.append("刚刚与公众号互动过")
    rec = _Recorder(d, now, k, Deliveries(policy_for(policy, settings)))
    rec.deliveries.last_interaction = first_touch
    if assumed:
        rec.add(now, "note", "预览假设联系人：" + "，".join(assumed))
    transcript = Transcript(
        d.id,
        d.name,
        now,
        d.timezone,
        [],
        entered=False,
        status="not_entered",
        last_interaction=first_touch,
    )
    if not engine.triggered_by(d, entering, rec.contact, now):
        rec.add(now, "stop", f"没有进入旅程：{describe_event(entering)}不满足触发条件")
        transcript.lines = rec.sorted_lines()
        transcript.unused_replies = [r.describe() for r in script]
        return transcript

    if entering is not None:
        rec.saw(entering, now)  # nothing is held yet
    rec.add(now, "enter", f"进入旅程「{d.name}」：{describe_event(entering)}", d.trigger.id)
    state, cmds = engine.start(d, entering, now, rec.contact)
    rec.commands(cmds, now, marketing=not conversational(entering))

    end = now + timedelta(days=max_days)
    pending = list(script)
    reply_at: datetime | None = None
    advances = 0
    stopped = None
    while not state.finished:
        advances += 1
        if advances > MAX_ADVANCES:
            stopped = f"预览超过 {MAX_ADVANCES} 步，已停止"
            break
        if pending and reply_at is None and (state.asking or state.waiting_for is not None):
            reply_at = now + pending[0].after
        wake = state.wake_at
        if reply_at is not None and (wake is None or reply_at <= wake):
            at, reply = reply_at, pending.pop(0)
        elif wake is not None:
            at, reply = wake, None
        else:
            stopped = "旅程停在一个不会被唤醒的状态"
            break
        if at > end:
            stopped = f"预览只模拟 {max_days:g} 天：之后联系人仍在「{state.step}」"
            break
        now = at
        if reply is None:
            if state.asking:
                rec.add(now, "timeout", "没有在时限内回答", state.step)
            elif state.waiting_for is not None:
                waited = " / ".join(state.waiting_for.events)
                rec.add(now, "timeout", f"等待超时：没有等到 {waited}", state.step)
            state, cmds = engine.advance(d, state, None, now, rec.contact)
            rec.commands(cmds, now, marketing=True)
            continue
        reply_at = None
        ev = dataclasses.replace(reply.to_event(), occurred_at=now)
        was_asking = state.asking
        released = rec.saw(ev, now)
        if ev.type == UNSUBSCRIBE:  # the runner ends every enrollment (exit_all)
            rec.add(now, "reply", "取消关注", state.step)
            rec.add(now, "exit", "退出旅程：取消关注", state.step, reason="unsubscribed")
            state = dataclasses.replace(state, status=engine.EXITED, wake_at=None)
            break
        state, cmds = engine.advance(d, state, ev, now, rec.contact)
        if not any(isinstance(cmd, c.Answered) for cmd in cmds):
            unheard = "" if cmds else "（旅程此时不等待回复，没有反应）"
            if was_asking and cmds:
                unheard = "（没有匹配任何选项）"
            rec.add(now, "reply", f"回复：{reply.describe()}{unheard}", state.step)
        rec.released(released)
        rec.commands(cmds, now, marketing=not conversational(ev))

    if stopped:
        rec.add(now, "stop", f"（{stopped}）", state.step)
    transcript.lines = rec.sorted_lines()
    transcript.entered = True
    transcript.status, transcript.step, transcript.stopped = state.status, state.step, stopped
    transcript.unused_replies = [r.describe() for r in pending]
    transcript.interactions = rec.interactions
    return transcript


# --- against the simulator -----------------------------------------------------------------


@dataclass
class Played:
    """What the simulator did with a played transcript."""

    delivered: int = 0
    refused: list[tuple[Line, int, str]] = field(default_factory=list)
    not_sent: int = 0  # held, skipped or invalid in the transcript: the service sends nothing
    inbox: list[dict[str, Any]] = field(default_factory=list)


class SimulatorError(RuntimeError):
    """The simulator could not be reached or refused a control call."""


class SimulatorInbox:
    """Plays a transcript against a running wxsim: each message the transcript says goes out
    is sent, at its simulated time, through the simulator's Official Account API
    (``message/custom/send`` or ``template/send``) to the follower ``openid``, so it lands in
    their inbox; the simulator's clock moves with the transcript (and is put back at the end)
    while ``seconds_per_day`` real seconds stand for a simulated day.

    Only the simulator's control API (``/_sim/users``, ``/_sim/clock``) and its platform API
    are called: the follower is created and their interactions marked with ``/_sim/users``,
    never with callbacks, so Yuchi itself sees nothing and stores nothing. Passive replies
    are sent as customer-service messages (there is no callback to answer)."""

    def __init__(
        self,
        sim_url: str,
        settings: Settings,
        openid: str = "o_journey_preview",
        seconds_per_day: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        timeout: float = 10.0,
    ) -> None:
        import requests

        self.base = sim_url.rstrip("/")
        self.settings, self.openid = settings, openid
        self.seconds_per_day, self.sleep, self.timeout = seconds_per_day, sleep, timeout
        self.http = requests.Session()
        self._token: str | None = None

    def _request(self, method: str, url: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
        import requests

        try:
            resp = self.http.request(method, url, timeout=self.timeout, **kwargs)
            data = resp.json()
        except (requests.RequestException, ValueError) as exc:
            raise SimulatorError(f"cannot reach the simulator at {self.base}: {exc}") from exc
        if not isinstance(data, dict):
            raise SimulatorError(f"the simulator answered {url} with {data!r}")
        return resp.status_code, data

    def _control(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        status, data = self._request(method, f"{self.base}/_sim{path}", **kwargs)
        if status >= 400:
            raise SimulatorError(f"simulator {path}: {data.get('error', status)}")
        return data

    def now(self) -> datetime:
        """The simulator's clock."""
        return datetime.fromtimestamp(self._control("GET", "/clock")["now"], UTC)

    def _token_for(self, stale: bool = False) -> str:
        if self._token is None or stale:
            params = {
                "grant_type": "client_credential",
                "appid": self.settings.oa_appid,
                "secret": self.settings.oa_secret,
            }
            _, body = self._request("GET", f"{self.base}/cgi-bin/token", params=params)
            if "access_token" not in body:
                raise SimulatorError(f"the simulator gave no access token: {body}")
            self._token = str(body["access_token"])
        return self._token

    def _send(self, line: Line) -> tuple[int, str]:
        """(errcode, errmsg) of the platform API call that delivers ``line``'s message."""
        kind, payload = line.detail["message_kind"], line.detail["payload"]
        path, body = oa_request(kind, payload, self.openid, f"preview-{uuid.uuid4().hex}")
        for attempt in (1, 2):
            _, data = self._request(
                "POST",
                f"{self.base}/cgi-bin/{path}",
                params={"access_token": self._token_for(stale=attempt == 2)},
                data=json.dumps(body, ensure_ascii=False).encode(),
            )
            code = int(data.get("errcode", 0) or 0)
            if code in (40001, 40014, 42001) and attempt == 1:
                continue  # the clock jumped past the token's expiry: fetch a new one
            return code, str(data.get("errmsg", ""))
        return 42001, "access token rejected twice"

    def _touch(self, last_interaction_ago: float | None) -> None:
        self._control(
            "POST",
            "/users",
            json={
                "openid": self.openid,
                "subscribe": True,
                "last_interaction_ago": last_interaction_ago,
            },
        )

    def play(
        self,
        transcript: Transcript,
        on_line: Callable[[Line, str | None], None] | None = None,
    ) -> Played:
        """Play every line in order, in accelerated time; ``on_line(line, outcome)`` after
        each (outcome: "送达模拟器", an error, or None for lines that send nothing)."""
        played = Played()
        offset = self._control("GET", "/clock")["offset"]
        before = transcript.last_interaction
        ago = (transcript.start - before).total_seconds() if before is not None else None
        self._touch(ago)
        interactions = sorted(transcript.interactions)
        clock = transcript.start
        try:
            for line in transcript.lines:
                gap = (line.at - clock).total_seconds()
                if gap > 0:
                    self.sleep(gap / 86400 * self.seconds_per_day)
                    self._control("POST", "/clock", json={"advance": gap})
                    clock = line.at
                while interactions and interactions[0] <= line.at:
                    self._touch((line.at - interactions.pop(0)).total_seconds())
                outcome = None
                if line.kind in ("send", "ask"):
                    if line.detail.get("status") != "sent":
                        played.not_sent += 1
                    else:
                        code, message = self._send(line)
                        if code == 0:
                            played.delivered += 1
                            outcome = "送达模拟器"
                        else:
                            played.refused.append((line, code, message))
                            outcome = f"模拟器拒绝：{code} {message}"
                if on_line is not None:
                    on_line(line, outcome)
        finally:
            self._control("POST", "/clock", json={"offset": offset})
        items = self._control("GET", "/inbox", params={"openid": self.openid})["messages"]
        played.inbox = items
        return played
