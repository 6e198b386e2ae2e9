"""bot.scoring.rules: caps, negative and attribute rules, decay, stages, explanations, validation
(pure: no database)."""

from __future__ import annotations

import math
import random
import textwrap
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.scoring import versions
from bot.scoring.points import (
    Line,
    ReplayedEvent,
    Tally,
    Totals,
    decay_factor,
    decayed,
    explain,
    next_stage,
    points_for,
    replay,
    stage_for,
)
from bot.scoring.rules import RuleSet, RuleSetError, cents, parse, parse_yaml

T0 = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


def ruleset(**overrides: Any) -> RuleSet:
    data: dict[str, Any] = {
        "events": [
            {"id": "text", "event": "oa.text", "points": 2, "cap_per_day": 10},
            {"id": "click", "event": "oa.click", "points": 3, "cap_per_day": 9},
            {
                "id": "price",
                "event": "oa.text",
                "when": {"content": {"contains_any": ["价格", "报价", "多少钱"]}},
                "points": 10,
                "cap_lifetime": 20,
            },
            {
                "id": "read",
                "event": "oa.view",
                "when": {"url": {"prefix": "https://mp.weixin.qq.com/"}},
                "points": 5,
                "cap_per_day": 20,
                "cap_lifetime": 100,
            },
            {"id": "unsub", "event": "oa.unsubscribe", "points": -30},
            {
                "id": "complaint",
                "event": "oa.text",
                "points": -4,
                "cap_per_day": 6,
                "when": {"content": {"contains": "投诉"}},
            },
            {"id": "paid", "event": "api.order_paid", "set_stage": "customer"},
        ],
        "attributes": [
            {"id": "budget_high", "attribute": "budget", "gte": 50000, "points": 20},
            {"id": "boss", "attribute": "role", "in": ["老板", "CEO"], "points": 15},
            {"id": "nope", "attribute": "interest", "eq": "not_interested", "points": -20},
        ],
        "decay": {"half_life_days": 30},
        "stages": {"lead": 10, "mql": 50, "sql": 100},
    }
    return RuleSet.model_validate(data | overrides)


def replay_all(rs: RuleSet, events: list[tuple[str, dict, datetime]], stage: str = "subscriber"):
    evs = [ReplayedEvent(i, t, p, at) for i, (t, p, at) in enumerate(events)]
    return replay(rs, evs, stage, manual=False)


# --- caps ---------------------------------------------------------------------------------


def test_event_rules_and_all_matching_rules_apply() -> None:
    lines = points_for(ruleset(), "oa.text", {"content": "请问价格"}, {})
    assert [(ln.rule_id, ln.points) for ln in lines] == [("text", 2), ("price", 10)]
    assert points_for(ruleset(), "oa.text", {"content": "你好"}, {})[0].reason == "text +2"
    assert points_for(ruleset(), "oa.location", {}, {}) == []


def test_daily_cap_gives_partial_points_then_nothing() -> None:
    rs = ruleset()
    [line] = points_for(rs, "oa.click", {"key": "M"}, {"click": Totals(today=8, lifetime=40)})
    assert line.points == 1 and "+1 of +3 (daily cap 9)" in line.reason
    assert points_for(rs, "oa.click", {}, {"click": Totals(today=9, lifetime=40)}) == []


def test_lifetime_cap_is_partial_too() -> None:
    lines = points_for(
        ruleset(), "oa.text", {"content": "报价"}, {"price": Totals(today=0, lifetime=15)}
    )
    assert ("price", 5) in [(ln.rule_id, ln.points) for ln in lines]
    assert "lifetime cap 20" in lines[1].reason


def test_caps_hold_across_many_events_on_one_day_and_reset_the_next() -> None:
    rs = ruleset()
    day1 = [("oa.click", {}, T0 + timedelta(minutes=i)) for i in range(10)]
    day2 = [("oa.click", {}, T0 + timedelta(days=1, minutes=i)) for i in range(2)]
    result = replay_all(rs, day1 + day2)
    assert [ln.points for _, ln in result.lines] == [3, 3, 3, 3, 3]  # 9 on day 1, 6 on day 2
    assert result.raw_cents == 1500


