"""Redis goes away under `yuchi up`: callbacks keep being stored and answered, the workers wait
and reconnect instead of exiting, and once Redis is back (empty: the stack must not depend on
its persistence) every event is processed and every message sent exactly once, within a minute
(test_worker_kill.py: a worker that is SIGKILLed)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from processes import RedisServer, api, children, free_port
from testenv import ORIGINAL_ENV, TEST_ENV

from bot.core import db
from bot.core.config import Settings
from bot.core.models import Event, Message, Outbox
from wxsim.app import SimConfig
from wxsim.testing import SimHandle, running_simulator

pytestmark = pytest.mark.slow

FOLLOWERS = 250  # each follows and says three things: 1,000 callbacks
REACHED = 150  # of them follow before the broadcast, which goes to them
OUTAGE = 30.0  # s
SETTLE = 60.0  # s after Redis returns


@contextlib.contextmanager
def yuchi_up(env: dict[str, str], port: int, cwd: Path) -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "up", "--port", str(port), "--workers", "2"],
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
    )
    lines: list[str] = []
    drain = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    drain.start()
    proc.output = lambda: "".join(lines)
    try:
        deadline = time.monotonic() + 60
        while not any("Press Ctrl+C to stop." in line for line in lines):
            assert proc.poll() is None and time.monotonic() < deadline, proc.output()
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def process_tree(pid: int) -> dict[int, list[int]]:
    """``yuchi up``'s children (web, workers) and the children of each: gunicorn's workers,
    a worker's rq scheduler process (one at most; a worker that reconnected to Redis started
    a new one)."""
    return {child: children(child) for child in children(pid)}


def counts(settings: Settings) -> dict[str, int]:
    o, e, m = Outbox.__table__.c, Event.__table__.c, Message.__table__.c
    with db.session_scope(settings.database_url) as s:
        return {
            "callbacks": s.execute(
                sa.select(sa.func.count()).where(e.type.in_(("oa.subscribe", "oa.text")))
            ).scalar_one(),
            "unprocessed": s.execute(
                sa.select(sa.func.count()).where(o.status != "done")
            ).scalar_one(),
            "sent": s.execute(sa.select(sa.func.count()).where(m.status == "sent")).scalar_one(),
            "messages": s.execute(sa.select(sa.func.count()).select_from(Message)).scalar_one(),
        }


@pytest.fixture
def outage_stack(clean: Settings, tmp_path: Path) -> Iterator[tuple[SimHandle, str, RedisServer]]:
    redis_server = RedisServer(tmp_path)
    redis_server.start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = SimConfig.from_settings(clean, callback_base=base)
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
            }
            with yuchi_up(env, port, tmp_path) as proc:
                yield sim, base, redis_server, proc
    finally:
        redis_server.stop()


def test_a_redis_outage_loses_nothing_and_stops_nobody(clean, outage_stack):
    sim, base, redis_server, proc = outage_stack
    before = process_tree(proc.pid)
    openids = [f"oOutage{i:03d}" for i in range(FOLLOWERS)]
    early, late = openids[:REACHED], openids[REACHED:]
    results = []

    def paced(call, *args) -> None:
        at = time.monotonic()
        results.append((at, call(*args)))
        time.sleep(0.25)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda o: paced(sim.follow, o), early))
        broadcast = api(
            base,
            "/api/broadcasts",
            {
                "name": "outage",
                "kind": "text",
                "payload": {"content": "停电演习"},
                "marketing": False,
                "audience": "subscribed",
            },
        )
        todo = [(sim.follow, o) for o in late]
        todo += [(sim.say, o, text) for text in ("你好", "在吗", "谢谢") for o in openids]
        rest = [pool.submit(paced, *call) for call in todo]
        time.sleep(2)  # the broadcast's deliveries and the callbacks under way
        redis_server.stop()
        down_at = time.monotonic()
        time.sleep(OUTAGE)
        redis_server.start()
        back_at, back = time.monotonic(), datetime.now(UTC)
        for future in rest:
            future.result()
        last_callback_at = time.monotonic()
    assert back_at - down_at >= OUTAGE
    assert len(results) == 4 * FOLLOWERS
    refused = [(round(at - down_at, 1), r.status, r.error) for at, r in results if r.status != 200]
    assert refused == [], (refused, proc.output()[-5000:])

    # The callbacks go on after Redis is back (how long depends on the machine): each event gets
    # SETTLE seconds from Redis's return or its arrival, whichever is later.
    deadline = max(back_at, last_callback_at) + SETTLE
    while True:
        state = counts(clean)
        progress = api(base, f"/api/broadcasts/{broadcast['id']}")
        settled = state["unprocessed"] == 0 and state["sent"] == state["messages"]
        if (settled and progress["status"] != "fanning_out") or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert state["callbacks"] == 4 * FOLLOWERS, state
    assert state["unprocessed"] == 0, state
    assert state["sent"] == state["messages"] >= REACHED, (state, progress)
    for openid in early:  # each got the broadcast exactly once
        got = [
            i
            for i in sim.inbox(openid, kind="custom")
            if "停电演习" in json.dumps(i, ensure_ascii=False)
        ]
        assert len(got) == 1, (openid, got)
    assert len(sim.calls(path="/cgi-bin/message/custom/send")) == state["sent"]
    late_events, late_sends = too_late(clean, back)
    assert late_events == [] and late_sends == [], (late_events, late_sends)

    out = proc.output()
    assert proc.poll() is None, out
    assert "exited unexpectedly" not in out, out
    after = process_tree(proc.pid)
    assert sorted(after) == sorted(before), out  # the same web and workers: none restarted
    web = next(pid for pid, kids in before.items() if len(kids) > 1)  # gunicorn's workers
    assert after[web] == before[web], out
    assert all(len(kids) <= 1 for pid, kids in after.items() if pid != web), (after, out)


def too_late(settings: Settings, back: datetime) -> tuple[list, list]:
    """Outbox rows processed, and messages sent, more than SETTLE seconds after Redis came back
    or they were stored, whichever is later."""
    o, m = Outbox.__table__.c, Message.__table__.c
    settle = timedelta(seconds=SETTLE)
    with db.session_scope(settings.database_url) as s:
        events = s.execute(sa.select(o.id, o.created_at, o.done_at)).all()
        sends = s.execute(sa.select(m.id, m.created_at, m.sent_at)).all()
    return (
        [e for e in events if e.done_at > max(e.created_at, back) + settle],
        [x for x in sends if x.sent_at > max(x.created_at, back) + settle],
    )
