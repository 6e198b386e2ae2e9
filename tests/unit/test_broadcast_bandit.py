"""The pure part of a bandit broadcast: who is in the explore share, the fixed draws against
the decided weights, and the request's defaults and checks."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bot.messaging import broadcast_bandit, broadcasts
from journeys import bandit

VARIANTS = [
    {"name": "a", "payload": {"content": "a"}, "percent": 30},
    {"name": "b", "payload": {"content": "b"}, "percent": 70},
]


def test_the_explore_share_is_a_fixed_draw_of_its_own():
    spec = {"explore": 0.2}
    inside = [c for c in range(1, 10_001) if broadcasts.in_explore(7, c, spec)]
    assert 1800 < len(inside) < 2200
    assert inside == [c for c in range(1, 10_001) if broadcasts.in_explore(7, c, spec)]
    assert inside != [c for c in range(1, 10_001) if broadcasts.in_explore(8, c, spec)]
    # its own salt: the explore draw is not the variant draw
    explore = {c: bandit.draw("broadcast-7", "explore", c) for c in range(1, 200)}
    variant = {c: bandit.draw("broadcast-7", "variants", c) for c in range(1, 200)}
    assert explore != variant


def test_the_rest_follows_the_weights_with_the_same_draw():
    weights = [0.05, 0.95]
    arms = [bandit.arm_for(bandit.draw("broadcast-3", "variants", c), weights) for c in range(4000)]
    assert 0.93 < arms.count(1) / 4000 < 0.97
    # a contact on the winner's side of the percentages stays there
    for c in range(500):
        if broadcasts.variant_of(3, c, VARIANTS) == 1:
            assert bandit.arm_for(bandit.draw("broadcast-3", "variants", c), weights) == 1


def test_the_weights_move_toward_the_converting_variant_with_a_fixed_seed():
    counts = [(20, 1), (20, 9)]
    w = bandit.thompson_weights(counts, 0.05, broadcast_bandit.seed(4))
    assert w == bandit.thompson_weights(counts, 0.05, broadcast_bandit.seed(4))
    assert w[1] > 0.9 and w[0] >= 0.05
    assert broadcast_bandit.percents(VARIANTS) == [0.3, 0.7]


def request(**kw) -> broadcasts.BroadcastRequest:
    body = {
        "name": "x",
        "kind": "text",
        "payload": {"content": "x"},
        "contact_ids": [1],
        "variants": VARIANTS,
        **kw,
    }
    return broadcasts.BroadcastRequest.model_validate(body)


def test_a_bandit_request_has_defaults():
    assert request().bandit_spec() is None
    assert request(mode="bandit", goal="h5.form_submitted").bandit_spec() == {
        "goal": "h5.form_submitted",
        "explore": 0.2,
        "decide_after_minutes": 60,
        "min_share": 0.05,
    }


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"mode": "bandit"}, "goal"),
        ({"mode": "bandit", "goal": "h5.x", "variants": None}, "variants"),
        ({"goal": "h5.x"}, "goal"),
        ({"explore": 0.2}, "explore"),
        ({"mode": "bandit", "goal": "h5.x", "outside_window": "mass"}, "outside_window"),
    ],
)
def test_a_bandit_request_names_what_is_wrong(kw, field):
    with pytest.raises(ValidationError) as exc:
        request(**kw)
    assert str(exc.value).count(f"{field}:") >= 1, str(exc.value)
