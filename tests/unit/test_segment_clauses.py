"""The clauses saved segments added to the one condition language (journeys.model.Pred): their
shape rules, which of them only a segment reads, and ``{segment: id}`` in the pure engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

import journeys
from journeys.model import Pred
from journeys.predicates import holds

NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"within": "14d"}, "exactly one of"),
        ({"tag": "a", "within": "14d"}, "within: only with event"),
        ({"tag": "a", "conditions": {"key": "V1"}}, "conditions: only with event"),
        ({"event": "oa.click", "within": "0s"}, "within: must be longer than zero"),
        ({"identity": "email"}, "Input should be"),
        ({"subscribed": True, "is": {"eq": 1}}, "is: only with field, answer or identity"),
        ({"segment": 0}, "greater than or equal to 1"),
        ({"owner": None}, "exactly one of"),
    ],
)
def test_shape_errors(data, message):
    with pytest.raises(ValidationError) as caught:
        Pred.model_validate(data)
    assert message in str(caught.value)


def test_the_new_clauses_parse():
    p = Pred.model_validate(
        {"event": "oa.click", "conditions": {"key": "V1"}, "count": {"gte": 2}, "within": "14d"}
    )
    assert p.within == timedelta(days=14) and p.conditions["key"].eq == "V1"
    assert p.segment_only() == ["within", "conditions"]
    assert Pred.model_validate({"identity": "phone", "is": {"prefix": "138"}}).segment_only() == [
        "identity"
    ]
    assert Pred.model_validate({"event": "oa.click", "count": {"gte": 2}}).segment_only() == []
    nested = Pred.model_validate({"all": [{"tag": "a"}, {"not": {"owner": "rep1"}}]})
    assert [w for w, q in nested.walk("if") if q.segment_only()] == ["if.all[1].not"]


def test_segment_membership_comes_from_the_contact():
    member = journeys.Contact(id=1, segments={7: True})
    outsider = journeys.Contact(id=2, segments={7: False})
    unknown = journeys.Contact(id=3)
    p = Pred.model_validate({"segment": 7})
    assert [holds(p, c, {}, NOW) for c in (member, outsider, unknown)] == [True, False, False]
    # a segment-only clause never holds in the engine (validation keeps it out of journeys)
    assert not holds(Pred.model_validate({"subscribed": True}), member, {}, NOW)


def test_journeys_refuse_segment_only_clauses_and_take_saved_ones():
    definition = {
        "id": "j",
        "name": "j",
        "steps": [
            {"id": "t", "type": "trigger", "on": "segment_left", "segment_id": 3, "next": "c"},
            {
                "id": "c",
                "type": "condition",
                "if": {"any": [{"segment": 4}, {"owner": "r"}]},
                "yes": "a",
                "no": "a",
            },
            {"id": "a", "type": "action", "do": "exit"},
        ],
    }
    problems = [str(p) for p in journeys.validate(definition, known_segments={3})]
    assert any("if.any[1].owner" in p and "saved segment" in p for p in problems)
    assert any("if.any[0].segment: no saved segment 4" in p for p in problems)
    assert not any("segment_id" in p for p in problems)
    d = journeys.parse(
        {
            **definition,
            "steps": [
                definition["steps"][0],
                {**definition["steps"][1], "if": {"segment": 4}},
                definition["steps"][2],
            ],
        }
    )
    assert not journeys.triggered_by(d, None, journeys.Contact(id=1), NOW)
    with pytest.raises(ValidationError):
        journeys.parse(
            {**definition, "steps": [{"id": "t", "type": "trigger", "on": "segment_left"}]}
        )
