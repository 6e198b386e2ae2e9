"""journeys.conditions: the one condition language of tag rules, score rules, journeys and
segments. Each operator's semantics, the edge cases, the lookup, and the one validation."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from bot.scoring.points import points_for
from bot.scoring.rules import RuleSet
from bot.tagging.rules import Rule, matches
from journeys.conditions import (
    MISSING,
    OPERATORS,
    Cmp,
    Conditions,
    Tokens,
    compare,
    event_matches,
    keywords_in,
    lookup,
    meets,
    number,
)
from journeys.model import Trigger

CONDITIONS: TypeAdapter[dict[str, Cmp]] = TypeAdapter(Conditions)


def holds(cond: Any, value: Any = MISSING) -> bool:
    return compare(CONDITIONS.validate_python({"v": cond})["v"], value)


def problems(conds: Any) -> dict[str, str]:
    try:
        CONDITIONS.validate_python(conds)
    except ValidationError as exc:
        return {".".join(str(p) for p in e["loc"]): e["msg"] for e in exc.errors()}
    return {}


# --- numbers ---------------------------------------------------------------------------------


def test_numbers_are_finite_and_read_from_text() -> None:
    assert number(3) == 3 and number(" 1,000.5 ") == 1000.5 and number("1e3") == 1000
    assert number(True) is None and number("many") is None and number(None) is None
    for bad in (math.inf, -math.inf, math.nan, "inf", "-Infinity", "nan"):
        assert number(bad) is None


# --- eq and in -------------------------------------------------------------------------------


def test_eq_compares_numbers_as_numbers_when_both_parse() -> None:
    assert holds(3, "3") and holds(3, 3.0) and holds("3", 3) and holds("01", "1")
    assert holds({"eq": "1,000"}, 1000)
    assert not holds(3, "three")
    assert holds("inf", "inf")  # not numbers (not finite): compared as text
    assert not holds(3, "inf")


def test_eq_text_is_trimmed_and_case_sensitive() -> None:
    assert holds("MENU_PRICE", " MENU_PRICE ")
    assert not holds("MENU_PRICE", "menu_price")


def test_eq_true_and_false_only_equal_themselves() -> None:
    assert holds(True, True) and not holds(True, 1) and not holds(True, "true")
    assert not holds(1, True) and not holds("true", True)
    assert holds(False, False) and not holds(False, 0)


def test_in_and_a_bare_list_mean_any_of() -> None:
    assert holds(["a", "b"], "b") and holds({"in": ["a", 2]}, "2") and not holds(["a"], "c")


# --- prefix, contains, keywords --------------------------------------------------------------


def test_prefix_is_case_sensitive_and_a_list_means_any() -> None:
    assert holds({"prefix": "poster_"}, "poster_a") and not holds({"prefix": "poster_"}, "Poster_a")
    assert holds({"prefix": ["a_", "b_"]}, "b_1")
    assert holds({"prefix": 618}, "618大促")  # a number operand is text


def test_contains_ignores_case_and_a_list_means_any() -> None:
    assert holds({"contains": "VIP"}, "a vip customer")
    assert holds({"contains": "vip"}, "A VIP CUSTOMER")
    assert holds({"contains": ["价格", "报价"]}, "请给个报价")
    assert not holds({"contains": ["价格", "报价"]}, "你好")


def test_keywords_are_whole_words_on_nfkc_jieba_tokens() -> None:
    kw = {"keywords": ["价格"]}
    assert holds(kw, "请问价格是多少") and not holds(kw, "评价格式不对")
    assert holds({"keywords": ["vip"]}, "我是ＶＩＰ会员")  # full-width folds to ASCII
    assert holds({"keywords": "价格"}, "价格表")  # one word, not a list: the same
    assert holds({"keywords": ["多少钱"]}, "这个多少钱") and not holds(
        {"keywords": ["多少钱"]}, "多少 钱"
    )


def test_given_tokens_are_used_and_each_text_is_cut_once() -> None:
    cut: list[str] = []

    class Counting(Tokens):
        def __call__(self, normalized: str) -> set[str]:
            if normalized not in self.cut:
                cut.append(normalized)
            return super().__call__(normalized)

    tokens = Counting({"已知": {"价格"}})
    cmp = CONDITIONS.validate_python({"v": {"keywords": ["价格"]}})["v"]
    assert compare(cmp, "已知", tokens)  # the given tokens, not jieba's
    assert compare(cmp, "问价格", tokens) and compare(cmp, "问价格", tokens)
    assert cut == ["问价格"]


# --- numeric bounds --------------------------------------------------------------------------


def test_bounds_read_numbers_and_numeric_text() -> None:
    assert holds({"gt": 5}, 6) and not holds({"gt": 5}, 5) and holds({"gte": 5}, "5")
    assert holds({"lt": 5}, "4.9") and holds({"lte": 5}, 5) and not holds({"lte": 5}, 5.01)
    assert holds({"gte": 10000, "lte": 49999.99}, "20,000")
    assert not holds({"gte": 1}, "many") and not holds({"gte": 1}, True)
    assert not holds({"lt": 1e308}, "inf") and not holds({"gt": 0}, math.inf)


# --- exists, absent values, lists ------------------------------------------------------------


def test_exists_and_what_counts_as_absent() -> None:
    for absent in (MISSING, None, "", []):
        assert holds({"exists": False}, absent) and not holds({"exists": True}, absent)
        assert not holds({"eq": ""}, absent) and not holds({"gte": 0}, absent)
    assert holds({"exists": True}, 0) and holds({"exists": True}, False)


def test_a_list_value_matches_when_any_element_does() -> None:
    assert holds("b", ["a", "b"]) and holds({"gte": 10}, [1, "12"])
    assert holds({"contains": "试"}, ["价格", "试用"]) and not holds("c", ["a", "b"])
    assert holds({"exists": True}, ["a"])


def test_every_operator_given_must_hold() -> None:
    both = {"prefix": "lead_", "contains": "vip"}
    assert holds(both, "lead_VIP") and not holds(both, "lead_x") and not holds(both, "x_vip")
    assert holds({"exists": True, "gte": 3}, 4) and not holds({"exists": False, "gte": 3}, 4)


# --- the lookup and event conditions ---------------------------------------------------------


def test_lookup_reaches_into_nested_objects() -> None:
    props = {"fields": {"budget": 5}, "a.b": 1}
    assert lookup(props, "fields.budget") == 5 and lookup(props, "a.b") == 1
    assert lookup(props, "fields.nope") is MISSING and lookup(props, "fields.budget.x") is MISSING


def test_event_matches_type_patterns_and_every_condition() -> None:
    conds = CONDITIONS.validate_python({"scene": {"prefix": "lead_"}, "fields.n": {"gte": 2}})
    props = {"scene": "lead_1", "fields": {"n": "3"}}
    assert meets(conds, props) and not meets(conds, {**props, "scene": "x"})
    assert event_matches("oa.*", conds, "oa.subscribe", props)
    assert event_matches(["wecom.x", "*"], conds, "h5.form", props)
    assert not event_matches("oa.scan", conds, "oa.subscribe", props)


def test_keywords_in_lists_the_words_to_teach() -> None:
    conds = CONDITIONS.validate_python({"a": {"keywords": ["价格", 618]}, "b": "x"})
    assert keywords_in(conds) == ["价格", "618"]


# --- the one validation ----------------------------------------------------------------------


def test_every_problem_is_named_by_property_and_operator() -> None:
    got = problems(
        {
            "budget": {"gtee": 1, "gte": "many"},
            "scene": {"prefix": []},
            "content": {"keywords": [""]},
            "key": None,
            "x": {},
            "y": {"exists": "yes"},
            "z": [{"a": 1}],
            "w": {"in": []},
            "v": {"eq": [1]},
            "u": {"contains": "x" * 501},
            "t": {"in": list(range(201))},
            "s": {"lt": math.inf},
            "": 1,
        }
    )
    assert got == {
        "budget.gtee": f"unknown operator 'gtee'; use one of {', '.join(OPERATORS)}",
        "budget.gte": "must be a number",
        "scene.prefix": "must be non-empty text or a non-empty list of them",
        "content.keywords": "must be a word or a non-empty list of them",
        "key": "null is not a condition; use {exists: false}",
        "x": f"give at least one operator: {', '.join(OPERATORS)}",
        "y.exists": "must be true or false",
        "z": "every value must be text, a number or true/false",
        "w.in": "must be a non-empty list",
        "v.eq": "must be text, a number or true/false",
        "u.contains": "at most 500 characters each",
        "t.in": "at most 200 values",
        "s.lt": "must be a number",
        "": "a property name is 1 to 128 characters",
    }


def test_limits_on_the_conditions_object() -> None:
    assert problems({f"p{i}": 1 for i in range(21)}) == {"": "at most 20 conditions"}
    assert problems({"p" * 129: 1}) == {"p" * 129: "a property name is 1 to 128 characters"}
    assert problems({f"p{i}": 1 for i in range(20)}) == {}


def test_what_parses_is_normalized() -> None:
    cmp = CONDITIONS.validate_python({"v": {"gte": "1,000", "keywords": "价格", "eq": None}})["v"]
    assert cmp.gte == 1000 and cmp.keywords == ["价格"] and cmp.eq is None
    assert cmp.model_dump(by_alias=True, exclude_none=True) == {"keywords": ["价格"], "gte": 1000}
    assert Cmp.model_validate({"in": [1, "a", True]}).in_ == [1, "a", True]  # types kept


@pytest.mark.parametrize("op", OPERATORS)
def test_each_operator_alone_is_a_condition(op: str) -> None:
    arg = {"in": [1], "prefix": "a", "contains": "a", "keywords": ["a"], "exists": True}.get(op, 1)
    assert problems({"p": {op: arg}}) == {}


# --- one language: tag rules, score rules and journeys agree ---------------------------------

CASES: list[tuple[Any, Any]] = [
    ("01", "1"),
    (3, "three"),
    (True, "true"),
    (["a", "b"], ["c", "b"]),
    ({"contains": "VIP"}, "a vip"),
    ({"keywords": ["价格"]}, "评价格式"),
    ({"keywords": ["vip"]}, "ＶＩＰ会员"),
    ({"gte": 10, "lt": 20}, "12"),
    ({"gte": 10}, "inf"),
    ({"exists": False}, None),
    ({"exists": True}, ""),
    ({"prefix": ["x", "lead_"]}, "lead_1"),
]


@pytest.mark.parametrize(("cond", "value"), CASES)
def test_tag_rules_score_rules_and_journeys_mean_the_same(cond: Any, value: Any) -> None:
    props = {"p": value}
    trigger = Trigger.model_validate(
        {"id": "t", "type": "trigger", "event": "x", "conditions": {"p": cond}}
    )
    journey = event_matches(trigger.event or "", trigger.conditions, "x", props)
    tag = matches(Rule(id=1, event_type="x", conditions={"p": cond}), "x", props)
    rules = RuleSet.model_validate(
        {
            "events": [{"id": "r", "event": "x", "conditions": {"p": cond}, "points": 1}],
            "stages": {"lead": 1, "mql": 2, "sql": 3},
        }
    )
    score = bool(points_for(rules, "x", props, {}))
    assert journey == tag == score == holds(cond, value)
