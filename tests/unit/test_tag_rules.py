"""bot.tagging.rules: evaluation of every condition kind, interest words with jieba, validation
and the YAML file (pure: no database)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bot.tagging.rules import (
    InterestWordsIn,
    Rule,
    TagFileError,
    TagRuleIn,
    content_tokens,
    evaluate,
    interest_matches,
    interest_tags,
    keywords_of,
    matches,
    parse_yaml,
)


def rule(conditions: dict[str, Any], event_type: str = "oa.click", **kw: Any) -> Rule:
    return Rule(id=kw.pop("id", 1), event_type=event_type, conditions=conditions, **kw)


def hit(conditions: dict[str, Any], properties: dict[str, Any], event_type: str = "t.x") -> bool:
    return matches(rule(conditions, event_type), event_type, properties)


# --- event types -------------------------------------------------------------------------


def test_event_type_exact_prefix_and_any() -> None:
    assert matches(rule({}, "oa.click"), "oa.click", {})
    assert not matches(rule({}, "oa.click"), "oa.clicked", {})
    assert matches(rule({}, "oa.*"), "oa.subscribe", {})
    assert not matches(rule({}, "oa.*"), "wecom.contact_added", {})
    assert matches(rule({}, "*"), "h5.form_submitted", {})


# --- conditions --------------------------------------------------------------------------


def test_equality_and_numbers_compare_as_numbers() -> None:
    assert hit({"key": "MENU_PRICE"}, {"key": "MENU_PRICE"})
    assert not hit({"key": "MENU_PRICE"}, {"key": "menu_price"})  # menu keys are exact
    assert not hit({"key": "MENU_PRICE"}, {})
    assert hit({"qty": 3}, {"qty": "3"}) and hit({"qty": 3}, {"qty": 3.0})
    assert hit({"vip": True}, {"vip": True}) and not hit({"vip": True}, {"vip": 1})
    assert hit({"key": {"eq": "A"}}, {"key": "A"})


def test_a_list_means_any_of() -> None:
    cond = {"scene": ["poster_a", "poster_b"]}
    assert hit(cond, {"scene": "poster_b"})
    assert not hit(cond, {"scene": "poster_c"})
    assert hit({"scene": {"in": ["x", 7]}}, {"scene": "7"})


def test_prefix_and_contains() -> None:
    assert hit({"scene": {"prefix": "poster_"}}, {"scene": "poster_spring"})
    assert not hit({"scene": {"prefix": "poster_"}}, {"scene": "shop_poster_"})
    assert hit({"scene": {"prefix": ["a_", "b_"]}}, {"scene": "b_1"})
    assert hit({"url": {"contains": "Pricing"}}, {"url": "https://x.com/pricing?a=1"})
    assert not hit({"url": {"contains": "pricing"}}, {"url": "https://x.com/about"})


def test_keywords_are_whole_words_by_jieba() -> None:
    cond = {"content": {"keywords": ["价格", "报价"]}}
    assert hit(cond, {"content": "请问价格是多少"})
    assert hit(cond, {"content": "麻烦发一份报价"})
    assert not hit(cond, {"content": "评价格式不对"})  # 价格 is not a word here
    assert not hit(cond, {"content": "你好"})
    assert hit({"content": {"keywords": "价格"}}, {"content": "价格呢"})  # one word, no list


def test_keywords_on_any_property_and_given_tokens() -> None:
    assert hit({"form.message": {"keywords": ["试用"]}}, {"form": {"message": "想申请试用"}})
    r = rule({"content": {"keywords": ["价格"]}}, "oa.text", add_tags=("意向:价格",))
    assert evaluate([r], "oa.text", {"content": "价格呢"}) == ([("意向:价格", 1)], [])
    # Tokens the caller already cut for "content" are used as they are.
    assert evaluate([r], "oa.text", {"content": "价格呢"}, {"呢"}) == ([], [])


def test_numeric_comparisons_for_form_fields() -> None:
    assert hit({"budget": {"gte": 50000}}, {"budget": 50000})
    assert hit({"budget": {"gte": 50000}}, {"budget": "80,000"})
    assert not hit({"budget": {"gte": 50000}}, {"budget": 49999})
    assert not hit({"budget": {"gte": 50000}}, {"budget": "很多"})
    assert not hit({"budget": {"gte": 50000}}, {})
    assert hit({"budget": {"gt": 10, "lt": 20}}, {"budget": 15})
    assert not hit({"budget": {"gt": 10, "lt": 20}}, {"budget": 20})
    assert hit({"budget": {"lte": 20}}, {"budget": 20})


def test_exists_nested_paths_and_list_values() -> None:
    assert hit({"scene": {"exists": True}}, {"scene": "a"})
    assert not hit({"scene": {"exists": True}}, {"scene": ""})
    assert hit({"scene": {"exists": False}}, {})
    assert hit({"fields.budget": {"gte": 1}}, {"fields": {"budget": 2}})
    assert hit({"fields.budget": 2}, {"fields.budget": 2})  # a literal dotted key wins
    assert hit({"interests": "价格"}, {"interests": ["功能", "价格"]})  # checkboxes
    assert not hit({"interests": "案例"}, {"interests": ["功能", "价格"]})


def test_all_conditions_must_hold() -> None:
    cond = {"form": "trial", "budget": {"gte": 50000}}
    assert hit(cond, {"form": "trial", "budget": 60000})
    assert not hit(cond, {"form": "trial", "budget": 100})
    assert not hit(cond, {"form": "contact", "budget": 60000})


# --- evaluate ----------------------------------------------------------------------------


def test_evaluate_collects_adds_and_removes_once_each() -> None:
    rules = [
        Rule(1, "oa.click", {"key": "MENU_PRICE"}, ("意向:价格", "点过菜单")),
        Rule(2, "oa.click", {"key": {"prefix": "MENU_"}}, ("点过菜单",), ("沉默",)),
        Rule(3, "oa.text", {}, ("聊过",)),
    ]
    add, remove = evaluate(rules, "oa.click", {"key": "MENU_PRICE"})
    assert add == [("意向:价格", 1), ("点过菜单", 1)]
    assert remove == [("沉默", 2)]
    assert evaluate(rules, "oa.click", {"key": "OTHER"}) == ([], [])


def test_a_tag_added_and_removed_by_one_event_is_removed() -> None:
    rules = [Rule(1, "*", {}, ("a", "b")), Rule(2, "*", {}, (), ("a",))]
    assert evaluate(rules, "x", {}) == ([("b", 1)], [("a", 2)])


def test_keywords_of_a_rule() -> None:
    r = Rule(1, "oa.text", {"content": {"keywords": ["价格", "报价"]}, "x": "y"}, ("t",))
    assert keywords_of(r) == ["价格", "报价"]


# --- interest words ----------------------------------------------------------------------

DICTIONARY = {"价格": "意向:价格", "多少钱": "意向:价格", "试用": "意向:试用", "案例": "意向:案例"}


def tokens_of(s: str) -> set[str]:
    return content_tokens(s)


def test_interest_tags_from_jieba_tokens() -> None:
    s = "这个多少钱？能试用吗"
    assert interest_tags(DICTIONARY, tokens_of(s), s) == ["意向:价格", "意向:试用"]
    assert interest_matches(DICTIONARY, tokens_of(s), s) == [
        ("意向:价格", "多少钱"),
        ("意向:试用", "试用"),
    ]
    assert interest_tags(DICTIONARY, tokens_of("评价格式不对"), "评价格式不对") == []
    assert interest_tags(DICTIONARY, tokens_of("你好"), "你好") == []


def test_a_word_jieba_cuts_apart_needs_the_raw_text() -> None:
    # Without jieba knowing 多少钱 it is cut as 多少 + 钱: the raw text confirms the word.
    tokens = {"这个", "多少", "钱"}
    assert interest_tags({"多少钱": "意向:价格"}, tokens, "这个多少钱") == ["意向:价格"]
    assert interest_tags({"多少钱": "意向:价格"}, tokens) == []


def test_each_tag_once_with_the_first_word() -> None:
    s = "价格和多少钱"
    assert interest_matches(DICTIONARY, tokens_of(s), s) == [("意向:价格", "价格")]


# --- validation --------------------------------------------------------------------------


def errors(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        TagRuleIn.model_validate(data)
    return {
        ".".join(map(str, e["loc"])): e["msg"].removeprefix("Value error, ")
        for e in info.value.errors()
    }


def good(**overrides: Any) -> dict[str, Any]:
    return {"name": "价格菜单", "event_type": "oa.click", "add_tags": ["意向:价格"]} | overrides


def test_a_valid_rule_and_its_defaults() -> None:
    r = TagRuleIn.model_validate(
        good(conditions={"key": "MENU_PRICE", "budget": {"gte": 1}}, add_tags=[" a ", "a", 618])
    )
    assert r.add_tags == ["a", "618"] and r.remove_tags == [] and r.enabled is True
    assert r.columns()["conditions"] == {"key": "MENU_PRICE", "budget": {"gte": 1}}


def test_condition_errors_name_the_property_and_operator() -> None:
    got = errors(
        good(
            conditions={
                "budget": {"gtee": 1, "gte": "many"},
                "scene": {"prefix": []},
                "content": {"keywords": [""]},
                "key": None,
                "x": {},
                "y": {"exists": "yes"},
                "z": [{"a": 1}],
                "w": {"in": []},
            }
        )
    )
    assert got["conditions.budget.gtee"].startswith("unknown operator 'gtee'; use one of eq")
    assert got["conditions.budget.gte"] == "must be a number"
    assert got["conditions.scene.prefix"].startswith("must be non-empty text")
    assert got["conditions.content.keywords"].startswith("must be a word")
    assert got["conditions.key"] == "null is not a condition; use {exists: false}"
    assert got["conditions.x"].startswith("give at least one operator")
    assert got["conditions.y.exists"] == "must be true or false"
    assert got["conditions.z"] == "every value must be text, a number or true/false"
    assert got["conditions.w.in"] == "must be a non-empty list"


def test_rule_level_errors() -> None:
    assert errors(good(event_type="oa.Click")) == {
        "event_type": "an event type such as oa.click, a prefix such as oa.*, or *"
    }
    assert errors(good(add_tags=[])) == {"": "add_tags: a rule needs tags to add or to remove"}
    assert errors(good(remove_tags=["意向:价格"])) == {
        "": "remove_tags: also in add_tags: 意向:价格"
    }
    assert "add_tags" in errors(good(add_tags=["x" * 65]))
    assert "name" in errors(good(name=""))
    assert "surprise" in errors(good(surprise=1))


def test_interest_words_validation() -> None:
    assert InterestWordsIn.model_validate({"words": {" 价格 ": "意向:价格"}}).words == {
        "价格": "意向:价格"
    }
    with pytest.raises(ValidationError) as info:
        InterestWordsIn.model_validate({"words": {"": "x", "价格": " "}})
    locs = {e["loc"]: e["msg"] for e in info.value.errors()}
    assert locs[("words", "")] == "a word is 1 to 64 characters"
    assert locs[("words", "价格")] == "a tag is 1 to 30 characters"


# --- the YAML file -----------------------------------------------------------------------


def problems(source: str) -> list[str]:
    with pytest.raises(TagFileError) as info:
        parse_yaml(textwrap.dedent(source))
    return info.value.problems


def test_parse_a_file_with_rules_and_words() -> None:
    rules, words = parse_yaml(
        textwrap.dedent(
            """
            tag_rules:
              - name: 海报扫码
                event_type: oa.subscribe
                conditions: {scene: {prefix: poster_}}
                add_tags: [来源:海报]
            interest_words:
              价格: 意向:价格
              618: 活动:618
            """
        )
    )
    assert [r.name for r in rules] == ["海报扫码"]
    assert words == {"价格": "意向:价格", "618": "活动:618"}


def test_every_problem_in_a_file_is_reported() -> None:
    got = problems(
        """
        tag_rules:
          - name: a
            event_type: oa.click
            conditions: {budget: {gte: x}}
            add_tags: [t]
          - name: b
            event_type: oa.click
            add_tags: [t]
          - name: b
            event_type: oa.click
            add_tags: [t]
        interest_words:
          "": x
        extra: 1
        """
    )
    assert got == [
        "unknown section 'extra'",
        "tag_rules[1] conditions.budget.gte: must be a number",
        "tag rule name 'b' appears more than once",
        "interest_words['']: a word is 1 to 64 characters",
    ]


def test_file_shape_problems() -> None:
    assert problems("- a") == ["the file needs a 'tag_rules:' list or an 'interest_words:' mapping"]
    assert problems("tag_rules: {a: 1}") == ["tag_rules must be a list of rules"]
    assert problems("interest_words: [a]") == ["interest_words must be a mapping of word: tag"]
    assert problems("tag_rules: [")[0].startswith("not valid YAML")


def test_the_bundled_dictionary_is_valid_and_useful() -> None:
    source = Path(__file__).parents[2] / "bot" / "defaults" / "interest_words.yaml"
    rules, words = parse_yaml(source.read_text(encoding="utf-8"))
    assert rules == [] and len(words) >= 30
    for word, tag in {"价格": "意向:价格", "多少钱": "意向:价格", "试用": "意向:试用"}.items():
        assert words[word] == tag
    s = "你好，这个多少钱？可以先试用吗"
    assert interest_tags(words, content_tokens(s), s) == ["意向:价格", "意向:试用"]
