"""bot.core.versioned: a per-process copy reloaded when another process bumps its version."""

from __future__ import annotations

import time

from bot.core import queue
from bot.core.versioned import Versioned


def test_a_change_in_one_process_reaches_the_other_within_the_check(clean):
    loads = {"a": 0, "b": 0}

    def loader(name):
        def load():
            loads[name] += 1
            return f"{name}{loads[name]}"

        return load

    a, b = Versioned("t-rules", check_every=0.05), Versioned("t-rules", check_every=0.05)
    assert a.get(clean, loader("a"), 60) == "a1"
    assert b.get(clean, loader("b"), 60) == "b1"
    for _ in range(5):  # unchanged: no reload, whatever the number of reads
        assert a.get(clean, loader("a"), 60) == "a1"
        time.sleep(0.02)
    b.changed(clean)  # "process" b changes the rules
    assert b.get(clean, loader("b"), 60) == "b2"  # its own copy at once
    time.sleep(0.06)
    assert a.get(clean, loader("a"), 60) == "a2"  # the other within check_every
    assert a.get(clean, loader("a"), 60) == "a2"
    assert loads == {"a": 2, "b": 2}


def test_between_checks_nothing_is_asked_of_redis(clean, monkeypatch):
    v = Versioned("t-quiet", check_every=60)
    assert v.get(clean, lambda: "rules", 60) == "rules"
    monkeypatch.setattr(queue, "get_redis", lambda settings: (_ for _ in ()).throw(AssertionError))
    assert v.get(clean, lambda: "reloaded", 60) == "rules"


def test_without_redis_the_copy_is_reloaded_by_age(clean, monkeypatch):
    v = Versioned("t-away", check_every=0)
    assert v.get(clean, lambda: "first", 60) == "first"

    def away(settings):
        raise ConnectionError("Redis is away")

    monkeypatch.setattr(queue, "get_redis", away)
    assert v.get(clean, lambda: "second", 60) == "first"  # younger than the fallback age
    assert v.get(clean, lambda: "second", 0) == "second"  # older: read again
    v.changed(clean)  # logged, not raised; this process reloads
    assert v.get(clean, lambda: "third", 60) == "third"
