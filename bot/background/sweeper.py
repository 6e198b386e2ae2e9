"""The sweeper: beside every `yuchi worker`, rebuild from the database whatever work Redis
lost or never got (outbox rows, due messages) and close messages stuck mid-send."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from bot.automation import runner as journey_runner
from bot.automation import segments as journey_segments
from bot.core import queue
from bot.core.config import Settings
from bot.messaging import broadcasts
from bot.messaging import outbox as messaging
from bot.sales import handoff
from bot.tagging import sync as tag_sync

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
