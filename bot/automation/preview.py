"""Journey preview: one simulated contact through a journey in accelerated time.

``preview(definition, replies=…, contact=…, start=…)`` drives the pure engine
(journeys.engine) with a fake clock. It enrolls the contact with a synthetic event that
matches the trigger (bot.automation.preview_trigger), jumps the clock to every ``wake_at``,
feeds the scripted replies (bot.automation.preview_input) when the journey asks a question or
waits for an event, and writes down what the contact would receive and when, plus tags,
points, stage, handoff and exit (bot.automation.preview_recorder, preview_transcript).
Sends are judged by bot.automation.send_outcomes (quiet hours, cap, 48-hour window). Nothing
is stored or sent; bot.automation.preview_simulator plays a transcript against a running
wxsim.

Not modelled: what other parts of Yuchi do with the contact's replies (tag rules, interest
words, scoring rules on ``journey.answer``); pass the tags and score you want in ``contact``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import journeys
from bot.automation.preview_input import (
    PreviewContact,
    ScriptedReply,
    contact_from,
    load_definition,
    parse_replies,
)
from bot.automation.preview_recorder import Recorder
from bot.automation.preview_transcript import Transcript, describe_event
from bot.automation.preview_trigger import trigger_event
from bot.automation.send_outcomes import Deliveries, conversational, is_interaction, policy_for
from bot.core.config import Settings
from bot.messaging import send_rules
from journeys import commands as c
from journeys import engine
from journeys.model import Definition

DEFAULT_MAX_DAYS = 60
MAX_ADVANCES = 1000
UNSUBSCRIBE = "oa.unsubscribe"


def _start(start: datetime | None, tz: ZoneInfo) -> datetime:
    if start is None:
        return datetime.now(tz).replace(hour=9, minute=0, second=0, microsecond=0)
    if start.tzinfo is None or start.utcoffset() is None:
        return start.replace(tzinfo=tz)
    return start


def _entering(
    d: Definition, k: journeys.Contact, event: journeys.Event | None, now: datetime, assume: bool
) -> tuple[journeys.Event | None, journeys.Contact, list[str]]:
    """(the entering event, the contact as it then is, what the preview assumed)."""
    made, k, assumed = trigger_event(d, k, now, assume=assume)
    entering = event if event is not None else made
    if entering is not None and entering.occurred_at is None:
        entering = dataclasses.replace(entering, occurred_at=now)
    return entering, k, assumed


def _first_touch(
    d: Definition,
    entering: journeys.Event | None,
    given: bool,
    k: journeys.Contact,
    now: datetime,
    assumed: list[str],
) -> datetime | None:
    """When the contact last interacted before entering (the 48-hour window)."""
    if entering is not None and is_interaction(entering.type):
        return None  # the entering event itself is the interaction
    if d.trigger.on == "segment" or given:
        return k.last_seen_at
    # a tag, score or stage change: assume the contact has just been active
    assumed.append("刚刚与公众号互动过")
    return now


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
    now = _start(start, ZoneInfo(d.timezone))
    script = parse_replies(replies)
    k = contact_from(contact if contact is not None else {}, now)
    entering, k, assumed = _entering(d, k, event, now, assume=contact is None)
    first_touch = _first_touch(d, entering, contact is not None, k, now, assumed)
    rec = Recorder(d, now, k, Deliveries(policy_for(policy, settings)))
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
    swept = d.trigger.on in ("segment_entered", "segment_left")  # the sweep enrolls: assumed
    if not swept and not engine.triggered_by(d, entering, rec.contact, now):
        rec.add(now, "stop", f"没有进入旅程：{describe_event(entering)}不满足触发条件")
        transcript.lines = rec.sorted_lines()
        transcript.unused_replies = [r.describe() for r in script]
        return transcript
    if entering is not None:
        rec.saw(entering, now)  # nothing is held yet
    rec.add(now, "enter", f"进入旅程「{d.name}」：{describe_event(entering)}", d.trigger.id)
    state, cmds = engine.start(d, entering, now, rec.contact)
    rec.commands(cmds, now, marketing=not conversational(entering))
    pending = list(script)
    state, now, stopped = _play(d, rec, state, now, pending, max_days)
    if stopped:
        rec.add(now, "stop", f"（{stopped}）", state.step)
    transcript.lines = rec.sorted_lines()
    transcript.entered = True
    transcript.status, transcript.step, transcript.stopped = state.status, state.step, stopped
    transcript.unused_replies = [r.describe() for r in pending]
    transcript.interactions = rec.interactions
    return transcript


def _play(
    d: Definition,
    rec: Recorder,
    state: journeys.State,
    now: datetime,
    pending: list[ScriptedReply],
    max_days: float,
) -> tuple[journeys.State, datetime, str | None]:
    """Move the clock to each wake or scripted reply (taken from ``pending``) until the
    journey ends; returns (state, clock, why the preview stopped first, or None)."""
    end = now + timedelta(days=max_days)
    reply_at: datetime | None = None
    for _ in range(MAX_ADVANCES):
        if state.finished:
            return state, now, None
        if pending and reply_at is None and (state.asking or state.waiting_for is not None):
            reply_at = now + pending[0].after
        wake = state.wake_at
        reply: ScriptedReply | None
        if reply_at is not None and (wake is None or reply_at <= wake):
            at, reply = reply_at, pending.pop(0)
        elif wake is not None:
            at, reply = wake, None
        else:
            return state, now, "旅程停在一个不会被唤醒的状态"
        if at > end:
            return state, now, f"预览只模拟 {max_days:g} 天：之后联系人仍在「{state.step}」"
        now = at
        if reply is None:
            state = _wake(d, rec, state, now)
        else:
            reply_at = None
            state = _reply(d, rec, state, reply, now)
    if state.finished:
        return state, now, None
    return state, now, f"预览超过 {MAX_ADVANCES} 步，已停止"


def _wake(d: Definition, rec: Recorder, state: journeys.State, now: datetime) -> journeys.State:
    """The wait or the question's timeout has come."""
    if state.asking:
        rec.add(now, "timeout", "没有在时限内回答", state.step)
    elif state.waiting_for is not None:
        waited = " / ".join(state.waiting_for.events)
        rec.add(now, "timeout", f"等待超时：没有等到 {waited}", state.step)
    state, cmds = engine.advance(d, state, None, now, rec.contact)
    rec.commands(cmds, now, marketing=True)
    return state


def _reply(
    d: Definition, rec: Recorder, state: journeys.State, reply: ScriptedReply, now: datetime
) -> journeys.State:
    """The contact does what the script says next."""
    ev = dataclasses.replace(reply.to_event(), occurred_at=now)
    was_asking = state.asking
    released = rec.saw(ev, now)
    if ev.type == UNSUBSCRIBE:  # the runner ends every enrollment (exit_all)
        rec.add(now, "reply", "取消关注", state.step)
        rec.add(now, "exit", "退出旅程：取消关注", state.step, reason="unsubscribed")
        return dataclasses.replace(state, status=engine.EXITED, wake_at=None)
    state, cmds = engine.advance(d, state, ev, now, rec.contact)
    if not any(isinstance(cmd, c.Answered) for cmd in cmds):
        unheard = "" if cmds else "（旅程此时不等待回复，没有反应）"
        if was_asking and cmds:
            unheard = "（没有匹配任何选项）"
        rec.add(now, "reply", f"回复：{reply.describe()}{unheard}", state.step)
    rec.released(released)
    rec.commands(cmds, now, marketing=not conversational(ev))
    return state
