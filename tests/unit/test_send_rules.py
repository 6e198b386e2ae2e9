"""The messaging rules as pure functions: window, quiet hours, caps, backoff, payloads."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta

import pytest
from pydantic import ValidationError

from bot.messaging import send_rules
from bot.messaging.payloads import SendRequest, oa_request, wecom_request
from bot.messaging.send_rules import Policy

NOW = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)  # 14:00 in Shanghai


def at_shanghai(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, 25, hour, minute, tzinfo=UTC) - timedelta(hours=8)


def test_window_is_48_hours():
    assert send_rules.in_window(NOW - timedelta(hours=47, minutes=59), NOW)
    assert not send_rules.in_window(NOW - timedelta(hours=48), NOW)
    assert not send_rules.in_window(None, NOW)


@pytest.mark.parametrize(
    "local, resumes",
    [
        ((21, 59), None),
        ((22, 0), (1, 8, 0)),  # tomorrow 08:00
        ((23, 30), (1, 8, 0)),
        ((3, 0), (0, 8, 0)),  # today 08:00
        ((7, 59), (0, 8, 0)),
        ((8, 0), None),
        ((14, 0), None),
    ],
)
def test_quiet_hours_across_midnight(local, resumes):
    now = at_shanghai(*local)
    until = send_rules.quiet_until(now, Policy())
    if resumes is None:
        assert until is None
    else:
        days, hour, minute = resumes
        expected = at_shanghai(hour, minute) + timedelta(days=days)
        assert until == expected and until.tzinfo is not None


def test_quiet_hours_within_a_day_and_disabled():
    lunch = Policy(quiet_start=time(12, 0), quiet_end=time(13, 30))
    assert send_rules.quiet_until(at_shanghai(12, 15), lunch) == at_shanghai(13, 30)
    assert send_rules.quiet_until(at_shanghai(13, 30), lunch) is None
    assert (
        send_rules.quiet_until(at_shanghai(23, 0), Policy(quiet_start=None, quiet_end=None)) is None
    )


def test_conversation_and_cap():
    pol = Policy()
    assert send_rules.in_conversation(NOW - timedelta(minutes=29), NOW, pol)
    assert not send_rules.in_conversation(NOW - timedelta(minutes=31), NOW, pol)
    assert not send_rules.over_cap(2, pol) and send_rules.over_cap(3, pol)
    assert send_rules.over_cap(0, Policy(marketing_cap=0))


def test_backoff_grows_is_capped_and_jittered():
    rng = random.Random(7)
    pol = Policy(backoff_base=2, backoff_cap=60)
    for attempt, ceiling in [(1, 2), (2, 4), (3, 8), (6, 60), (20, 60)]:
        values = [send_rules.backoff(attempt, pol, rng) for _ in range(50)]
        assert all(ceiling / 2 <= v <= ceiling for v in values)
        assert len(set(values)) > 1  # jitter spreads retries


def test_send_request_validation():
    ok = SendRequest.model_validate(
        {"contact_id": 1, "kind": "text", "payload": {"content": "你好"}}
    )
    assert ok.channel == "oa" and ok.outside_window == "hold"
    with pytest.raises(ValidationError, match="contact_id"):
        SendRequest.model_validate({"kind": "text", "payload": {"content": "x"}})
    with pytest.raises(ValidationError, match="to_user"):
        SendRequest.model_validate({"kind": "wecom_text", "payload": {"content": "x"}})
    with pytest.raises(ValidationError, match="fallback"):
        SendRequest.model_validate(
            {
                "contact_id": 1,
                "kind": "text",
                "payload": {"content": "x"},
                "outside_window": "fallback",
            }
        )
    with pytest.raises(ValidationError):
        SendRequest.model_validate({"contact_id": 1, "kind": "text", "payload": {"content": ""}})
    with pytest.raises(ValidationError):
        SendRequest.model_validate({"contact_id": 1, "kind": "fax", "payload": {}})
    with pytest.raises(ValidationError):
        SendRequest.model_validate(
            {"contact_id": 1, "kind": "news", "payload": {"title": "t", "url": "not a url"}}
        )


def test_platform_payloads():
    path, body = oa_request("text", {"content": "你好"}, "oX", "k1")
    assert path == "message/custom/send"
    assert body == {"touser": "oX", "msgtype": "text", "text": {"content": "你好"}}
    _, body = oa_request("news", {"title": "T", "url": "https://e.com/"}, "oX", "k1")
    assert body["news"] == {"articles": [{"title": "T", "url": "https://e.com/"}]}
    _, body = oa_request(
        "miniprogram",
        {"title": "t", "appid": "wxa", "pagepath": "p", "thumb_media_id": "m"},
        "oX",
        "k",
    )
    assert body["msgtype"] == "miniprogrampage"
    path, body = oa_request(
        "template",
        {"template_id": "T1", "data": {"first": "您好", "k": {"value": "v", "color": "#f00"}}},
        "oX",
        "idem",
    )
    assert path == "message/template/send"
    assert body["data"] == {"first": {"value": "您好"}, "k": {"value": "v", "color": "#f00"}}
    assert body["client_msg_id"] == "idem"
    path, body = wecom_request(
        "wecom_textcard", {"title": "t", "description": "d", "url": "https://e"}, "a|b", 1000002
    )
    assert path == "message/send"
    assert body == {
        "touser": "a|b",
        "msgtype": "textcard",
        "agentid": 1000002,
        "textcard": {"title": "t", "description": "d", "url": "https://e"},
    }
