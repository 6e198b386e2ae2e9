"""The menu rules (bot.menus.spec), the click stamp's choice of version (bot.menus.clicks.find)
and webhook subscription patterns: pure."""

from __future__ import annotations

import pytest

from bot.automation.webhook_endpoints import matches
from bot.core.models import MenuVersion
from bot.menus import clicks, spec


def click(name: str = "按钮", key: str = "K") -> dict:
    return {"type": "click", "name": name, "key": key}


def test_names_are_measured_in_utf8_bytes():
    assert spec.check_buttons([click("一二三四五")]) == {}  # 15 bytes
    assert "16 bytes" in spec.check_buttons([click("一二三四五六")])["buttons.0.name"]
    assert spec.check_buttons([click("abcdefghijklmnop")]) == {}
    assert "buttons.0.name" in spec.check_buttons([click("abcdefghijklmnopq")])
    top = {"name": "更多", "sub_button": [click("二" * 20)]}
    assert spec.check_buttons([top]) == {}
    top["sub_button"] = [click("二" * 20 + "x")]  # 61 bytes
    assert "60 bytes" in spec.check_buttons([top])["buttons.0.sub_button.0.name"]


def test_every_problem_is_named_by_its_path():
    problems = spec.check_buttons(
        [
            {"name": "更多", "sub_button": [click(), {"type": "view", "name": "网"}, "x"]},
            {"type": "miniprogram", "name": "小程序", "url": "https://a.cn"},
            {"type": "article_id", "name": "文章"},
        ]
    )
    assert set(problems) == {
        "buttons.0.sub_button.1.url",
        "buttons.0.sub_button.2",
        "buttons.1.appid",
        "buttons.1.pagepath",
        "buttons.2.article_id",
    }
    nested = {"name": "a", "sub_button": [{**click(), "sub_button": [click()]}]}
    assert "buttons.0.sub_button.0.sub_button" in spec.check_buttons([nested])
    assert spec.check_buttons("x") == {"buttons": "1 to 3 top buttons"}


def test_platform_buttons_drop_empty_sub_lists_and_keep_a_parent_bare():
    buttons = [
        {**click(), "sub_button": []},
        {"name": "更多", "type": "click", "key": "X", "sub_button": [click()]},
    ]
    assert spec.platform_buttons(buttons) == [
        click(),
        {"name": "更多", "sub_button": [click()]},
    ]
    assert spec.keys(buttons) == {"K"}


def version(vid: int, *entries: dict) -> MenuVersion:
    return MenuVersion(id=vid, status="published", menus=list(entries))


def entry(menu_id: int, platform_id: str | None, tag: str | None, *buttons: dict) -> dict:
    return {
        "menu_id": menu_id,
        "platform_menu_id": platform_id,
        "tag": tag,
        "buttons": list(buttons),
    }


def test_the_version_clicked():
    both = click(key="BOTH")
    v2 = version(
        2,
        entry(1, "900", None, click(key="NEW"), both),
        entry(2, "902", "VIP", click(key="VIP"), both),
        entry(3, "903", "老客", click(key="OLDIE"), both),
    )
    v1 = version(
        1, entry(1, "800", None, click(key="OLD")), entry(2, "801", "VIP", click(key="VIP"))
    )
    newest_first = [v2, v1]
    assert clicks.find(newest_first, "oa.view", {"url": "u", "menu_id": "801"}) == (1, 2)
    assert clicks.find(newest_first, "oa.view", {"url": "u", "menu_id": 902}) == (2, 2)
    assert clicks.find(newest_first, "oa.click", {"key": "NEW"}) == (2, 1)
    assert clicks.find(newest_first, "oa.click", {"key": "VIP"}, ["VIP"]) == (2, 2)
    # a key in several menus: the menu of the tag added last, else the default
    assert clicks.find(newest_first, "oa.click", {"key": "BOTH"}, ["老客", "VIP"]) == (2, 3)
    assert clicks.find(newest_first, "oa.click", {"key": "BOTH"}, ["VIP", "老客"]) == (2, 2)
    assert clicks.find(newest_first, "oa.click", {"key": "BOTH"}, ["其他"]) == (2, 1)
    # only a conditional menu has it, and the tag is gone: still that menu
    assert clicks.find(newest_first, "oa.click", {"key": "VIP"}) == (2, 2)
    # a client still showing the menu before the publish
    assert clicks.find(newest_first, "oa.click", {"key": "OLD"}) == (1, 1)
    assert clicks.find(newest_first, "oa.click", {"key": "GONE"}) == (2, 1)
    view = {"type": "view", "name": "网", "url": "https://a.cn/"}
    v3 = version(3, entry(4, None, None, view))
    assert clicks.find([v3, *newest_first], "oa.view", {"url": "https://a.cn/"}) == (3, 4)
    assert clicks.find([], "oa.click", {"key": "NEW"}) is None


@pytest.mark.parametrize(
    ("patterns", "event_type", "expected"),
    [
        (["*"], "oa.click", True),
        (["oa.click"], "oa.click", True),
        (["oa.click"], "oa.clicks", False),
        (["oa.*"], "oa.click", True),
        (["oa.*"], "oauth.x", False),
        (["api.*"], "api.order.paid", True),
        (["api.order"], "api.order.paid", False),
        ([], "oa.click", False),
    ],
)
def test_subscription_patterns(patterns, event_type, expected):
    assert matches(patterns, event_type) is expected


def test_an_api_event_reads_as_an_outside_systems_on_the_timeline():
    from bot.desk import sentences

    assert sentences.sentence("api.order_paid", {"amount": 5}, {}) == (
        "other",
        "外部系统事件 api.order_paid",
    )
