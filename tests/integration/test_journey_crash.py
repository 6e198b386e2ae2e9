"""Crash tests for the journey runner: a real `yuchi worker` process is SIGKILLed during a send
and during a wait, Redis is flushed (every queued, scheduled and running job is lost, as when
Redis itself dies) and a new worker is started. Every contact must end where it should and no
message may reach the platform twice.

The simulator says which sends reached the platform (its inbox, its call log, the calls still
in flight), so "at most once" is checked against what was delivered, not what Yuchi believes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fixtures import journey_definition
from testenv import TEST_ENV

from bot.core import db, queue
from bot.core.config import Settings
from bot.core.models import Message, utcnow
from bot.messaging import requeue

pytestmark = pytest.mark.slow  # runs real worker processes

ROOT = Path(__file__).resolve().parents[2]
SEND = "/cgi-bin/message/custom/send"
WELCOME = "欢迎关注鱼池"
SWEEP_INTERVAL = 0.3  # seconds between the worker's sweeper runs

WAIT_JOURNEY = journey_definition("crash_wait")


# --- worker processes ----------------------------------------------------------------------


class Workers:
    """`yuchi worker` processes, each in its own session so a kill takes all of it."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.procs: list[subprocess.Popen] = []

    def start(self) -> subprocess.Popen:
        log = self.logs / f"worker-{len(self.procs) + 1}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bot.cli", "worker"],
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc.log = log
        self.procs.append(proc)
        return proc

    @staticmethod
    def kill(proc: subprocess.Popen) -> None:
        """SIGKILL the worker's whole process group: no cleanup, no goodbye to Redis."""
        with contextlib.suppress(ProcessLookupError):  # the group is gone already
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def kill_all(self) -> None:
        for proc in self.procs:
            self.kill(proc)

    def output(self) -> str:
        tails = []
        for proc in self.procs:
            text = proc.log.read_text(errors="replace") if proc.log.exists() else ""
            text = "".join(line for line in text.splitlines(keepends=True) if "alembic" not in line)
            tails.append(f"--- {proc.log.name} (exit {proc.poll()}) ---\n{text[-3000:]}")
        return "\n".join(tails)

    def assert_running(self, proc: subprocess.Popen) -> None:
        assert proc.poll() is None, f"the worker exited early\n{self.output()}"


@pytest.fixture
def workers(settings: Settings, sim, tmp_path: Path) -> Iterator[Workers]:
    env = {
        **os.environ,
        **TEST_ENV,
        **sim.env,  # the platform APIs are the simulator's
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": queue.redis_url(settings),
        "YUCHI_SWEEP_INTERVAL": str(SWEEP_INTERVAL),
        "YUCHI_SWEEP_GRACE": "0.2",
        "YUCHI_MESSAGE_SWEEP_GRACE": "0.5",
        "YUCHI_LOG_LEVEL": "INFO",
        # Journey touches are marketing; these contacts just followed (in a conversation, so
        # exempt anyway), but whatever the hour, quiet hours must not be what the tests see.
        "YUCHI_QUIET_HOURS": "",
    }
    w = Workers(env, tmp_path)
    try:
        yield w
    finally:
        w.kill_all()  # nothing outlives the test, whatever happened


# --- reading the outcome through the API ---------------------------------------------------


def api(client, auth, path: str) -> dict[str, Any]:
    resp = client.get(path, headers=auth)
    assert resp.status_code == 200, (path, resp.get_json())
    return resp.get_json()


def publish(client, auth, body: dict[str, Any]) -> int:
    resp = client.post("/api/journeys", json=body, headers=auth)
    assert resp.status_code == 201, resp.get_json()
    jid = resp.get_json()["id"]
    resp = client.post(f"/api/journeys/{jid}/publish", headers=auth)
    assert resp.status_code == 200 and resp.get_json()["status"] == "published", resp.get_json()
    return jid


def snapshot(client, auth, openids: list[str]) -> dict[str, dict[str, Any]]:
    """Each contact's enrollments, message rows (oldest first) and events not processed yet,
    as the API shows them."""
    out = {}
    for openid in openids:
        [contact] = api(client, auth, f"/api/contacts?openid={openid}")["contacts"]
        cid = contact["id"]
        events = api(client, auth, f"/api/contacts/{cid}/events?limit=200")["events"]
        out[openid] = {
            "contact_id": cid,
            "enrollments": api(client, auth, f"/api/contacts/{cid}/journeys")["enrollments"],
            "messages": api(client, auth, f"/api/contacts/{cid}/messages")["messages"][::-1],
            "unprocessed": [e["type"] for e in events if e["processed_at"] is None],
        }
    return out


