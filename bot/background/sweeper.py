"""The sweeper: beside every `yuchi worker`, rebuild from the database whatever work Redis
lost or never got (outbox rows, due messages, pending webhooks) and close messages stuck mid-send."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from bot.automation import bandits as journey_bandits
from bot.automation import segments as journey_segments
from bot.automation import wake_jobs as journey_wake_jobs
from bot.automation import webhooks as journey_webhooks
from bot.core import queue
from bot.core.config import Settings
from bot.messaging import broadcast_bandit, broadcasts, mass, requeue
from bot.sales import handoff, reminders, transfers
from bot.scoring import recompute as score_recompute
from bot.tagging import sync as tag_sync

log = logging.getLogger(__name__)


def sweep_all(settings: Settings, redis_emptied: bool = False) -> dict[str, int]:
    """One sweep. ``redis_emptied``: Redis has just started empty (see queue.started_empty),
    so no job it held survives: whatever waits is queued again now, without the grace periods
    that otherwise tell a lost job from a slow one."""
    grace = 0.0 if redis_emptied else settings.sweep_grace_seconds
    return {
        "outbox": queue.sweep(settings, grace),
        "broadcasts": broadcasts.sweep(settings),
        "broadcast_decisions": broadcast_bandit.sweep(settings),
        "mass_sends": mass.sweep(settings),
        "tag_sync": tag_sync.sweep(settings),
        "leads_escalated": handoff.escalate_due(settings),
        "reminders": reminders.sweep(settings, timedelta(seconds=grace)),
        "transfers_settled": transfers.sync_results(settings),
        "journey_wakes": journey_wake_jobs.sweep(settings, timedelta(seconds=grace)),
        "journey_segments": journey_segments.sweep(settings)["entered"],
        "journey_webhooks": journey_webhooks.sweep(settings),
        "journey_bandits": journey_bandits.sweep(settings),
        "score_recompute": score_recompute.sweep(settings),
        **requeue.sweep(settings, redis_emptied=redis_emptied),
    }


RETRY = 1.0  # s


class Sweeper(threading.Thread):
    """Runs sweep_all() every interval, and at once when asked (a dead worker's jobs were
    recovered, Redis turned out to have started empty); survives Redis outages."""

    def __init__(self, settings: Settings):
        super().__init__(name="yuchi-sweeper", daemon=True)
        self.settings = settings
        self.stopping = threading.Event()
        self.wake = threading.Event()  # sweep now
        self.emptied = False  # ... without grace periods (see sweep_all)

    def run(self) -> None:
        while not self.stopping.is_set():
            emptied, self.emptied = self.emptied, False
            self.wake.clear()
            try:
                sweep_all(self.settings, redis_emptied=emptied)
            except queue.REDIS_ERRORS as exc:
                log.warning("sweeper: Redis unreachable (%s); retrying", exc)
                self.emptied = self.emptied or emptied
            except Exception:
                log.exception("sweeper run failed")
                self.emptied = self.emptied or emptied
            # an "emptied" sweep that failed is tried again soon
            self.wake.wait(RETRY if self.emptied else self.settings.sweep_interval_seconds)

    def sweep_now(self) -> None:
        self.wake.set()

    def redis_emptied(self) -> None:
        """Sweep now, every row whose job Redis held (see sweep_all)."""
        self.emptied = True
        self.wake.set()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