def test_days_are_local_days_of_the_rule_set() -> None:
    rs = ruleset()
    # 23:30 and 00:30 Shanghai time are two days, though the same UTC day.
    late = datetime(2026, 11, 25, 15, 30, tzinfo=UTC)
    assert rs.day_of(late) != rs.day_of(late + timedelta(hours=1))
    start, end = rs.day_bounds(rs.day_of(late))
    assert start == datetime(2026, 11, 25, 16, 0, tzinfo=UTC) - timedelta(days=1)
    assert end - start == timedelta(days=1)
    clicks = [("oa.click", {}, late + timedelta(minutes=i)) for i in range(4)]
    clicks += [("oa.click", {}, late + timedelta(minutes=31 + i)) for i in range(4)]
    assert replay_all(rs, clicks).raw_cents == 1800  # 9 + 9


def test_lifetime_cap_with_daily_cap_over_days() -> None:
    rs = ruleset()
    url = "https://mp.weixin.qq.com/s/abc"
    reads = [
        ("oa.view", {"url": url}, T0 + timedelta(days=d, minutes=m))
        for d in range(8)
        for m in range(5)
    ]
    assert replay_all(rs, reads).raw_cents == 100_00  # 20 a day, 100 ever
    assert points_for(rs, "oa.view", {"url": "https://example.com/x"}, {}) == []


def test_cap_total_does_not_depend_on_order() -> None:
    rs = ruleset()
    events = [
        ("oa.text", {"content": c}, T0 + timedelta(hours=h))
        for h, c in enumerate(["价格"] * 3 + ["hi"] * 5 + ["投诉"] * 3)
    ]
    expected = replay_all(rs, events).raw_cents
    shuffled = events[:]
    random.Random(7).shuffle(shuffled)
    tally = Tally()  # out of order, as two workers might score them
    for t, p, at in shuffled:
        day = rs.day_of(at)
        tally.add(points_for(rs, t, p, tally.history(day)), day)
    assert tally.raw == expected


# --- negative and attribute rules ----------------------------------------------------------


def test_negative_rules_and_their_caps() -> None:
    rs = ruleset()
    [line] = points_for(rs, "oa.unsubscribe", {}, {})
    assert line.points == -30 and line.reason == "unsub -30"
    complaints = [("oa.text", {"content": "我要投诉"}, T0 + timedelta(minutes=i)) for i in range(3)]
    result = replay_all(rs, complaints)
    assert [(ln.rule_id, ln.points) for _, ln in result.lines if ln.rule_id == "complaint"] == [
        ("complaint", -4),
        ("complaint", -2),
    ]
    assert result.raw_cents == 600 - 600


def test_attribute_rule_scores_once_per_value_change() -> None:
    rs = ruleset()
    form = {"attributes": {"budget": 80000, "role": "CEO"}}
    lines = points_for(rs, "h5.form_submit", form, {})
    assert sorted((ln.rule_id, ln.points) for ln in lines) == [("boss", 15), ("budget_high", 20)]
    held = {"budget_high": Totals(0, 20), "boss": Totals(0, 15)}
    assert points_for(rs, "h5.form_submit", form, held) == []  # same answers again
    assert points_for(rs, "journey.answer", {"attribute": "budget", "value": "90,000"}, held) == []
    form = {"form": "contact_us", "fields": {"budget": "60000", "name": "张三"}}
    assert [ln.rule_id for ln in points_for(rs, "h5.form_submitted", form, {})] == ["budget_high"]
    [back] = points_for(rs, "journey.answer", {"attribute": "budget", "value": 3000}, held)
    assert back.rule_id == "budget_high" and back.points == -20
    assert "no longer matches" in back.reason


def test_attribute_history_replays_to_the_latest_value() -> None:
    rs = ruleset()
    answers = [80000, 90000, 1000, 60000, 60000]
    events = [
        ("journey.answer", {"attribute": "budget", "value": v}, T0 + timedelta(hours=i))
        for i, v in enumerate(answers)
    ]
    result = replay_all(rs, events)
    assert [ln.points for _, ln in result.lines] == [20, -20, 20]
    assert result.raw_cents == 2000


def test_not_interested_answer_is_negative_and_reversible() -> None:
    rs = ruleset()
    events = [
        ("journey.answer", {"attribute": "interest", "value": "not_interested"}, T0),
        ("journey.answer", {"attribute": "interest", "value": "interested"}, T0 + timedelta(1)),
    ]
    assert [ln.points for _, ln in replay_all(rs, events).lines] == [-20, 20]


