"""Turning the engine's commands into a preview's transcript lines, one function per command
type in ``LINES`` (the same shape as the runner's bot.automation.execute.HANDLERS), while
keeping the simulated contact up to date (``CONTACT_CHANGES``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import journeys
from bot.automation.preview_transcript import (
    ANSWER_LABELS,
    SEND_VERBS,
    STAGE_LABELS,
    Line,
    describe_send,
)
from bot.automation.send_outcomes import Deliveries, Outcome, is_interaction
from journeys import commands as c
from journeys.model import Ask, Definition

# What the runner's command does to the contact (tags, points, fields, stage).
CONTACT_CHANGES: dict[type[c.Command], Callable[[journeys.Contact, Any], journeys.Contact]] = {
    c.AddTag: lambda k, cmd: dataclasses.replace(k, tags=k.tags | {cmd.tag}),
    c.RemoveTag: lambda k, cmd: dataclasses.replace(k, tags=k.tags - {cmd.tag}),
    c.AddPoints: lambda k, cmd: dataclasses.replace(k, score=k.score + cmd.points),
    c.SetField: lambda k, cmd: dataclasses.replace(k, fields={**k.fields, cmd.field: cmd.value}),
    c.SetStage: lambda k, cmd: dataclasses.replace(k, stage=cmd.stage),
}


def apply_to_contact(k: journeys.Contact, cmd: c.Command) -> journeys.Contact:
    """The contact after the runner executed ``cmd`` (tags, points, fields, stage)."""
    change = CONTACT_CHANGES.get(type(cmd))
    return change(k, cmd) if change is not None else k


class Recorder:
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
            line = LINES.get(type(cmd))
            if line is not None:  # Schedule: the clock jumps to it; no line of its own
                line(self, cmd, at, marketing)

    def sorted_lines(self) -> list[Line]:
        """In time order (a send moved out of quiet hours lands where it goes out)."""
        return sorted(self.lines, key=lambda ln: ln.at)


# --- one line per command ------------------------------------------------------------------


def _send(rec: Recorder, cmd: c.Send, at: datetime, marketing: bool) -> None:
    rec.send(cmd, rec.deliveries.send(cmd, at, marketing))


def _answered(rec: Recorder, cmd: c.Answered, at: datetime, marketing: bool) -> None:
    label = rec.answer_label(cmd.step, cmd.key)
    text = f"回答：{cmd.text.strip()} → {label}={cmd.value}"
    rec.add(at, "answer", text, cmd.step, key=cmd.key, value=cmd.value)


def _add_tag(rec: Recorder, cmd: c.AddTag, at: datetime, marketing: bool) -> None:
    rec.add(at, "tag", f"打标签：{cmd.tag}", cmd.step, tag=cmd.tag)


def _remove_tag(rec: Recorder, cmd: c.RemoveTag, at: datetime, marketing: bool) -> None:
    rec.add(at, "untag", f"去掉标签：{cmd.tag}", cmd.step, tag=cmd.tag)


def _add_points(rec: Recorder, cmd: c.AddPoints, at: datetime, marketing: bool) -> None:
    sign = "加分" if cmd.points >= 0 else "减分"
    why = f"（{cmd.reason}）" if cmd.reason else ""
    text = f"{sign}：{cmd.points:+g}{why}，现在 {rec.contact.score:g} 分"
    rec.add(at, "points", text, cmd.step, points=cmd.points)


def _set_field(rec: Recorder, cmd: c.SetField, at: datetime, marketing: bool) -> None:
    rec.add(at, "field", f"设置字段：{cmd.field} = {cmd.value}", cmd.step)


def _set_stage(rec: Recorder, cmd: c.SetStage, at: datetime, marketing: bool) -> None:
    label = STAGE_LABELS.get(cmd.stage, cmd.stage)
    rec.add(at, "stage", f"阶段变为：{label}", cmd.step, stage=cmd.stage)


def _hand_off(rec: Recorder, cmd: c.HandOff, at: datetime, marketing: bool) -> None:
    note = f"：{cmd.note}" if cmd.note else ""
    rec.add(at, "handoff", f"转交销售{note}", cmd.step, rep=cmd.rep)


def _notify_rep(rec: Recorder, cmd: c.NotifyRep, at: datetime, marketing: bool) -> None:
    rec.add(at, "notify", f"通知销售：{cmd.message}", cmd.step, rep=cmd.rep)


def _call_webhook(rec: Recorder, cmd: c.CallWebhook, at: datetime, marketing: bool) -> None:
    rec.add(at, "webhook", f"调用 Webhook：{cmd.url}", cmd.step)


def _enter_journey(rec: Recorder, cmd: c.EnterJourney, at: datetime, marketing: bool) -> None:
    rec.add(at, "journey", f"进入旅程：{cmd.journey}", cmd.step)


def _converted(rec: Recorder, cmd: c.Converted, at: datetime, marketing: bool) -> None:
    rec.add(at, "converted", "达成旅程目标（转化），离开旅程", cmd.step)


def _exit(rec: Recorder, cmd: c.Exit, at: datetime, marketing: bool) -> None:
    if cmd.reason == "completed":
        rec.add(at, "done", "旅程结束", cmd.step)
    else:
        rec.add(at, "exit", f"退出旅程：{cmd.reason}", cmd.step, reason=cmd.reason)


LINES: dict[type[c.Command], Callable[[Recorder, Any, datetime, bool], None]] = {
    c.Send: _send,
    c.Answered: _answered,
    c.AddTag: _add_tag,
    c.RemoveTag: _remove_tag,
    c.AddPoints: _add_points,
    c.SetField: _set_field,
    c.SetStage: _set_stage,
    c.HandOff: _hand_off,
    c.NotifyRep: _notify_rep,
    c.CallWebhook: _call_webhook,
    c.EnterJourney: _enter_journey,
    c.Converted: _converted,
    c.Exit: _exit,
}
