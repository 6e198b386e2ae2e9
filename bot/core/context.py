"""The unit of work a background step runs in.

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

# session.info key of a drain batch's memo: what every event of one batch transaction reads
# alike (the published journeys, the active score rules, which contacts have new tags), read
# once per batch.
BATCH_MEMO = "yuchi.batch"
BATCH_CONTACTS = "contacts"  # in the memo: the set of the batch's events' contact ids


@dataclass
class Context:
    settings: Settings
    session: Session
    event: Event
    after_commit: list[Callable[[], object]] = field(default_factory=list)


Step = Callable[[Context], None]