def test_matchers() -> None:
    rs = RuleSet.model_validate(
        {
            "events": [
                {"id": "a", "event": "x", "when": {"n": {"gte": 3, "lte": 5}}, "points": 1},
                {"id": "b", "event": "x", "when": {"meta.src": {"eq": 618}}, "points": 1},
                {"id": "c", "event": "x", "when": {"tag": {"exists": False}}, "points": 1},
                {"id": "d", "event": "x", "when": {"flag": {"eq": True}}, "points": 1},
            ],
            "stages": {"lead": 1, "mql": 2, "sql": 3},
        }
    )

    def ids(props: dict) -> list[str]:
        return [ln.rule_id for ln in points_for(rs, "x", props, {})]

    assert ids({"n": "4", "tag": 1}) == ["a"]
    # null is absent in the one condition language (it was "present" before it): c holds
    assert ids({"n": 6, "meta": {"src": "618"}, "tag": None}) == ["b", "c"]
    assert ids({"n": 6, "meta": {"src": "618"}, "tag": "x"}) == ["b"]
    assert ids({"n": "many"}) == ["c"]
    assert ids({"flag": True, "tag": 0}) == ["d"]


# --- decay ---------------------------------------------------------------------------------


def test_decay_halves_every_half_life() -> None:
    assert decay_factor(T0, T0, 30) == 1
    assert decay_factor(T0, T0 + timedelta(days=30), 30) == pytest.approx(0.5)
    assert decay_factor(T0, T0 + timedelta(days=90), 30) == pytest.approx(0.125)
    assert decayed(100, T0, T0 + timedelta(days=60), 30) == 25
    assert decayed(-30, T0, T0 + timedelta(days=30), 30) == -15
    assert decayed(100, T0, T0 - timedelta(days=3), 30) == 100  # activity after "now"
    assert decayed(100, None, T0, 30) == 100 and decayed(100, T0, T0 + timedelta(999), None) == 100
    assert decayed(10, T0, T0 + timedelta(days=15), 30) == pytest.approx(7.07)


# --- stages ---------------------------------------------------------------------------------


def test_stages_by_threshold_only_forward() -> None:
    th = ruleset().stages
    assert stage_for(9.99, "subscriber", False, th) == "subscriber"
    assert stage_for(10, "subscriber", False, th) == "lead"
    assert stage_for(120, "subscriber", False, th) == "sql"
    assert stage_for(60, "lead", False, th) == "mql"
    assert stage_for(5, "mql", False, th) == "mql"  # scores falling never demote


def test_manual_customer_and_disqualified_stick() -> None:
    th = ruleset().stages
    assert stage_for(500, "lead", True, th) == "lead"
    assert stage_for(500, "subscriber", True, th, explicit="customer") == "subscriber"
    assert stage_for(500, "customer", False, th) == "customer"
    assert stage_for(500, "disqualified", False, th) == "disqualified"
    assert stage_for(0, "disqualified", False, th, explicit="customer") == "customer"
    assert stage_for(0, "sql", False, th, explicit="disqualified") == "disqualified"


def test_next_stage_only_when_points_are_earned() -> None:
    rs = ruleset()
    minus = [Line("unsub", -30, "")]
    plus = [Line("text", 2, "")]
    assert next_stage(rs, "subscriber", False, 5000, minus) == "subscriber"
    assert next_stage(rs, "subscriber", False, 5000, plus) == "mql"
    assert next_stage(rs, "lead", False, 0, [Line("paid", 0, "", "customer")]) == "customer"
    assert next_stage(rs, "lead", True, 0, [Line("paid", 0, "", "customer")]) == "lead"


def test_set_stage_rule_writes_a_zero_line() -> None:
    rs = ruleset()
    [line] = points_for(rs, "api.order_paid", {}, {})
    assert (line.points, line.set_stage) == (0, "customer") and "stage → customer" in line.reason
    result = replay_all(rs, [("oa.text", {"content": "价格"}, T0), ("api.order_paid", {}, T0)])
    assert result.stage == "customer" and result.changed_by.key == 1


def test_replay_moves_stages_forward_through_thresholds() -> None:
    rs = ruleset()
    events = [("oa.text", {"content": "价格"}, T0 + timedelta(minutes=i)) for i in range(3)]
    events += [("h5.form_submit", {"attributes": {"budget": 1e5, "role": "CEO"}}, T0)]
    events += [("oa.unsubscribe", {}, T0 + timedelta(hours=5))]
    result = replay_all(rs, events)
    assert result.raw_cents == (2 + 10 + 2 + 10 + 2 + 20 + 15 - 30) * 100
    assert result.stage == "mql"  # reached 61 before the unsubscribe; never demoted


