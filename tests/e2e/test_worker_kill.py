"""A worker SIGKILLed in the middle of its work (the OOM killer, a lost container): what it held
is taken over by the other workers within 30 s, through rq's heartbeats (queue.LIVENESS_TTL)
rather than a fixed grace period, nothing is sent twice, and its rq scheduler process does not
outlive it. Twice: a background worker in the middle of a broadcast's delivery batch, and an
urgent worker in the middle of a drain that is sending the answers of the batch it committed."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from processes import RedisServer, alive, api, children, free_port, wait_healthy
from rq import Worker
from testenv import ORIGINAL_ENV, TEST_ENV

from bot.core import db
from bot.core.config import Settings
from bot.core.models import Message, Outbox
from wxsim.app import SimConfig
from wxsim.testing import SimHandle, running_simulator

pytestmark = pytest.mark.slow

PICKUP = 30.0  # s: what a killed worker held is taken over within this
LATENCY_MS = 150  # each send takes this long at the platform, so a batch is caught mid-way
WELCOME = {
    "id": "welcome",
    "name": "欢迎",
    "steps": [
        {"id": "start", "type": "trigger", "event": "oa.subscribe", "next": "hello"},
        {
            "id": "hello",
            "type": "action",
            "do": "send",
            "kind": "text",
            "payload": {"content": "欢迎关注"},
        },
    ],
}


class Stack:
    """The web (`yuchi serve`) and `yuchi worker` processes started one by one, with no
    supervisor that would restart or clean up after a killed worker."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env, self.cwd = env, cwd
        self.procs: list[subprocess.Popen] = []

    def start(self, *args: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", *args],
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=(self.cwd / f"{args[0]}-{len(self.procs)}.log").open("w"),
        )
        self.procs.append(proc)
        return proc

    def worker(self, lane: str, with_scheduler: bool) -> subprocess.Popen:
        """A `yuchi worker --<lane>`, once rq knows it (and, ``with_scheduler``, once it has
        forked its scheduler process: the first worker of a lane takes the scheduler locks)."""
        proc = self.start("worker", f"--{lane}")
        wait_for(lambda: rq_worker(self.env, proc.pid) is not None, 60, "worker registered")
        if with_scheduler:
            wait_for(lambda: children(proc.pid), 30, "scheduler process")
        return proc

    def logs(self) -> str:
        return "".join(p.read_text()[-3000:] for p in sorted(self.cwd.glob("*.log")))

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def wait_for(check: Callable[[], object], seconds: float, what: str) -> object:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {seconds} s")


def rq_worker(env: dict[str, str], pid: int) -> Worker | None:
    import redis

    conn = redis.Redis.from_url(env["REDIS_URL"])
    return next((w for w in Worker.all(connection=conn) if w.pid == pid), None)


def running_job(env: dict[str, str], pid: int) -> str | None:
    w = rq_worker(env, pid)
    return w.get_current_job_id() if w is not None else None


def kill(proc: subprocess.Popen) -> list[int]:
    """SIGKILL the worker (only it); returns the processes it had started."""
    kids = children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return kids


def statuses(settings: Settings, ids: list[int]) -> dict[int, str]:
    m = Message.__table__.c
    with db.session_scope(settings.database_url) as s:
        return dict(s.execute(sa.select(m.id, m.status).where(m.id.in_(ids))).all())


def messages(settings: Settings, answers: bool) -> list:
    m = Message.__table__.c
    which = m.reply_to_event_id.is_not(None) if answers else m.broadcast_id.is_not(None)
    with db.session_scope(settings.database_url) as s:
        return s.execute(sa.select(m.id, m.status, m.updated_at).where(which)).all()


def settled(rows: list, killed: datetime) -> bool:
    """Every row sent, but for one the killed worker was sending (never sent again)."""
    return all(
        r.status == "sent" or (r.status == "sending" and r.updated_at < killed) for r in rows
    )


def outbox_left(settings: Settings) -> list[int]:
    o = Outbox.__table__.c
    with db.session_scope(settings.database_url) as s:
        return list(s.execute(sa.select(o.id).where(o.status != "done")).scalars())


def delivered(sim: SimHandle, openids: list[str], text: str) -> dict[str, int]:
    return {
        openid: sum(
            text in json.dumps(i, ensure_ascii=False) for i in sim.inbox(openid, kind="custom")
        )
        for openid in openids
    }


@pytest.fixture
def stack(clean: Settings, tmp_path: Path) -> Iterator[tuple[SimHandle, str, Stack]]:
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = SimConfig.from_settings(clean, callback_base=base)
    stack = None
    try:
        with running_simulator(config) as sim:
            env = {
                **ORIGINAL_ENV,
                **TEST_ENV,
                **sim.env,
                "DATABASE_URL": clean.database_url,
                "REDIS_URL": redis_server.url,
                "YUCHI_VAR_DIR": str(tmp_path / "var"),
                "YUCHI_QUIET_HOURS": "",
                "YUCHI_OUTBOX_DRAINS": "1",
            }
            stack = Stack(env, tmp_path)
            web = stack.start("serve", "--port", str(port), "--workers", "2")
            wait_healthy(f"{base}/healthz", web)
            yield sim, base, stack
    finally:
        if stack is not None:
            stack.stop()
        redis_server.stop()


