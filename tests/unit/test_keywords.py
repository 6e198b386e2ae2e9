"""bot.replies.match.match: which reply rules an interaction matches, best first.

Pure: Rule objects and text in, rules out. Disabled rules never reach match() (the caller,
bot.replies.rules.active_rules, loads only enabled ones), so they are not tested here.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from bot.replies.match import MATCH_ORDER, Rule, keyword_matches, match
from journeys.words import tokens


def kw(id: int, *keywords: str, match: str = "jieba", priority: int = 0, name: str = "") -> Rule:
    return Rule(
        id=id,
        name=name or f"rule-{id}",
        trigger="keyword",
        match=match,
        keywords=tuple(keywords),
        reply={"content": f"reply {id}"},
        priority=priority,
    )


def ids(rules: list[Rule]) -> list[int]:
    return [r.id for r in rules]


PRICE = kw(1, "价格")
PRICE_ANY = kw(2, "价格", "报价", "多少钱")


# --- jieba mode ---------------------------------------------------------------------------


def test_jieba_matches_a_word_in_a_sentence() -> None:
    assert ids(match([PRICE], "keyword", "请问价格是多少")) == [1]


def test_jieba_respects_token_boundaries() -> None:
    """评价格式 is 评价 + 格式: 价格 only appears across the boundary."""
    assert "价格" in "评价格式"
    assert match([PRICE], "keyword", "评价格式") == []
    assert match([PRICE], "keyword", "评价格式有问题吗") == []


def test_jieba_matches_a_word_inside_a_longer_word() -> None:
    """Search mode also yields the words inside long words (价格表 -> 价格)."""
    assert ids(match([PRICE], "keyword", "价格表在哪")) == [1]


def test_jieba_keyword_alone_is_a_match() -> None:
    assert ids(match([PRICE], "keyword", "价格")) == [1]
    assert ids(match([PRICE], "keyword", "  价格？ ")) == [1]


@pytest.mark.parametrize("message", ["这个多少钱", "给我报价", "价格呢", "多少钱？"])
def test_several_keywords_are_alternatives(message: str) -> None:
    assert ids(match([PRICE_ANY], "keyword", message)) == [2]


@pytest.mark.parametrize("message", ["你好", "评价格式", "多少", ""])
def test_several_keywords_none_matching(message: str) -> None:
    assert match([PRICE_ANY], "keyword", message) == []


def test_jieba_multi_token_keyword_needs_its_tokens_in_order() -> None:
    """多少钱 is 多少 + 钱 for stock jieba: matched as a whole phrase, not as scattered words."""
    rule = kw(3, "多少钱")
    assert ids(match([rule], "keyword", "这个多少钱")) == [3]
    assert match([rule], "keyword", "钱要多少") == []


@pytest.mark.parametrize(
    ("keyword", "message", "expected"),
    [
        ("Price", "what's the PRICE?", True),
        ("PRICE", "price", True),
        ("price", "Price list please", True),
        ("price list", "send me the PRICE LIST", True),
        ("price", "priceless", False),
        ("VIP", "我是vip会员", True),
        ("vip", "我是VIP会员", True),
    ],
)
def test_english_keywords_are_case_insensitive(keyword: str, message: str, expected: bool) -> None:
    assert bool(match([kw(4, keyword)], "keyword", message)) is expected


def test_blank_keywords_never_match() -> None:
    for mode in MATCH_ORDER:
        rule = kw(5, "", "   ", match=mode)
        assert match([rule], "keyword", "") == []
        assert match([rule], "keyword", "   ") == []
        assert match([rule], "keyword", "价格") == []


def test_keyword_whitespace_is_trimmed() -> None:
    assert ids(match([kw(6, "  价格  ")], "keyword", "请问价格是多少")) == [6]
    assert ids(match([kw(7, " 价格 ", match="exact")], "keyword", "价格")) == [7]


# --- exact mode ---------------------------------------------------------------------------


@pytest.mark.parametrize("message", ["价格", " 价格 ", "\t价格\n", "\u3000价格\u3000"])
def test_exact_matches_the_whole_trimmed_message(message: str) -> None:
    assert ids(match([kw(10, "价格", match="exact")], "keyword", message)) == [10]


@pytest.mark.parametrize("message", ["请问价格", "价格？", "价格是多少", "价 格", ""])
def test_exact_does_not_match_part_of_a_message(message: str) -> None:
    assert match([kw(10, "价格", match="exact")], "keyword", message) == []


@pytest.mark.parametrize("message", ["hello", "HELLO", "  Hello  ", "hElLo"])
def test_exact_is_case_insensitive(message: str) -> None:
    assert ids(match([kw(11, "Hello", match="exact")], "keyword", message)) == [11]


def test_exact_with_several_keywords() -> None:
    rule = kw(12, "你好", "hi", match="exact")
    assert ids(match([rule], "keyword", "HI")) == [12]
    assert ids(match([rule], "keyword", "你好")) == [12]
    assert match([rule], "keyword", "你好呀") == []


# --- contains mode ------------------------------------------------------------------------


@pytest.mark.parametrize("message", ["评价格式", "价格", "xx价格yy", "请问价格是多少"])
def test_contains_matches_substrings(message: str) -> None:
    """Unlike jieba mode, contains ignores word boundaries (评价格式 matches 价格)."""
    assert ids(match([kw(20, "价格", match="contains")], "keyword", message)) == [20]


def test_contains_is_case_insensitive() -> None:
    rule = kw(21, "WiFi", match="contains")
    assert ids(match([rule], "keyword", "wifi密码是多少")) == [21]
    assert ids(match([rule], "keyword", "我的WIFI连不上")) == [21]
    assert match([rule], "keyword", "wi fi") == []


def test_contains_no_match() -> None:
    assert match([kw(22, "价格", match="contains")], "keyword", "价 格") == []


# --- ordering -----------------------------------------------------------------------------


def test_ordering_priority_then_mode_then_id() -> None:
    rules = [
        kw(1, "价格", match="contains"),
        kw(2, "价格", match="jieba"),
        kw(3, "价格", match="jieba"),
        kw(4, "价格", match="exact"),
        kw(5, "价格", match="contains", priority=10),
        kw(6, "价格", match="exact", priority=-5),
        kw(7, "价格", match="jieba", priority=10),
    ]
    # priority desc (7, 5 at 10), then exact < jieba < contains, then id; -5 last.
    assert ids(match(rules, "keyword", "价格")) == [7, 5, 4, 2, 3, 1, 6]


def test_ordering_does_not_depend_on_input_order() -> None:
    rules = [kw(i, "价格", match=m) for i, m in enumerate(["contains", "exact", "jieba"] * 3, 1)]
    expected = ids(match(rules, "keyword", "价格"))
    assert ids(match(list(reversed(rules)), "keyword", "价格")) == expected
    assert expected == [2, 5, 8, 3, 6, 9, 1, 4, 7]


def test_only_matching_rules_are_returned_in_order() -> None:
    rules = [
        kw(1, "价格", match="exact"),  # message is not exactly 价格
        kw(2, "价格", match="contains", priority=1),
        kw(3, "报价"),
        kw(4, "价格"),
    ]
    assert ids(match(rules, "keyword", "请问价格是多少")) == [2, 4]


def test_match_order_table() -> None:
    assert MATCH_ORDER["exact"] < MATCH_ORDER["jieba"] < MATCH_ORDER["contains"]


# --- triggers -----------------------------------------------------------------------------


def click(id: int, key: str, priority: int = 0) -> Rule:
    return Rule(id=id, name=f"click-{id}", trigger="click", click_key=key, priority=priority)


def welcome(id: int, priority: int = 0) -> Rule:
    return Rule(id=id, name=f"welcome-{id}", trigger="subscribe", priority=priority)


def test_click_rules_by_click_key() -> None:
    rules = [click(1, "MENU_PRICE"), click(2, "MENU_ABOUT"), click(3, "MENU_PRICE", priority=5)]
    assert ids(match(rules, "click", click_key="MENU_PRICE")) == [3, 1]
    assert ids(match(rules, "click", click_key="MENU_ABOUT")) == [2]
    assert match(rules, "click", click_key="MENU_NONE") == []
    assert match(rules, "click", click_key="") == []


def test_click_ignores_message_text_and_keyword_rules() -> None:
    rules = [kw(1, "MENU_PRICE", match="exact"), click(2, "MENU_PRICE")]
    assert ids(match(rules, "click", "MENU_PRICE", click_key="MENU_PRICE")) == [2]


def test_keyword_trigger_ignores_click_rules() -> None:
    rules = [click(1, "价格"), kw(2, "价格")]
    assert ids(match(rules, "keyword", "价格")) == [2]


def test_subscribe_rules_all_match_in_order() -> None:
    rules = [welcome(3), kw(1, "欢迎"), welcome(2), welcome(4, priority=1), click(5, "X")]
    assert ids(match(rules, "subscribe")) == [4, 2, 3]
    assert ids(match(rules, "subscribe", "任何文字")) == [4, 2, 3]


def test_no_rules() -> None:
    for trigger in ("keyword", "click", "subscribe"):
        assert match([], trigger, "价格", "MENU") == []


def test_unknown_trigger_matches_nothing() -> None:
    assert match([kw(1, "价格"), welcome(2)], "scan", "价格") == []


def test_keyword_matches_direct_call() -> None:
    rule = kw(1, "价格")
    assert keyword_matches(rule, "请问价格是多少", tokens("请问价格是多少"))
    assert not keyword_matches(rule, "评价格式", tokens("评价格式"))


def test_has_reply() -> None:
    assert kw(1, "价格").has_reply
    assert not Rule(id=2, name="tag only", trigger="keyword", keywords=("价格",)).has_reply


def test_tokens_are_lowercased_and_stripped() -> None:
    result = tokens("Hello 世界  ")
    assert "hello" in result
    assert all(t == t.strip().lower() and t for t in result)


def test_token_boundary_survives_teaching_jieba_the_keywords() -> None:
    """In production active_rules() calls words.add_words(keywords) before match(). Run in a
    fresh interpreter so the jieba dictionary of this process stays untouched."""
    script = textwrap.dedent(
        """
        from journeys import words
        from bot.replies.match import Rule, match
        words.add_words(["价格", "报价", "多少钱"])
        rule = Rule(id=1, name="p", trigger="keyword", keywords=("价格", "报价", "多少钱"))
        assert match([rule], "keyword", "评价格式") == [], "评价格式"
        assert match([rule], "keyword", "请问价格是多少") == [rule], "请问价格是多少"
        assert match([rule], "keyword", "这个多少钱") == [rule], "这个多少钱"
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