# --- explain --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(25))
def test_explained_lines_sum_exactly_to_the_total(seed: int) -> None:
    rnd = random.Random(seed)
    lines = [
        {"points": rnd.choice([2, 3, 5, 10, -30, 0.5, 1.25, 20, -4])}
        for _ in range(rnd.randint(1, 40))
    ]
    factor = rnd.choice([1.0, 0.5, 0.37, 1 / 3, 0.001, 0.9999])
    out = explain(lines, factor)
    total_cents = round(sum(cents(ln["points"]) for ln in lines) * factor)
    assert sum(cents(ln["decayed"]) for ln in out) == total_cents
    for ln in out:  # each share is within a cent of its exact value
        assert abs(cents(ln["decayed"]) - cents(ln["points"]) * factor) < 1 + 1e-9
        assert math.isclose(ln["decayed"] * 100, round(ln["decayed"] * 100))


def test_explain_keeps_line_fields() -> None:
    out = explain([{"points": 5, "rule": "follow"}, {"points": 2, "rule": "text"}], 0.5)
    assert out == [
        {"points": 5, "rule": "follow", "decayed": 2.5},
        {"points": 2, "rule": "text", "decayed": 1.0},
    ]


# --- validation -----------------------------------------------------------------------------


def problems(data: Any) -> list[str]:
    with pytest.raises(RuleSetError) as info:
        parse(data)
    return info.value.problems


def base() -> dict[str, Any]:
    return {"stages": {"lead": 10, "mql": 50, "sql": 100}}


def test_validation_names_each_field() -> None:
    found = problems(
        base()
        | {
            "events": [
                {"id": "ok", "event": "oa.text", "points": 1},
                {"id": "bad id!", "event": "oa.text", "points": 1},
                {"id": "z", "event": "oa.text", "points": 0},
                {"id": "c", "event": "oa.text", "points": 1, "cap_per_day": -5},
                {"id": "d", "event": "oa.text", "points": 1.234},
                {"id": "e", "event": "oa.text", "points": 1, "when": {"x": {}}},
                {"id": "f", "event": "oa.text", "points": 1, "when": {"x": {"eq": 1, "in": [2]}}},
                {"id": "g", "event": "oa.text", "points": 1, "bonus": 3},
            ],
            "attributes": [{"id": "h", "attribute": "budget", "points": 5}],
        }
    )
    text = "\n".join(found)
    assert "events.1.id: must be 1 to 64 letters" in text
    assert "events.2.points: must not be 0" in text
    assert "events.3.cap_per_day: Input should be greater than 0" in text
    assert "events.4.points: the value may have at most two decimals" in text
    assert "events.5.conditions.x: give at least one operator: eq, in" in text
    assert "events.6" not in text  # eq and in together: both must hold, as everywhere
    assert "events.7.bonus: Extra inputs are not permitted" in text
    assert "attributes.0: give at least one operator: eq, in" in text


def test_validation_of_ids_thresholds_zone_decay() -> None:
    found = problems(
        {
            "timezone": "Mars/Olympus",
            "events": [{"id": "a", "event": "x", "points": 1}],
            "attributes": [{"id": "a", "attribute": "b", "eq": 1, "points": 2}],
            "decay": {"half_life_days": 0},
            "stages": {"lead": 60, "mql": 50, "sql": 100},
        }
    )
    text = "\n".join(found)
    assert "timezone: unknown time zone 'Mars/Olympus'" in text
    assert "decay.half_life_days: Input should be greater than 0" in text
    assert "stages.mql: must be above lead" in text
    assert problems({"events": []}) == ["stages: Field required"]
    dup = problems(base() | {"events": [{"id": "a", "event": "x", "points": 1}] * 2})
    assert dup == ["events.1.id: duplicate rule id 'a'"]
    assert problems([1, 2]) == ["rules: must be a mapping with events, attributes, decay, stages"]