def never_twice(sim, openids: list[str], most: int) -> None:
    """Fail at once if the platform got more than ``most`` messages for anyone."""
    for openid in openids:
        got = sim.inbox(openid, kind="custom")
        assert len(got) <= most, f"{openid} got {len(got)} messages: {got}"


def statuses(state: dict[str, dict[str, Any]]) -> list[str]:
    return sorted(m["status"] for s in state.values() for m in s["messages"])


def wait_until(
    fetch: Callable[[], Any],
    ok: Callable[[Any], bool],
    what: str,
    workers: Workers,
    timeout: float = 15.0,
) -> Any:
    """Poll ``fetch()`` until ``ok`` holds for its value; fail with the last value and logs."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; last seen:\n{value!r}\n{workers.output()}")
        time.sleep(0.05)


def backdate(settings: Settings, model: type, ids: list[int], column: str, by: timedelta) -> None:
    """Move timestamps into the past: the test's way of letting minutes go by."""
    with db.session_scope(settings.database_url) as s:
        for row_id in ids:
            row = s.get(model, row_id)
            setattr(row, column, getattr(row, column) - by)
            s.add(row)


# --- the scenarios -------------------------------------------------------------------------


def test_kill_during_a_send_never_sends_twice(sim, sim_client, auth, settings, workers):
    publish(sim_client, auth, {"library": "welcome"})
    sim.faults(latency_ms=1500, paths=[SEND])  # each welcome takes 1.5 s at the platform
    openids = [f"oCrashSend{i}" for i in range(5)]
    for openid in openids:
        assert sim.follow(openid).status == 200

    first = workers.start()
    # Kill once one welcome has been answered and the next has reached the platform: the
    # worker is inside that API call (one SimpleWorker: one send at a time).
    wait_until(
        lambda: (len(sim.calls(path=SEND)), len(sim.in_flight(path=SEND))),
        lambda seen: seen[0] >= 1 and seen[1] >= 1,
        "a send in flight after a first one answered",
        workers,
    )
    workers.assert_running(first)
    workers.kill(first)
    in_flight = sim.in_flight(path=SEND)  # reached the platform; their answers are lost
    answered = len(sim.calls(path=SEND))
    assert len(in_flight) == 1 and answered == 1, (in_flight, answered)
    sim.faults(latency_ms=0)  # later sends are quick; the one in flight keeps its delay

    # What the kill left: one sent, one mid-call, the rest queued or not made yet (the drain
    # that answers the follows delivers each answer itself, after its batch commits; with two
    # drains on PostgreSQL the other half of the follows may still wait); who was answered
    # waits for day 2.
    state = snapshot(sim_client, auth, openids)
    left = statuses(state)
    assert (left.count("sent"), left.count("sending")) == (1, 1), state
    assert set(left) <= {"queued", "sending", "sent"}, state
    for s in state.values():
        if s["enrollments"]:
            [e] = s["enrollments"]
            assert (e["status"], e["step"]) == ("waiting", "wait_day2"), s
        else:
            assert s["unprocessed"] == ["oa.subscribe"], s

    queue.get_redis(settings).flushdb()  # every job, the scheduler's lock and the flags: gone
    second = workers.start()

    def settled(state: dict[str, dict[str, Any]]) -> bool:
        never_twice(sim, openids, 1)
        return (
            all(len(s["messages"]) == 1 for s in state.values())
            and statuses(state) == ["sending"] + ["sent"] * 4
            and not sim.in_flight(path=SEND)
        )

    state = wait_until(
        lambda: snapshot(sim_client, auth, openids), settled, "the other welcomes", workers
    )
    workers.assert_running(second)
    [stuck] = [m for s in state.values() for m in s["messages"] if m["status"] == "sending"]
    for openid, s in state.items():
        [e] = s["enrollments"]
        assert (e["status"], e["step"]) == ("waiting", "wait_day2"), s
        assert e["wake_at"] is not None and e["ended_at"] is None
        [m] = s["messages"]
        assert m["attempts"] == 1, m
        # Each welcome reached the person exactly once: the stuck one had reached the
        # platform before the kill, and nobody sent it again.
        got = sim.inbox(openid, kind="custom")
        assert len(got) == 1, (openid, got)
        assert WELCOME in got[0]["payload"]["text"]["content"]
    assert len(sim.calls(path=SEND)) == len(openids)

    # The sweeper runs several times meanwhile and leaves the row mid-send alone…
    time.sleep(SWEEP_INTERVAL * 4)
    row = api(sim_client, auth, f"/api/messages/{stuck['id']}")
    assert (row["status"], row["attempts"]) == ("sending", 1), row
    # …until it has been stuck for STALE_SENDING: then it is closed as unknown, never resent.
    later = requeue.STALE_SENDING + timedelta(minutes=1)
    backdate(settings, Message, [stuck["id"]], "updated_at", later)
    row = wait_until(
        lambda: api(sim_client, auth, f"/api/messages/{stuck['id']}"),
        lambda m: m["status"] == "unknown",
        "the sweeper to mark the stuck send unknown",
        workers,
    )
    assert row["attempts"] == 1 and "not resent" in (row["error_message"] or ""), row
    assert statuses(snapshot(sim_client, auth, openids)) == ["sent"] * 4 + ["unknown"]
    for openid in openids:
        assert len(sim.inbox(openid, kind="custom")) == 1, openid
    assert len(sim.calls(path=SEND)) == len(openids)
    workers.assert_running(second)


