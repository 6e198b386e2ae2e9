"""A per-process copy of what every callback reads (the reply rules), reloaded only when its
version in Redis changes.

Each process asks Redis for the version at most every ``check_every`` seconds, one GET, so a
callback normally reads nothing at all; a change through the API or the CLI bumps the version
after its commit (``changed``), and every process reloads within ``check_every``. While Redis is
away the copy is reloaded every ``fallback_age`` seconds instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from bot.core import queue
from bot.core.config import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

CHECK_EVERY = 0.25  # seconds between two looks at the version, per process


class Versioned(Generic[T]):
    def __init__(self, name: str, check_every: float = CHECK_EVERY) -> None:
        self.key = f"yuchi:version:{name}"
        self.check_every = check_every
        self._lock = threading.Lock()
        self._value: T | None = None
        self._version: bytes | None = None
        self._checked = self._loaded = 0.0

    def get(self, settings: Settings, load: Callable[[], T], fallback_age: float) -> T:
        now = time.monotonic()
        with self._lock:
            value, version = self._value, self._version
            if value is not None and now - self._checked < self.check_every:
                return value
            loaded = self._loaded
        try:
            current = queue.get_redis(settings).get(self.key)
            stale = value is None or current != version
        except queue.REDIS_ERRORS:
            current, stale = version, value is None or now - loaded >= fallback_age
        if not stale:
            with self._lock:
                self._checked = now
            return value  # type: ignore[return-value]
        value = load()  # after reading the version: a change made meanwhile is seen next time
        with self._lock:
            self._value, self._version, self._checked, self._loaded = value, current, now, now
        return value

    def drop(self) -> None:
        """Forget this process's copy (inside a transaction that changed it, and in tests)."""
        with self._lock:
            self._value = None

    def changed(self, settings: Settings) -> None:
        """After a commit that changed it: every process reloads within ``check_every``."""
        self.drop()
        try:
            queue.get_redis(settings).incr(self.key)
        except queue.REDIS_ERRORS as exc:
            log.warning("%s not bumped (%s); other processes reload it by age", self.key, exc)