def test_yaml_and_round_trip() -> None:
    rs = parse_yaml(
        textwrap.dedent(
            """
            events:
              - {id: x, event: oa.text, when: {content: {contains_any: [618, 双11]}}, points: 1}
            attributes:
              - {id: y, attribute: role, in: [CEO], points: 2}
            stages: {lead: 1, mql: 2, sql: 3}
            """
        )
    )
    assert rs.events[0].conditions["content"].contains == ["618", "双11"]  # translated
    again = RuleSet.model_validate(rs.to_json())
    assert again.to_json() == rs.to_json() and "in" in rs.to_json()["attributes"][0]
    with pytest.raises(RuleSetError, match="not valid YAML"):
        parse_yaml("events: [")


def test_default_rules_are_valid_and_score_a_price_question() -> None:
    rs = versions.default_rules()
    ids = [ln.rule_id for ln in points_for(rs, "oa.text", {"content": "这个多少钱"}, {})]
    assert ids == ["text_message", "price_interest"]
    assert rs.half_life == 30 and rs.stages.lead == 10 and rs.stages.sql == 100
    assert [ln.points for ln in points_for(rs, "oa.unsubscribe", {}, {})] == [-30]


# --- the spelling before the one condition language ----------------------------------------

OLD = """
events:
  - {id: price, event: oa.text, when: {content: {contains_any: [价格, 报价, 多少钱]}}, points: 10}
  - {id: art, event: oa.view, when: {url: {prefix: "https://mp."}, n: {gte: 2}}, points: 5}
attributes:
  - {id: role, attribute: role, contains_any: [总, CEO], points: 15}
  - {id: budget, attribute: budget, gte: 10000, lte: 49999.99, points: 10}
stages: {lead: 1, mql: 2, sql: 3}
"""

NEW = """
events:
  - {id: price, event: oa.text, conditions: {content: {contains: [价格, 报价, 多少钱]}}, points: 10}
  - {id: art, event: oa.view, conditions: {url: {prefix: "https://mp."}, n: {gte: 2}}, points: 5}
attributes:
  - {id: role, attribute: role, contains: [总, CEO], points: 15}
  - {id: budget, attribute: budget, gte: 10000, lte: 49999.99, points: 10}
stages: {lead: 1, mql: 2, sql: 3}
"""


def test_when_and_contains_any_are_translated_on_load() -> None:
    old, new = parse_yaml(OLD), parse_yaml(NEW)
    assert old.to_json() == new.to_json()  # published, the old spelling becomes the new one
    stored = old.to_json()
    assert "when" not in stored["events"][0] and "contains_any" not in str(stored)
    assert stored["events"][0]["conditions"] == {
        "content": {"contains": ["价格", "报价", "多少钱"]}
    }
    assert stored["attributes"][0]["contains"] == ["总", "CEO"]
    assert RuleSet.model_validate(stored).to_json() == stored


@pytest.mark.parametrize(
    ("event_type", "properties", "rule_ids"),
    [
        ("oa.text", {"content": "这个多少钱"}, ["price"]),
        ("oa.text", {"content": "你好"}, []),
        ("oa.view", {"url": "https://mp.weixin.qq.com/s/1", "n": "3"}, ["art"]),
        ("oa.view", {"url": "https://mp.weixin.qq.com/s/1", "n": 1}, []),
        ("journey.answer", {"attribute": "role", "value": "总经理"}, ["role"]),
        ("journey.answer", {"attribute": "role", "value": "工程师"}, []),
        ("h5.form", {"fields": {"budget": "20,000", "role": "CEO"}}, ["role", "budget"]),
    ],
)
def test_the_old_spelling_scores_as_the_new(
    event_type: str, properties: dict, rule_ids: list[str]
) -> None:
    old, new = parse_yaml(OLD), parse_yaml(NEW)
    lines = points_for(old, event_type, properties, {})
    assert lines == points_for(new, event_type, properties, {})
    assert sorted(ln.rule_id for ln in lines) == sorted(rule_ids)


def test_the_old_spelling_mixed_with_the_new_is_refused() -> None:
    both = {"id": "x", "event": "e", "when": {}, "conditions": {}, "points": 1}
    assert problems(base() | {"events": [both]}) == [
        "events.0.when: the old name of conditions; give only conditions"
    ]
    twice = {
        "id": "x",
        "event": "e",
        "points": 1,
        "when": {"c": {"contains": "a", "contains_any": ["b"]}},
    }
    assert problems(base() | {"events": [twice]}) == [
        "events.0.contains_any: give contains or contains_any (now contains with a list), not both"
    ]
