"""journeys.validate: every problem at once, each naming the step and the field."""

from __future__ import annotations

import copy

import pytest
from fixtures import journey_definition

from journeys import Definition, DefinitionError, Problem, check, validate

BASE = journey_definition("send_wait_branch")


def make(**changes) -> dict:
    data = copy.deepcopy(BASE)
    data.update(changes)
    return data


def step(data: dict, sid: str) -> dict:
    return next(s for s in data["steps"] if s["id"] == sid)


def where(problems: list[Problem]) -> set[tuple[str | None, str]]:
    return {(p.step, p.field) for p in problems}


def test_a_good_definition_has_no_problems():
    assert validate(BASE) == []
    assert validate(BASE, known_tags={"意向:价格"}, known_templates=set()) == []
    assert isinstance(check(BASE), Definition)
    assert validate(check(BASE)) == []


def test_unknown_step_type_is_named():
    data = make()
    data["steps"].append({"id": "odd", "type": "teleport"})
    step(data, "tag")["next"] = "odd"
    problems = validate(data)
    assert [p for p in problems if p.field == "type"] == [
        Problem("odd", "type", problems[0].message)
    ]
    assert "unknown step type 'teleport'" in problems[0].message


def test_missing_and_unknown_branch_targets():
    data = make()
    del step(data, "branch")["no"]
    step(data, "wait")["next"] = "nowhere"
    problems = validate(data)
    assert ("branch", "no") in where(problems)
    assert ("wait", "next") in where(problems)
    assert any("unknown step 'nowhere'" in p.message for p in problems)


def test_unreachable_step():
    data = make()
    data["steps"].append({"id": "orphan", "type": "action", "do": "add_tag", "tag": "x"})
    assert Problem("orphan", "id", "unreachable: no path from the trigger leads here") in (
        validate(data)
    )


def test_cycle_without_a_wait_is_refused_and_with_a_wait_allowed():
    data = make()
    step(data, "tag")["next"] = "branch"  # branch -> tag -> branch, no wait
    problems = validate(data)
    loop = [p for p in problems if "loop" in p.message]
    assert len(loop) == 1 and loop[0].step == "branch"
    assert "branch → tag → branch" in loop[0].message

    step(data, "tag")["next"] = "wait"  # the loop now goes through the wait
    assert validate(data) == []


def test_exactly_one_trigger():
    data = make()
    data["steps"] = data["steps"][1:]
    assert (None, "steps") in where(validate(data))
    data = make()
    data["steps"].append({"id": "again", "type": "trigger", "event": "oa.click"})
    assert ("again", "type") in where(validate(data))


def test_unknown_tags_and_templates_when_sets_are_given():
    data = make()
    step(data, "hello").update(
        kind="template", payload={"template_id": "TPL_X", "data": {"first": "你好"}}
    )
    data["steps"].append({"id": "untag", "type": "action", "do": "remove_tag", "tag": "不存在"})
    step(data, "tag")["next"] = "untag"
    problems = validate(data, known_tags={"已推送"}, known_templates={"TPL_A"})
    assert ("branch", "if.tag") in where(problems)
    assert ("untag", "tag") in where(problems)
    assert ("hello", "payload.template_id") in where(problems)
    # a tag the journey adds itself is known to the rest of it; no sets: no checks
    assert ("tag", "tag") not in where(problems)
    assert validate(data) == []


def test_send_payload_needs_what_its_kind_needs():
    data = make()
    step(data, "hello").update(kind="news", payload={"title": "标题"})
    assert ("hello", "payload.url") in where(validate(data))
    step(data, "hello").update(kind="fax")
    assert ("hello", "kind") in where(validate(data))


def test_ab_split_must_add_up_to_100():
    data = make()
    branch = step(data, "branch")
    for key in ("if", "yes", "no"):
        del branch[key]
    branch["split"] = [{"percent": 50, "next": "tag"}, {"percent": 40, "next": "done"}]
    problems = validate(data)
    assert [p for p in problems if p.field == "split"][0].message == (
        "the percentages add up to 90, not 100"
    )


