"""Group commit: the hot paths' writes of one process, committed together.

With threaded web workers (WEB_THREADS > 1) a burst of callbacks arrives on several threads
of one process at once. Instead of each thread taking SQLite's writer lock and paying its own
commit (an fsync under synchronous=FULL; a WAL flush on PostgreSQL), each hands its write to
the process's writer thread, which runs whatever is waiting (up to ``MAX_BATCH``) in one
transaction on its own DB-API connection (bot.core.rawdb), commits once, runs the batch's
after-commit actions (deduplicated by key, e.g. one outbox kick per drain) and only then wakes
the waiting requests. A request therefore answers only after its row is durable.

A write that fails fails its whole batch (rolled back): every waiter gets ``rawdb.Error`` and
takes the ordinary path, exactly as after a failure on its own connection."""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from bot.core import rawdb

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_BATCH = 64
After = tuple[Hashable, Callable[[], object]]


class _Entry:
    __slots__ = ("work", "then", "after", "done", "result", "error")

    def __init__(self, work: Callable[[rawdb.Raw], Any], then: Callable[[Any], Any]) -> None:
        self.work = work
        self.then = then  # the result -> the after-commit action it asks for, or None
        self.after: After | None = None
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class Writer:
    """One process's writer thread for one database URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._queue: queue.SimpleQueue[_Entry] = queue.SimpleQueue()
        self.batches = 0  # committed batches and the writes in them (tests, the bench)
        self.writes = 0
        thread = threading.Thread(target=self._loop, name="yuchi-group-commit", daemon=True)
        thread.start()

    def run(
        self,
        work: Callable[[rawdb.Raw], T],
        after: Callable[[T], After | None] | None = None,
    ) -> T:
        """``work(raw)`` inside a batch's transaction; its result once the batch committed.
        ``after(result)`` (in the writer, before the commit) may name an action to run once
        per batch and key after the commit. Raises rawdb.Error when the batch failed."""
        entry = _Entry(work, after or _nothing)
        self._queue.put(entry)
        entry.done.wait()
        if entry.error is not None:
            raise rawdb.Error(str(entry.error)) from entry.error
        return entry.result

    def _loop(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._commit(batch)

    def _commit(self, batch: list[_Entry]) -> None:
        try:
            raw = rawdb.connection(self.url)
            with raw.writing():
                for entry in batch:
                    entry.result = entry.work(raw)
                    entry.after = entry.then(entry.result)
        except BaseException as exc:  # noqa: BLE001 - handed to every waiter, never lost
            if isinstance(exc, rawdb.Error):
                rawdb.discard(self.url)
            else:
                log.exception("group commit batch of %d failed", len(batch))
            for entry in batch:
                entry.error = exc
                entry.done.set()
            return
        self.batches += 1
        self.writes += len(batch)
        actions: dict[Hashable, Callable[[], object]] = {}
        for entry in batch:
            if entry.after is not None:
                actions.setdefault(*entry.after)
        for action in actions.values():
            try:
                action()
            except Exception:  # the rows are committed; the sweeper finds what a kick missed
                log.exception("after-commit action failed")
        for entry in batch:
            entry.done.set()


def _nothing(_result: object) -> None:
    return None


_writers: dict[tuple[int, str], Writer] = {}
_lock = threading.Lock()


def writer(url: str) -> Writer:
    """This process's writer for ``url`` (started on first use, again after a fork)."""
    key = (os.getpid(), url)
    found = _writers.get(key)
    if found is None:
        with _lock:
            found = _writers.get(key)
            if found is None:
                found = _writers[key] = Writer(url)
    return found
