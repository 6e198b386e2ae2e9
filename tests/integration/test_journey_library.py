"""The three ready-made journeys end to end through the simulator: a follower scans the lead
poster, answers the BANT questions in Chinese (each next question comes back as the instant
passive reply), is scored and handed to sales; the welcome series' touches; a silent follower
re-engaged by the segment sweep."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from fixtures import journey_definition
from support import post, run_worker, text

from bot.automation import enroll as journey_enroll
from bot.automation import segments as journey_segments
from bot.automation import wakes as journey_wakes
from bot.core import db
from bot.core.models import (
    Contact,
    ContactTag,
    Enrollment,
    Event,
    Identity,
    LeadAssignment,
    Message,
    Rep,
    ReplyRule,
    utcnow,
)
from bot.scoring.explain import explain


def publish(client, auth, name: str) -> int:
    resp = client.post("/api/journeys", json={"library": name}, headers=auth)
    assert resp.status_code == 201, resp.get_json()
    jid = resp.get_json()["id"]
    resp = client.post(f"/api/journeys/{jid}/publish", headers=auth)
    assert resp.status_code == 200, resp.get_json()
    return jid


def contact_of(settings, openid: str) -> int:
    with db.session_scope(settings.database_url) as s:
        return s.execute(
            sa.select(Identity.contact_id).where(Identity.value == openid)
        ).scalar_one()


def enrollment(settings, contact_id: int, journey_id: int) -> Enrollment:
    with db.session_scope(settings.database_url) as s:
        return s.execute(
            sa.select(Enrollment).where(
                Enrollment.contact_id == contact_id, Enrollment.journey_id == journey_id
            )
        ).scalar_one()


def add_rep(sim, settings, userid: str, name: str) -> None:
    sim.add_rep(userid, name=name)
    with db.session_scope(settings.database_url) as s:
        s.add(Rep(userid=userid, name=name, active=True, capacity=10, synced_at=utcnow()))


def test_bant_by_conversation_scores_and_hands_off(sim, sim_settings, sim_client, auth, env_to_sim):
    add_rep(sim, sim_settings, "zhang", "张三")
    bant = publish(sim_client, auth, "bant")
    with db.session_scope(sim_settings.database_url) as s:  # a keyword rule that must stay quiet
        s.add(
            ReplyRule(
                name="老板",
                trigger="keyword",
                keywords=["老板"],
                reply_type="text",
                reply={"content": "关键词回复"},
            )
        )
    assert sim.follow("oBant", scene="lead_poster").status == 200
    run_worker(sim_settings)
    [first] = sim.inbox("oBant", kind="custom")
    assert "预算大概是多少" in first["payload"]["text"]["content"]
    cid = contact_of(sim_settings, "oBant")
    assert enrollment(sim_settings, cid, bant).status == "asking"

    # 「预算大概五万左右」: a synonym on jieba tokens; the next question is the passive reply.
    r = sim.say("oBant", "预算大概五万左右")
    assert r.status == 200 and "什么时候开始" in r.text
    r = sim.say("oBant", "嗯……这个不好说吧")  # no match: re-asked once, with the hint
    assert "回复数字" in r.text
    r = sim.say("oBant", "下个月就要用")
    assert "你的角色是" in r.text
    r = sim.say("oBant", "我是老板")
    assert "谢谢你的耐心回答" in r.text and "2-10万" in r.text
    assert "关键词回复" not in r.text
    run_worker(sim_settings)

    e = enrollment(sim_settings, cid, bant)
    assert e.status == "converted"  # the goal: stage sql
    assert e.state["answers"] == {"budget": "2-10万", "timeline": "1个月内", "role": "决策人"}
    with db.session_scope(sim_settings.database_url) as s:
        k = s.get(Contact, cid)
        assert k.stage == "sql"
        assert k.owner_userid == "zhang"
        tags = set(
            s.execute(sa.select(ContactTag.tag).where(ContactTag.contact_id == cid)).scalars()
        )
        assert "BANT:合格" in tags
        [lead] = s.execute(
            sa.select(LeadAssignment).where(LeadAssignment.contact_id == cid)
        ).scalars()
        assert lead.userid == "zhang" and "BANT 合格" in lead.reason
        explained = explain(s, cid, utcnow())
        reasons = " ".join(ln.get("reason") or "" for ln in explained["lines"])
        assert "budget: 2-10万" in reasons and "role: 决策人" in reasons
        # the answers went out as passive replies: stored as sent, never through the API
        passive = s.execute(
            sa.select(sa.func.count()).where(
                Message.contact_id == cid, Message.sent_kind == "passive"
            )
        ).scalar_one()
        assert passive == 4
        answers = s.execute(
            sa.select(Event.properties).where(
                Event.contact_id == cid, Event.type == "journey.answer"
            )
        ).scalars()
        assert {p["attribute"] for p in answers} == {"budget", "timeline", "role"}
    assert len(sim.inbox("oBant", kind="custom")) == 1  # only the first question
    # the rep was told on WeCom
    assert any("新线索" in str(m) for m in sim.inbox(userid="zhang"))


def test_an_answer_in_the_first_second_after_the_question_gets_the_journeys_reply(
    sim, sim_settings, sim_client, auth, env_to_sim
):
    """The callback reads ``contact.asking`` instead of the enrollments; it is set in the
    transaction that makes the enrollment ask, so there is no moment after the question has
    gone out in which an answer would be taken for a keyword."""
    publish(sim_client, auth, "bant")
    with db.session_scope(sim_settings.database_url) as s:  # would answer 五万 otherwise
        s.add(
            ReplyRule(
                name="五万",
                trigger="keyword",
                keywords=["五万"],
                reply_type="text",
                reply={"content": "关键词回复"},
            )
        )
    assert sim.follow("oFast", scene="lead_fast").status == 200
    run_worker(sim_settings)  # the question is sent, and nothing else runs before the answer
    cid = contact_of(sim_settings, "oFast")
    with db.session_scope(sim_settings.database_url) as s:
        assert s.get(Contact, cid).asking is True  # committed with the question's move
        asked = s.execute(
            sa.select(sa.func.min(Message.sent_at)).where(
                Message.contact_id == cid, Message.sent_kind != "passive"
            )
        ).scalar_one()
    r = sim.say("oFast", "预算大概五万左右")  # at once: no drain, no sweep in between
    assert asked is not None
    assert r.status == 200 and "什么时候开始" in r.text and "关键词回复" not in r.text


def test_a_retried_answer_callback_changes_nothing(
    sim, sim_settings, sim_client, auth, oa, env_to_sim
):
    bant = publish(sim_client, auth, "bant")
    sim.follow("oRetry", scene="lead_x")
    run_worker(sim_settings)
    cid = contact_of(sim_settings, "oRetry")
    fields = text(oa, "oRetry", "3", msg_id=7_000_001)
    first = post(sim_client, oa, fields)
    assert "什么时候开始" in first.fields["Content"]
    after_first = enrollment(sim_settings, cid, bant).state
    again = post(sim_client, oa, fields)  # WeChat's retry: the same MsgId
    assert again.fields["Content"] == first.fields["Content"]
    assert enrollment(sim_settings, cid, bant).state == after_first
    with db.session_scope(sim_settings.database_url) as s:
        assert (
            s.execute(
                sa.select(sa.func.count()).where(
                    Message.contact_id == cid, Message.sent_kind == "passive"
                )
            ).scalar_one()
            == 1
        )


def test_keyword_replies_come_back_once_the_question_is_closed(
    sim, sim_settings, sim_client, auth, env_to_sim
):
    publish(sim_client, auth, "bant")
    with db.session_scope(sim_settings.database_url) as s:
        s.add(
            ReplyRule(
                name="价格",
                trigger="keyword",
                keywords=["价格"],
                reply_type="text",
                reply={"content": "价格表在这里"},
            )
        )
    sim.follow("oKw", scene="lead_y")
    run_worker(sim_settings)
    assert "价格表" not in sim.say("oKw", "价格").text  # the journey's: re-asked
    cid = contact_of(sim_settings, "oKw")
    with db.session_scope(sim_settings.database_url) as s:
        journey_enroll.exit_all(s, cid, utcnow(), "removed by a test")
    assert "价格表在这里" in sim.say("oKw", "价格").text


def asking(settings, contact_id: int) -> bool:
    with db.session_scope(settings.database_url) as s:
        return s.get(Contact, contact_id).asking


def test_the_asking_flag_is_set_with_the_question_and_cleared_when_none_is_open(
    sim, sim_settings, sim_client, auth, oa, env_to_sim
):
    bant = publish(sim_client, auth, "bant")
    sim.follow("oFast", scene="lead_z")
    cid = contact_of(sim_settings, "oFast")
    assert not asking(sim_settings, cid)
    run_worker(sim_settings)  # the first question: committed with the flag, then sent
    assert enrollment(sim_settings, cid, bant).status == "asking"
    assert asking(sim_settings, cid)
    # answered at once (before anything else ran): the journey's next question comes back
    # as the passive reply
    reply = post(sim_client, oa, text(oa, "oFast", "3", msg_id=7_000_101))
    assert "什么时候开始" in reply.fields["Content"]
    assert asking(sim_settings, cid)  # the next question is open
    with db.session_scope(sim_settings.database_url) as s:
        journey_enroll.exit_all(s, cid, utcnow(), "removed by a test")
    assert not asking(sim_settings, cid)  # no open question left: keyword replies again


def test_a_stopped_journey_clears_the_flag(sim, sim_settings, sim_client, auth, env_to_sim):
    bant = publish(sim_client, auth, "bant")
    sim.follow("oStop", scene="lead_s")
    run_worker(sim_settings)
    cid = contact_of(sim_settings, "oStop")
    assert asking(sim_settings, cid)
    assert sim_client.post(f"/api/journeys/{bant}/stop", headers=auth).status_code == 200
    assert not asking(sim_settings, cid)


def test_welcome_series_three_touches_over_five_days(
    sim, sim_settings, sim_client, auth, env_to_sim
):
    welcome = publish(sim_client, auth, "welcome")
    sim.follow("oWelcome")
    run_worker(sim_settings)
    cid = contact_of(sim_settings, "oWelcome")
    sim.say("oWelcome", "你们的价格怎么样")  # an interest tag for the day-2 branch
    run_worker(sim_settings)
    sent = []
    for _ in range(4):
        e = enrollment(sim_settings, cid, welcome)
        if e.status != "waiting":
            break
        status = journey_wakes.wake(sim_settings, e.id, now=e.wake_at + timedelta(seconds=1))
        assert status in ("waiting", "done", "converted")
        run_worker(sim_settings)
    e = enrollment(sim_settings, cid, welcome)
    assert e.status in ("done", "converted")
    sent = sim.inbox("oWelcome", kind="custom")
    assert len(sent) == 3, sent
    started = e.started_at
    assert e.ended_at - started <= timedelta(days=6)


def test_reengagement_reaches_followers_silent_for_30_days(
    sim, sim_settings, sim_client, auth, env_to_sim
):
    reengage = publish(sim_client, auth, "reengage")
    sim.follow("oSilent")
    sim.follow("oActive")
    run_worker(sim_settings)
    silent, active = contact_of(sim_settings, "oSilent"), contact_of(sim_settings, "oActive")
    with db.session_scope(sim_settings.database_url) as s:
        long_ago = utcnow() - timedelta(days=31)
        s.execute(sa.update(Contact).where(Contact.id == silent).values(last_seen_at=long_ago))
    found = journey_segments.sweep(sim_settings, force=True)
    assert found["entered"] == 1
    assert journey_segments.sweep(sim_settings, force=True)["entered"] == 0  # once at a time
    e = enrollment(sim_settings, silent, reengage)
    assert e.status == "waiting"
    with db.session_scope(sim_settings.database_url) as s:
        assert (
            s.execute(
                sa.select(Enrollment.id)
                .where(Enrollment.contact_id == active)
                .where(Enrollment.journey_id == reengage)
            ).first()
            is None
        )


def test_publishing_checks_tags_against_everything_that_gives_them(sim_client, auth):
    for name in ("welcome", "bant", "reengage"):  # on a fresh database: the defaults suffice
        jid = sim_client.post("/api/journeys", json={"library": name}, headers=auth).get_json()[
            "id"
        ]
        assert sim_client.post(f"/api/journeys/{jid}/publish", headers=auth).status_code == 200
    unknown = journey_definition("unknown_tag")
    jid = sim_client.post(
        "/api/journeys", json={"name": "VIP", "definition": unknown}, headers=auth
    ).get_json()["id"]
    resp = sim_client.post(f"/api/journeys/{jid}/publish", headers=auth)
    assert resp.status_code == 422
    [problem] = resp.get_json()["problems"]
    assert problem["step"] == "is_vip" and "从没有过的标签" in problem["message"]


def test_a_tag_given_while_answering_in_the_callback_starts_its_journey(
    sim, sim_settings, sim_client, auth, env_to_sim
):
    add_rep(sim, sim_settings, "li", "李四")
    publish(sim_client, auth, "bant")
    follow_up = journey_definition("qualified_follow_up")
    resp = sim_client.post(
        "/api/journeys", json={"name": "合格线索跟进", "definition": follow_up}, headers=auth
    )
    jid = resp.get_json()["id"]
    assert sim_client.post(f"/api/journeys/{jid}/publish", headers=auth).status_code == 200
    sim.follow("oTagged", scene="lead_tag")
    run_worker(sim_settings)
    for answer in ("3", "1", "1"):
        assert sim.say("oTagged", answer).status == 200
    run_worker(sim_settings)
    e = enrollment(sim_settings, contact_of(sim_settings, "oTagged"), jid)
    assert e.status == "done"
    assert any("合格线索，请尽快联系" in str(m) for m in sim.inbox(userid="li"))
