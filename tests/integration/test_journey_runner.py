"""The journey runner against the database, the queue and the simulator: enrollment on a
follow, the first touch delivered once, waits woken (once), re-runs adding nothing, an
unfollow ending the journey, and the /api/journeys endpoints."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

import sqlalchemy as sa
from fixtures import journey_definition
from support import run_worker

from bot.automation import runner as journey_runner
from bot.automation import wake_jobs as journey_wake_jobs
from bot.automation import wakes as journey_wakes
from bot.background import pipeline
from bot.core import db
from bot.core.models import Enrollment, Event, Identity, Message, StepRun, utcnow


def contact_of(settings, openid: str) -> int:
    with db.session_scope(settings.database_url) as s:
        return s.execute(
            sa.select(Identity.contact_id).where(Identity.value == openid)
        ).scalar_one()


def enrollments(settings, contact_id: int) -> list[Enrollment]:
    with db.session_scope(settings.database_url) as s:
        return list(
            s.execute(sa.select(Enrollment).where(Enrollment.contact_id == contact_id)).scalars()
        )


def count(settings, model, *where) -> int:
    with db.session_scope(settings.database_url) as s:
        return s.execute(sa.select(sa.func.count()).select_from(model).where(*where)).scalar_one()


def publish_welcome(client, auth) -> int:
    resp = client.post("/api/journeys", json={"library": "welcome"}, headers=auth)
    assert resp.status_code == 201, resp.get_json()
    jid = resp.get_json()["id"]
    resp = client.post(f"/api/journeys/{jid}/publish", headers=auth)
    assert resp.status_code == 200 and resp.get_json()["status"] == "published"
    return jid


def customs(sim, openid: str) -> list[dict]:
    return sim.inbox(openid, kind="custom")


def test_follow_enrolls_sends_once_waits_and_wakes_once(
    sim, sim_settings, sim_client, auth, env_to_sim
):
    publish_welcome(sim_client, auth)
    assert sim.follow("oJourney").status == 200
    run_worker(sim_settings)
    cid = contact_of(sim_settings, "oJourney")
    [e] = enrollments(sim_settings, cid)
    assert (e.status, e.step) == ("waiting", "wait_day2")
    assert e.wake_at is not None
    [first] = customs(sim, "oJourney")
    assert "欢迎关注鱼池" in first["payload"]["text"]["content"]
    assert count(sim_settings, StepRun, StepRun.enrollment_id == e.id, StepRun.kind == "Send") == 1

    # the same event through the pipeline again: no new run-log rows, no new messages
    runs, messages = count(sim_settings, StepRun), count(sim_settings, Message)
    with db.session_scope(sim_settings.database_url) as s:
        ev = s.execute(
            sa.select(Event).where(Event.contact_id == cid, Event.type == "oa.subscribe")
        ).scalar_one()
        journey_runner.on_event(pipeline.Context(sim_settings, s, ev))
    assert (count(sim_settings, StepRun), count(sim_settings, Message)) == (runs, messages)
    assert len(enrollments(sim_settings, cid)) == 1

    # too early: nothing happens
    assert journey_wakes.wake(sim_settings, e.id, e.wake_at - timedelta(minutes=1)) == "not_due"
    # due: the next touch, exactly once even if woken twice
    later = e.wake_at + timedelta(minutes=1)
    assert journey_wakes.wake(sim_settings, e.id, later) == "waiting"
    assert journey_wakes.wake(sim_settings, e.id, later) == "not_due"
    run_worker(sim_settings)
    got = customs(sim, "oJourney")
    assert len(got) == 2
    # the article's link is tracked (/r/<code>) and leads to the article
    tracked = urlsplit(got[1]["payload"]["news"]["articles"][0]["url"])
    assert tracked.path.startswith("/r/")
    assert sim_client.get(tracked.path).headers["Location"].endswith("/articles/intro")
    [e2] = enrollments(sim_settings, cid)
    assert e2.step == "wait_day5" and e2.wake_at > e.wake_at
    assert count(sim_settings, StepRun, StepRun.enrollment_id == e.id, StepRun.kind == "Send") == 2

    # the journey list of the contact
    resp = sim_client.get(f"/api/contacts/{cid}/journeys", headers=auth)
    assert resp.status_code == 200
    [listed] = resp.get_json()["enrollments"]
    assert (listed["journey"], listed["step"]) == ("welcome", "wait_day5")

    # unfollow ends it
    assert sim.unfollow("oJourney").status == 200
    run_worker(sim_settings)
    [e3] = enrollments(sim_settings, cid)
    assert e3.status == "exited" and e3.ended_at is not None and e3.wake_at is None
    assert journey_wakes.wake(sim_settings, e.id, later + timedelta(days=10)) == "exited"
    assert len(customs(sim, "oJourney")) == 2


def test_entry_once_and_sweeper_requeues_lost_wakes(
    sim, sim_settings, sim_client, auth, env_to_sim
):
    publish_welcome(sim_client, auth)
    sim.follow("oOnce")
    run_worker(sim_settings)
    cid = contact_of(sim_settings, "oOnce")
    [e] = enrollments(sim_settings, cid)
    with db.session_scope(sim_settings.database_url) as s:  # pretend the wake is overdue
        row = s.get(Enrollment, e.id)
        row.wake_at = row.wake_at - timedelta(days=30)
    from bot.core import queue

    queue.get_redis(sim_settings).flushdb()  # Redis lost the scheduled job
    assert journey_wake_jobs.sweep(sim_settings) == 1
    assert journey_wake_jobs.sweep(sim_settings) == 0  # the job is alive now
    sim.unfollow("oOnce")
    sim.follow("oOnce")
    run_worker(sim_settings)
    assert len(enrollments(sim_settings, cid)) == 1  # entry: once


def test_api_create_validate_and_not_found(client, auth):
    bad = journey_definition("dangling_next")
    resp = client.post("/api/journeys", json={"name": "bad", "definition": bad}, headers=auth)
    assert resp.status_code == 422
    problems = resp.get_json()["problems"]
    assert problems and any(p["step"] == "start" for p in problems)

    good = journey_definition("hello")
    resp = client.post("/api/journeys", json={"name": "hi", "definition": good}, headers=auth)
    assert resp.status_code == 201
    jid = resp.get_json()["id"]
    assert resp.get_json()["status"] == "draft"
    assert client.post(f"/api/journeys/{jid}/resume", headers=auth).status_code == 409
    assert client.post(f"/api/journeys/{jid}/publish", headers=auth).status_code == 200
    assert client.post(f"/api/journeys/{jid}/pause", headers=auth).get_json()["status"] == "paused"
    assert client.post(f"/api/journeys/{jid}/resume", headers=auth).status_code == 200
    assert client.post("/api/journeys", json={"library": "nope"}, headers=auth).status_code == 422
    assert client.post("/api/journeys/999999/publish", headers=auth).status_code == 404
    assert client.get("/api/contacts/999999/journeys", headers=auth).status_code == 404
    assert client.post("/api/journeys", json={"library": "welcome"}).status_code == 401


def test_due_wakes_are_batched_and_a_long_run_hands_over(
    sim, sim_settings, sim_client, auth, env_to_sim, monkeypatch
):
    publish_welcome(sim_client, auth)
    openids = [f"oBatch{i}" for i in range(5)]
    for openid in openids:
        sim.follow(openid)
    run_worker(sim_settings)
    with db.session_scope(sim_settings.database_url) as s:  # every wait ends now
        for e in s.execute(sa.select(Enrollment)).scalars():
            e.wake_at = e.wake_at - timedelta(days=3)
            e.state = {**e.state, "wake_at": e.wake_at.isoformat()}
    monkeypatch.setattr(journey_wakes, "WAKE_SLICE", 0.0)
    assert journey_wakes.wake_due(sim_settings, batch=2) == {"batches": 1, "woken": 2}
    run_worker(sim_settings)  # the continuation job wakes the rest
    for openid in openids:
        [e] = enrollments(sim_settings, contact_of(sim_settings, openid))
        assert e.step == "wait_day5"
        assert len(customs(sim, openid)) == 2  # the welcome and the day-2 touch, once each


def test_a_due_row_the_engine_does_not_move_is_not_picked_forever(
    sim, sim_settings, sim_client, auth, env_to_sim
):
    publish_welcome(sim_client, auth)
    sim.follow("oOdd")
    run_worker(sim_settings)
    [e] = enrollments(sim_settings, contact_of(sim_settings, "oOdd"))
    with db.session_scope(sim_settings.database_url) as s:  # the column alone says "due"
        s.get(Enrollment, e.id).wake_at = e.wake_at - timedelta(days=3)
    assert journey_wakes.wake_due(sim_settings) == {"batches": 1, "woken": 1}
    [after] = enrollments(sim_settings, contact_of(sim_settings, "oOdd"))
    assert (after.step, after.wake_at) == ("wait_day2", e.wake_at)


def make_all_due(settings) -> None:
    with db.session_scope(settings.database_url) as s:
        for e in s.execute(sa.select(Enrollment)).scalars():
            e.wake_at = e.wake_at - timedelta(days=3)
            e.state = {**e.state, "wake_at": e.wake_at.isoformat()}


def test_a_wake_batch_claims_once_and_delivers_its_sends_in_one_job(
    sim, sim_settings, sim_client, auth, env_to_sim
):
    from bot.core import queue

    publish_welcome(sim_client, auth)
    openids = [f"oBulk{i}" for i in range(4)]
    for openid in openids:
        sim.follow(openid)
    run_worker(sim_settings)
    make_all_due(sim_settings)
    late: list[float] = []
    assert journey_wakes.wake_due(sim_settings, on_batch=late.append) == {"batches": 1, "woken": 4}
    assert late[0] == 0.0 and late[1] > 86400  # told how late the batch ran: over a day
    [job] = [j for j in queue.get_queue(sim_settings).jobs if "deliver" in j.func_name]
    [ids] = job.args  # the four day-2 touches, one delivery job
    assert job.func_name == "bot.background.jobs.deliver_messages" and len(ids) == 4
    runs = count(sim_settings, StepRun)
    assert journey_wakes.wake_due(sim_settings) == {"batches": 0, "woken": 0}
    assert count(sim_settings, StepRun) == runs
    run_worker(sim_settings)
    for openid in openids:
        assert len(customs(sim, openid)) == 2  # the welcome and the day-2 touch, once each


def test_a_contact_due_in_two_journeys_moves_in_both(
    sim, sim_settings, sim_client, auth, env_to_sim
):
    jid = publish_welcome(sim_client, auth)
    # the same series under another name: two journeys, two enrollments
    definition = sim_client.get(f"/api/journeys/{jid}", headers=auth).get_json()["definition"]
    body = {"name": "welcome again", "definition": definition}
    copy = sim_client.post("/api/journeys", json=body, headers=auth).get_json()["id"]
    assert sim_client.post(f"/api/journeys/{copy}/publish", headers=auth).status_code == 200
    sim.follow("oTwice")
    run_worker(sim_settings)
    cid = contact_of(sim_settings, "oTwice")
    assert len(enrollments(sim_settings, cid)) == 2
    make_all_due(sim_settings)
    # one batch takes one of a contact's enrollments: the next sees what the first changed
    assert journey_wakes.wake_due(sim_settings) == {"batches": 2, "woken": 2}
    assert {e.step for e in enrollments(sim_settings, cid)} == {"wait_day5"}
    run_worker(sim_settings)
    assert len(customs(sim, "oTwice")) == 4


def test_a_wake_job_with_nothing_due_waits_for_a_wake_under_a_second_away(
    sim, sim_settings, sim_client, auth, env_to_sim
):
    publish_welcome(sim_client, auth)
    sim.follow("oSoon")
    run_worker(sim_settings)
    soon = utcnow() + timedelta(seconds=0.4)
    with db.session_scope(sim_settings.database_url) as s:  # the wait ends in 0.4 s
        for e in s.execute(sa.select(Enrollment)).scalars():
            e.wake_at = soon
            e.state = {**e.state, "wake_at": soon.isoformat()}
    # another job waits for it already: this one returns at once, its worker free
    asked: list[float] = []
    got = journey_wakes.wake_due(sim_settings, may_wait=lambda s: asked.append(s) or False)
    assert got == {"batches": 0, "woken": 0} and 0.1 < asked[0] <= 0.45 and utcnow() < soon
    # the job finds nothing due, sees the wake coming, and takes it itself
    assert journey_wakes.wake_due(sim_settings) == {"batches": 1, "woken": 1}
    assert utcnow() >= soon
    [e] = enrollments(sim_settings, contact_of(sim_settings, "oSoon"))
    assert e.step == "wait_day5"
    # a wake days away is the scheduled job's: this one returns at once
    assert journey_wakes.wake_due(sim_settings) == {"batches": 0, "woken": 0}
