"""The platform's and our own rules for outbound messages, as pure functions of time and state.

- the 48-hour customer-service window (WeChat answers 45015 outside it: we never try),
- frequency caps and quiet hours for marketing sends,
- the OA's mass send: each follower receives at most ``mass_quota`` a calendar month,
- exponential backoff with jitter for transient platform errors,
- ``decide``: the route of one message to one contact from all of the above — the one copy of
  these rules that delivery, the broadcast fan-out, the mass send and the preview all call.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

WINDOW = timedelta(hours=48)

# Kinds and the API that carries them.
CUSTOMER_SERVICE_KINDS = {"text", "news", "link", "image", "miniprogram"}
TEMPLATE_KINDS = {"template"}
WECOM_APP_KINDS = {"wecom_text", "wecom_textcard", "wecom_markdown"}
ALL_KINDS = CUSTOMER_SERVICE_KINDS | TEMPLATE_KINDS | WECOM_APP_KINDS
# Contacts in these stages get no marketing sends (a returned lead disqualified by sales).
NO_MARKETING_STAGES = frozenset({"disqualified"})


@dataclass(frozen=True)
class Policy:
    marketing_cap: int = 3
    cap_window: timedelta = timedelta(hours=24)
    quiet_start: time | None = time(22, 0)
    quiet_end: time | None = time(8, 0)
    timezone: str = "Asia/Shanghai"
    conversation: timedelta = timedelta(minutes=30)  # "active conversation" after their message
    max_attempts: int = 5
    backoff_base: float = 2.0
    backoff_cap: float = 300.0
    mass_quota: int = 4  # mass messages a follower receives per calendar month


def in_window(last_interaction: datetime | None, now: datetime) -> bool:
    """May a customer-service message go now (the 48-hour rule)?"""
    return last_interaction is not None and now - last_interaction < WINDOW


def in_conversation(last_interaction: datetime | None, now: datetime, policy: Policy) -> bool:
    return last_interaction is not None and now - last_interaction < policy.conversation


def quiet_until(now: datetime, policy: Policy) -> datetime | None:
    """If ``now`` is inside quiet hours, the UTC moment they end; else None."""
    if (
        policy.quiet_start is None
        or policy.quiet_end is None
        or policy.quiet_start == policy.quiet_end
    ):
        return None
    tz = ZoneInfo(policy.timezone)
    local = now.astimezone(tz)
    t = local.time()
    start, end = policy.quiet_start, policy.quiet_end
    inside = (start <= t or t < end) if start > end else (start <= t < end)
    if not inside:
        return None
    end_day = local.date() if t < end else local.date() + timedelta(days=1)
    ends = datetime.combine(end_day, end, tzinfo=tz)
    return ends.astimezone(now.tzinfo)


def over_cap(recent_marketing: int, policy: Policy) -> bool:
    return recent_marketing >= policy.marketing_cap


def backoff(attempt: int, policy: Policy, rng: random.Random | None = None) -> float:
    """Seconds to wait before attempt ``attempt + 1``: exponential, capped, with full jitter
    over its upper half (so retries from many workers spread out)."""
    ceiling = min(policy.backoff_cap, policy.backoff_base * 2 ** (attempt - 1))
    return (rng or random).uniform(ceiling / 2, ceiling)


def parse_clock(value: str) -> time:
    hours, _, minutes = value.strip().partition(":")
    return time(int(hours), int(minutes or 0))


def month_start(now: datetime, policy: Policy) -> datetime:
    """The start of ``now``'s calendar month in the account's time zone (the mass quota's
    period), in ``now``'s time zone."""
    local = now.astimezone(ZoneInfo(policy.timezone))
    first = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return first.astimezone(now.tzinfo)


@dataclass(frozen=True)
class Recipient:
    """What the rules need to know about one contact, read by the caller."""

    subscribed: bool
    stage: str | None
    has_openid: bool
    last_interaction: datetime | None
    recent_marketing: int = 0  # marketing messages within the cap window (or on their way)
    mass_this_month: int = 0  # mass messages sent to them this calendar month


@dataclass(frozen=True)
class Send:
    """What is being sent: its kind and the policy for outside the 48-hour window
    (hold | fail | fallback (a template) | mass)."""

    kind: str
    marketing: bool
    outside_window: str
    has_fallback: bool = False
    exempt: bool = False  # an answer to the contact's own message: no cap, no quiet hours
    channel: str = "oa"


# Routes: how a message goes (cs, template, mass) or why it does not go now.
SENDING_ROUTES = ("cs", "template", "mass")


@dataclass(frozen=True)
class Decision:
    route: str  # cs | template | mass | hold | fail | skip | capped | quota | quiet
    reason: str | None = None
    resume: datetime | None = None  # quiet: when the quiet hours end


def decide(r: Recipient, s: Send, now: datetime, policy: Policy) -> Decision:
    """The route of one message to one contact now."""
    if not r.subscribed:
        return Decision("skip", "contact is not following")
    if s.marketing and r.stage in NO_MARKETING_STAGES:
        return Decision("skip", f"contact is {r.stage}")
    if not r.has_openid:
        return Decision("skip", "contact has no openid")
    if s.marketing and not s.exempt:
        talking = in_conversation(r.last_interaction, now, policy)
        resume = None if talking else quiet_until(now, policy)
        if resume is not None:
            return Decision("quiet", "quiet hours", resume)
        if over_cap(r.recent_marketing, policy):
            return Decision(
                "capped", f"frequency cap: {policy.marketing_cap} marketing messages per 24 h"
            )
    if s.kind in TEMPLATE_KINDS:
        return Decision("template")
    if in_window(r.last_interaction, now):
        return Decision("cs")
    reason = "outside the 48-hour customer-service window"
    if s.outside_window == "fallback" and s.has_fallback:
        return Decision("template", reason)
    if s.outside_window == "mass":
        if r.mass_this_month >= policy.mass_quota:
            return Decision(
                "quota", f"monthly mass-send quota: {policy.mass_quota} a month per follower"
            )
        return Decision("mass", reason)
    if s.outside_window == "hold":
        return Decision("hold", reason)
    return Decision("fail", reason)
