"""journeys.engine.advance with a fake clock: every step type, pure (no DB, no Redis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from journeys import (
    AddPoints,
    AddTag,
    Answered,
    CallWebhook,
    Contact,
    Converted,
    Enrollment,
    EnterJourney,
    Event,
    Exit,
    HandOff,
    NotifyRep,
    RemoveTag,
    Schedule,
    Send,
    SetField,
    SetStage,
    State,
    advance,
    check,
    may_enter,
    start,
)
from journeys.engine import MAX_STEPS, awaits, could_start, split_bucket, triggered_by
from journeys.model import Definition, EntryRule

SH = ZoneInfo("Asia/Shanghai")
NY = ZoneInfo("America/New_York")
T0 = datetime(2025, 3, 3, 9, 0, tzinfo=SH)  # a Monday morning in Shanghai
SUB = Event("oa.subscribe", {"scene": ""})


def journey(*steps: dict, **extra) -> Definition:
    trigger = {"id": "start", "type": "trigger", "event": "oa.subscribe", "next": steps[0]["id"]}
    return Definition.model_validate(
        {"id": "t", "name": "测试", **extra, "steps": [trigger, *steps]}
    )


def send(sid: str, text: str, nxt: str | None = None) -> dict:
    return {
        "id": sid,
        "type": "action",
        "do": "send",
        "kind": "text",
        "payload": {"content": text},
        "next": nxt,
    }


def texts(commands) -> list[str]:
    return [c.payload["content"] for c in commands if isinstance(c, Send)]


def kinds(commands) -> list[str]:
    return [type(c).__name__ for c in commands]


# --- waits ---------------------------------------------------------------------------------


def test_duration_wait_schedules_and_ignores_early_wakes():
    d = journey({"id": "w", "type": "wait", "duration": "2d", "next": "s"}, send("s", "第三天"))
    state, cmds = start(d, SUB, T0, Contact(1))
    assert state.status == "waiting" and state.step == "w"
    assert cmds == [Schedule(step="w", wake_at=T0 + timedelta(days=2))]
    assert advance(d, state, None, T0 + timedelta(days=1), Contact(1)) == (state, [])
    assert advance(d, state, Event("oa.text", {"content": "hi"}), T0, Contact(1)) == (state, [])
    state, cmds = advance(d, state, None, T0 + timedelta(days=2), Contact(1))
    assert texts(cmds) == ["第三天"] and state.status == "done"
    assert cmds[0].reply is False  # the clock, not a message: no passive reply


def test_time_of_day_in_the_contacts_zone_shanghai():
    d = journey(
        {"id": "w", "type": "wait", "after": "1d", "at": "10:00", "next": "s"}, send("s", "早上好")
    )
    state, cmds = start(d, SUB, T0, Contact(1, timezone="Asia/Shanghai"))
    assert state.wake_at == datetime(2025, 3, 4, 10, 0, tzinfo=SH)
    assert state.wake_at.utcoffset() == timedelta(0)  # stored in UTC


def test_time_of_day_today_if_still_ahead_else_tomorrow():
    d = journey({"id": "w", "type": "wait", "at": "20:00", "next": "s"}, send("s", "晚上好"))
    state, _ = start(d, SUB, T0, Contact(1))
    assert state.wake_at == datetime(2025, 3, 3, 20, 0, tzinfo=SH)
    state, _ = start(d, SUB, T0.replace(hour=21), Contact(1))
    assert state.wake_at == datetime(2025, 3, 4, 20, 0, tzinfo=SH)


def test_time_of_day_across_a_dst_change():
    # New York springs forward on 2025-03-09: 09:00 is 14:00 UTC before, 13:00 UTC after.
    d = journey({"id": "w", "type": "wait", "at": "09:00", "next": "s"}, send("s", "hi"))
    ny = Contact(1, timezone="America/New_York")
    state, _ = start(d, SUB, datetime(2025, 3, 7, 12, 0, tzinfo=NY), ny)
    assert state.wake_at == datetime(2025, 3, 8, 14, 0, tzinfo=UTC)
    state, _ = start(d, SUB, datetime(2025, 3, 8, 12, 0, tzinfo=NY), ny)
    assert state.wake_at == datetime(2025, 3, 9, 13, 0, tzinfo=UTC)
    assert state.wake_at.astimezone(NY).hour == 9
    # `after` is absolute time: 1d after Saturday 20:00 EST is Sunday 21:00 EDT -> Monday 09:00
    d = journey(
        {"id": "w", "type": "wait", "after": "1d", "at": "09:00", "next": "s"}, send("s", "hi")
    )
    state, _ = start(d, SUB, datetime(2025, 3, 8, 20, 0, tzinfo=NY), ny)
    assert state.wake_at == datetime(2025, 3, 10, 13, 0, tzinfo=UTC)
    # the same wait in Shanghai (no DST): 09:00 is always 01:00 UTC
    sh = Contact(1, timezone="Asia/Shanghai")
    state, _ = start(d, SUB, datetime(2025, 3, 8, 20, 0, tzinfo=NY), sh)
    assert state.wake_at == datetime(2025, 3, 10, 1, 0, tzinfo=UTC)  # exactly 09:00 then


def test_account_zone_and_explicit_zone_and_date():
    steps = (
        {"id": "w", "type": "wait", "at": "09:00", "timezone": "account", "next": "s"},
        send("s", "hi"),
    )
    d = journey(*steps, timezone="America/New_York")
    state, _ = start(
        d, SUB, datetime(2025, 7, 1, 12, tzinfo=UTC), Contact(1, timezone="Asia/Shanghai")
    )
    assert state.wake_at == datetime(2025, 7, 1, 13, 0, tzinfo=UTC)  # 09:00 EDT
    d = journey(
        {
            "id": "w",
            "type": "wait",
            "date": "2025-11-11",
            "at": "00:00",
            "timezone": "Asia/Shanghai",
            "next": "s",
        },
        send("s", "双十一"),
    )
    state, _ = start(d, SUB, T0, Contact(1))
    assert state.wake_at == datetime(2025, 11, 10, 16, 0, tzinfo=UTC)
    # a date already past: straight on
    state, cmds = start(d, SUB, datetime(2025, 12, 1, tzinfo=UTC), Contact(1))
    assert texts(cmds) == ["双十一"]


def test_a_wait_due_exactly_now_passes_instead_of_scheduling():
    """Rule (journeys.engine Wait): a wait whose wake time is not after "now" (``wake <= now``)
    goes straight on; only a wake strictly ahead is scheduled. The boundary, pinned."""
    d = journey(
        {
            "id": "w",
            "type": "wait",
            "date": "2025-11-11",
            "at": "00:00",
            "timezone": "Asia/Shanghai",
            "next": "s",
        },
        send("s", "双十一"),
    )
    state, cmds = start(d, SUB, datetime(2025, 11, 11, 0, 0, tzinfo=SH), Contact(1))
    assert not any(isinstance(c, Schedule) for c in cmds)
    assert texts(cmds) == ["双十一"] and state.status == "done"
    # one second earlier it is still a wait
    state, cmds = start(d, SUB, datetime(2025, 11, 10, 23, 59, 59, tzinfo=SH), Contact(1))
    assert state.status == "waiting" and texts(cmds) == []


def test_wait_for_event_or_timeout():
    d = journey(
        {
            "id": "w",
            "type": "wait",
            "event": "oa.click",
            "conditions": {"key": "BUY"},
            "timeout": "2d",
            "timeout_next": "late",
            "next": "yes",
        },
        send("yes", "谢谢"),
        send("late", "还在吗"),
    )
    state, cmds = start(d, SUB, T0, Contact(1))
    assert state.waiting_for is not None and state.waiting_for.events == ("oa.click",)
    assert cmds == [Schedule(step="w", wake_at=T0 + timedelta(days=2))]
    other = Event("oa.click", {"key": "HELP"})
    assert advance(d, state, other, T0 + timedelta(hours=1), Contact(1)) == (state, [])
    s2, cmds = advance(
        d, state, Event("oa.click", {"key": "BUY"}), T0 + timedelta(hours=2), Contact(1)
    )
    assert texts(cmds) == ["谢谢"] and cmds[0].reply is True
    s3, cmds = advance(d, state, None, T0 + timedelta(days=2), Contact(1))
    assert texts(cmds) == ["还在吗"] and s3.history == ("start", "w", "late")


# --- conditions ----------------------------------------------------------------------------


def branch(when: dict) -> Definition:
    return journey(
        {"id": "c", "type": "condition", "if": when, "yes": "y", "no": "n"},
        send("y", "yes"),
        send("n", "no"),
    )


@pytest.mark.parametrize(
    ("when", "contact", "expected"),
    [
        ({"tag": "VIP"}, Contact(1, tags={"VIP"}), "yes"),
        ({"tag": "VIP"}, Contact(1), "no"),
        ({"no_tag": "VIP"}, Contact(1), "yes"),
        ({"field": "city", "is": {"eq": "上海"}}, Contact(1, fields={"city": "上海"}), "yes"),
        ({"field": "budget", "is": {"gte": 50000}}, Contact(1, fields={"budget": "80,000"}), "yes"),
        ({"field": "city", "is": {"exists": False}}, Contact(1), "yes"),
        ({"score": {"gte": 50}}, Contact(1, score=49.5), "no"),
        ({"score": {"gte": 50}}, Contact(1, score=50), "yes"),
        ({"stage": ["mql", "sql"]}, Contact(1, stage="mql"), "yes"),
        ({"stage": "sql"}, Contact(1, stage="lead"), "no"),
        ({"event": "h5.form_submit"}, Contact(1, event_counts={"h5.form_submit": 1}), "yes"),
        (
            {"event": "oa.*", "count": {"gte": 3}},
            Contact(1, event_counts={"oa.text": 2, "oa.click": 1}),
            "yes",
        ),
        ({"event": "h5.form_submit"}, Contact(1), "no"),
        ({"all": [{"tag": "A"}, {"not": {"tag": "B"}}]}, Contact(1, tags={"A"}), "yes"),
        ({"any": [{"tag": "B"}, {"score": {"lt": 0}}]}, Contact(1, tags={"A"}), "no"),
        ({"silent_days": {"gte": 30}}, Contact(1, last_seen_at=T0 - timedelta(days=31)), "yes"),
    ],
)
def test_condition_branches(when, contact, expected):
    _, cmds = start(branch(when), SUB, T0, contact)
    assert texts(cmds) == [expected]


def test_multiway_branches_first_that_holds_else_default():
    d = journey(
        {
            "id": "c",
            "type": "condition",
            "default": "d",
            "branches": [
                {"when": {"tag": "价格"}, "next": "p"},
                {"when": {"tag": "案例"}, "next": "k"},
            ],
        },
        send("p", "价格"),
        send("k", "案例"),
        send("d", "介绍"),
    )
    assert texts(start(d, SUB, T0, Contact(1, tags={"案例", "价格"}))[1]) == ["价格"]
    assert texts(start(d, SUB, T0, Contact(1, tags={"案例"}))[1]) == ["案例"]
    assert texts(start(d, SUB, T0, Contact(1))[1]) == ["介绍"]


def test_ab_split_is_deterministic_and_roughly_even():
    d = journey(
        {
            "id": "ab",
            "type": "condition",
            "split": [{"percent": 30, "next": "a"}, {"percent": 70, "next": "b"}],
        },
        send("a", "A"),
        send("b", "B"),
    )
    first = texts(start(d, SUB, T0, Contact(42))[1])
    assert all(texts(start(d, SUB, T0, Contact(42))[1]) == first for _ in range(5))
    buckets = [split_bucket("t", i) for i in range(10_000)]
    share_a = sum(b < 30 for b in buckets) / 10_000
    assert 0.28 < share_a < 0.32
    assert split_bucket("t", 1) != split_bucket("other", 1)  # per journey


# --- actions -------------------------------------------------------------------------------


def test_every_action_command_with_step_and_visit():
    d = journey(
        send("s", "你好{{contact.name|朋友}}，你在{{contact.city}}", "t1"),
        {"id": "t1", "type": "action", "do": "add_tag", "tag": "新客", "next": "t2"},
        {"id": "t2", "type": "action", "do": "remove_tag", "tag": "流失", "next": "p"},
        {
            "id": "p",
            "type": "action",
            "do": "add_points",
            "points": 10,
            "reason": "欢迎",
            "next": "f",
        },
        {
            "id": "f",
            "type": "action",
            "do": "set_field",
            "field": "source",
            "value": "海报",
            "next": "g",
        },
        {"id": "g", "type": "action", "do": "set_stage", "stage": "lead", "next": "h"},
        {
            "id": "h",
            "type": "action",
            "do": "handoff",
            "note": "请跟进{{contact.name}}",
            "rep": "zhangsan",
            "next": "r",
        },
        {"id": "r", "type": "action", "do": "notify_rep", "note": "新线索", "next": "web"},
        {
            "id": "web",
            "type": "action",
            "do": "webhook",
            "url": "https://hooks.example.com/x",
            "body": {"who": "{{contact.id}}"},
            "next": "j",
        },
        {"id": "j", "type": "action", "do": "enter_journey", "journey": "welcome", "next": "x"},
        {"id": "x", "type": "action", "do": "exit", "reason": "演示完毕"},
    )
    state, cmds = start(d, SUB, T0, Contact(9, name="小王", fields={"city": "杭州"}))
    assert cmds == [
        Send(step="s", kind="text", payload={"content": "你好小王，你在杭州"}, reply=True),
        AddTag(step="t1", tag="新客"),
        RemoveTag(step="t2", tag="流失"),
        AddPoints(step="p", points=10, reason="欢迎"),
        SetField(step="f", field="source", value="海报"),
        SetStage(step="g", stage="lead"),
        HandOff(step="h", note="请跟进小王", rep="zhangsan"),
        NotifyRep(step="r", message="新线索"),
        CallWebhook(
            step="web",
            url="https://hooks.example.com/x",
            body={
                "journey": "t",
                "version": 1,
                "step": "web",
                "contact_id": 9,
                "answers": {},
                "who": "9",
            },
        ),
        EnterJourney(step="j", journey="welcome"),
        Exit(step="x", reason="演示完毕"),
    ]
    assert state.status == "exited"


def test_only_one_passive_reply_and_only_for_replyable_kinds():
    d = journey(
        {
            "id": "m",
            "type": "action",
            "do": "send",
            "kind": "miniprogram",
            "payload": {"title": "t", "appid": "a", "pagepath": "p", "thumb_media_id": "m"},
            "next": "a",
        },
        send("a", "一", "b"),
        send("b", "二"),
    )
    _, cmds = start(d, SUB, T0, Contact(1))
    assert [c.reply for c in cmds if isinstance(c, Send)] == [False, True, False]


def test_variables_are_substituted_safely():
    d = journey(
        send(
            "s", "{{ contact.name }}/{{answers.x|无}}/{{contact.__class__}}/{{journey.name}}/{{x}}"
        )
    )
    _, cmds = start(d, SUB, T0, Contact(1, name="李"))
    assert texts(cmds) == ["李/无//测试/"]


# --- ask -----------------------------------------------------------------------------------


def ask_journey(**ask) -> Definition:
    q = {
        "id": "q",
        "type": "ask",
        "save_as": "budget",
        "question": "预算大概多少？1. 2万以内 2. 2-10万 3. 10万以上",
        "hint": "回复数字就好",
        "timeout": "1d",
        "timeout_next": "late",
        "no_match_next": "nm",
        "next": "after",
        "choices": [
            {"label": "2万以内", "synonyms": ["一万", "两万"]},
            {
                "label": "2-10万",
                "synonyms": ["五万", "5万", "几万"],
                "points": 20,
                "tag": "预算:中",
            },
            {
                "label": "10万以上",
                "synonyms": ["十万", "十五万", "几十万"],
                "click_key": "BIG",
                "next": "big",
            },
        ],
        **ask,
    }
    return journey(
        q,
        send("after", "收到：{{answers.budget}}"),
        send("big", "大客户"),
        send("late", "超时"),
        send("nm", "没听懂"),
    )


def asked() -> tuple[Definition, State]:
    d = ask_journey()
    state, cmds = start(d, SUB, T0, Contact(1))
    assert state.status == "asking" and state.asking
    assert kinds(cmds) == ["Send", "Schedule"] and cmds[0].reply is True
    return d, state


ONE = Contact(1)


def answer(d, state, content, when=T0 + timedelta(minutes=1), contact=ONE):
    return advance(d, state, Event("oa.text", {"content": content}), when, contact)


@pytest.mark.parametrize("reply", ["2", "２", "二", "第二个", "选2", "2.", "2-10万"])
def test_ask_numbered_choice(reply):
    d, state = asked()
    state, cmds = answer(d, state, reply)
    assert state.answers == {"budget": "2-10万"}
    assert cmds[:3] == [
        Answered(step="q", key="budget", value="2-10万", text=reply),
        AddPoints(step="q", points=20, reason="budget: 2-10万"),
        AddTag(step="q", tag="预算:中"),
    ]
    assert texts(cmds) == ["收到：2-10万"] and cmds[3].reply is True


def test_ask_synonym_on_jieba_tokens_longest_wins():
    d, state = asked()
    s, _ = answer(d, state, "预算大概五万左右")
    assert s.answers["budget"] == "2-10万"
    s, cmds = answer(d, state, "十五万吧")  # 「五万」 is inside, but 「十五万」 is the longer word
    assert s.answers["budget"] == "10万以上" and texts(cmds) == ["大客户"]


def test_ask_menu_click_picks_a_choice_and_other_clicks_are_not_answers():
    d, state = asked()
    s, cmds = advance(d, state, Event("oa.click", {"key": "BIG"}), T0, Contact(1))
    assert s.answers["budget"] == "10万以上"
    assert advance(d, state, Event("oa.click", {"key": "MENU"}), T0, Contact(1)) == (state, [])
    assert advance(d, state, Event("oa.view", {}), T0, Contact(1)) == (state, [])


def test_ask_free_text_is_saved():
    d = journey(
        {
            "id": "q",
            "type": "ask",
            "save_as": "company",
            "question": "贵公司名称？",
            "free_text": True,
            "timeout": "1d",
            "timeout_next": "s",
            "next": "s",
        },
        send("s", "谢谢{{answers.company|}}"),
    )
    state, _ = start(d, SUB, T0, Contact(1))
    state, cmds = answer(d, state, "  鱼池科技 ")
    assert state.answers == {"company": "鱼池科技"} and texts(cmds) == ["谢谢鱼池科技"]


def test_ask_re_asks_once_with_the_hint_then_no_match_path():
    d, state = asked()
    s1, cmds = answer(d, state, "你们是做什么的")
    assert s1.status == "asking" and s1.re_asked and s1.wake_at == state.wake_at
    assert cmds == [Send(step="q", kind="text", payload={"content": "回复数字就好"}, reply=True)]
    s2, cmds = answer(d, s1, "不知道")
    assert texts(cmds) == ["没听懂"] and s2.status == "done" and "budget" not in s2.answers


def test_ask_times_out_to_its_path():
    d, state = asked()
    assert advance(d, state, None, T0 + timedelta(hours=23), Contact(1)) == (state, [])
    s, cmds = advance(d, state, None, T0 + timedelta(days=1), Contact(1))
    assert texts(cmds) == ["超时"] and cmds[0].reply is False


# --- goals, entry, guards ------------------------------------------------------------------


def test_goal_converts_mid_journey():
    d = journey(
        {"id": "w", "type": "wait", "duration": "3d", "next": "s"},
        send("s", "hi"),
        {"id": "won", "type": "goal", "when": {"stage": {"in": ["sql", "customer"]}}},
    )
    state, _ = start(d, SUB, T0, Contact(1, stage="lead"))
    assert state.status == "waiting"
    later = T0 + timedelta(hours=5)
    state2, cmds = advance(
        d, state, Event("oa.text", {"content": "我要买"}), later, Contact(1, stage="sql")
    )
    assert state2.status == "converted" and cmds == [Converted(step="w", goal="goal")]
    assert advance(d, state2, None, T0 + timedelta(days=3), Contact(1)) == (state2, [])


def test_goal_reached_by_the_journeys_own_actions_converts_at_the_end():
    d = journey(
        {"id": "g", "type": "action", "do": "set_stage", "stage": "sql", "next": "h"},
        {"id": "h", "type": "action", "do": "handoff"},
        goal={"stage": "sql"},
    )
    state, cmds = start(d, SUB, T0, Contact(1))
    assert kinds(cmds) == ["SetStage", "HandOff", "Converted"] and state.status == "converted"


def test_trigger_conditions_and_other_triggers():
    d = check(
        {
            "id": "t",
            "name": "n",
            "steps": [
                {
                    "id": "start",
                    "type": "trigger",
                    "event": "oa.subscribe",
                    "conditions": {"scene": {"prefix": "lead_"}},
                    "next": "s",
                },
                send("s", "hi"),
            ],
        }
    )
    assert start(d, Event("oa.subscribe", {"scene": "other"}), T0, Contact(1)) == (State(), [])
    assert triggered_by(d, Event("oa.subscribe", {"scene": "lead_expo"}), Contact(1), T0)
    score = check(
        {
            "id": "t",
            "name": "n",
            "steps": [
                {"id": "start", "type": "trigger", "on": "score", "score_gte": 50, "next": "s"},
                send("s", "hi"),
            ],
        }
    )
    assert triggered_by(score, Event("score.changed", {"from": 40, "to": 55}), Contact(1), T0)
    assert not triggered_by(score, Event("score.changed", {"from": 55, "to": 60}), Contact(1), T0)
    tag = check(
        {
            "id": "t",
            "name": "n",
            "steps": [
                {"id": "start", "type": "trigger", "on": "tag_added", "tag": "VIP", "next": "s"},
                send("s", "hi"),
            ],
        }
    )
    assert triggered_by(tag, Event("tag.added", {"tag": "VIP"}), Contact(1), T0)
    stage = check(
        {
            "id": "t",
            "name": "n",
            "steps": [
                {"id": "start", "type": "trigger", "on": "stage", "stage": "mql", "next": "s"},
                send("s", "hi"),
            ],
        }
    )
    assert triggered_by(
        stage, Event("contact.stage_changed", {"from": "lead", "to": "mql"}), Contact(1), T0
    )


def trigger_only(**trigger) -> Definition:
    start_step = {"id": "start", "type": "trigger", "next": "s", **trigger}
    return check({"id": "t", "name": "n", "steps": [start_step, send("s", "hi")]})


def test_could_start_looks_at_the_event_type_alone():
    on_event = trigger_only(event="oa.*", conditions={"scene": {"prefix": "lead_"}})
    assert could_start(on_event, "oa.subscribe")  # the conditions are triggered_by's business
    assert not could_start(on_event, "wecom.add_customer")
    assert could_start(trigger_only(event="*"), "msg.sent", quiet=True)
    tag = trigger_only(on="tag_added", tag="VIP")
    assert could_start(tag, "tag.added") and not could_start(tag, "oa.subscribe")
    score = trigger_only(on="score", score_gte=50)
    assert could_start(score, "score.changed") and not could_start(score, "tag.added")
    stage = trigger_only(on="stage", stage="mql")
    assert could_start(stage, "contact.stage_changed") and not could_start(stage, "oa.text")
    segment = trigger_only(on="segment", segment={"tag": "VIP"})
    assert could_start(segment, "oa.text")
    assert not could_start(segment, "msg.sent", quiet=True)  # Yuchi's own events enter none


def test_awaits_only_the_event_types_a_wait_names():
    d = journey(
        {"id": "w", "type": "wait", "event": "oa.click", "timeout": "2d", "next": "s"},
        send("s", "谢谢"),
    )
    waiting, _ = start(d, SUB, T0, Contact(1))
    assert awaits(waiting, "oa.click")
    assert not awaits(waiting, "oa.text")
    assert not awaits(State(), "oa.click")  # not waiting for anything
    timed = journey({"id": "w", "type": "wait", "duration": "1d", "next": "s"}, send("s", "x"))
    assert not awaits(start(timed, SUB, T0, Contact(1))[0], "oa.click")  # a timed wait


def test_may_enter_rules():
    t = T0
    once, at_a_time = EntryRule(mode="once"), EntryRule(mode="once_at_a_time", cooldown="7d")
    every = EntryRule(mode="every_time")
    closed = [Enrollment(t, t + timedelta(days=1))]
    assert may_enter(once, [], t) and not may_enter(once, closed, t + timedelta(days=30))
    assert not may_enter(at_a_time, [Enrollment(t)], t + timedelta(days=30))
    assert not may_enter(at_a_time, closed, t + timedelta(days=6))
    assert may_enter(at_a_time, closed, t + timedelta(days=7))
    assert may_enter(every, [Enrollment(t)], t)


def test_loop_guard_stops_a_runaway_definition():
    # validate() refuses this loop; advance still must not spin forever on it
    d = journey(
        {"id": "a", "type": "action", "do": "add_points", "points": 1, "next": "b"},
        {"id": "b", "type": "action", "do": "add_points", "points": 1, "next": "a"},
    )
    state, cmds = start(d, SUB, T0, Contact(1))
    assert state.status == "exited" and isinstance(cmds[-1], Exit)
    assert "loop guard" in cmds[-1].reason and len(cmds) == MAX_STEPS + 1


def test_visit_numbers_count_repeat_visits():
    d = journey(
        {"id": "w", "type": "wait", "duration": "1h", "next": "p"},
        {"id": "p", "type": "action", "do": "add_points", "points": 1, "next": "w"},
    )
    state, _ = start(d, SUB, T0, Contact(1))
    now = T0
    for visit in (1, 2, 3):
        now += timedelta(hours=1)
        state, cmds = advance(d, state, None, now, Contact(1))
        assert cmds[0] == AddPoints(step="p", visit=visit, points=1)
        assert cmds[1].visit == visit + 1  # the wait's next visit


def test_naive_now_is_refused():
    with pytest.raises(ValueError):
        start(branch({"tag": "x"}), SUB, datetime(2025, 1, 1), Contact(1))
