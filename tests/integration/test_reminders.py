"""Next-follow-up reminders: the rep's WeCom app message goes out exactly once, whether the
job runs, runs twice, dies halfway, or is lost with Redis (the sweeper)."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
import sqlalchemy as sa
from rq.registry import ScheduledJobRegistry
from support import run_worker
from test_handoff import follower, reps

from bot.background import sweeper
from bot.core import db, queue
from bot.core.models import Event, FollowUpReminder, Message, utcnow
from bot.sales import reminders


def reminder(settings, rid: int) -> FollowUpReminder:
    with db.session_scope(settings.database_url) as s:
        return s.get(FollowUpReminder, rid)


def make_due(settings, rid: int, ago: timedelta = timedelta(hours=1)) -> None:
    with db.session_scope(settings.database_url) as s:
        s.execute(
            sa.update(FollowUpReminder.__table__)
            .where(FollowUpReminder.__table__.c.id == rid)
            .values(due_at=utcnow() - ago)
        )


def app_messages(sim, userid: str) -> list[str]:
    """Each app message as one text: a text card's title, description and link."""
    cards = [m["payload"]["textcard"] for m in sim.inbox(userid=userid, kind="app")]
    return [f"{c['title']}\n{c['description']}\n{c['url']}" for c in cards]


def reminder_rows(settings) -> int:
    with db.session_scope(settings.database_url) as s:
        return s.execute(
            sa.select(sa.func.count()).where(Message.idempotency_key.like("reminder-%"))
        ).scalar_one()


@pytest.fixture
def setup(sim, sim_settings, env_to_sim):
    reps(sim, sim_settings, ("chen", "陈"))
    cid = follower(sim, sim_settings, "oRemind")
    return sim, sim_settings, cid


def test_a_due_reminder_is_sent_once_even_when_its_job_runs_twice(setup):
    sim, settings, cid = setup
    due = utcnow() + timedelta(minutes=30)
    r = reminders.set_reminder(settings, cid, "chen", due, "回电话确认预算")
    registry = ScheduledJobRegistry(queue=queue.get_queue(settings, queue.WAKES))
    assert registry.get_job_ids() == [reminders.job_id(math.ceil(due.timestamp()))]
    assert reminders.send_due(settings) == 0  # not due yet
    with db.session_scope(settings.database_url) as s:
        [noted] = s.execute(
            sa.select(Event.properties).where(
                Event.contact_id == cid, Event.type == "sales.reminder_set"
            )
        ).scalars()
        assert noted["text"] == "回电话确认预算"
        assert [x.id for x in reminders.reminders_for(s, cid)] == [r.id]

    later = due + timedelta(seconds=1)
    assert reminders.send_due(settings, now=later) == 1
    assert reminders.send_due(settings, now=later) == 0  # the same job again: nothing new
    run_worker(settings)
    [text] = app_messages(sim, "chen")
    assert "跟进提醒" in text and "回电话确认预算" in text
    assert text.endswith(f"{settings.public_url}/sidebar/contacts/{cid}")  # the sidebar page
    got = reminder(settings, r.id)
    assert got.status == "sent" and got.message_id is not None

    # A retried job that died after creating the message but before noting it: the same
    # idempotency key finds the message, nothing new is sent.
    with db.session_scope(settings.database_url) as s:
        s.execute(sa.update(FollowUpReminder.__table__).values(message_id=None))
    assert reminders.send_due(settings, now=later) == 1
    run_worker(settings)
    assert reminder_rows(settings) == 1 and len(app_messages(sim, "chen")) == 1
    assert reminder(settings, r.id).message_id == got.message_id


