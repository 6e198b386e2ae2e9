"""The sweeper: beside every `yuchi worker`, rebuild from the database whatever work Redis
lost or never got (outbox rows, due messages, pending webhooks) and close messages stuck mid-send."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from bot import (
    broadcasts,
    handoff,
    journey_runner,
    journey_segments,
    journey_webhooks,
    messaging,
    queue,
    tag_sync,
)
from bot.config import Settings

log = logging.getLogger(__name__)


def sweep_all(settings: Settings) -> dict[str, int]:
    return {
        "outbox": queue.sweep(settings),
        "broadcasts": broadcasts.sweep(settings),
        "tag_sync": tag_sync.sweep(settings),
        "leads_escalated": handoff.escalate_due(settings),
        "journey_wakes": journey_runner.sweep(
            settings, timedelta(seconds=settings.sweep_grace_seconds)
        ),
        "journey_segments": journey_segments.sweep(settings)["entered"],
        "journey_webhooks": journey_webhooks.sweep(settings),
        **messaging.sweep(settings),
    }


class Sweeper(threading.Thread):
    """Runs sweep_all() every interval; survives Redis outages."""

    def __init__(self, settings: Settings):
        super().__init__(name="yuchi-sweeper", daemon=True)
        self.settings = settings
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                sweep_all(self.settings)
            except queue.REDIS_ERRORS as exc:
                log.warning("sweeper: Redis unreachable (%s); retrying", exc)
            except Exception:
                log.exception("sweeper run failed")
            self.stopping.wait(self.settings.sweep_interval_seconds)

    def stop(self) -> None:
        self.stopping.set()
