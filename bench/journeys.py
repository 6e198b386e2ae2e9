"""Journey benchmark: 100,000 contacts in a 5-step journey whose waits come due in the same
minute, on PostgreSQL, with real rq workers sending through the WeChat simulator.

    .venv/bin/python bench/journeys.py [--contacts N] [--workers K] [--quick] [--keep]

Creates the database in DATABASE_URL (default
postgresql+psycopg://postgres@127.0.0.1:5432/bench_journeys; dropped first if it exists),
flushes the Redis DB in REDIS_URL (default redis://127.0.0.1:6379/5) and migrates with
bot.core.db.upgrade. Publishes two journeys (a Journey row, and a journey_version row when that
table exists):

  bench_5step  trigger → wait 1h → send → wait (--second-wait) → send
  bench_reply  trigger → wait for oa.text (timeout 1d) → send

Seeds N followers (COPY) waiting at the first wait of bench_5step, due within one minute at T0
(--spread), with their wake jobs scheduled the way bot.automation.wake_jobs does it, and
E followers waiting in bench_reply. Runs the simulator (`yuchi sim`), the web server
(`yuchi serve`) and K rq workers (what `yuchi worker` runs: SimpleWorker, scheduler,
sweeper; each job function timed). From T0 the simulator sends signed text callbacks from the
E followers at --callback-rate while the wakes are processed. Then it reports, from the
database and the simulator: steps/s, the lateness of the waits (p50/p99), event→send latency
(p50/p99, idle and under load), duplicates and lost steps. Finally it simulates the cron model
(a trigger pass every minute, 100 contacts per batch) with the per-contact cost measured here
in one process with Yuchi's own batching, and prints both, each measured when the message is
delivered. Drops the database and flushes Redis at the end (unless
--keep). See bench/README.md.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import dataclasses
import heapq
import json
import math
import os
import platform
import random
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.broadcast import _code_version  # noqa: E402
from bench.scoring import (  # noqa: E402  (database handling shared with the scoring bench)
    _safe,
    create_database,
    drop_database,
    raw_connection,
)
from bench.webhook import (  # noqa: E402  (process handling shared with the webhook bench)
    Processes,
    _cpu_model,
    _proc_table,
    free_port,
    wait_healthy,
)

DEFAULT_DB = "postgresql+psycopg://postgres@127.0.0.1:5432/bench_journeys"
DEFAULT_REDIS = "redis://127.0.0.1:6379/5"
# Fixed bench credentials, given to Yuchi and the simulator alike (never a real account's).
BENCH_ENV = {
    "WECHAT_OA_APPID": "wxbenchjourneys001",
    "WECHAT_OA_SECRET": "bench-oa-secret",
    "WECHAT_OA_TOKEN": "yuchibenchtoken",
    "WECHAT_OA_AES_KEY": "Yuchi0Bench0Key0abcdefghijklmnopqrstuvwxyz0",
    "WECOM_CORP_ID": "wwbenchcorp000001",
    "WECOM_AGENT_ID": "1000002",
    "WECOM_SECRET": "bench-wecom-secret",
    "WECOM_TOKEN": "yuchibenchwecom",
    "WECOM_AES_KEY": "Yuchi0Bench0WeCom0Key0abcdefghijklmnopqrstu",
    "YUCHI_API_TOKEN": "bench-api-token",
    "YUCHI_SECRET_KEY": "bench-secret-key",
}
FIRST_WAIT = timedelta(hours=1)  # the seeded contacts entered one hour before T0
TEXT_1 = "【鱼池】第一条：您关注一小时了，这是为您准备的入门指南。"
TEXT_2 = "【鱼池】第二条：入门指南看完了吗？回复「演示」预约一次线上演示。"
TEXT_REPLY = "【鱼池】收到您的消息，顾问马上联系您。"
TEXT_IN = "你好，想了解一下你们的产品"
INTERACTED_AGO = 3600.0  # seconds: every follower is inside the 48-hour window
SIM_CHUNK = 5000
IDLE_CALLBACKS = 20
SEEDED_TABLES = ("contact", "identity", "event", "enrollment", "step_run", "journey")
WATCH_EVERY = 3.0  # s between the progress counts (each scans step_run and message once)
TARGET_LATENESS = 2.0  # s, p99: a wait fires within 2 s of its due time
TARGET_EVENT = 1.0  # s, p99: an event leads to the resulting send within 1 s, under load
CRON_PERIOD = 60.0
CRON_BATCH = 100
CRON_PHASES = 12  # the cron's minute tick against T0: 0, 5, 10, … 55 s; the median is shown
SEED = 20261126


def say(message: str = "") -> None:
    print(message, flush=True)


def _n(x: float) -> str:
    return f"{x:,.0f}"


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (nan when empty)."""
    if not values:
        return float("nan")
    return values[max(0, min(len(values) - 1, math.ceil(q / 100 * len(values)) - 1))]


def ratio(a: float, b: float) -> float:
    return a / b if b and b == b and a == a else float("nan")


def _s(x: float) -> str:
    """Seconds, with the precision that matters at that size."""
    if x != x:  # nan
        return "–"
    if abs(x) < 10:
        return f"{x:.3f} s"
    if abs(x) < 100:
        return f"{x:.1f} s"
    return f"{x:,.0f} s"


def openid_of(cid: int) -> str:
    return f"oBenchJourney{cid:015d}"


# --- the journeys ----------------------------------------------------------------------------


def five_step(second_wait: float) -> dict[str, Any]:
    return {
        "id": "bench_5step",
        "name": "基准：关注后两次触达",
        "version": 1,
        "timezone": "Asia/Shanghai",
        "steps": [
            {"id": "start", "type": "trigger", "event": "oa.subscribe", "next": "w1"},
            {"id": "w1", "type": "wait", "duration": int(FIRST_WAIT.total_seconds()), "next": "s1"},
            {
                "id": "s1",
                "type": "action",
                "do": "send",
                "kind": "text",
                "payload": {"content": TEXT_1},
                "next": "w2",
            },
            {"id": "w2", "type": "wait", "duration": second_wait, "next": "s2"},
            {
                "id": "s2",
                "type": "action",
                "do": "send",
                "kind": "text",
                "payload": {"content": TEXT_2},
            },
        ],
    }


def wait_for_reply() -> dict[str, Any]:
    return {
        "id": "bench_reply",
        "name": "基准：等待回复",
        "version": 1,
        "timezone": "Asia/Shanghai",
        "steps": [
            {"id": "start", "type": "trigger", "event": "oa.subscribe", "next": "wait_reply"},
            {
                "id": "wait_reply",
                "type": "wait",
                "event": "oa.text",
                "timeout": "1d",
                "timeout_next": "no_reply",
                "next": "answer",
            },
            {
                "id": "answer",
                "type": "action",
                "do": "send",
                "kind": "text",
                "payload": {"content": TEXT_REPLY},
            },
            {"id": "no_reply", "type": "action", "do": "exit", "reason": "no reply"},
        ],
    }


@dataclasses.dataclass
class Seeded:
    """What the runner would have stored when a contact entered: its state (as JSON, with a
    placeholder wake_at) and the commands of that first call (one step_run row each)."""

    journey_id: int
    entered: datetime
    state: Any  # journeys.State
    commands: list[Any]
    wake_visit: int

    def entered_for(self, due: datetime) -> datetime:
        """When a contact whose wait is due at ``due`` entered."""
        return due - (self.state.wake_at - self.entered)


def enter(journey_id: int, definition: dict[str, Any], at: datetime) -> Seeded:
    """Run the engine's start once, as the runner does on the trigger event."""
    import journeys
    from journeys import commands as c

    d = journeys.check(definition)
    state, cmds = journeys.start(d, journeys.Event("oa.subscribe", {}, at), at, journeys.Contact(0))
    if state.status != "waiting" or state.wake_at is None:
        raise RuntimeError(f"{definition['id']}: expected a waiting state, got {state}")
    [schedule] = [cmd for cmd in cmds if isinstance(cmd, c.Schedule)]
    return Seeded(journey_id, at, state, cmds, schedule.visit)