def test_kill_during_a_wait_wakes_every_contact_once(sim, sim_client, auth, settings, workers):
    publish(sim_client, auth, {"name": "crash-wait", "definition": WAIT_JOURNEY})
    openids = [f"oCrashWait{i}" for i in range(4)]
    for openid in openids:
        assert sim.follow(openid).status == 200

    first = workers.start()

    def waiting(state: dict[str, dict[str, Any]]) -> bool:
        # Every event processed too (msg.sent included): an event that reaches an enrollment
        # after its wake time advances it as well, and here only the wakes may move them.
        return all(
            [e["status"] for e in s["enrollments"]] == ["waiting"]
            and [m["status"] for m in s["messages"]] == ["sent"]
            and not s["unprocessed"]
            for s in state.values()
        )

    wait_until(lambda: snapshot(sim_client, auth, openids), waiting, "the first touch", workers)
    workers.assert_running(first)
    wakes = queue.get_queue(settings, queue.WAKES).scheduled_job_registry
    assert 1 <= wakes.count <= len(openids)  # one scheduled wake job per second of due time
    workers.kill(first)

    state = snapshot(sim_client, auth, openids)
    assert waiting(state), f"the wait was over before the kill (a slow machine?): {state}"
    enrollment_ids, wake_ats = [], []
    for s in state.values():
        [e] = s["enrollments"]
        assert e["step"] == "pause" and e["wake_at"] is not None, s
        enrollment_ids.append(e["id"])
        wake_ats.append(datetime.fromisoformat(e["wake_at"]))

    queue.get_redis(settings).flushdb()
    assert wakes.count == 0  # the scheduled wakes are lost with Redis

    # Let the wake time pass while no worker runs; the new worker's sweeper finds them overdue.
    wait_until(utcnow, lambda now: now > max(wake_ats), "the wake time", workers, timeout=10)
    second = workers.start()

    def finished(state: dict[str, dict[str, Any]]) -> bool:
        never_twice(sim, openids, 2)
        return all(
            [e["status"] for e in s["enrollments"]] == ["done"]
            and [m["status"] for m in s["messages"]] == ["sent", "sent"]
            and not s["unprocessed"]
            for s in state.values()
        )

    state = wait_until(
        lambda: snapshot(sim_client, auth, openids), finished, "the woken touch", workers
    )
    workers.assert_running(second)
    time.sleep(SWEEP_INTERVAL * 4)  # more sweeper runs change nothing
    assert snapshot(sim_client, auth, openids) == state
    for openid, s in state.items():
        [e] = s["enrollments"]
        assert e["step"] == "bye" and e["wake_at"] is None and e["ended_at"] is not None, s
        assert [m["attempts"] for m in s["messages"]] == [1, 1], s
        got = [m["payload"]["text"]["content"] for m in sim.inbox(openid, kind="custom")]
        assert got == ["第一条：你好", "第二条：再见"], (openid, got)
    assert len(sim.calls(path=SEND)) == 2 * len(openids)
    workers.assert_running(second)
