"""The platform's and our own rules for outbound messages, as pure functions of time and state.

- the 48-hour customer-service window (WeChat answers 45015 outside it: we never try),
- frequency caps and quiet hours for marketing sends,
- exponential backoff with jitter for transient platform errors.
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
