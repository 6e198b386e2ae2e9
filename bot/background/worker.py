"""`yuchi worker`'s process: an rq worker that outlives Redis outages (it waits, reconnects with
backoff and goes on), keeps the heartbeat of the job it runs short so that a killed worker's job
is queued again within seconds (queue.recover_abandoned), and whose scheduler process stops
with it, even when it is SIGKILLed."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from typing import Any

from rq import SimpleWorker, Worker
from rq.scheduler import RQScheduler
from rq.worker import WorkerStatus

from bot.background.sweeper import Sweeper
from bot.core import queue
from bot.core.config import Settings

log = logging.getLogger(__name__)

BEAT = 3.0  # s: how often a running job's heartbeat is renewed (see queue.LIVENESS_TTL)
# s: waiting for Redis to come back. The cap is short: once Redis is back, every worker is
# serving again within a few seconds (a 30 s cap left whole lanes idle for half a minute).
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 5.0


class Backoff:
    """Exponential waits, reset once things work again."""

    def __init__(self) -> None:
        self.next = BACKOFF_FIRST

    def wait(self, stopping: threading.Event | None = None) -> float:
        seconds = self.next
        self.next = min(self.next * 2, BACKOFF_MAX)
        if stopping is None:
            time.sleep(seconds)
        else:
            stopping.wait(seconds)
        return seconds

    def reset(self) -> None:
        self.next = BACKOFF_FIRST


def _stop_with_parent() -> None:
    """In a forked child: SIGTERM ourselves as soon as the parent is gone (killed or not)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="stop-with-worker", daemon=True).start()


class Scheduler(RQScheduler):
    """rq's scheduler process (it moves due ``enqueue_at`` jobs to their queue), which stops
    when its worker is gone and waits out a Redis outage instead of exiting."""

    def work(self) -> None:
        _stop_with_parent()
        backoff = Backoff()
        while True:
            try:
                super().work()
                return
            except queue.REDIS_ERRORS as exc:
                if self._stop_requested:
                    return  # stopping while Redis is away: nothing to release
                log.warning("scheduler: Redis unreachable (%s); retrying", exc)
                backoff.wait()


class PromptUnsubscribe:
    """rq's teardown, without a 60 s hang. rq listens for commands on a pub/sub thread that
    reads with a 60 s timeout, and at teardown unsubscribes, then stops the thread. When the
    thread handles the unsubscribe reply before the stop, it loops and waits up to 60 s for a
    new subscription, and redis-py 8's ``stop()`` joins it: every so often a burst worker (a
    test, a ``yuchi worker --burst``) or a stopping worker took a minute to return, most often
    on a busy machine. Stop first, then unsubscribe: the reply ends the thread's read, and it
    sees the stop."""

    pubsub: Any
    pubsub_thread: Any

    def unsubscribe(self) -> None:
        thread = self.pubsub_thread
        if not thread:
            return
        try:
            thread.stop(timeout=0)  # redis-py 8: clear the flag, do not wait yet
        except TypeError:  # redis-py < 8: stop() clears the flag and does not wait
            thread.stop()
        if thread.is_alive():
            # A message read meanwhile may end the thread first; it closes the connection
            # then, and the unsubscribe has nothing left to say.
            with contextlib.suppress(*queue.REDIS_ERRORS):
                self.pubsub.unsubscribe()
            thread.join(timeout=1)
        self.pubsub.close()


class BurstWorker(PromptUnsubscribe, SimpleWorker):
    """rq's SimpleWorker for processing what is queued in this process (tests, benches)."""


class Liveness(PromptUnsubscribe):
    """What both worker classes add to rq's: a short heartbeat for the running job, a stop
    request that the reconnect loop sees, and our scheduler."""

    stopping: threading.Event
    running: tuple[Any, Any] | None = None  # (job, execution) while a job runs
    max_connection_wait_time = BACKOFF_MAX  # rq's own wait for Redis while idle (default 60 s)

    def get_heartbeat_ttl(self, job: Any, working_time: float = 0.0) -> int:
        return queue.LIVENESS_TTL

    def request_stop(self, signum: int, frame: Any) -> None:
        self.stopping.set()
        super().request_stop(signum, frame)

    def _start_scheduler(
        self, burst: bool = False, logging_level: str | None = "INFO", *args: Any
    ) -> None:
        """rq's, with our scheduler class."""
        self.scheduler = Scheduler(
            self.queues,
            connection=self.connection,
            logging_level=logging_level if logging_level is not None else self.log.level,
            serializer=self.serializer,
        )
        self.scheduler.acquire_locks()
        if not self.scheduler.acquired_locks:
            return
        if not burst:
            self.scheduler.start()
            return
        try:
            self.scheduler.register_birth()
            self.scheduler.enqueue_scheduled_jobs()
        finally:
            self.scheduler.release_locks()
            self.scheduler.register_death()