def ask_step(**changes) -> dict:
    s = {
        "id": "q",
        "type": "ask",
        "question": "预算多少？",
        "save_as": "budget",
        "timeout": "1d",
        "timeout_next": "done",
        "no_match_next": "done",
        "choices": [
            {"label": "少", "synonyms": ["一万"], "next": "tag"},
            {"label": "多", "synonyms": ["十万"], "next": "done"},
        ],
    }
    s.update(changes)
    return s


def test_ask_choices_and_branches_must_be_consistent():
    data = make()
    step(data, "hello")["next"] = "q"
    data["steps"].append(ask_step())
    step(data, "wait")["next"] = "branch"
    data["steps"] = [s for s in data["steps"] if s["id"] != "wait"]
    step(data, "hello")["next"] = "q"
    step(data, "tag")["next"] = None
    data["steps"].append({"id": "w2", "type": "wait", "duration": "1h", "next": "branch"})
    step(data, "q")["choices"][0]["next"] = "w2"
    assert validate(data) == []

    clash = copy.deepcopy(data)
    step(clash, "q")["choices"][1]["synonyms"] = ["一万"]
    del step(clash, "q")["no_match_next"]
    del step(clash, "q")["choices"][0]["next"]
    problems = validate(clash)
    assert ("q", "choices[1]") in where(problems)
    assert ("q", "no_match_next") in where(problems)
    assert ("q", "choices[0].next") in where(problems)

    empty = copy.deepcopy(data)
    step(empty, "q")["choices"] = []
    assert ("q", "choices") in where(validate(empty))


def test_shape_errors_name_step_and_field():
    data = make()
    step(data, "wait")["duration"] = "-3d"
    step(data, "hello")["do"] = "fly"
    data["timezone"] = "Mars/Base"
    problems = validate(data)
    assert ("wait", "duration") in where(problems)
    assert ("hello", "do") in where(problems)
    assert (None, "timezone") in where(problems)


def test_wait_shapes():
    data = make()
    step(data, "wait").update(duration=None, event="oa.text")
    del step(data, "wait")["duration"]
    assert any(p.step == "wait" and "timeout" in p.message for p in validate(data))
    step(data, "wait").update(timeout="2d")
    assert ("wait", "timeout_next") in where(validate(data))
    step(data, "wait").update(timezone="Nowhere/City", timeout_next="done")
    assert ("wait", "timezone") in where(validate(data))


def test_goal_steps_are_not_branch_targets_and_need_no_path():
    data = make()
    data["steps"].append({"id": "won", "type": "goal", "when": {"stage": "sql"}})
    assert validate(data) == []
    step(data, "tag")["next"] = "won"
    assert ("tag", "next") in where(validate(data))


def test_check_raises_with_every_problem():
    data = make()
    del step(data, "branch")["no"]
    data["steps"].append({"id": "orphan", "type": "action", "do": "add_tag", "tag": "x"})
    with pytest.raises(DefinitionError) as caught:
        check(data)
    assert len(caught.value.problems) == 3  # and `done` is now unreachable
    assert "step branch: no: missing branch" in str(caught.value)


def test_a_send_may_fall_back_to_a_template_outside_the_window() -> None:
    from journeys import validate

    def journey(**send):
        return {
            "id": "fb",
            "name": "fallback",
            "steps": [
                {"id": "start", "type": "trigger", "event": "oa.subscribe", "next": "s"},
                {
                    "id": "s",
                    "type": "action",
                    "do": "send",
                    "kind": "text",
                    "payload": {"content": "hi"},
                    **send,
                },
            ],
        }

    ok = journey(outside_window="fallback", fallback={"template_id": "T1", "data": {"a": "b"}})
    assert validate(ok) == []
    assert validate(ok, known_templates={"T2"})[0].field == "fallback.template_id"
    [p] = validate(journey(outside_window="fallback"))
    assert "fallback" in str(p)
    [p] = validate(journey(fallback={"template_id": "T1"}))
    assert p.field == "fallback.data"
