"""send_rules.decide: the one table of routes delivery, the mass send and the preview share;
the mass send's openid chunks; audiences."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from pydantic import ValidationError

from bot.audiences.resolve import Audience
from bot.messaging import mass
from bot.messaging.send_rules import Decision, Policy, Recipient, Send, decide, month_start

NOON = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai
POLICY = Policy(marketing_cap=3, quiet_start=time(22), quiet_end=time(8), mass_quota=4)
FRESH = NOON - timedelta(hours=1)
OLD = NOON - timedelta(days=3)


def who(**kw) -> Recipient:
    base = {"subscribed": True, "stage": None, "has_openid": True, "last_interaction": OLD}
    return Recipient(**{**base, **kw})


def text(outside: str, **kw) -> Send:
    return Send(kind="text", marketing=kw.pop("marketing", True), outside_window=outside, **kw)


@pytest.mark.parametrize(
    ("recipient", "send", "route"),
    [
        (who(last_interaction=FRESH), text("mass"), "cs"),
        (who(), text("mass"), "mass"),
        (who(mass_this_month=4), text("mass"), "quota"),
        (who(mass_this_month=3), text("mass"), "mass"),
        (who(), text("hold"), "hold"),
        (who(), text("fail"), "fail"),
        (who(), text("fallback", has_fallback=True), "template"),
        (who(), text("fallback"), "fail"),  # no template to fall back to
        (who(), Send(kind="template", marketing=True, outside_window="fail"), "template"),
        (who(subscribed=False), text("mass"), "skip"),
        (who(has_openid=False), text("mass"), "skip"),
        (who(stage="disqualified"), text("mass"), "skip"),
        (who(stage="disqualified"), text("mass", marketing=False), "mass"),
        (who(recent_marketing=3), text("mass"), "capped"),
        (who(recent_marketing=3), text("mass", marketing=False), "mass"),
        (who(recent_marketing=3, last_interaction=FRESH), text("hold", exempt=True), "cs"),
    ],
)
def test_routes(recipient: Recipient, send: Send, route: str) -> None:
    assert decide(recipient, send, NOON, POLICY).route == route


def test_quiet_hours_move_marketing_and_spare_a_conversation() -> None:
    night = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)  # 23:00 in Shanghai
    d = decide(who(), text("mass"), night, POLICY)
    assert d.route == "quiet" and d.resume == datetime(2026, 12, 3, 0, 0, tzinfo=UTC)
    talking = who(last_interaction=night - timedelta(minutes=5))
    assert decide(talking, text("mass"), night, POLICY) == Decision("cs")


def test_the_quota_month_is_the_accounts_calendar_month() -> None:
    # 2026-11-30 17:00 UTC is already December 1st in Shanghai
    assert month_start(datetime(2026, 11, 30, 17, 0, tzinfo=UTC), POLICY) == datetime(
        2026, 11, 30, 16, 0, tzinfo=UTC
    )


def test_mass_chunks_never_leave_one_openid_alone() -> None:
    sizes = [len(c) for c in mass.chunks(list(range(20_001)))]
    assert sizes == [10_000, 9_999, 2] and all(s >= 2 for s in sizes)
    assert [len(c) for c in mass.chunks(list(range(5)))] == [5]


@pytest.mark.parametrize(
    "raw",
    [
        {},
        {"ids": [1], "tags": {"any": ["a"]}},
        {"tags": {"any": ["a"], "all": ["b"]}},
        {"tags": {}},
        {"tags": {"any": []}},
        {"segment": 0},
        {"ids": []},
        {"tags": {"any": ["x" * 65]}},
    ],
)
def test_bad_audiences(raw: dict) -> None:
    with pytest.raises(ValidationError):
        Audience.model_validate(raw)


def test_a_single_tag_audience() -> None:
    assert Audience.model_validate({"tags": {"all": ["VIP", "VIP"]}}).single_tag() == "VIP"
    assert Audience.model_validate({"tags": {"any": ["a", "b"]}}).single_tag() is None
    assert Audience.model_validate({"ids": [3, 1, 3]}).ids == [1, 3]
