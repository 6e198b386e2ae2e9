"""The background lanes: outbox drains split by contact (one contact's events always in order,
by one drain) that take turns on an urgent worker, `yuchi worker --urgent`, which serves only
the urgent queue, and `yuchi worker --background`, which serves the rest at lower priority."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from support import event, post, text

from bot.background import jobs
from bot.cli.stack import run_worker
from bot.core import db, queue
from bot.core.models import Event, Outbox, utcnow
from bot.messaging import outbox as messaging
from bot.messaging.payloads import SendRequest


def pending_by_contact(settings) -> dict[int, list[str]]:
    o, e = Outbox.__table__.c, Event.__table__.c
    with db.session_scope(settings.database_url) as s:
        rows = s.execute(
            sa.select(e.contact_id, o.status)
            .join(Event.__table__, e.id == o.event_id)
            .order_by(o.id)
        ).all()
    out: dict[int, list[str]] = {}
    for contact_id, status in rows:
        out.setdefault(contact_id, []).append(status)
    return out


def drain_jobs(settings) -> list[tuple]:
    return [
        tuple(j.args)
        for j in queue.get_queue(settings, queue.URGENT).jobs
        if j.func_name == queue.DRAIN
    ]


def test_two_drains_each_take_their_contacts_in_order(clean, client, oa):
    two = clean.replace(outbox_drains=2)
    assert two.drains == 2 and clean.replace(outbox_drains=0).drains in (1, 2)
    for i in range(4):  # four followers, two texts each
        for k in range(2):
            assert (
                post(client, oa, text(oa, f"oLane{i}", f"你好{k}", 7000 + 10 * i + k)).status == 200
            )
    by_contact = pending_by_contact(clean)
    assert len(by_contact) == 4 and all(v == ["pending", "pending"] for v in by_contact.values())
    queue.get_redis(clean).flushdb()  # what the callbacks enqueued (with this run's settings)

    # a kick for one contact wakes only its drain; a kick without one wakes both
    assert queue.kick_outbox(two, contact_id=3)
    assert drain_jobs(two) == [(1, 2)]
    assert queue.kick_outbox(two) and sorted(drain_jobs(two)) == [(0, 2), (1, 2)]
    assert queue.kick_outbox(two) and len(drain_jobs(two)) == 2  # both flags still set

    assert jobs.drain_outbox(0, 2) == 4  # the even contacts' events, and nothing else
    after = pending_by_contact(clean)
    assert all(after[c] == (["done"] * 2 if c % 2 == 0 else ["pending"] * 2) for c in after)
    assert jobs.drain_outbox(1, 2) == 4
    assert all(v == ["done", "done"] for v in pending_by_contact(clean).values())
    assert jobs.drain_outbox() == 0  # a drain enqueued before the split: takes everyone, finds none


def test_the_sweeper_kicks_each_drain_whose_job_is_gone(clean, client, oa):
    two = clean.replace(outbox_drains=2, sweep_grace_seconds=1.0)
    post(client, oa, text(oa, "oSweepLane", "你好", 7100))
    with db.session_scope(clean.database_url) as s:  # waited longer than the grace period
        s.execute(sa.update(Outbox.__table__).values(created_at=utcnow() - timedelta(minutes=1)))
    queue.get_redis(clean).flushdb()  # Redis lost the drain job
    assert queue.sweep(two) == 1
    assert sorted(drain_jobs(two)) == [(0, 2), (1, 2)]
    assert queue.sweep(two) == 0  # both drains are queued now


def test_an_urgent_worker_serves_only_the_urgent_queue(clean):
    queue.get_queue(clean).enqueue(
        "bot.background.jobs.deliver_message", 999_999, job_id="lane-default"
    )
    queue.get_queue(clean, queue.URGENT).enqueue(
        "bot.background.jobs.deliver_message", 999_998, job_id="lane-urgent"
    )
    assert run_worker(clean, burst=True, lane="urgent") == 0
    assert queue.get_queue(clean, queue.URGENT).count == 0
    assert [j.id for j in queue.get_queue(clean).jobs] == ["lane-default"]
    assert run_worker(clean, burst=True) == 0  # an ordinary worker takes it
    assert queue.get_queue(clean).count == 0


def test_a_background_worker_leaves_the_urgent_queue_alone(clean):
    queue.get_queue(clean, queue.URGENT).enqueue(
        "bot.background.jobs.deliver_message", 999_998, job_id="lane-urgent"
    )
    queue.get_queue(clean, queue.WAKES).enqueue("bot.background.jobs.wake_due", job_id="lane-wake")
    queue.get_queue(clean, queue.BULK).enqueue(
        "bot.background.jobs.deliver_message", 999_997, job_id="lane-bulk"
    )
    assert run_worker(clean, burst=True, lane="background") == 0
    assert queue.get_queue(clean, queue.WAKES).count == 0
    assert queue.get_queue(clean, queue.BULK).count == 0
    assert [j.id for j in queue.get_queue(clean, queue.URGENT).jobs] == ["lane-urgent"]


def test_only_the_background_lane_lowers_its_priority(clean, monkeypatch):

    from bot.cli import stack as cli

    niced: list[int] = []
    monkeypatch.setattr(cli.os, "nice", niced.append)
    for lane in ("all", "urgent", "background"):
        cli.yield_cpu(clean.replace(worker_nice=7), lane)
    cli.yield_cpu(clean.replace(worker_nice=0), "background")
    assert niced == [7]


def test_a_busy_drain_hands_on_after_its_slice(clean, client, oa, monkeypatch):
    """With one urgent worker and two drains, a drain that always finds more work must still
    give the other drain its turn: after its slice it queues its successor and returns."""
    for i in range(3):
        post(client, oa, text(oa, f"oSlice{i}", "你好", 7200 + i))
    queue.get_redis(clean).flushdb()
    monkeypatch.setattr(jobs, "BATCH", 1)
    monkeypatch.setattr(jobs, "DRAIN_SLICE", 0.0)
    assert jobs.drain_outbox() == 1  # one batch, then its slice is over
    assert drain_jobs(clean) == [(0, clean.drains)]  # its successor, at the back of the queue
    assert queue.get_redis(clean).get(queue.DRAIN_FLAG.format(part=0))  # still "on its way"
    monkeypatch.setattr(jobs, "DRAIN_SLICE", 60.0)
    assert jobs.drain_outbox() == 2
    assert all(v == ["done"] for v in pending_by_contact(clean).values())


def test_a_drain_that_finds_a_person_waiting_flags_the_urgent_lane_behind(clean, client, oa):
    conn = queue.get_redis(clean)
    post(client, oa, text(oa, "oBehind", "你好", 7300))
    assert jobs.drain_outbox() == 1  # just stored: not behind
    assert not queue.waiting(clean).behind
    post(client, oa, text(oa, "oBehind", "在吗", 7301))
    with db.session_scope(clean.database_url) as s:  # it has waited a second already
        s.execute(
            sa.update(Outbox.__table__)
            .where(Outbox.__table__.c.status == "pending")
            .values(created_at=utcnow() - timedelta(seconds=1))
        )
    assert jobs.drain_outbox() == 1
    assert queue.waiting(clean).behind
    assert 0 < conn.pttl(queue.BEHIND) <= 1000  # for a second, unless a drain says so again


def test_bulk_deliveries_pause_while_the_urgent_lane_is_behind(clean, client, oa, monkeypatch):
    monkeypatch.setattr(jobs, "YIELD_CHECK", 60.0)  # asked once a minute here, not every 20 ms
    slept: list[float] = []
    go_on = jobs.give_way(clean, sleep=slept.append)
    assert go_on() and slept == []  # nobody is waiting
    conn = queue.get_redis(clean)
    conn.set(queue.BEHIND, "1")
    go_on = jobs.give_way(clean, sleep=slept.append)
    assert go_on()
    expected = [jobs.YIELD_STEP] * round(jobs.YIELD_MAX / jobs.YIELD_STEP)
    assert slept == expected  # bounded
    assert go_on() and len(slept) == round(jobs.YIELD_MAX / jobs.YIELD_STEP)  # asked later
    # wakes running late: the same pause
    conn.delete(queue.BEHIND)
    conn.set(queue.WAKES_LATE, "1")
    slept.clear()
    assert jobs.give_way(clean, sleep=slept.append)() and len(slept) == len(expected)
    # a wake is queued: stop at once, no pause (the wake needs this worker, not its sleep)
    queue.get_queue(clean, queue.WAKES).enqueue(
        "bot.background.jobs.wake_due", job_id="waiting-wake"
    )
    slept.clear()
    assert not jobs.give_way(clean, sleep=slept.append)() and slept == []

    # a delivery batch asks before each message, and hands the rest on when told to stop
    conn.flushdb()
    asked: list[int] = []
    monkeypatch.setattr(
        jobs, "give_way", lambda settings: lambda: asked.append(1) or len(asked) < 2
    )
    monkeypatch.setattr(jobs.delivery, "_call", lambda settings, message_id, plan: "sent")
    post(client, oa, event(oa, "oPause", "subscribe"))  # a follower, inside the window
    with db.session_scope(clean.database_url) as s:
        cid = s.execute(sa.select(Event.contact_id)).scalars().first()
        req = {"kind": "text", "payload": {"content": "你好"}, "contact_id": cid}
        rows = [messaging.new_message_row(SendRequest.model_validate(req)) for _ in range(3)]
        ids = messaging.insert_messages(s, rows)
    assert jobs.deliver_messages(ids) == {"sent": 1, "handed_on": 2}
    assert asked == [1, 1]
    [job] = [
        j for j in queue.get_queue(clean, queue.BULK).jobs if j.func_name == messaging.DELIVER_BATCH
    ]
    assert job.args == (ids[1:],)


def test_a_wake_job_flags_the_wakes_late_only_when_its_batches_run_late(clean, monkeypatch):
    """Bulk deliveries pause for wakes that are late, not for a wave that keeps its time."""
    from bot.automation import wakes as journey_wakes

    seen: list[bool] = []

    def wake_due(settings, due_by=None, on_batch=None, may_wait=None):
        for late in (0.0, 0.1, queue.WAKE_LATE + 0.5):
            on_batch(late)
            seen.append(queue.waiting(clean).wakes_late)
        return {"batches": 3, "woken": 0}

    monkeypatch.setattr(journey_wakes, "wake_due", wake_due)
    assert jobs.wake_due() == {"batches": 3, "woken": 0}
    assert seen == [False, False, True]
    assert 0 < queue.get_redis(clean).pttl(queue.WAKES_LATE) <= 1000  # gone a second later


def test_a_wake_job_gives_way_while_answers_are_behind(clean):
    slept: list[float] = []
    before_batch = jobs.wake_gives_way(clean, sleep=slept.append)
    before_batch(0.0)
    assert slept == []  # nobody waits: straight on
    queue.get_redis(clean).set(queue.BEHIND, "1")
    before_batch(0.0)
    assert slept == [jobs.WAKE_YIELD_STEP] * round(jobs.WAKE_YIELD_MAX / jobs.WAKE_YIELD_STEP)
    slept.clear()

    def drain_catches_up(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 3:
            queue.get_redis(clean).delete(queue.BEHIND)

    jobs.wake_gives_way(clean, sleep=drain_catches_up)(0.0)
    assert len(slept) == 3  # on again as soon as the answers are no longer behind


def test_one_wake_job_at_a_time_waits_for_the_next_wake(clean):
    """Of the wake jobs with nothing due, one waits; the others return and free their workers
    (for deliveries); once it lets go, the next may."""
    assert queue.claim_wake_idler(clean, "a", 0.5)
    assert queue.claim_wake_idler(clean, "a", 0.5)  # its own claim, renewed
    assert not queue.claim_wake_idler(clean, "b", 0.5)
    queue.let_go_wake_idler(clean, "b")  # not b's to let go
    assert not queue.claim_wake_idler(clean, "b", 0.5)
    queue.let_go_wake_idler(clean, "a")
    assert queue.claim_wake_idler(clean, "b", 0.5)
    assert 0 < queue.get_redis(clean).pttl(queue.WAKE_IDLER) <= 800  # lapses after its wait


def test_a_lingering_drain_takes_a_row_stored_meanwhile_without_a_new_job(
    clean, client, oa, monkeypatch
):
    """In a long-running worker with nothing else queued, a drain that finds nothing looks
    again for a moment (its flag still set), so the next callback enqueues no job."""
    import threading

    monkeypatch.setattr(queue, "LINGER_QUEUES", (queue.URGENT,))
    monkeypatch.setattr(jobs, "LINGER", 1.0)
    post(client, oa, text(oa, "oLinger", "你好", 7200))
    queue.get_redis(clean).flushdb()
    assert queue.kick_outbox(clean)
    queue.get_queue(clean, queue.URGENT).empty()  # this test runs the drain itself

    def later() -> None:
        import time

        time.sleep(0.3)
        assert post(client, oa, text(oa, "oLinger", "还在吗", 7201)).status == 200

    second = threading.Thread(target=later)
    second.start()
    assert jobs.drain_outbox() == 2  # both texts, in one job
    second.join()
    assert drain_jobs(clean) == []  # the second callback found the flag set
    assert all(v == ["done", "done"] for v in pending_by_contact(clean).values())


def test_a_drain_does_not_linger_when_its_worker_has_jobs_waiting(clean, client, oa, monkeypatch):
    monkeypatch.setattr(queue, "LINGER_QUEUES", (queue.URGENT,))
    assert queue.may_linger(clean)
    queue.get_queue(clean, queue.URGENT).enqueue("bot.background.jobs.send_reminders")
    assert not queue.may_linger(clean)
    monkeypatch.setattr(queue, "LINGER_QUEUES", ())  # burst mode, or not a worker
    queue.get_queue(clean, queue.URGENT).empty()
    assert not queue.may_linger(clean)
