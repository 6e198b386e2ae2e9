"""One journey transaction's work (``Tx``): the session and clock the commands use, and
what runs after commit (wake jobs, deliveries, outbox kicks)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from bot.automation import bandits, definitions
from bot.automation.wake_jobs import enqueue_wakes
from bot.contacts import record as events
from bot.core import queue
from bot.core.config import Settings
from bot.core.context import BATCH_MEMO
from bot.messaging import delivery
from bot.messaging import outbox as messaging
from journeys import bandit

DELIVERY_BATCH = 25  # journey sends per delivery job (answers to a contact go one by one)
After = list[Callable[[], object]]


@dataclass
class Tx:
    """One transaction's work: where commands write, and what runs after commit."""

    settings: Settings
    session: Session
    now: datetime
    after: After
    passive: list[tuple[str, dict[str, Any]]] | None = None  # the callback's reply, if any
    enrolled: set[tuple[int, int]] = field(default_factory=set)  # (journey, contact) this tx
    wakes: set[int] = field(default_factory=set)  # seconds with a wake to schedule
    deliveries: dict[bool, list[int]] = field(default_factory=dict)  # urgent? -> message ids
    sends: list[tuple[dict[str, Any], bool]] = field(default_factory=list)  # (row, urgent?)
    # In a background job: answers to the contact are delivered right after commit, in this
    # process, instead of waiting for a worker to take their job.
    inline: bool = False
    timeline: list[events.TimelineItem] = field(default_factory=list)  # done, exited
    _journeys: list[Any] | None = None
    _weights: dict[int, dict[str, list[float]]] = field(default_factory=dict)

    def published(self) -> list[Any]:
        """The published journeys (id, name, version), read once per transaction."""
        if self._journeys is None:
            batch = self.session.info.get(BATCH_MEMO)
            if batch is None:
                self._journeys = definitions.published(self.session)
            else:  # a drain's batch reads them once for all its events
                if "journeys" not in batch:
                    batch["journeys"] = definitions.published(self.session)
                self._journeys = batch["journeys"]
        return self._journeys

    def split_weights(
        self, journey_id: int, d: Any, contact_id: int | None = None
    ) -> dict[str, list[float]] | None:
        """The arm weights of the journey's bandit splits, read once per transaction (None
        when it has none); with ``contact_id``, the arms the contact got before pinned."""
        if not bandit.bandit_steps(d):
            return None
        if journey_id not in self._weights:
            self._weights[journey_id] = bandits.current_weights(self.session, journey_id)
        weights = self._weights[journey_id]
        if contact_id is None:
            return weights
        arms = bandits.contact_arms(self.session, journey_id, contact_id)
        return bandits.pinned(d, weights, arms) if arms else weights

    def wake_at(self, at: datetime) -> None:
        """Schedule a wake for ``at`` after commit (one job per second, for the whole tx)."""
        if not self.wakes:
            self.after.append(lambda: enqueue_wakes(self.settings, self.wakes))
        self.wakes.add(math.ceil(at.timestamp()))

    def deliver(self, ids: list[int], urgent: bool = False) -> None:
        """Enqueue these messages' delivery after commit (one Redis pipeline per kind)."""
        if not ids:
            return
        if urgent and self.inline:
            self.after.append(functools.partial(delivery.deliver_now, self.settings, ids))
            return
        if urgent not in self.deliveries:
            self.deliveries[urgent] = []
            # answers to the contact: a job each, first in line; the rest in batches
            batch = 1 if urgent else DELIVERY_BATCH
            self.after.append(
                lambda: messaging.enqueue(
                    self.settings,
                    self.deliveries[urgent],
                    batch=batch,
                    urgent=urgent,
                    name=None if urgent else queue.QUEUE_NAME,
                )
            )
        self.deliveries[urgent].extend(ids)

    def kick_outbox(self) -> None:
        """After commit, make sure a drain takes the events this transaction stored."""
        self.after.append(functools.partial(queue.kick_outbox, self.settings))


def locked(session: Session, query: Any) -> Any:
    """``query`` FOR UPDATE on PostgreSQL (SQLite has one writer)."""
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return query
