"""The ready-made journeys in journeys/library/: valid, and their main paths walk through."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from journeys import (
    AddPoints,
    Answered,
    Contact,
    Event,
    HandOff,
    NotifyRep,
    Send,
    SetStage,
    advance,
    library,
    start,
    validate,
)

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2025, 3, 3, 9, 0, tzinfo=SH)


def say(text: str) -> Event:
    return Event("oa.text", {"content": text})


def sends(cmds) -> list[Send]:
    return [c for c in cmds if isinstance(c, Send)]


def test_names_and_every_journey_validates():
    assert library.names() == ["bant", "reengage", "welcome"]
    for name in library.names():
        d = library.load(name)
        assert validate(d) == []
        assert d.id == name
    with pytest.raises(KeyError):
        library.load("nope")


def test_bant_main_path_qualifies_and_hands_off():
    d = library.load("bant")
    boss = Contact(7, name="王总")
    state, cmds = start(d, Event("oa.subscribe", {"scene": "lead_expo2025"}), T0, boss)
    assert state.step == "ask_budget" and state.asking
    assert "预算" in sends(cmds)[0].payload["content"] and sends(cmds)[0].reply

    state, cmds = advance(d, state, say("大概五万吧"), T0 + timedelta(minutes=1), boss)
    assert state.answers["budget"] == "2-10万" and state.step == "ask_timeline"
    assert "什么时候" in sends(cmds)[0].payload["content"] and sends(cmds)[0].reply

    state, cmds = advance(d, state, say("下个月就要"), T0 + timedelta(minutes=2), boss)
    assert state.answers["timeline"] == "1个月内" and state.step == "ask_role"

    state, cmds = advance(d, state, say("我是老板"), T0 + timedelta(minutes=3), boss)
    assert state.answers == {"budget": "2-10万", "timeline": "1个月内", "role": "决策人"}
    assert Answered(step="ask_role", key="role", value="决策人", text="我是老板") in cmds
    assert AddPoints(step="ask_role", points=30, reason="role: 决策人") in cmds
    handoff = next(c for c in cmds if isinstance(c, HandOff))
    assert "预算 2-10万" in handoff.note and "决策人" in handoff.note
    assert SetStage(step="to_sql", stage="sql") in cmds
    thanks = sends(cmds)[0]
    assert thanks.reply and "预算 2-10万，1个月内启动" in thanks.payload["content"]
    assert state.status == "converted"


def test_bant_other_scenes_do_not_start_it():
    d = library.load("bant")
    state, cmds = start(d, Event("oa.subscribe", {"scene": "poster_a"}), T0, Contact(1))
    assert state.step is None and cmds == []


def test_bant_not_qualified_is_nurtured_and_re_ask_uses_the_hint():
    d = library.load("bant")
    k = Contact(8)
    state, _ = start(d, Event("oa.subscribe", {"scene": "lead_x"}), T0, k)
    state, cmds = advance(d, state, say("你们在哪"), T0, k)
    assert state.re_asked and "回复数字" in sends(cmds)[0].payload["content"]
    for text in ("1", "3", "3"):
        state, cmds = advance(d, state, say(text), T0, k)
    assert state.status == "done" and state.answers["budget"] == "2万以内"
    assert "私域运营入门指南" in sends(cmds)[0].payload["content"]
    assert not any(isinstance(c, HandOff) for c in cmds)


def test_bant_timeout_notifies_a_rep():
    d = library.load("bant")
    k = Contact(9)
    state, _ = start(d, Event("oa.subscribe", {"scene": "lead_x"}), T0, k)
    state, _ = advance(d, state, say("二"), T0, k)
    state, cmds = advance(d, state, None, T0 + timedelta(days=1), k)
    note = next(c for c in cmds if isinstance(c, NotifyRep))
    assert "预算 2-10万" in note.message and "时间 未答" in note.message


def test_welcome_three_touches_over_five_days_branching_on_interest():
    d = library.load("welcome")
    k = Contact(1, name="小李", timezone="Asia/Shanghai", tags={"意向:案例"})
    state, cmds = start(d, Event("oa.subscribe", {"scene": ""}), T0, k)
    first = sends(cmds)
    assert (
        len(first) == 1
        and first[0].reply
        and first[0].payload["content"].startswith("小李，欢迎关注")
    )
    assert state.wake_at == datetime(2025, 3, 4, 10, 0, tzinfo=SH)

    state, cmds = advance(d, state, None, state.wake_at, k)
    second = sends(cmds)
    assert second[0].kind == "news" and "案例" in second[0].payload["title"]
    assert state.wake_at == datetime(2025, 3, 7, 20, 0, tzinfo=SH)  # within five days

    hot = Contact(1, name="小李", score=42, tags={"意向:案例"})
    state, cmds = advance(d, state, None, state.wake_at, hot)
    assert "演示" in sends(cmds)[0].payload["content"] and state.status == "done"

    cold = Contact(2)
    s, cmds = start(d, Event("oa.subscribe", {}), T0, cold)
    assert sends(cmds)[0].payload["content"].startswith("你好，欢迎关注")
    s, cmds = advance(d, s, None, s.wake_at, cold)
    assert "一文读懂" in sends(cmds)[0].payload["title"]
    s, cmds = advance(d, s, None, s.wake_at, cold)
    assert "入门指南" in sends(cmds)[0].payload["title"]


def test_reengage_silent_contacts_reply_or_go_dormant():
    d = library.load("reengage")
    now = datetime(2025, 6, 1, 3, 0, tzinfo=UTC)  # 11:00 in Shanghai
    silent = Contact(5, timezone="Asia/Shanghai", last_seen_at=now - timedelta(days=40))
    assert not start(d, None, now, Contact(6, last_seen_at=now - timedelta(days=3)))[1]
    state, cmds = start(d, None, now, silent)
    assert state.wake_at == datetime(2025, 6, 1, 19, 30, tzinfo=SH)  # not in the morning
    state, cmds = advance(d, state, None, state.wake_at, silent)
    assert "好久不见" in sends(cmds)[0].payload["content"]

    back, cmds = advance(d, state, say("福利"), state.wake_at + timedelta(hours=1), silent)
    assert [type(c).__name__ for c in cmds] == ["AddTag", "AddPoints", "NotifyRep", "Exit"]

    later = state.wake_at + timedelta(days=3)
    state, cmds = advance(d, state, None, later, silent)
    assert "新变化" in sends(cmds)[0].payload["title"]
    state, cmds = advance(d, state, None, later + timedelta(days=4), silent)
    assert state.status == "exited" and cmds[0].tag == "沉睡用户"