def insert_journey(url: str, definition: dict[str, Any], now: datetime) -> int:
    """A published journey: a Journey row and, when the table exists (journey versions), its
    journey_version row. Reflected, so it works before and after that migration."""
    import sqlalchemy as sa

    from bot.core.db import normalize_url

    engine = sa.create_engine(normalize_url(url))
    try:
        with engine.begin() as conn:
            meta = sa.MetaData()
            journey = sa.Table("journey", meta, autoload_with=conn)
            jid = conn.execute(
                sa.insert(journey)
                .values(
                    name=definition["name"],
                    version=1,
                    definition=definition,
                    status="published",
                    published_at=now,
                    created_at=now,
                )
                .returning(journey.c.id)
            ).scalar_one()
            if sa.inspect(conn).has_table("journey_version"):
                versions = sa.Table("journey_version", meta, autoload_with=conn)
                conn.execute(
                    sa.insert(versions).values(
                        journey_id=jid, version=1, definition=definition, published_at=now
                    )
                )
    finally:
        engine.dispose()
    return jid


def has_versions(url: str) -> bool:
    import sqlalchemy as sa

    from bot.core.db import normalize_url

    engine = sa.create_engine(normalize_url(url))
    try:
        return sa.inspect(engine).has_table("journey_version")
    finally:
        engine.dispose()


# --- seeding ---------------------------------------------------------------------------------


def seed_contacts(url: str, ids: range, appid: str, now: datetime) -> None:
    """Followers who interacted an hour ago, each with the oa.subscribe event that made them
    enter (event id = contact id)."""
    ago = now - timedelta(seconds=INTERACTED_AGO)
    joined = now - FIRST_WAIT - timedelta(minutes=1)
    with raw_connection(url) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY contact (id, subscribed, subscribed_at, first_seen_at, last_seen_at, "
            "last_interaction_at, created_at, stage, stage_manual, score) FROM STDIN"
        ) as copy:
            for cid in ids:
                copy.write_row(
                    (cid, True, joined, joined, ago, ago, joined, "subscriber", False, 0)
                )
        with cur.copy(
            "COPY identity (contact_id, kind, app_id, value, created_at) FROM STDIN"
        ) as copy:
            for cid in ids:
                copy.write_row((cid, "openid", appid, openid_of(cid), joined))
        with cur.copy(
            "COPY event (id, contact_id, type, source, properties, occurred_at, received_at, "
            "dedupe_key, processed_at) FROM STDIN"
        ) as copy:
            for cid in ids:
                key = f"oa:{appid}:sub:{cid}"
                copy.write_row((cid, cid, "oa.subscribe", "oa", "{}", joined, joined, key, joined))
        cur.execute("SELECT setval('contact_id_seq', (SELECT max(id) FROM contact))")
        cur.execute("SELECT setval('event_id_seq', (SELECT max(id) FROM event))")
        conn.commit()


def seed_enrollments(url: str, seeded: Seeded, due: dict[int, datetime]) -> None:
    """Enrollment id = contact id, waiting as the engine left it, wake_at = due[cid]; plus the
    step_run rows of the entering call. The runner's own state_to_json writes the state."""
    from bot.automation.state import state_to_json

    with raw_connection(url) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY enrollment (id, journey_id, version, contact_id, status, step, state, wake_at, "
            "start_event_id, last_event_id, started_at) FROM STDIN"
        ) as copy:
            for cid, at in due.items():
                entered = seeded.entered_for(at)
                state = dataclasses.replace(seeded.state, wake_at=at)
                copy.write_row(
                    (
                        cid,
                        seeded.journey_id,
                        1,
                        cid,
                        state.status,
                        state.step,
                        json.dumps(state_to_json(state), ensure_ascii=False),
                        at,
                        cid,
                        cid,
                        entered,
                    )
                )
        with cur.copy(
            "COPY step_run (enrollment_id, step, visit, idx, kind, created_at) FROM STDIN"
        ) as copy:
            for cid, at in due.items():
                entered = seeded.entered_for(at)
                for pos, cmd in enumerate(seeded.commands):
                    copy.write_row((cid, cmd.step, cmd.visit, pos, type(cmd).__name__, entered))
        cur.execute("SELECT setval('enrollment_id_seq', (SELECT max(id) FROM enrollment))")
        conn.commit()


def seed_simulator(sim_base: str, ids: range) -> None:
    import requests

    for start in range(0, len(ids), SIM_CHUNK):
        users = [
            {"openid": openid_of(cid), "subscribe": True, "last_interaction_ago": INTERACTED_AGO}
            for cid in ids[start : start + SIM_CHUNK]
        ]
        resp = requests.post(f"{sim_base}/_sim/users", json=users, timeout=120)
        if resp.status_code != 200 or resp.json().get("upserted") != len(users):
            raise RuntimeError(
                f"seeding the simulator failed: {resp.status_code} {resp.text[:200]}"
            )


def schedule_wakes(settings: Any, seeded: Seeded, due: dict[int, datetime]) -> str:
    """The wake jobs, made the way the runner makes them (one job per second that comes due:
    ``bot.background.jobs.wake_due`` wakes every enrollment due by then); returns how, for the
    report."""
    from bot.automation import wake_jobs as jr

    seconds = sorted({math.ceil(at.timestamp()) for at in due.values()})
    if not jr.enqueue_wakes(settings, seconds):
        raise RuntimeError("enqueue_wakes failed (Redis)")
    return f"{_n(len(seconds))} jobs, one per second that comes due (enqueue_wakes)"


# --- the rq workers --------------------------------------------------------------------------

TIMED_JOBS = (
    "wake_due",  # newer runners: every enrollment due by a given second
    "wake_enrollment",  # older runners: one enrollment
    "deliver_message",
    "deliver_messages",
    "drain_outbox",
)


