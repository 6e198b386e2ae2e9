"""What the messaging service would do with a journey's sends, decided in simulated time by
``bot.messaging.send_rules.decide``, the rules delivery applies (the preview and the
forecast).

As in the runner, a send made while handling the contact's own (stored) event is a reply to
it and exempt; one made when a wait comes due, or on a tag or score change, is marketing: in
quiet hours it is moved to their end (unless the contact wrote in the last 30 minutes), over
the frequency cap it is skipped. A customer-service message outside the 48-hour window is
held until the contact next interacts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

import journeys
from bot.automation.preview_input import problems
from bot.core.config import Settings
from bot.messaging import send_rules
from bot.messaging.payloads import SendRequest
from journeys import commands as c
from journeys import engine

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


def conversational(event: journeys.Event | None) -> bool:
    """Would the runner send in answer to this event (a stored one, with an id)? Not for a
    wake (None) nor for a noted change (tag.added, score.changed)."""
    return event is not None and event.type not in (engine.TAG_ADDED, engine.SCORE_CHANGED)


def is_interaction(event_type: str) -> bool:
    """Did the person act themself (opens the 48-hour customer-service window)?"""
    return event_type.startswith(("oa.", "wecom.")) and event_type not in NOT_INTERACTIONS


def policy_for(policy: send_rules.Policy | None, settings: Settings | None) -> send_rules.Policy:
    """``policy``, else the settings' (quiet hours, cap), else the defaults."""
    if policy is not None:
        return policy
    if settings is not None:
        from bot.messaging import outbox as messaging

        return messaging.policy(settings)
    return send_rules.Policy()


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
        return problems(exc, "")
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

    def _recipient(self, at: datetime) -> send_rules.Recipient:
        since = at - self.policy.cap_window
        recent = sum(1 for t in self.marketing_sent if since <= t <= at)
        return send_rules.Recipient(
            subscribed=True,
            stage=None,
            has_openid=True,
            last_interaction=self.last_interaction,
            recent_marketing=recent,
        )

    def _plan(self, cmd: c.Send, at: datetime, marketing: bool) -> Outcome:
        """``send_rules.decide`` at ``at`` — and, in quiet hours, again at their end, when
        the row would be delivered."""
        pol, when, notes = self.policy, at, []
        send = send_rules.Send(
            kind=cmd.kind,
            marketing=marketing,
            outside_window=cmd.outside_window,
            has_fallback=bool(cmd.fallback),
        )
        d = send_rules.decide(self._recipient(at), send, at, pol)
        if d.route == "quiet":
            when = d.resume
            notes.append("免打扰时段，顺延到结束时发送")
            d = send_rules.decide(self._recipient(when), send, when, pol)
        if d.route == "capped":
            hours = int(pol.cap_window.total_seconds() // 3600)
            note = f"超出营销频次上限（每 {hours} 小时 {pol.marketing_cap} 条），不会发送"
            return Outcome("skipped", when, at, note)
        if d.route == "fail":
            return Outcome("skipped", when, at, "48 小时互动窗口已关闭：不发送")
        if d.route == "hold":
            self.held.append((cmd, marketing))
            return Outcome("held", when, at, "48 小时互动窗口已关闭：暂存，联系人再次互动时发出")
        if marketing:
            self.marketing_sent.append(when)
        if d.route == "template" and cmd.kind in send_rules.CUSTOMER_SERVICE_KINDS:
            tpl = (cmd.fallback or {}).get("template_id", "")
            return Outcome("sent", when, at, f"48 小时互动窗口已关闭：改发模板消息 {tpl}")
        return Outcome("sent", when, at, "；".join(notes))
