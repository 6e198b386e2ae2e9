"""What happens to every stored event in the background, in order: an explicit list of steps,
each a function of a ``bot.core.context.Context`` (see there for the rules a step follows)."""

from __future__ import annotations

from bot.automation import event_webhooks
from bot.automation import runner as journey_runner
from bot.campaigns import arrivals as campaign_arrivals
from bot.campaigns import follow as campaign_follow
from bot.core.context import Context, Step
from bot.menus import clicks as menu_clicks
from bot.messaging import results as send_results
from bot.sales import handoff, transfers
from bot.scoring import ledger as scoring
from bot.tagging import tags as tagging
from bot.wecom import sync as wecom_sync

__all__ = ["STEPS", "SYSTEM_STEPS", "Context", "Step"]

# For events about a contact, in order.
STEPS: list[Step] = [
    menu_clicks.on_event,  # first: the steps after it read which menu version was clicked
    send_results.on_event,
    wecom_sync.follow_merges,
    wecom_sync.on_event,
    campaign_follow.on_event,
    tagging.on_event,
    scoring.on_event,
    handoff.on_event,
    transfers.on_event,
    journey_runner.on_event,
    event_webhooks.on_event,  # last: subscribers get the event as the steps left it
]
# For platform events about no one (``event.contact_id is None``).
SYSTEM_STEPS: list[Step] = [
    wecom_sync.on_system_event,
    campaign_arrivals.on_system_event,
    send_results.on_system_event,
]
