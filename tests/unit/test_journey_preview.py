"""bot.automation.preview (and its preview_* modules): the ready-made journeys previewed for a
simulated contact with a fake clock, scripted replies, and the messaging rules (quiet hours,
cap, 48-hour window). Pure."""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from bot.automation.preview import preview
from bot.automation.preview_input import PreviewError
from bot.automation.send_outcomes import Deliveries
from bot.messaging.send_rules import Policy
from journeys import DefinitionError, Send, library

SH = ZoneInfo("Asia/Shanghai")
T0 = datetime(2025, 3, 3, 9, 0, tzinfo=SH)  # a Monday morning


def journey(*steps: dict, trigger: dict | None = None) -> dict:
    start = {"id": "start", "type": "trigger", "event": "oa.subscribe", **(trigger or {})}
    return {"id": "t", "name": "测试", "steps": [{**start, "next": steps[0]["id"]}, *steps]}


def send(sid: str, text: str, nxt: str | None = None) -> dict:
    step = {"id": sid, "type": "action", "do": "send", "kind": "text", "payload": {"content": text}}
    return {**step, "next": nxt} if nxt else step


def wait(sid: str, duration: str, nxt: str) -> dict:
    return {"id": sid, "type": "wait", "duration": duration, "next": nxt}


def kinds(t) -> list[str]:
    return [ln.kind for ln in t.lines]


# --- the ready-made journeys ---------------------------------------------------------------


def test_welcome_three_touches_over_five_days():
    t = preview(library.load("welcome"), start=T0)
    assert t.entered and t.status == "done"
    sends = t.sends
    assert [(s.day, s.clock) for s in sends] == [(1, "09:00"), (2, "10:00"), (5, "20:00")]
    assert "欢迎关注鱼池" in sends[0].text and sends[0].text.startswith("收到文本：")
    assert sends[1].detail["payload"]["url"].endswith("/articles/intro")  # no interest tag
    assert sends[2].detail["payload"]["url"].endswith("/guide")  # score under 30
    # day 5 is more than 48 hours after the follow: messaging holds it until they interact
    assert [s.detail["status"] for s in sends] == ["sent", "sent", "held"]
    assert "48 小时互动窗口已关闭" in sends[2].text
    assert t.lines[0].line.startswith("第1天 09:00 进入旅程「新关注欢迎系列」：关注公众号")
    assert "第2天 10:00 收到图文：一文读懂鱼池" in t.text
    assert "打标签：新关注" in t.text and t.text.rstrip().endswith("旅程结束")


def test_welcome_branches_on_the_contacts_tags_and_score():
    t = preview(library.load("welcome"), start=T0, contact={"tags": ["意向:价格"], "score": 40})
    urls = [s.detail["payload"].get("url") for s in t.sends]
    assert urls[1].endswith("/articles/pricing")
    assert "约一次 20 分钟的线上演示" in t.sends[2].text
    assert "打标签：欢迎系列:高意向" in t.text


def test_bant_chinese_answers_lead_to_handoff():
    t = preview(
        library.load("bant"),
        start=T0,
        replies=["预算大概五万左右", "下个月就要", "我是老板"],
        contact={"name": "王总"},
    )
    assert t.status == "converted" and t.unused_replies == []
    text = t.text
    assert (
        "第1天 09:00 进入旅程「BANT 对话式资格审查」：关注公众号（扫码场景 lead_preview）" in text
    )
    assert "第1天 09:00 提问：你好，我是鱼池的顾问小鱼" in text
    assert "第1天 09:01 回答：预算大概五万左右 → 预算=2-10万" in text
    assert "回答：下个月就要 → 时间=1个月内" in text
    assert "回答：我是老板 → 角色=决策人" in text
    assert "加分：+20（budget: 2-10万），现在 20 分" in text
    assert "转交销售：BANT 合格：预算 2-10万，时间 1个月内，角色 决策人" in text
    assert "阶段变为：销售合格线索 SQL" in text
    assert "达成旅程目标（转化）" in text
    assert [ln.kind for ln in t.lines].count("handoff") == 1
    # every question answers the contact's own message: never moved, capped or held
    assert all(s.detail["status"] == "sent" for s in t.sends)


def test_bant_unclear_answers_re_ask_then_move_on_and_time_out():
    t = preview(library.load("bant"), start=T0, replies=["不知道", "嗯"])
    text = t.text
    assert "回复：不知道（没有匹配任何选项）" in text
    assert "提问：不好意思，我没太看懂" in text  # the hint
    assert "第2天 09:02 没有在时限内回答" in text
    assert "打标签：BANT:未完成" in text and "转交销售" not in text
    assert t.status == "done"