class InProcessWorker(Liveness, SimpleWorker):
    """Runs each job in the worker process (our jobs are short DB and HTTP calls: about a
    millisecond a job instead of ten for a fork); the Heartbeat thread renews the job's
    heartbeat."""

    def execute_job(self, job: Any, queue_: Any) -> None:
        execution = self.prepare_execution(job)
        self.running = (job, execution)
        try:
            self.perform_job(job, queue_, execution)
        finally:
            self.running = None
        self.set_state(WorkerStatus.IDLE)


class ForkingWorker(Liveness, Worker):
    """rq's default: each job in a forked child, whose heartbeat the worker renews."""


class Heartbeat(threading.Thread):
    """Every BEAT seconds: renew the running job's heartbeat; once Redis has answered for a
    whole LIVENESS_TTL, queue again the jobs of workers that died (their heartbeat expired) and
    have the sweeper look at once for what else they left (a drain's answers being sent); and
    when Redis turns out to have started empty, have the sweeper sweep at once."""

    def __init__(self, settings: Settings, sweeper: Sweeper) -> None:
        super().__init__(name="yuchi-heartbeat", daemon=True)
        self.settings, self.sweeper = settings, sweeper
        self.worker: Liveness | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        answering_since: float | None = None
        while not self.stopping.wait(BEAT):
            try:
                w = self.worker
                running = w.running if w is not None else None
                if running is not None:
                    w.maintain_heartbeats(*running)
                if queue.started_empty(self.settings):
                    log.warning("Redis started empty: sweeping the database for lost jobs now")
                    self.sweeper.redis_emptied()
                now = time.monotonic()
                answering_since = answering_since or now
                # Right after an outage, live workers have not renewed their heartbeats yet.
                if now - answering_since >= queue.LIVENESS_TTL and queue.recover_abandoned(
                    self.settings
                ):
                    self.sweeper.sweep_now()
            except queue.REDIS_ERRORS:
                answering_since = None
            except Exception:
                log.exception("heartbeat failed")


def run(settings: Settings, burst: bool = False, fork: bool = False, lane: str = "all") -> int:
    """Serve the lane's queues until asked to stop (or, ``burst``, until they are empty).
    Whenever rq's loop ends for another reason (Redis went away during a job, and rq's own
    bookkeeping raised), wait for Redis with backoff and start a fresh rq worker."""
    stopping = threading.Event()
    if not burst:  # a drain may wait a moment for the next row while these queues are empty
        queue.LINGER_QUEUES = tuple(q.name for q in queue.lane_queues(settings, lane))
    sweeper = Sweeper(settings)
    heartbeat = Heartbeat(settings, sweeper)
    sweeper.start()
    heartbeat.start()
    backoff = Backoff()
    try:
        while not stopping.is_set():
            cls = ForkingWorker if fork else InProcessWorker
            w = cls(
                queue.lane_queues(settings, lane),
                connection=queue.get_redis(settings),
                job_monitoring_interval=int(BEAT),
            )
            w.stopping = stopping
            heartbeat.worker = w
            try:
                w.work(
                    with_scheduler=True,
                    burst=burst,
                    logging_level=settings.log_level,
                )
                if burst:
                    return 0
            except queue.REDIS_ERRORS as exc:
                log.warning("worker: Redis unreachable (%s)", exc)
            heartbeat.worker = None
            if stopping.is_set():
                break
            # rq's handlers are still installed: make a stop request end the wait.
            signal.signal(signal.SIGTERM, lambda *_: stopping.set())
            signal.signal(signal.SIGINT, lambda *_: stopping.set())
            waited = backoff.wait(stopping)
            while not stopping.is_set() and not _redis_answers(settings):
                waited += backoff.wait(stopping)
            backoff.reset()
            if not stopping.is_set():
                log.warning("worker: reconnected to Redis after %.1f s; serving again", waited)
    finally:
        heartbeat.stopping.set()
        sweeper.stop()
    return 0


def _redis_answers(settings: Settings) -> bool:
    try:
        return bool(queue.get_redis(settings).ping())
    except queue.REDIS_ERRORS:
        return False
