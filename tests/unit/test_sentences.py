"""The timeline in Chinese: every event type through its template, kinds for the filter, and
times as a rep says them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bot.desk import sentences

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)  # 16:00 in Shanghai
NAMES = {"alice": "李娜", "bob": "赵强"}


def test_every_template_has_a_known_kind_and_renders_with_no_properties():
    for type_, (kind, _) in sentences.TEMPLATES.items():
        assert kind in sentences.KINDS, type_
        got_kind, text = sentences.sentence(type_, {}, NAMES)
        assert got_kind == kind and "{" not in text and text


def test_examples_from_the_issue_read_as_written():
    cases = [
        ("oa.click", {"key": "产品价格"}, "点击菜单「产品价格」"),
        ("journey.answer", {"attribute": "预算", "value": "五万左右"}, "回答了预算问题：五万左右"),
        ("oa.subscribe", {"channel": "展会海报"}, "关注了公众号（渠道：展会海报）"),
        ("oa.subscribe", {}, "关注了公众号"),
        ("tag.added", {"tag": "高意向"}, "获得标签「高意向」"),
        ("tag.removed", {"tag": "高意向"}, "移除标签「高意向」"),
        (
            "lead.returned",
            {"userid": "alice", "note": "不在我的区域"},
            "李娜 退回了线索：不在我的区域",
        ),
        (
            "lead.returned",
            {"userid": "alice", "reason": "联系不上", "outcome": "reassign", "note": "空号"},
            "李娜 退回了线索（原因：联系不上；转给下一位销售）：空号",
        ),
        (
            "lead.returned",
            {"userid": "bob", "reason": "非目标客户", "outcome": "disqualify", "note": ""},
            "赵强 退回了线索（原因：非目标客户；标记为已流失，停止营销）",
        ),
        ("lead.returned", {"userid": "alice"}, "李娜 退回了线索"),
        ("lead.reassigned", {"from": "alice", "to": None}, "线索由 李娜 转给 （无人）"),
        ("note.added", {"author": "bob", "text": "已报价"}, "赵强 记录：已报价"),
        (
            "contact.stage_changed",
            {
                "from": "mql",
                "to": "disqualified",
                "by": "alice",
                "manual": True,
                "reason": "set by alice: 预算不足",
            },
            "阶段 MQL → 已流失（李娜 设置：预算不足）",
        ),
        (
            "contact.stage_changed",
            {"from": "lead", "to": "mql"},
            "阶段 潜在客户 → MQL（按分数自动）",
        ),
    ]
    for type_, props, text in cases:
        assert sentences.sentence(type_, props, NAMES)[1] == text


def test_tag_changes_say_why():
    def tag(type_: str, source: str, actor: str | None, **extra) -> str:
        props = {"tag": "意向:价格", "source": source, "actor": actor, **extra}
        return sentences.sentence(type_, props, NAMES)[1]

    assert (
        tag("tag.added", "interest", "interest:价格") == "获得标签「意向:价格」（关键词「价格」）"
    )
    assert tag("tag.added", "tag_rule", "tag_rule:7") == "获得标签「意向:价格」（标签规则）"
    assert tag("tag.removed", "tag_rule", "tag_rule:7") == "移除标签「意向:价格」（标签规则）"
    assert tag("tag.added", "reply_rule", "reply_rule:3") == "获得标签「意向:价格」（自动回复规则）"
    assert tag("tag.added", "channel", "channel:2") == "获得标签「意向:价格」（渠道活码）"
    assert tag("tag.added", "campaign", None) == "获得标签「意向:价格」（活动）"
    journey = tag("tag.added", "journey", "journey:4:s1", journey_name="新客培育")
    assert journey == "获得标签「意向:价格」（旅程「新客培育」）"
    assert sentences.journey_of({"source": "journey", "actor": "journey:4:s1"}) == 4
    assert sentences.journey_of({"source": "manual", "actor": "journey:4:s1"}) is None
    assert tag("tag.added", "manual", "alice") == "获得标签「意向:价格」（李娜 手动添加）"
    assert tag("tag.removed", "manual", "bob") == "移除标签「意向:价格」（赵强 手动移除）"
    assert tag("tag.added", "manual", "api") == "获得标签「意向:价格」（接口 手动添加）"
    assert tag("tag.removed", "wecom", "alice") == "移除标签「意向:价格」（李娜 在企业微信中移除）"


def test_sales_events_read_in_chinese():
    due = "2026-12-03T02:00:00+00:00"  # 10:00 in Shanghai
    props = {"userid": "alice", "due_at": due, "text": "回电话确认预算"}
    assert sentences.sentence("sales.reminder_set", props, NAMES, SHANGHAI) == (
        "note",
        "李娜 设置跟进提醒：12月3日 10:00 回电话确认预算",
    )
    moved = {"kind": "in_service", "from": "alice", "to": "bob", "errcode": 0}
    assert sentences.sentence("sales.transfer_requested", moved, NAMES)[1] == (
        "客户由 李娜 在职转接给 赵强"
    )
    failed = {"userid": "bob", "fail_reason": "customer_refused"}
    assert sentences.sentence("wecom.transfer_failed", failed, NAMES)[1] == (
        "客户转接失败：客户拒绝了转接"
    )
    refused = {"kind": "resigned", "from": "alice", "to": "bob", "errcode": 40129}
    assert sentences.sentence("sales.transfer_requested", refused, NAMES)[1] == (
        "客户由 李娜 离职继承给 赵强，企业微信未受理（40129）"
    )


def test_journey_exits_say_why_in_chinese():
    def left(reason: str) -> str:
        props = {"journey_name": "新客培育", "reason": reason}
        return sentences.sentence("journey.exited", props, NAMES)[1]

    assert left("completed") == "离开旅程「新客培育」：走完了全部步骤"
    assert left("unsubscribed") == "离开旅程「新客培育」：取消关注"
    assert left("removed by a marketer") == "离开旅程「新客培育」：被移出旅程"
    assert left("已购买") == "离开旅程「新客培育」：已购买"  # an exit step's own words
    assert left("unknown step 'x'") == "离开旅程「新客培育」：旅程内部错误"


def test_unknown_types_and_odd_properties_do_not_break():
    assert sentences.sentence("future.thing", {"x": 1}, NAMES) == ("other", "事件 future.thing")
    kind, text = sentences.sentence("oa.text", {"content": {"nested": "{x}"}}, NAMES)
    assert (kind, text) == ("message", "发来消息：")
    assert sentences.sentence("oa.text", {"content": "{0} {missing}"}, NAMES)[1] == (
        "发来消息：{0} {missing}"
    )


def test_types_of_a_kind():
    assert "note.added" in sentences.types_of("note")
    assert set(sentences.types_of("tag")) == {"tag.added", "tag.removed"}
    assert "lead.returned" in sentences.types_of("lead")


def test_relative_times():
    def when(delta: timedelta) -> str:
        return sentences.when(NOW - delta, NOW, SHANGHAI)

    assert when(timedelta(seconds=10)) == "刚刚"
    assert when(timedelta(minutes=5)) == "5分钟前"
    assert when(timedelta(hours=3)) == "今天 13:00"
    assert when(timedelta(hours=20)) == "昨天 20:00"
    assert when(timedelta(days=3)) == "3天前"
    assert when(timedelta(days=20)) == "11月12日"
    assert when(timedelta(days=400)) == "2025-10-28"
    assert sentences.until(NOW + timedelta(minutes=9, seconds=30), NOW, SHANGHAI) == "10分钟后"
    assert sentences.until(NOW + timedelta(days=1), NOW, SHANGHAI) == "明天 16:00"
    assert sentences.until(NOW - timedelta(minutes=1), NOW, SHANGHAI) == "即将"