def test_a_late_reply_comes_after_the_timeout():
    t = preview(library.load("bant"), start=T0, replies=[{"after": "2d", "text": "五万"}])
    assert "第2天 09:00 没有在时限内回答" in t.text
    assert t.unused_replies == ["五万"]


def test_a_reply_after_hours_and_a_menu_click():
    d = {
        "id": "c",
        "name": "点击",
        "steps": [
            {"id": "start", "type": "trigger", "event": "oa.subscribe", "next": "ask"},
            {
                "id": "ask",
                "type": "ask",
                "question": "选一个",
                "save_as": "plan",
                "choices": [{"label": "基础版", "click_key": "PLAN_A"}, {"label": "专业版"}],
                "timeout": "1d",
                "timeout_next": "bye",
                "no_match_next": "bye",
                "next": "bye",
            },
            send("bye", "谢谢，已记下：{{answers.plan|未选}}"),
        ],
    }
    t = preview(d, start=T0, replies=[{"after": "3h", "click": "PLAN_A"}])
    assert "第1天 12:00 回答：PLAN_A → plan=基础版" in t.text
    assert "收到文本：谢谢，已记下：基础版" in t.text


def test_reengage_assumes_a_silent_contact_and_holds_outside_the_window():
    t = preview(library.load("reengage"), start=T0)
    assert t.lines[0].kind == "note" and "30 天没有互动" in t.lines[0].text
    assert [s.detail["status"] for s in t.sends] == ["held", "held"]
    assert t.status == "exited" and "打标签：沉睡用户" in t.text

    # they answer the next evening: the held greeting goes out then, and they are back
    t = preview(library.load("reengage"), start=T0, replies=[{"after": "1d", "text": "福利"}])
    lines = [ln.line for ln in t.lines]
    i = lines.index("第2天 19:30 回复：福利")
    assert "此前暂存的消息，联系人互动后发出" in lines[i + 1]
    assert "打标签：已唤醒" in t.text and t.status == "done"


def test_a_contact_that_does_not_fit_the_segment_does_not_enter():
    t = preview(library.load("reengage"), start=T0, contact={"silent_days": 2})
    assert not t.entered and t.status == "not_entered"
    assert "没有进入旅程" in t.text and t.sends == []


# --- the messaging rules -------------------------------------------------------------------


def test_quiet_hours_move_a_marketing_send_to_their_end():
    d = journey(wait("w", "1h", "late"), send("late", "晚上好"))
    t = preview(d, start=datetime(2025, 3, 3, 21, 30, tzinfo=SH))
    [late] = t.sends
    assert (late.day, late.clock, late.detail["status"]) == (2, "08:00", "sent")
    assert late.detail["planned"] == datetime(2025, 3, 3, 22, 30, tzinfo=SH).isoformat()
    assert "免打扰时段，顺延到结束时发送" in late.text and "原定 第1天 22:30" in late.text
    # lines stay in time order: the journey ended at 22:30, the message goes out at 08:00
    assert kinds(t)[-2:] == ["done", "send"]

    # no quiet hours configured: it goes at 22:30
    t = preview(d, start=datetime(2025, 3, 3, 21, 30, tzinfo=SH), policy=Policy(quiet_start=None))
    assert (t.sends[0].day, t.sends[0].clock) == (1, "22:30")


def test_a_reply_to_the_contacts_own_message_is_not_moved():
    d = journey(send("hi", "欢迎"))
    t = preview(d, start=datetime(2025, 3, 3, 23, 0, tzinfo=SH))
    assert (t.sends[0].day, t.sends[0].clock, t.sends[0].detail["status"]) == (1, "23:00", "sent")


def test_frequency_cap_skips_the_fourth_marketing_send_in_a_day():
    steps = []
    for n in range(1, 5):
        steps.append(wait(f"w{n}", "1h", f"s{n}"))
        steps.append(send(f"s{n}", f"第{n}条", f"w{n + 1}" if n < 4 else None))
    t = preview(journey(*steps), start=T0)
    assert [s.detail["status"] for s in t.sends] == ["sent", "sent", "sent", "skipped"]
    assert "超出营销频次上限（每 24 小时 3 条）" in t.sends[3].text
    assert t.sends[3].text.startswith("跳过文本：")


