"""What happens to every stored event in the background, in order: an explicit list of steps.

Each step is ``step(ctx: Context) -> None`` and runs inside the one transaction that marks the
event processed, so a failure rolls all of them back and the job is retried. A step that needs
work done after commit (an API call, another job) appends a callable to ``ctx.after_commit``.
Steps must be idempotent: a retried job runs them again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from bot.core.config import Settings
from bot.core.models import Event


@dataclass
class Context:
    settings: Settings
    session: Session
    event: Event
    after_commit: list[Callable[[], object]] = field(default_factory=list)


Step = Callable[[Context], None]

from bot.automation import runner as journey_runner  # noqa: E402 - the steps import Context from this module
from bot.sales import handoff  # noqa: E402 - the steps import Context from this module
from bot.scoring import ledger as scoring  # noqa: E402 - the steps import Context from this module
from bot.tagging import tags as tagging  # noqa: E402 - the steps import Context from this module
from bot.wecom import sync as wecom_sync  # noqa: E402 - the steps import Context from this module

# For events about a contact, in order.
STEPS: list[Step] = [
    wecom_sync.follow_merges,
    wecom_sync.on_event,
    tagging.on_event,
    scoring.on_event,
    handoff.on_event,
    journey_runner.on_event,
]
# For platform events about no one (``event.contact_id is None``).
SYSTEM_STEPS: list[Step] = [wecom_sync.on_system_event]