def test_a_killed_workers_batch_and_drain_are_taken_over(clean, stack):
    sim, base, procs = stack
    env = procs.env
    background = procs.worker("background", with_scheduler=True)
    urgent = procs.worker("urgent", with_scheduler=True)
    procs.worker("background", with_scheduler=False)  # they take over
    spare = procs.worker("urgent", with_scheduler=False)

    # 1. A background worker killed in the middle of a broadcast's delivery batch.
    first = [f"oKill{i:03d}" for i in range(60)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert all(r.status == 200 for r in pool.map(sim.follow, first))
    wait_for(lambda: not outbox_left(clean), 60, "follows processed")
    sim.faults(latency_ms=LATENCY_MS, paths=["message/custom/send"])
    api(
        base,
        "/api/broadcasts",
        {
            "name": "kill",
            "kind": "text",
            "payload": {"content": "群发"},
            "marketing": False,
            "audience": "subscribed",
        },
    )
    sent = lambda: [r for r in messages(clean, answers=False) if r.status == "sent"]  # noqa: E731
    wait_for(lambda: len(sent()) >= 5, 60, "broadcast under way")
    job = wait_for(
        lambda: (j := running_job(env, background.pid) or "").startswith("msgs-") and j,
        60,
        "the first background worker in a delivery batch",
    )
    claimed = [r.id for r in messages(clean, answers=False) if r.status == "claimed"]
    scheduler = kill(background)
    killed_at, first_killed = time.monotonic(), datetime.now(UTC)
    assert scheduler, "the first background worker had its scheduler process"
    assert claimed, job
    wait_for(lambda: not any(alive(pid) for pid in scheduler), 10, "its scheduler stopped")
    wait_for(
        lambda: "claimed" not in statuses(clean, claimed).values(),
        PICKUP - (time.monotonic() - killed_at),
        f"rows claimed by {job} taken over",
    )
    print(f"delivery batch taken over {time.monotonic() - killed_at:.1f} s after the kill")
    wait_for(lambda: settled(messages(clean, answers=False), first_killed), 60, "broadcast sent")

    # 2. An urgent worker killed while its drain sends the answers of the batch it committed.
    journey = api(base, "/api/journeys", {"name": "欢迎", "definition": WELCOME})
    api(base, f"/api/journeys/{journey['id']}/publish", {})
    second = [f"oDrain{i:03d}" for i in range(30)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        replies = [pool.submit(sim.follow, openid) for openid in second]
        answers = lambda: messages(clean, answers=True)  # noqa: E731

        def drain_mid_answers() -> subprocess.Popen | None:
            rows = answers()
            if sum(r.status == "sent" for r in rows) < 2 or all(r.status != "queued" for r in rows):
                return None
            return next(
                (
                    p
                    for p in (urgent, spare)
                    if (running_job(env, p.pid) or "").startswith("outbox-drain-")
                ),
                None,
            )

        urgent = wait_for(drain_mid_answers, 60, "a drain sending the answers of its batch")
        queued = [r.id for r in answers() if r.status == "queued"]
        started = kill(urgent)
        killed_at, second_killed = time.monotonic(), datetime.now(UTC)
        assert all(r.result().status == 200 for r in replies)
    wait_for(lambda: not any(alive(pid) for pid in started), 10, "its scheduler stopped")
    wait_for(
        lambda: not outbox_left(clean) and "queued" not in statuses(clean, queued).values(),
        PICKUP - (time.monotonic() - killed_at),
        "the drain and its answers taken over",
    )
    print(f"drain and answers taken over {time.monotonic() - killed_at:.1f} s after the kill")
    wait_for(
        lambda: len(answers()) == len(second) and settled(answers(), second_killed),
        60,
        "every answer sent",
    )

    # Nothing twice: each row sent reached its contact once; a row the killed worker was
    # sending ("sending": it may or may not have arrived) is never sent again.
    for openids, text, rows in (
        (first, "群发", messages(clean, answers=False)),
        (second, "欢迎关注", messages(clean, answers=True)),
    ):
        got = delivered(sim, openids, text)
        assert set(got.values()) <= {0, 1}, got
        in_flight = sum(r.status == "sending" for r in rows)
        sent = sum(r.status == "sent" for r in rows)
        assert in_flight <= 1, rows
        assert list(got.values()).count(0) <= in_flight, got
        assert sent <= sum(got.values()) <= sent + in_flight, (got, rows)
