"""journeys.stats.count: the per-step counters, from hand-made paths (pure)."""

from __future__ import annotations

from fixtures import journey_definition

from journeys import check
from journeys.stats import Path, count

QUALIFY = check(journey_definition("qualify"))
ORDER = ["start", "budget", "high", "call", "offer", "low", "nudge"]
HIGH = ("start", "budget", "high", "call")

PATHS = [
    Path("done", "offer", (*HIGH, "offer"), "completed"),
    Path("waiting", "call", HIGH),
    Path("asking", "budget", ("start", "budget")),
    Path("done", "low", ("start", "budget", "low"), "completed"),
    Path("converted", "call", HIGH, "goal: goal"),
    Path("exited", "nudge", ("start", "budget", "nudge"), "loop guard: more than 100 steps"),
    Path("exited", "budget", ("start", "budget"), "removed by a marketer"),
    Path("exited", "call", HIGH, "unsubscribed"),
    Path("exited", "old", ("start", "old"), "step 'old' is not in this version"),
    Path("done", "low", ("start", "budget", "nudge", "budget", "low"), "completed"),
]


def counters(**given: object) -> dict:
    base = {"entered": 0, "waiting": 0, "passed": 0, "failed": 0, "exited": 0, "converted": 0}
    return {**base, "branches": {}, **given}


def test_every_counter_per_step():
    got = count(QUALIFY, PATHS, {"offer": 2, "ghost": 1})
    steps = got["steps"]
    assert list(steps)[: len(ORDER)] == ORDER  # the definition's order, then the rest
    assert steps["start"] == counters(entered=10, passed=10)
    assert steps["budget"] == counters(
        entered=9,  # once per contact, though one came back to it
        waiting=1,
        passed=7,
        exited=1,
        branches={"high": 4, "low": 2, "nudge": 2},  # every time it was left
    )
    assert steps["high"] == counters(entered=4, passed=4)
    assert steps["call"] == counters(entered=4, waiting=1, passed=1, exited=1, converted=1)
    assert steps["offer"] == counters(entered=1, passed=1, failed=2)  # + undelivered messages
    assert steps["low"] == counters(entered=2, passed=2)
    assert steps["nudge"] == counters(entered=2, passed=1, failed=1)  # the loop guard
    assert steps["old"] == counters(entered=1, failed=1)  # a step of another version
    assert steps["ghost"] == counters(failed=1)
    assert got["totals"] == {
        "enrolled": 10,
        "open": 2,
        "done": 3,
        "exited": 2,
        "converted": 1,
        "failed": 2,
        "conversion_rate": 0.1,
    }


def test_condition_branches_and_rounding():
    d = check(journey_definition("vip_split"))
    paths = [
        Path("done", "a", ("start", "vip", "a")),
        Path("done", "b", ("start", "vip", "b")),
        Path("converted", "b", ("start", "vip", "b")),
        Path("active", "vip", ("start", "vip")),
        Path("exited", "vip", ("start", "vip"), "unknown step 'gone'"),
        Path("exited", "a", ("start", "vip", "a"), "exit"),
    ]
    got = count(d, paths)
    assert got["steps"]["vip"]["branches"] == {"a": 2, "b": 2}
    assert got["steps"]["vip"]["passed"] == 4
    assert got["steps"]["vip"]["failed"] == 1
    assert got["steps"]["b"] == counters(entered=2, passed=1, converted=1)
    assert got["steps"]["a"] == counters(entered=2, passed=1, exited=1)
    totals = got["totals"]
    assert (totals["open"], totals["failed"], totals["exited"], totals["done"]) == (1, 1, 1, 2)
    assert totals["conversion_rate"] == round(1 / 6, 4)


def test_nobody_yet():
    got = count(QUALIFY, [])
    assert list(got["steps"]) == ORDER
    assert all(sc == counters() for sc in got["steps"].values())
    assert got["totals"] == {
        "enrolled": 0,
        "open": 0,
        "done": 0,
        "exited": 0,
        "converted": 0,
        "failed": 0,
        "conversion_rate": 0.0,
    }


def test_a_path_with_no_history_counts_without_crashing():
    """Rows written before the history was kept (or hand-edited) still count in the totals."""
    paths = [Path("done", "offer", ()), Path("waiting", "call", ()), Path("done", "gone", ())]
    got = count(QUALIFY, paths)
    assert got["totals"]["enrolled"] == 3 and got["totals"]["open"] == 1
    assert got["steps"]["call"]["waiting"] == 1
    assert got["steps"]["gone"] == counters(passed=1)