def test_a_reminder_whose_job_redis_lost_is_sent_by_the_sweeper(setup):
    sim, settings, cid = setup
    r = reminders.set_reminder(settings, cid, "chen", utcnow() + timedelta(hours=2), "发报价单")
    queue.get_redis(settings).flushdb()  # the scheduled job is gone
    make_due(settings, r.id)
    counts = sweeper.sweep_all(settings)
    assert counts["reminders"] == 1
    assert sweeper.sweep_all(settings)["reminders"] == 0  # its job is on its way
    run_worker(settings)  # the sweep's job, then the message's delivery
    run_worker(settings)
    assert len(app_messages(sim, "chen")) == 1
    assert reminder(settings, r.id).status == "sent"
    sweeper.sweep_all(settings)
    run_worker(settings)
    assert len(app_messages(sim, "chen")) == 1


def test_a_claimed_reminder_without_its_message_is_finished_by_the_sweeper(setup):
    """The job claimed the row (pending → sent) and died before creating the message."""
    sim, settings, cid = setup
    r = reminders.set_reminder(settings, cid, "chen", utcnow() + timedelta(hours=2), "约见面")
    with db.session_scope(settings.database_url) as s:
        s.execute(
            sa.update(FollowUpReminder.__table__).values(
                status="sent", sent_at=utcnow() - timedelta(minutes=5)
            )
        )
    queue.get_redis(settings).flushdb()
    assert sweeper.sweep_all(settings)["reminders"] == 1
    run_worker(settings)
    run_worker(settings)
    assert len(app_messages(sim, "chen")) == 1 and reminder(settings, r.id).message_id


def test_a_new_reminder_replaces_the_pending_one_and_bad_ones_are_refused(setup):
    sim, settings, cid = setup
    first = reminders.set_reminder(settings, cid, "chen", utcnow() + timedelta(hours=1), "第一次")
    second = reminders.set_reminder(settings, cid, "chen", utcnow() + timedelta(hours=2), "第二次")
    assert reminder(settings, first.id).status == "cancelled"
    for r in (first, second):
        make_due(settings, r.id)
    assert reminders.send_due(settings) == 1
    run_worker(settings)
    [text] = app_messages(sim, "chen")
    assert "第二次" in text
    assert reminders.cancel_reminder(settings, second.id, "chen") is False  # already sent

    third = reminders.set_reminder(settings, cid, "chen", utcnow() + timedelta(hours=1), "第三次")
    assert reminders.cancel_reminder(settings, third.id, "someone_else") is False
    assert reminders.cancel_reminder(settings, third.id, "chen") is True
    make_due(settings, third.id)
    assert reminders.send_due(settings) == 0

    soon = utcnow() + timedelta(hours=1)
    for args, words in [
        ((999_999, "chen", soon, "x"), "no contact"),
        ((cid, "nobody", soon, "x"), "not an active rep"),
        ((cid, "chen", utcnow() - timedelta(hours=1), "x"), "passed"),
        ((cid, "chen", soon.replace(tzinfo=None), "x"), "zone"),
        ((cid, "chen", soon, "  "), "text"),
    ]:
        with pytest.raises(reminders.ReminderError, match=words):
            reminders.set_reminder(settings, *args)


def test_a_merge_moves_the_reminder_to_the_surviving_contact(setup):
    from bot.contacts import identity

    sim, settings, cid = setup
    other = follower(sim, settings, "oRemindTwin")
    r = reminders.set_reminder(settings, other, "chen", utcnow() + timedelta(hours=1), "同一个人")
    with db.session_scope(settings.database_url) as s:
        survivor, _ = identity.merge(s, cid, other, "test")
    assert reminder(settings, r.id).contact_id == survivor == min(cid, other)


def test_two_jobs_at_once_send_one_message(setup):
    import threading

    sim, settings, cid = setup
    r = reminders.set_reminder(settings, cid, "chen", utcnow() + timedelta(hours=1), "同时")
    make_due(settings, r.id)
    barrier, errors = threading.Barrier(2), []

    def job() -> None:
        try:
            barrier.wait()
            reminders.send_due(settings)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=job) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    run_worker(settings)
    assert reminder_rows(settings) == 1 and len(app_messages(sim, "chen")) == 1