def worker_main(stats_path: str, lane: str = "background") -> None:
    """One worker exactly as `yuchi worker --background|--urgent` runs it (bot.cli.stack.run_worker:
    an rq SimpleWorker with the scheduler, and the sweeper thread), with every job function of
    bot.background.jobs timed. The totals go to ``stats_path`` every second and at exit."""
    from bot.background import jobs
    from bot.cli.stack import run_worker, yield_cpu
    from bot.core.config import load_settings

    stats: dict[str, list[float]] = {}
    running: dict[str, float] = {}  # the job in progress: name -> start
    lock = threading.Lock()

    def timed(name: str, fn: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            with lock:
                running[name] = t
            out = None
            try:
                out = fn(*args, **kwargs)
                return out
            finally:
                spent = time.perf_counter() - t
                with lock:
                    running.pop(name, None)
                    s = stats.setdefault(name, [0, 0.0, 0])
                    s[0] += 1
                    s[1] += spent
                    if isinstance(out, int):
                        s[2] += out  # drain_outbox: events processed
                    elif isinstance(out, dict):
                        s[2] += int(out.get("woken", 0))  # wake_due: enrollments woken

        run.__name__, run.__qualname__, run.__module__ = fn.__name__, fn.__qualname__, fn.__module__
        return run

    for name in TIMED_JOBS:
        if hasattr(jobs, name):
            setattr(jobs, name, timed(name, getattr(jobs, name)))

    def dump() -> None:
        with lock:  # a job still running counts with its time so far (not yet as a call)
            now = time.perf_counter()
            data = {k: list(v) for k, v in stats.items()}
            for name, t in running.items():
                data.setdefault(name, [0, 0.0, 0])[1] += now - t
            data = json.dumps(data)
        tmp = stats_path + ".tmp"
        Path(tmp).write_text(data)
        os.replace(tmp, stats_path)

    def every_second() -> None:
        while True:
            time.sleep(1)
            with contextlib.suppress(OSError):
                dump()

    threading.Thread(target=every_second, daemon=True).start()
    try:
        settings = load_settings()
        yield_cpu(settings, lane)
        run_worker(settings, burst=False, lane=lane)
    finally:
        dump()


def read_worker_stats(paths: list[Path]) -> dict[str, list[float]]:
    total: dict[str, list[float]] = {}
    for p in paths:
        with contextlib.suppress(OSError, ValueError):
            for name, (calls, spent, items) in json.loads(p.read_text()).items():
                t = total.setdefault(name, [0, 0.0, 0])
                t[0] += calls
                t[1] += spent
                t[2] += items
    return total


# --- the stack -------------------------------------------------------------------------------


class Stack:
    """The simulator, the web server and K workers, each in its own session."""

    def __init__(
        self, var_dir: Path, env: dict[str, str], workers: int, web_workers: int, urgent: int
    ):
        from wxsim.control import env_for

        self.var_dir, self.web_workers = var_dir, web_workers
        # the first ``workers``: `yuchi worker --background`; the last ``urgent``: `--urgent`
        self.workers = workers + urgent
        self.urgent = urgent
        self.sim_port, self.port = free_port(), free_port()
        self.sim_base = f"http://127.0.0.1:{self.sim_port}"
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {**env, **env_for(self.sim_base)}
        self.procs = Processes(var_dir)
        self.stats_paths = [var_dir / f"worker{k}.json" for k in range(self.workers)]

    def lane(self, k: int) -> str:
        return "urgent" if k >= self.workers - self.urgent else "background"

    def start_sim(self) -> None:
        sim = self.procs.start(
            "sim",
            [
                sys.executable,
                "-m",
                "bot.cli",
                "sim",
                "--port",
                str(self.sim_port),
                "--callback-base",
                self.base,
            ],
            self.env,
        )
        wait_healthy(f"{self.sim_base}/_sim/health", sim, 60, json_ok=False)

    def start_yuchi(self) -> float:
        t0 = time.monotonic()
        web = self.procs.start(
            "web",
            [
                sys.executable,
                "-m",
                "bot.cli",
                "serve",
                "--port",
                str(self.port),
                "--workers",
                str(self.web_workers),
            ],
            self.env,
        )
        for k, path in enumerate(self.stats_paths):
            code = (
                f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
                f"from bench.journeys import worker_main; "
                f"worker_main({str(path)!r}, {self.lane(k)!r})"
            )
            self.procs.start(f"worker{k}", [sys.executable, "-c", code], self.env)
        wait_healthy(f"{self.base}/healthz", web, 120, json_ok=True)
        deadline = time.monotonic() + 60
        while not all(p.exists() for p in self.stats_paths):  # each worker is up and writing
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError("the workers did not start within 60 s")
            time.sleep(0.2)
        return time.monotonic() - t0

    def check_alive(self) -> None:
        for name, proc in self.procs.started.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with code {proc.returncode}")

    def stop(self, names: list[str]) -> None:
        for name in names:
            if name in self.procs.started and self.procs.started[name].poll() is None:
                self.procs.stop(name)

    def worker_names(self) -> list[str]:
        return [f"worker{k}" for k in range(self.workers)]

    def cpu(self, redis_port: int | None) -> dict[str, float]:
        """CPU seconds so far by part: our processes by name, and the PostgreSQL and Redis
        servers on this machine (every process of theirs, whoever it served)."""
        tick = os.sysconf("SC_CLK_TCK")
        sids = {p.pid: name for name, p in self.procs.started.items()}
        out: dict[str, float] = {}
        for info in _proc_table().values():
            name = sids.get(info["sid"])
            if name is not None:
                part = "rq workers" if name.startswith("worker") else name
            elif info["comm"] == "postgres":
                part = "postgres"
            elif (
                redis_port
                and info["comm"].startswith("redis-server")
                and f":{redis_port}" in info["cmdline"]
            ):
                part = "redis"
            else:
                continue
            out[part] = out.get(part, 0.0) + info["ticks"] / tick
        return out


def redis_port_of(url: str | None) -> int | None:
    from sqlalchemy.engine import make_url

    return (make_url(url).port or 6379) if url and url.startswith("redis") else None


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all CPUs; /proc/stat, not idle/iowait)."""
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


# --- callbacks -------------------------------------------------------------------------------


class Callbacks(threading.Thread):
    """Followers waiting in bench_reply write to the account: the simulator signs, encrypts
    and posts each text callback to Yuchi (POST /_sim/actions/say), at ``rate`` per second
    from ``start_at`` until ``stop`` is set or the followers run out."""

    def __init__(self, sim_base: str, cids: list[int], rate: float, start_at: float):
        super().__init__(name="callbacks", daemon=True)
        self.sim_base, self.cids, self.rate, self.start_at = sim_base, cids, rate, start_at
        self.stop = threading.Event()
        self.sent: dict[int, dict[str, Any]] = {}  # cid -> {t, status, error, ms}
        self._lock = threading.Lock()
        self._local = threading.local()

    def one(self, cid: int) -> None:
        import requests

        http = getattr(self._local, "http", None)
        if http is None:
            http = self._local.http = requests.Session()
        t = time.time()
        row: dict[str, Any] = {"t": t, "status": None, "error": None}
        try:
            resp = http.post(
                f"{self.sim_base}/_sim/actions/say",
                json={"openid": openid_of(cid), "text": TEXT_IN},
                timeout=60,
            )
            data = resp.json()
            row["status"], row["error"] = data.get("status"), data.get("error")
        except (requests.RequestException, ValueError) as exc:
            row["error"] = f"{type(exc).__name__}: {exc}"
        row["ms"] = (time.time() - t) * 1000
        with self._lock:
            self.sent[cid] = row

    def run(self) -> None:
        with ThreadPoolExecutor(max_workers=32) as pool:
            for i, cid in enumerate(self.cids):
                at = self.start_at + i / self.rate
                while (wait := at - time.time()) > 0 and not self.stop.is_set():
                    self.stop.wait(min(wait, 0.5))
                if self.stop.is_set():
                    break
                pool.submit(self.one, cid)

    def ok(self) -> dict[int, dict[str, Any]]:
        with self._lock:
            return {c: r for c, r in self.sent.items() if r["status"] == 200 and not r["error"]}


# --- watching the run ------------------------------------------------------------------------


class Watch:
    """Cheap counts, polled while the run goes on (a connection of its own, autocommit)."""

    def __init__(self, url: str, settings: Any, j1: int, n: int):
        from bot.core import queue

        self.conn = raw_connection(url)
        self.conn.autocommit = True
        self.q = queue.get_queue(settings)
        self.j1, self.n = j1, n

    def counts(self) -> dict[str, int]:
        """Three table scans (step_run, message, enrollment) and two small ones: polled every
        WATCH_EVERY s, so the watching costs PostgreSQL little next to what it watches."""
        one = lambda sql, *p: self.conn.execute(sql, p).fetchone()[0]  # noqa: E731
        sends = dict(
            self.conn.execute(
                "SELECT step, count(*) FROM step_run WHERE kind = 'Send' "
                "AND step IN ('s1', 's2', 'answer') GROUP BY step"
            ).fetchall()
        )
        out = {
            "wave1": sends.get("s1", 0),
            "wave2": sends.get("s2", 0),
            "replies": sends.get("answer", 0),
            "done": one(
                "SELECT count(*) FROM enrollment WHERE journey_id = %s AND status = 'done'",
                self.j1,
            ),
            "outbox": one("SELECT count(*) FROM outbox WHERE status = 'pending'"),
            "sent_main": 0,
        }
        for status, count, main in self.conn.execute(
            "SELECT status, count(*), count(*) FILTER (WHERE contact_id <= %s) FROM message "
            "GROUP BY status",
            (self.n,),
        ).fetchall():
            out[f"msg_{status}"] = count
            if status == "sent":
                out["sent_main"] = main
        out["outbox_done"] = one("SELECT count(*) FROM outbox WHERE status = 'done'")
        out["queued_jobs"] = self.q.count
        out["scheduled_jobs"] = self.q.scheduled_job_registry.count
        return out

    def close(self) -> None:
        self.conn.close()


# --- measuring -------------------------------------------------------------------------------


def fetch_inboxes(sim_base: str) -> dict[str, list[tuple[float, str]]]:
    """Every custom message the simulator accepted: openid -> [(arrival time, text)]."""
    import requests

    # customer-service messages and passive replies (an answer in the callback's response)
    resp = requests.get(f"{sim_base}/_sim/inboxes", timeout=300)
    resp.raise_for_status()
    out: dict[str, list[tuple[float, str]]] = {}
    for item in resp.json()["messages"]:
        out.setdefault(item.get("openid", ""), []).append((float(item["at"]), item.get("text")))
    return out


def measure_waits(
    url: str, j1: int, n: int, due1: dict[int, float], second_wait: float
) -> dict[str, Any]:
    """Per contact of bench_5step: when each wake ran (its Send's step_run), when it was due,
    when the message was sent; duplicates and what did not finish."""
    with raw_connection(url) as conn:
        runs = conn.execute(
            "SELECT e.contact_id, r.step, r.kind, extract(epoch FROM r.created_at)::float8 "
            "FROM step_run r JOIN enrollment e ON e.id = r.enrollment_id WHERE e.journey_id = %s",
            (j1,),
        ).fetchall()
        messages = conn.execute(
            "SELECT contact_id, idempotency_key, status, extract(epoch FROM created_at)::float8, "
            "extract(epoch FROM sent_at)::float8 FROM message WHERE contact_id <= %s",
            (n,),
        ).fetchall()
        finals = conn.execute(
            "SELECT status, step, count(*) FROM enrollment WHERE journey_id = %s GROUP BY 1, 2",
            (j1,),
        ).fetchall()
    per: dict[tuple[int, str, str], list[float]] = {}
    for cid, step, kind, at in runs:
        per.setdefault((cid, step, kind), []).append(at)
    dup_runs = sum(1 for v in per.values() if len(v) > 1)
    ran1 = {c: per[(c, "s1", "Send")][0] for c in range(1, n + 1) if (c, "s1", "Send") in per}
    sched2 = {c: per[(c, "w2", "Schedule")][0] for c in ran1 if (c, "w2", "Schedule") in per}
    ran2 = {c: per[(c, "s2", "Send")][0] for c in range(1, n + 1) if (c, "s2", "Send") in per}
    due2 = {c: t + second_wait for c, t in sched2.items()}
    sent: dict[tuple[int, str], list[tuple[str, float | None]]] = {}
    created: dict[tuple[int, str], float] = {}
    for cid, key, status, created_at, sent_at in messages:
        step = (key or "").split(":")[1] if key and key.count(":") >= 3 else "?"
        sent.setdefault((cid, step), []).append((status, sent_at))
        created.setdefault((cid, step), created_at)
    dup_msgs = sum(1 for v in sent.values() if len(v) > 1)
    # A batched wake (wake_due) stamps one ``now`` on a whole batch's step_runs; the message
    # row is written as each contact's send runs: take the later of the two.
    for target, step in ((ran1, "s1"), (ran2, "s2")):
        for cid in target:
            if (cid, step) in created:
                target[cid] = max(target[cid], created[(cid, step)])
    sent1 = {c: v[0][1] for (c, s), v in sent.items() if s == "s1" and v[0][0] == "sent"}
    sent2 = {c: v[0][1] for (c, s), v in sent.items() if s == "s2" and v[0][0] == "sent"}
    statuses = Counter(status for _c, _k, status, _a, _b in messages)
    return {
        "ran1": ran1,
        "ran2": ran2,
        "due1": due1,
        "due2": due2,
        "sent1": sent1,
        "sent2": sent2,
        "dup_runs": dup_runs,
        "dup_msgs": dup_msgs,
        "statuses": dict(statuses),
        "finals": {f"{s}/{st}": c for s, st, c in finals},
    }


def measure_replies(
    url: str, cids: list[int], sent: dict[int, dict[str, Any]], inbox: dict[str, list]
) -> dict[str, Any]:
    """For each callback answered with 200: callback → event stored → outbox done → message
    created → sent (Yuchi's clock) → arrival at the simulator (the platform's clock, the same
    machine). Latency = arrival − the moment the callback was asked for."""
    if not cids:
        return {"rows": {}, "dups": 0}
    with raw_connection(url) as conn:
        events = conn.execute(
            "SELECT e.contact_id, extract(epoch FROM e.received_at)::float8, "
            "extract(epoch FROM o.done_at)::float8 FROM event e "
            "LEFT JOIN outbox o ON o.event_id = e.id "
            "WHERE e.type = 'oa.text' AND e.contact_id = ANY(%s)",
            (cids,),
        ).fetchall()
        messages = conn.execute(
            "SELECT contact_id, status, extract(epoch FROM created_at)::float8, "
            "extract(epoch FROM sent_at)::float8, sent_kind FROM message "
            "WHERE contact_id = ANY(%s)",
            (cids,),
        ).fetchall()
    ev = {c: (rec, done) for c, rec, done in events}
    msg: dict[int, list] = {}
    for c, status, created, sent_at, kind in messages:
        msg.setdefault(c, []).append((status, created, sent_at, kind))
    rows: dict[int, dict[str, Any]] = {}
    dups = 0
    for c in cids:
        arrivals = [t for t, text in inbox.get(openid_of(c), []) if text == TEXT_REPLY]
        dups += len(arrivals) > 1 or len(msg.get(c, [])) > 1
        rec, done = ev.get(c, (None, None))
        m = (msg.get(c) or [(None, None, None, None)])[0]
        rows[c] = {
            "t": sent[c]["t"],
            "stored": rec,
            "outbox_done": done,
            "created": m[1],
            "status": m[0],
            "sent": m[2],
            "arrived": min(arrivals) if arrivals else None,
            "passive": m[3] == "passive",
        }
    return {"rows": rows, "dups": dups}


def wait_replies(watch: Watch, cids: list[int], timeout: float) -> bool:
    """Until every one of these contacts has a sent reply (or the timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = watch.conn.execute(
            "SELECT count(*) FROM message WHERE contact_id = ANY(%s) AND status = 'sent'", (cids,)
        ).fetchone()[0]
        if done >= len(cids):
            return True
        time.sleep(0.2)
    return False


# --- the cron model (a simulation) -----------------------------------------------------------


def calibrate(
    settings: Any, url: str, seeded: Seeded, cids: list[int], sim_base: str
) -> tuple[float, int]:
    """The cost of one contact's wait firing, in ONE process with nothing else running (the
    workers are stopped), batched the way Yuchi's jobs batch: the due waits woken
    ``CRON_BATCH`` per transaction (wakes.wake_due), their messages delivered
    ``DELIVERY_BATCH`` per call (delivery.deliver_batch), the msg.sent events
    processed ``jobs.BATCH`` at a time (jobs.process_batch). What a cron pass does per contact
    up to the message delivered, done by Yuchi's own code. Returns (s per contact, n)."""
    from bot.automation import wakes as journey_wakes
    from bot.automation.tx import DELIVERY_BATCH
    from bot.background import jobs
    from bot.messaging import delivery

    now = datetime.now(UTC) - timedelta(seconds=1)
    warm, rest = cids[: min(5, len(cids) // 4)], cids[min(5, len(cids) // 4) :]
    with raw_connection(url) as conn:
        conn.autocommit = True

        def ids(sql: str, contacts: list[int]) -> list[int]:
            return [r[0] for r in conn.execute(sql, (contacts,)).fetchall()]

        queued = (
            "SELECT id FROM message WHERE contact_id = ANY(%s) AND status = 'queued' ORDER BY id"
        )
        pending = (
            "SELECT o.id FROM outbox o JOIN event e ON e.id = o.event_id "
            "WHERE e.contact_id = ANY(%s) AND o.status = 'pending' ORDER BY o.id"
        )

        def one_pass(contacts: list[int]) -> int:
            journey_wakes.wake_due(settings, batch=CRON_BATCH)
            messages = ids(queued, contacts)
            for b in range(0, len(messages), DELIVERY_BATCH):
                chunk = messages[b : b + DELIVERY_BATCH]
                while chunk:
                    _counts, chunk = delivery.deliver_batch(settings, chunk)
            events = ids(pending, contacts)
            for b in range(0, len(events), jobs.BATCH):
                jobs.process_batch(settings, events[b : b + jobs.BATCH])
            return len(messages)

        # the first few warm the connections, caches and the token
        seed_enrollments(url, seeded, {c: now for c in warm})
        conn.execute("ANALYZE enrollment")
        one_pass(warm)
        seed_enrollments(url, seeded, {c: now for c in rest})
        conn.execute("ANALYZE enrollment")
        t = time.perf_counter()
        done = one_pass(rest)
        spent = time.perf_counter() - t
    return spent / max(1, len(rest)), done


def _next_tick(t: float, phase: float, period: float) -> float:
    """The first cron tick at or after ``t``."""
    return phase + period * math.ceil((t - phase) / period)


def simulate_cron(
    due1: list[float], second_wait: float, cost: float, phase: float, period: float, batch: int
) -> dict[str, Any]:
    """One process, woken by cron every ``period`` s (ticks at ``phase`` + k·period). A pass
    takes the contacts whose wait is due at its start, in batches of ``batch``; a batch takes
    batch × cost and its contacts' steps run when it ends (the send, and the next wait is
    scheduled from then). A pass still running at the next tick makes cron skip that tick
    (the lock), so the next pass starts at the first tick after it ends."""
    heap = [(d, 1) for d in due1]
    heapq.heapify(heap)
    late: dict[int, list[float]] = {1: [], 2: []}
    first = min(due1)
    tick = _next_tick(first, phase, period)
    end = tick
    while heap:
        if heap[0][0] > tick:
            tick = _next_tick(heap[0][0], phase, period)
            continue
        taken = []
        while heap and heap[0][0] <= tick:
            taken.append(heapq.heappop(heap))
        t = tick
        for b in range(0, len(taken), batch):
            chunk = taken[b : b + batch]
            t += len(chunk) * cost
            for due, wave in chunk:
                late[wave].append(t - due)
                if wave == 1:
                    heapq.heappush(heap, (t + second_wait, 2))
        end = t
        following = _next_tick(t, phase, period)
        tick = following if following > tick else tick + period
    return {"late1": sorted(late[1]), "late2": sorted(late[2]), "end": end, "start": first}


def cron_model(due1: list[float], second_wait: float, cost: float) -> dict[str, Any]:
    """The median over CRON_PHASES positions of the cron's minute tick against T0."""
    runs = []
    base = min(due1)
    for k in range(CRON_PHASES):
        phase = base + k * CRON_PERIOD / CRON_PHASES
        runs.append(simulate_cron(due1, second_wait, cost, phase, CRON_PERIOD, CRON_BATCH))
    both = lambda r: sorted(r["late1"] + r["late2"])  # noqa: E731
    med = statistics.median
    return {
        "p50": med(pct(both(r), 50) for r in runs),
        "p99": med(pct(both(r), 99) for r in runs),
        "max": med(both(r)[-1] for r in runs),
        "p50_1": med(pct(r["late1"], 50) for r in runs),
        "p99_1": med(pct(r["late1"], 99) for r in runs),
        "p50_2": med(pct(r["late2"], 50) for r in runs),
        "p99_2": med(pct(r["late2"], 99) for r in runs),
        "makespan": med(r["end"] - r["start"] for r in runs),
        "steps": 4 * len(due1),
    }


# --- main ------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--contacts", type=int, default=None, help="in the 5-step journey (default 100,000)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 2,000 contacts unless --contacts"
    )
    parser.add_argument("--workers", type=int, default=4, help="rq worker processes (K)")
    parser.add_argument(
        "--urgent-workers",
        type=int,
        default=None,
        help="workers serving only the urgent queue (`yuchi worker --urgent`); default one per "
        "outbox drain, as `yuchi up` (2 on PostgreSQL)",
    )
    parser.add_argument(
        "--web-workers",
        type=int,
        default=2 * (os.cpu_count() or 1) + 1,
        help="gunicorn workers (default 2×CPU+1, as `yuchi serve`)",
    )
    parser.add_argument(
        "--spread",
        type=float,
        default=60.0,
        help="due times spread over this many s (0: one instant)",
    )
    parser.add_argument(
        "--second-wait", type=float, default=60.0, help="the second wait's duration, s"
    )
    parser.add_argument(
        "--callback-rate", type=float, default=20.0, help="text callbacks per second under load"
    )
    parser.add_argument(
        "--event-contacts",
        type=int,
        default=None,
        help="followers waiting for a reply (default contacts/20, at least 300)",
    )
    parser.add_argument("--send-rate", type=float, default=10_000.0, help="YUCHI_SEND_RATE")
    parser.add_argument("--calibrate", type=int, default=200, help="contacts for the cron cost")
    parser.add_argument(
        "--timeout", type=float, default=720.0, help="s from T0 to wait for every step"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database and the logs")
    args = parser.parse_args()
    if args.contacts is None:
        args.contacts = 2000 if args.quick else 100_000
    n = args.contacts
    events_n = args.event_contacts or max(300, n // 20)
    if n < 100 or events_n < IDLE_CALLBACKS + 10 or not 1 <= args.workers <= 32:
        parser.error("--contacts ≥ 100, --event-contacts ≥ 30, --workers 1..32 please")

    url = os.environ.get("DATABASE_URL", DEFAULT_DB)
    redis_url = os.environ.get("REDIS_URL", DEFAULT_REDIS)
    var_dir = Path(tempfile.mkdtemp(prefix="yuchi-bench-journeys-"))
    env = {
        **os.environ,
        **BENCH_ENV,
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "YUCHI_VAR_DIR": str(var_dir),
        "YUCHI_LOG_LEVEL": "WARNING",
        "YUCHI_SEND_RATE": f"{args.send_rate:g}",
        # real time is measured at any hour: Beijing's night would hold every wave's sends
        "YUCHI_QUIET_HOURS": "",
        "PYTHONUNBUFFERED": "1",
    }
    if args.urgent_workers is None:  # one per outbox drain, as `yuchi up` starts them
        from bot.core.config import load_settings

        args.urgent_workers = load_settings(env).drains
    stack = Stack(var_dir, env, args.workers, args.web_workers, args.urgent_workers)
    os.environ.update(stack.env)  # this process too: the setup, the checks and the calibration

    import redis

    from bot.core.config import load_settings

    settings = load_settings()
    rconn = redis.Redis.from_url(redis_url)
    failed, crashed = True, True

    def on_sigterm(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    say("鱼池 Yuchi journey benchmark")
    say(
        f"  machine     {os.cpu_count()} CPUs ({_cpu_model()}), {platform.system()} "
        f"{platform.release()}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    say(f"  python      {platform.python_version()} ({sys.executable})")
    say(f"  code        {_code_version()}")
    create_database(url)
    rconn.flushdb()
    try:
        with raw_connection(url) as conn:
            pg = conn.execute("SHOW server_version").fetchone()[0]
            buffers = conn.execute("SHOW shared_buffers").fetchone()[0]
            autovacuum = conn.execute("SHOW autovacuum").fetchone()[0]
        say(
            f"  postgresql  {pg} (shared_buffers {buffers}, autovacuum {autovacuum}), "
            f"{_safe(url)} (created fresh)"
        )
        say(f"  redis       {rconn.info('server').get('redis_version')}, {redis_url} (flushed)")
        say(
            f"  stack       yuchi sim, yuchi serve ({args.web_workers} gunicorn workers), "
            f"{args.workers} rq workers + {args.urgent_workers} urgent-only, as `yuchi worker "
            "--background|--urgent` runs them (SimpleWorker + scheduler + "
            f"sweeper); YUCHI_SEND_RATE={args.send_rate:g}/s"
        )
        failed = run(args, n, events_n, url, settings, stack)
        crashed = False
    except KeyboardInterrupt:
        say("\ninterrupted; stopping everything")
    except (RuntimeError, SystemExit) as exc:
        say(f"\nFAILED: {type(exc).__name__}: {exc}")
    finally:
        for name in ("web", *stack.worker_names(), "sim"):
            with contextlib.suppress(Exception):
                stack.stop([name])
        left = stack.procs.kill_leftovers()
        say(f"processes left behind: {', '.join(left) if left else 'none'}")
        if crashed:
            for log in stack.procs.logs.values():
                tail = log.read_text(errors="replace").splitlines()[-12:]
                say(f"\n--- last lines of {log} ---")
                say("\n".join(tail))
        with contextlib.suppress(Exception):
            rconn.flushdb()
        if args.keep:
            say(f"kept database {_safe(url)} and {var_dir}")
        else:
            with contextlib.suppress(Exception):
                drop_database(url)
            shutil.rmtree(var_dir, ignore_errors=True)
            say("database dropped, Redis DB flushed")
    return 1 if failed else 0


def run(
    args: argparse.Namespace,
    n: int,
    events_n: int,
    url: str,
    settings: Any,
    stack: Stack,
) -> bool:
    """Everything between start-up and clean-up; True when something failed."""
    from bot.core import db
    from bot.core.models import utcnow

    t_setup = time.monotonic()
    db.upgrade(url)
    now = utcnow()
    j1_def, j2_def = five_step(args.second_wait), wait_for_reply()
    j1 = insert_journey(url, j1_def, now)
    j2 = insert_journey(url, j2_def, now)
    versions = has_versions(url)
    seeded1 = enter(j1, j1_def, now)
    seeded2 = enter(j2, j2_def, now)
    main_ids = range(1, n + 1)
    event_ids = range(n + 1, n + events_n + 1)
    cal_ids = range(n + events_n + 1, n + events_n + args.calibrate + 1)
    every = range(1, n + events_n + args.calibrate + 1)
    say(
        f"\njourneys    bench_5step (id {j1}): trigger → wait {FIRST_WAIT} → send → wait "
        f"{args.second_wait:g} s → send; bench_reply (id {j2}): trigger → wait for oa.text "
        "(timeout 1d) → send"
    )
    say(
        "            stored as Journey rows (published, version 1)"
        + (" + journey_version rows" if versions else " (no journey_version table yet)")
    )
    t = time.monotonic()
    seed_contacts(url, every, settings.oa_appid, now)
    seed_enrollments(url, seeded2, {c: seeded2.state.wake_at for c in event_ids})
    schedule_wakes(settings, seeded2, {c: seeded2.state.wake_at for c in event_ids})
    say(
        f"seeded      {_n(len(every))} followers (COPY: contact, identity, oa.subscribe event; "
        f"{_n(events_n)} of them waiting in bench_reply, their 1-day timeouts scheduled) in "
        f"{time.monotonic() - t:.1f} s"
    )
    stack.start_sim()
    t = time.monotonic()
    seed_simulator(stack.sim_base, every)
    say(f"simulator   {_n(len(every))} followers registered in {time.monotonic() - t:.1f} s")
    took = stack.start_yuchi()
    say(
        f"yuchi       web + {args.workers} workers + {args.urgent_workers} urgent-only up in "
        f"{took:.1f} s"
    )
    watch = Watch(url, settings, j1, n)
    redis_port = redis_port_of(settings.redis_url)

    # Event → send with nothing else to do: a few callbacks, one at a time.
    idle_cids = list(event_ids[:IDLE_CALLBACKS])
    idle = Callbacks(stack.sim_base, idle_cids, 4.0, time.time())
    idle.run()
    wait_replies(watch, list(idle.ok()), 30)
    inbox = fetch_inboxes(stack.sim_base)
    idle_res = measure_replies(url, list(idle.ok()), idle.ok(), inbox)
    idle_lat = sorted(
        r["arrived"] - r["t"] for r in idle_res["rows"].values() if r["arrived"] is not None
    )
    say(
        f"idle        event → send, {len(idle_lat)} of {len(idle_cids)} callbacks one at a "
        f"time: p50 {_s(pct(idle_lat, 50))}, max {_s(idle_lat[-1] if idle_lat else float('nan'))}"
    )

    # Arm: every main contact waiting at w1, due within one minute from T0.
    margin = 10.0 + n * 0.0003
    t0 = time.time() + margin
    rng = random.Random(SEED)
    order = list(main_ids)
    rng.shuffle(order)
    due1 = {
        cid: t0 + (args.spread * i / n if args.spread > 0 else 0.0) for i, cid in enumerate(order)
    }
    due_dt = {c: datetime.fromtimestamp(v, UTC) for c, v in due1.items()}
    t = time.monotonic()
    seed_enrollments(url, seeded1, due_dt)
    with raw_connection(url) as conn:
        conn.autocommit = True
        # Only what was seeded: a table analyzed while empty (message, outbox) would keep a
        # row count of 0, and with autovacuum off (as on this machine) its statistics would
        # never catch up: every lookup by id would then plan a sequential scan.
        conn.execute(f"ANALYZE {', '.join(SEEDED_TABLES)}")
    armed_db = time.monotonic() - t
    t = time.monotonic()
    how = schedule_wakes(settings, seeded1, due_dt)
    armed_redis = time.monotonic() - t
    slack = t0 - time.time()
    say(
        f"armed       {_n(n)} enrollments waiting at w1 (COPY + ANALYZE {armed_db:.1f} s), due "
        f"from T0 over {args.spread:g} s; wake jobs: {how} ({armed_redis:.1f} s); T0 is "
        f"{slack:.1f} s away"
        + ("  ! SETUP RAN PAST T0: lateness includes setup" if slack < 0 else "")
    )
    say(f"setup       {time.monotonic() - t_setup:.0f} s in all")

    # The run: wakes come due; callbacks from T0 at the configured rate.
    load_cids = list(event_ids[IDLE_CALLBACKS:])
    load = Callbacks(stack.sim_base, load_cids, args.callback_rate, t0)
    load.start()
    while time.time() < t0:
        time.sleep(0.05)
    cpu0, busy0 = stack.cpu(redis_port), machine_busy()
    outbox0 = watch.counts()["outbox_done"]
    say(
        f"\nT0          {datetime.fromtimestamp(t0, UTC):%H:%M:%S.%f} UTC: {_n(n)} waits due "
        f"by T0+{args.spread:g} s; callbacks at {args.callback_rate:g}/s from "
        f"{_n(len(load_cids))} followers waiting for a reply"
    )
    say(
        f"{'t':>6}  {'wave 1':>8} {'wave 2':>8} {'msgs sent':>9} {'queued':>8} {'rq queue':>8} "
        f"{'scheduled':>9} {'outbox':>7} {'callbacks':>9} {'replies':>7}"
    )
    timed_out, last_print, peak_queue = False, 0.0, 0
    while True:
        time.sleep(WATCH_EVERY)
        stack.check_alive()
        c = watch.counts()
        peak_queue = max(peak_queue, c["queued_jobs"])
        el = time.time() - t0
        finished = c["done"] >= n and c["sent_main"] >= 2 * n
        if c["wave2"] >= n:
            load.stop.set()  # the load lasts as long as there are wakes to work off
        if el - last_print >= 10 or finished:
            last_print = el
            say(
                f"{el:6.0f}  {c['wave1']:>8} {c['wave2']:>8} {c.get('msg_sent', 0):>9} "
                f"{c.get('msg_queued', 0):>8} {c['queued_jobs']:>8} {c['scheduled_jobs']:>9} "
                f"{c['outbox']:>7} {len(load.sent):>9} {c['replies'] - len(idle.ok()):>7}"
            )
        if finished:
            break
        if el > args.timeout:
            timed_out = True
            say(f"TIMEOUT: {args.timeout:.0f} s after T0, not every step has run; measuring now")
            break
    t_end = time.time()
    cpu1, busy1 = stack.cpu(redis_port), machine_busy()
    stats = read_worker_stats(stack.stats_paths)  # as of now (the files are a second old)
    load.stop.set()
    load.join(timeout=120)
    answered = load.ok()
    if not timed_out:
        wait_replies(watch, list(answered), 60)
    final = watch.counts()
    watch.close()
    # Nothing more may change: stop Yuchi, keep the simulator to read what arrived.
    stack.stop(["web", *stack.worker_names()])
    inbox = fetch_inboxes(stack.sim_base)

    w = measure_waits(url, j1, n, due1, args.second_wait)
    replies = measure_replies(url, list(answered), answered, inbox)
    if timed_out:  # what the workers finished while they were being stopped does not count
        for key in ("ran1", "ran2", "sent1", "sent2"):
            w[key] = {c: v for c, v in w[key].items() if v is not None and v <= t_end}
        w["due2"] = {c: v for c, v in w["due2"].items() if c in w["ran1"]}
        for r in replies["rows"].values():
            if r["arrived"] is not None and r["arrived"] > t_end:
                r["arrived"] = None
        inbox = {o: [(t, x) for t, x in items if t <= t_end] for o, items in inbox.items()}

    # -- lateness and throughput
    late1 = sorted(w["ran1"][c] - due1[c] for c in w["ran1"])
    late2 = sorted(w["ran2"][c] - w["due2"][c] for c in w["ran2"] if c in w["due2"])
    late_all = sorted(late1 + late2)
    send_late = sorted(
        [w["sent1"][c] - due1[c] for c in w["sent1"] if w["sent1"][c]]
        + [w["sent2"][c] - w["due2"][c] for c in w["sent2"] if w["sent2"][c] and c in w["due2"]]
    )
    not_run1 = n - len(w["ran1"])
    not_run2 = n - len(w["ran2"])
    if timed_out:  # censored: what has not run is at least this late
        late_all = sorted(
            late_all
            + [t_end - due1[c] for c in due1 if c not in w["ran1"]]
            + [
                t_end - w["due2"][c]
                for c in w["due2"]
                if c not in w["ran2"] and w["due2"][c] <= t_end  # due, and not run
            ]
        )
    transitions = sorted(list(w["ran1"].values()) + list(w["ran2"].values()))
    steps = 2 * len(transitions)  # each wake: the wait that fired + the send it led to
    span = (transitions[-1] - t0) if transitions else float("nan")
    if timed_out:  # the rate over the whole window, not up to the last step that ran
        span = t_end - t0
    steps_s = steps / span if transitions else 0.0
    wave1_end = max(w["ran1"].values()) if w["ran1"] else t0
    in_wave1 = bisect.bisect_right(transitions, wave1_end)
    steps_s_wave1 = 2 * in_wave1 / max(1e-9, wave1_end - t0)
    sent_times = sorted(
        [v for v in w["sent1"].values() if v] + [v for v in w["sent2"].values() if v]
    )
    msgs_end = t_end if timed_out else (sent_times[-1] if sent_times else t0)
    msgs_s = len(sent_times) / max(1e-9, msgs_end - t0)
    # End to end: every step done, the sends delivered (what the cron model's figures mean).
    finish = max(span, msgs_end - t0)
    # a step is done when its wait fired, or when its send was delivered
    steps_e2e = (len(w["ran1"]) + len(w["ran2"]) + len(sent_times)) / finish

    # -- event → send
    rows = replies["rows"]
    ev_lat = sorted(r["arrived"] - r["t"] for r in rows.values() if r["arrived"] is not None)
    if timed_out:  # censored: a reply that has not arrived is at least this late
        ev_lat = sorted(ev_lat + [t_end - r["t"] for r in rows.values() if r["arrived"] is None])
    passive = [r for r in rows.values() if r["passive"]]
    queued = [r for r in rows.values() if not r["passive"]]
    parts = {
        f"passive replies ({len(passive)}): callback → reply arrived": [
            r["arrived"] - r["t"] for r in passive if r["arrived"]
        ],
        f"sent replies ({len(queued)}): callback → event stored": [
            r["stored"] - r["t"] for r in queued if r["stored"]
        ],
        "  stored → outbox processed (journey advanced)": [
            r["outbox_done"] - r["stored"] for r in queued if r["outbox_done"] and r["stored"]
        ],
        "  processed → arrived at the simulator (delivery)": [
            r["arrived"] - r["outbox_done"] for r in queued if r["arrived"] and r["outbox_done"]
        ],
    }
    cb_errors = Counter(
        (r["error"] or f"HTTP {r['status']}")[:60]
        for r in load.sent.values()
        if r["status"] != 200 or r["error"]
    )

    # -- duplicates and lost, from the database and the simulator
    dup_sim = 0
    lost_sim = 0
    for cid in range(1, n + 1):
        texts = Counter(text for _t, text in inbox.get(openid_of(cid), []))
        dup_sim += (texts[TEXT_1] > 1) + (texts[TEXT_2] > 1)
        lost_sim += (texts[TEXT_1] == 0) + (texts[TEXT_2] == 0)
    not_done = n - w["finals"].get("done/s2", 0)
    reply_lost = sum(1 for r in rows.values() if r["arrived"] is None)
    duplicates = w["dup_runs"] + w["dup_msgs"] + dup_sim + replies["dups"]
    lost = not_done + lost_sim + reply_lost

    # -- the workers: where the time went
    elapsed = t_end - t0
    busy = sum(s[1] for s in stats.values())
    cpu = {k: cpu1.get(k, 0.0) - cpu0.get(k, 0.0) for k in cpu1}
    machine = busy1 - busy0

    # -- the cron model
    say("\ncalibrating the cron model: one process, workers stopped …")
    cost, cal_done = calibrate(settings, url, seeded1, list(cal_ids), stack.sim_base)
    cron = cron_model(list(due1.values()), args.second_wait, cost)

    # -- report
    cores = os.cpu_count() or 1
    ours = {
        "p50": pct(late_all, 50),
        "p99": pct(late_all, 99),
        "max": late_all[-1] if late_all else float("nan"),
    }
    ge = "≥" if timed_out else ""
    # a timeout cut short what had not run yet; figures over steps that all ran are exact
    waits_ran = not_run1 == 0 and not_run2 == 0
    ge_wait = ge if not waits_ran else ""
    ge_event = ge if any(r["arrived"] is None for r in rows.values()) else ""
    say("\n==== results " + "=" * 72)
    say(
        f"run         {_n(n)} contacts × 5-step journey, due over {args.spread:g} s from T0, second "
        f"wait {args.second_wait:g} s; {args.workers}+{args.urgent_workers} rq workers; {elapsed:.0f} s from T0 to the "
        f"last step{' (TIMED OUT)' if timed_out else ''}"
    )
    say(
        f"steps       {_n(steps)} of {_n(4 * n)} run (each wake = the wait that fired + the send "
        f"it led to, its message row written): {steps_s:.1f} steps/s from T0 to the last; "
        f"{steps_s_wave1:.1f} steps/s while wave 1 was being worked off ({wave1_end - t0:.0f} s)"
    )
    say(
        f"            {_n(len(w['ran1']))} first waits and {_n(len(w['ran2']))} second waits "
        f"fired; {_n(len(sent_times))} messages delivered ({msgs_s:.1f}/s from T0)"
    )
    say(
        f"lateness    wake ran − due, both waits: p50 {ge_wait}{_s(ours['p50'])}, p99 "
        f"{ge_wait}{_s(ours['p99'])}, max {ge_wait}{_s(ours['max'])}"
    )
    say(
        f"            first wait  p50 {_s(pct(late1, 50))}, p99 {_s(pct(late1, 99))}; second "
        f"wait p50 {_s(pct(late2, 50))}, p99 {_s(pct(late2, 99))}"
        + (f"; not run: {not_run1} first, {not_run2} second" if timed_out else "")
    )
    say(
        f"            message sent − due: p50 {_s(pct(send_late, 50))}, p99 "
        f"{_s(pct(send_late, 99))} ({_n(len(send_late))} messages; the contact's view: the "
        "delivery is a job of its own)"
    )
    slow = [sum(1 for x in late if x >= 60) for late in (late1, late2)]
    if any(slow):
        say(
            f"            ≥ 60 s late: {_n(slow[0])} of {_n(len(late1))} first waits, "
            f"{_n(slow[1])} of {_n(len(late2))} second waits"
        )
    say(
        f"event→send  under load: {_n(len(answered))} callbacks answered 200 "
        f"({_n(len(load.sent))} made, {args.callback_rate:g}/s), "
        f"{_n(len(answered) - reply_lost)} replies arrived: "
        f"p50 {ge_event}{_s(pct(ev_lat, 50))}, p99 {ge_event}{_s(pct(ev_lat, 99))}, max "
        f"{ge_event}{_s(ev_lat[-1] if ev_lat else float('nan'))}; idle: p50 "
        f"{_s(pct(idle_lat, 50))}" + (f"; callback errors {dict(cb_errors)}" if cb_errors else "")
    )
    for label, values in parts.items():
        values.sort()
        say(f"              {label:<52} p50 {_s(pct(values, 50)):>9}, p99 {_s(pct(values, 99)):>9}")
    say(
        f"duplicates  {duplicates} (step_run {w['dup_runs']}, message rows {w['dup_msgs']}, "
        f"simulator copies {dup_sim}, replies {replies['dups']})"
    )
    say(
        f"{'unfinished' if timed_out else 'lost':<11} {lost} (enrollments not done at s2: "
        f"{not_done}; sends missing at the simulator: {lost_sim}; callbacks with no reply: "
        f"{reply_lost})" + (" — not done within the timeout" if timed_out else "")
    )
    say(
        f"            enrollments {w['finals']}; bench_5step messages {w['statuses']}; "
        f"outbox pending at the end {final['outbox']} (background work of msg.sent events; "
        "the workers finish it later, not lost)"
    )
    say(
        f"outbox      {_n(final['outbox_done'] - outbox0)} events processed by the pipeline during "
        f"the run = {(final['outbox_done'] - outbox0) / elapsed:.1f}/s (msg.sent of every "
        "delivery, the callbacks' oa.text)"
    )
    say("\nwhere the time went (inside the rq workers, summed over workers)")
    for name, (calls, spent, items) in sorted(stats.items(), key=lambda kv: -kv[1][1]):
        extra = {"drain_outbox": f", {_n(items)} events", "wake_due": f", {_n(items)} woken"}.get(
            name, ""
        )
        say(
            f"  {name:<18} {_n(calls):>8} jobs finished{extra}, {spent:8.1f} s busy"
            + (f", {1000 * spent / calls:7.2f} ms/job" if calls else " (still running)")
        )
    by_lane = {
        lane: read_worker_stats(
            [p for k, p in enumerate(stack.stats_paths) if stack.lane(k) == lane]
        ).get("drain_outbox", [0, 0.0, 0])
        for lane in ("urgent", "background")
    }
    say(
        "  drain_outbox by lane: "
        + "; ".join(
            f"{lane} workers {_n(c)} jobs, {_n(items)} events, {spent:.1f} s"
            for lane, (c, spent, items) in by_lane.items()
        )
    )
    say(
        f"  busy in job functions {busy:.0f} s of {args.workers} × {elapsed:.0f} s = "
        f"{100 * busy / max(1e-9, args.workers * elapsed):.0f} % (the rest: rq's own work per job, "
        "waiting for jobs); peak rq queue length "
        f"{_n(peak_queue)}"
    )
    if transitions:
        total_cpu = sum(cpu.values())
        say(
            "  CPU per wake (all parts, incl. its send and bookkeeping): "
            + ", ".join(
                f"{k} {1000 * v / len(transitions):.2f} ms"
                for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])
                if v > 0
            )
            + f"; total {1000 * total_cpu / len(transitions):.2f} ms"
        )
        other = max(0.0, machine - total_cpu)
        say(
            f"  machine {machine:.0f} CPU s busy of {cores} × {elapsed:.0f} s = "
            f"{100 * machine / max(1e-9, cores * elapsed):.0f} %; other processes "
            f"{other:.0f} CPU s ({100 * other / max(1e-9, cores * elapsed):.0f} % of the machine)"
            + ("; OTHER WORK DISTURBED THIS RUN" if other > 0.1 * cores * elapsed else "")
        )

    from bot.automation.tx import DELIVERY_BATCH
    from bot.background.jobs import BATCH as OUTBOX_BATCH

    say("\n---- the cron model: a SIMULATION, not a run " + "-" * 40)
    say(
        f"  model: one process woken by cron every {CRON_PERIOD:g} s (like Mautic's "
        f"campaigns:trigger); a pass takes the contacts due at its start in batches of "
        f"{CRON_BATCH}; a batch's messages are delivered when it ends; a pass that overruns the "
        f"minute makes cron skip ticks. Same due times and journey as above. Median over "
        f"{CRON_PHASES} positions of the minute tick against T0."
    )
    say(
        f"  per-contact cost {1000 * cost:.2f} ms: measured here, Yuchi's own code in one process "
        f"with nothing else running, with Yuchi's batching (wakes {CRON_BATCH} per transaction, "
        f"deliveries {DELIVERY_BATCH} per call, msg.sent events {OUTBOX_BATCH} at a time), mean "
        f"of {cal_done} contacts after a warm-up"
    )
    say(
        "  both sides are measured at the same point: the message delivered (its sent_at) − "
        "the wait's due time"
    )
    say(
        f"  what differs: cron runs ONE process; yuchi ran {args.workers}+{args.urgent_workers} "
        f"rq workers on {os.cpu_count() or 1} CPUs beside the web server and the callback load; "
        "the cron's second wait is due from its first delivery, yuchi's from its first wake"
    )
    cron_steps_s = cron["steps"] / cron["makespan"]
    cron_msgs_s = cron_steps_s / 2  # each contact: 4 steps, 2 of them sends
    sent_late1 = sorted(w["sent1"][c] - due1[c] for c in w["sent1"] if w["sent1"][c])
    sent_late2 = sorted(
        w["sent2"][c] - w["due2"][c] for c in w["sent2"] if w["sent2"][c] and c in w["due2"]
    )
    delivered = {
        "p50": pct(send_late, 50),
        "p99": pct(send_late, 99),
        "max": send_late[-1] if send_late else float("nan"),
    }
    rows_t = [
        (
            "delivered − due p50",
            _s(delivered["p50"]),
            _s(cron["p50"]),
            ratio(cron["p50"], delivered["p50"]),
        ),
        (
            "delivered − due p99",
            _s(delivered["p99"]),
            _s(cron["p99"]),
            ratio(cron["p99"], delivered["p99"]),
        ),
        (
            "delivered − due max",
            _s(delivered["max"]),
            _s(cron["max"]),
            ratio(cron["max"], delivered["max"]),
        ),
        (
            "first message p99",
            _s(pct(sent_late1, 99)),
            _s(cron["p99_1"]),
            ratio(cron["p99_1"], pct(sent_late1, 99)),
        ),
        (
            "second message p99",
            _s(pct(sent_late2, 99)),
            _s(cron["p99_2"]),
            ratio(cron["p99_2"], pct(sent_late2, 99)),
        ),
        (
            "steps/s, to the last delivery",
            f"{steps_e2e:.1f}",
            f"{cron_steps_s:.1f}",
            ratio(cron_steps_s, steps_e2e),
        ),
        ("messages delivered/s", f"{msgs_s:.1f}", f"{cron_msgs_s:.1f}", ratio(cron_msgs_s, msgs_s)),
        (
            "T0 to the last delivery",
            _s(finish),
            _s(cron["makespan"]),
            ratio(cron["makespan"], finish),
        ),
    ]
    say(f"\n  {'':<26} {'yuchi (measured)':>18} {'cron (simulated)':>18} {'cron/yuchi':>11}")
    for label, a, b, r in rows_t:  # no ratio against a figure cut short by the timeout
        shown = "–" if timed_out else f"{r:.2f}×"
        mark = ge
        say(f"  {label:<26} {mark + a:>18} {b:>18} {shown:>11}")

    met_late = waits_ran and ours["p99"] <= TARGET_LATENESS
    ev_p99 = pct(ev_lat, 99)
    met_event = bool(ev_lat) and ev_p99 <= TARGET_EVENT and reply_lost == 0
    say("\ntargets")
    say(
        f"  a wait fires within {TARGET_LATENESS:g} s of its due time at p99: "
        f"{ge_wait}{_s(ours['p99'])} → target met: {'yes' if met_late else 'no'}"
    )
    say(
        f"  event → send within {TARGET_EVENT:g} s at p99 under load: {ge_event}{_s(ev_p99)} → target "
        f"met: {'yes' if met_event else 'no'}"
    )
    say(f"  duplicates 0: {'yes' if duplicates == 0 else 'no'} ({duplicates})")
    if timed_out:
        say(
            f"  lost steps 0: not known — the run timed out with {lost} steps/sends unfinished "
            "(their rows are still waiting or queued, not failed)"
        )
    else:
        say(f"  lost steps 0: {'yes' if lost == 0 else 'no'} ({lost})")
    return bool(duplicates or lost or timed_out)


if __name__ == "__main__":
    sys.exit(main())