def test_deliveries_exempt_a_contact_in_conversation():
    rules = Deliveries(Policy(), last_interaction=datetime(2025, 3, 3, 22, 50, tzinfo=SH))
    msg = Send(step="s", kind="text", payload={"content": "hi"})
    outcome = rules.send(msg, datetime(2025, 3, 3, 23, 0, tzinfo=SH), marketing=True)
    assert outcome.status == "sent" and not outcome.moved
    bad = rules.send(Send(step="s", kind="news", payload={"title": "x"}), T0, marketing=True)
    assert bad.status == "invalid" and "url" in bad.note


# --- input, output and guards --------------------------------------------------------------


def test_transcript_is_json_able():
    t = preview(library.load("bant"), start=T0, replies=["2", "1", "1"])
    data = json.loads(json.dumps(t.to_json(), ensure_ascii=False))
    first = data["transcript"][0]
    assert set(first) >= {"at", "day", "time", "kind", "step", "text", "line"}
    assert first["at"] == "2025-03-03T09:00:00+08:00" and first["day"] == 1
    assert data["status"] == "converted" and data["messages"] == 4
    assert data["text"] == t.text


def test_runs_are_bounded_by_simulated_days():
    d = journey(wait("w", "90d", "s"), send("s", "三个月后"))
    t = preview(d, start=T0)
    assert t.stopped and "60 天" in t.stopped and t.status == "waiting"
    assert t.sends == [] and t.lines[-1].kind == "stop"
    assert preview(d, start=T0, max_days=100).status == "done"


def test_naive_start_is_the_journeys_time_zone():
    t = preview(library.load("welcome"), start=datetime(2025, 3, 3, 9, 0))
    assert t.start == T0 and t.sends[0].clock == "09:00"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"replies": [{"after": "soon", "text": "x"}]}, "replies.0.after"),
        ({"replies": [{"text": "x", "click": "K"}]}, "exactly one of text, click, event"),
        ({"replies": [42]}, "replies.0"),
        ({"contact": {"stage": "boss"}}, "contact.stage"),
        ({"contact": {"timezone": "Mars/Base"}}, "unknown time zone"),
    ],
)
def test_bad_input_is_a_preview_error(kwargs, message):
    with pytest.raises(PreviewError, match=message.replace(".", r"\.")):
        preview(library.load("welcome"), start=T0, **kwargs)


def test_an_invalid_definition_is_a_definition_error():
    with pytest.raises(DefinitionError):
        preview({"id": "x", "name": "x", "steps": [{"id": "start", "type": "trigger"}]})


def test_other_triggers_get_a_matching_event():
    d = journey(send("s", "hi"), trigger={"on": "score", "score_gte": 50, "event": None})
    t = preview(d, start=T0)
    assert t.lines[0].text == "预览假设联系人：刚刚与公众号互动过"
    assert "得分从 0 升到 50" in t.lines[1].text
    # a score change is no message of theirs: the send is marketing (not moved at 09:00)
    assert t.sends[0].detail["status"] == "sent"
    d = journey(send("s", "hi"), trigger={"on": "tag_added", "tag": "VIP", "event": None})
    assert "获得标签「VIP」" in preview(d, start=T0).text


def test_cli_prints_the_transcript():
    from bot.cli import main

    result = CliRunner().invoke(
        main,
        [
            "journeys",
            "preview",
            "bant",
            "--start",
            "2025-03-03T09:00",
            "--reply",
            "预算大概五万左右",
            "--reply",
            "+2h 下个月",
            "--reply",
            "老板",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "第1天 09:01 回答：预算大概五万左右 → 预算=2-10万" in result.output
    assert "第1天 11:01 回答：下个月 → 时间=1个月内" in result.output
    assert "转交销售" in result.output
    bad = CliRunner().invoke(main, ["journeys", "preview", "nope"])
    assert bad.exit_code == 2 and "not a ready-made journey" in bad.output


def test_quiet_hours_come_from_settings_when_given():
    from bot.core.config import load_settings

    settings = load_settings({}).replace(quiet_hours="21:00-09:00")
    d = journey(wait("w", "1h", "s"), send("s", "hi"))
    t = preview(d, start=datetime(2025, 3, 3, 20, 30, tzinfo=SH), settings=settings)
    assert (t.sends[0].day, t.sends[0].clock) == (2, "09:00")
    assert time(9, 0) == datetime.fromisoformat(t.sends[0].to_json()["at"]).time()
    assert t.sends[0].at - t.start == timedelta(hours=12, minutes=30)
