"""POST /api/journeys/<id>/preview and /forecast with a real database, the forecast's counts
over stored events (and that it writes nothing), the `yuchi journeys forecast` table, and a
preview played into a running simulator's inbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from bot.automation import forecast as journey_forecast
from bot.automation import preview as journey_preview
from bot.automation import preview_simulator
from bot.contacts.record import IncomingEvent, record
from bot.core import db
from bot.core.models import (
    Contact,
    ContactTag,
    Enrollment,
    Event,
    Journey,
    JourneyVersion,
    Message,
    Outbox,
    StepRun,
)
from journeys import library

SH = ZoneInfo("Asia/Shanghai")
COUNTED = (Message, Enrollment, StepRun, Event, Outbox, ContactTag, JourneyVersion, Contact)


def create(client, auth, name: str) -> int:
    resp = client.post("/api/journeys", json={"library": name}, headers=auth)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["id"]


def happened(settings, openid: str, type_: str, at: datetime, **props) -> None:
    """Store one event as a callback would (no pipeline runs: the journey is a draft anyway)."""
    with db.session_scope(settings.database_url) as s:
        record(
            s,
            IncomingEvent(
                type=type_,
                source="oa",
                identity_kind="openid",
                identity_value=openid,
                app_id=settings.oa_appid,
                occurred_at=at.astimezone(UTC),
                dedupe_key=f"{openid}:{type_}:{at.isoformat()}",
                properties=props,
                interaction=type_ != "oa.unsubscribe",
                subscribed={"oa.subscribe": True, "oa.unsubscribe": False}.get(type_),
            ),
        )


def rows(settings) -> dict[str, int]:
    with db.session_scope(settings.database_url) as s:
        return {
            m.__tablename__: s.execute(sa.select(sa.func.count()).select_from(m)).scalar_one()
            for m in COUNTED
        }


def base_day() -> datetime:
    """09:00 in Shanghai, ten days ago: every wait of the scenarios has come due by now."""
    return (datetime.now(SH) - timedelta(days=10)).replace(
        hour=9, minute=0, second=0, microsecond=0
    )


def day(base: datetime, n: int) -> str:
    return (base + timedelta(days=n)).date().isoformat()


# --- preview -------------------------------------------------------------------------------


def test_preview_api_returns_the_transcript(client, auth):
    jid = create(client, auth, "bant")
    body = {
        "replies": ["预算大概五万左右", {"after": "2h", "text": "下个月就要"}, "我是老板"],
        "contact": {"name": "王总", "tags": ["来源:展会"]},
        "start": "2025-03-03T09:00:00+08:00",
    }
    resp = client.post(f"/api/journeys/{jid}/preview", json=body, headers=auth)
    assert resp.status_code == 200, resp.get_json()
    data = resp.get_json()
    assert data["status"] == "converted" and data["entered"] is True
    lines = data["transcript"]
    assert lines[0]["at"] == "2025-03-03T09:00:00+08:00" and lines[0]["kind"] == "enter"
    answer = next(ln for ln in lines if ln["kind"] == "answer")
    assert answer["line"] == "第1天 09:01 回答：预算大概五万左右 → 预算=2-10万"
    assert any(ln["kind"] == "handoff" for ln in lines)
    assert "第1天 11:01 回答：下个月就要 → 时间=1个月内" in data["text"]
    assert data["messages"] == 4

    # no body at all: every default (today 09:00, a new follower, no replies)
    resp = client.post(f"/api/journeys/{jid}/preview", headers=auth)
    assert resp.status_code == 200
    assert resp.get_json()["status"] == "done"  # the first question times out


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"replies": [{"after": "soon", "text": "x"}]}, "replies.0.after"),
        ({"replies": [{"text": "x", "click": "K"}]}, "replies.0"),
        ({"contact": {"stage": "boss"}}, "contact.stage"),
        ({"contact": {"score": "lots"}}, "contact.score"),
        ({"start": "tomorrow"}, "start"),
        ({"max_days": 0}, "max_days"),
        ({"unknown": 1}, "unknown"),
    ],
)
def test_preview_api_rejects_bad_input_with_reasons(client, auth, body, field):
    jid = create(client, auth, "welcome")
    resp = client.post(f"/api/journeys/{jid}/preview", json=body, headers=auth)
    assert resp.status_code == 422, resp.get_json()
    assert field in resp.get_json()["fields"]


def test_preview_and_forecast_errors(client, auth, settings):
    assert client.post("/api/journeys/999999/preview", headers=auth).status_code == 404
    assert client.post("/api/journeys/999999/forecast", headers=auth).status_code == 404
    jid = create(client, auth, "welcome")
    resp = client.post(f"/api/journeys/{jid}/preview", json=[1, 2], headers=auth)
    assert resp.status_code == 422
    resp = client.post(f"/api/journeys/{jid}/forecast", json={"days": 0}, headers=auth)
    assert resp.status_code == 422 and "days" in resp.get_json()["fields"]
    resp = client.post(
        f"/api/journeys/{jid}/forecast", json={"until": "2025-01-01T00:00"}, headers=auth
    )
    assert resp.status_code == 422 and "until" in resp.get_json()["fields"]
    assert client.post(f"/api/journeys/{jid}/preview").status_code == 401

    # a draft edited into an invalid definition: 422 with the problems, for both
    with db.session_scope(settings.database_url) as s:
        j = s.get(Journey, jid)
        j.definition = {**j.definition, "steps": [{"id": "start", "type": "trigger"}]}
    for tool in ("preview", "forecast"):
        resp = client.post(f"/api/journeys/{jid}/{tool}", headers=auth)
        assert resp.status_code == 422
        assert resp.get_json()["problems"]


# --- forecast ------------------------------------------------------------------------------


def welcome_history(settings) -> datetime:
    base = base_day()
    happened(settings, "oA", "oa.subscribe", base)
    happened(settings, "oA", "oa.text", base + timedelta(days=3, hours=3), content="价格")
    happened(settings, "oB", "oa.subscribe", base + timedelta(days=1))
    happened(settings, "oC", "oa.subscribe", base)
    happened(settings, "oC", "oa.unsubscribe", base + timedelta(hours=1))
    happened(settings, "oC", "oa.subscribe", base + timedelta(days=2))  # entry: once
    happened(settings, "oD", "oa.text", base + timedelta(days=1), content="你好")
    happened(settings, "oE", "oa.subscribe", base - timedelta(days=30))  # before the window
    happened(settings, "oE", "oa.text", base + timedelta(days=2), content="在吗")
    return base


def test_forecast_counts_steps_and_messages_per_day_and_writes_nothing(client, auth, settings):
    jid = create(client, auth, "welcome")
    base = welcome_history(settings)
    before = rows(settings)

    resp = client.post(f"/api/journeys/{jid}/forecast", json={"days": 30}, headers=auth)
    assert resp.status_code == 200, resp.get_json()
    f = resp.get_json()
    assert rows(settings) == before  # nothing written, nothing sent

    assert (f["contacts"], f["contacts_with_events"], f["events"]) == (5, 5, 8)
    assert (f["entered"], f["enrollments"]) == (3, 3)  # A, B, C; C only once
    steps = {s["id"]: (s["contacts"], s["visits"]) for s in f["steps"]}
    assert steps["start"] == steps["hello"] == steps["wait_day2"] == (3, 3)
    assert steps["by_interest"] == steps["send_intro"] == steps["send_guide"] == (2, 2)
    assert steps["send_pricing"] == steps["invite_demo"] == (0, 0)  # C left at its unfollow
    per_day = f["per_day"]
    assert len(per_day) == 31 and sum(per_day.values()) == 6
    # the hellos answer the follows; day 2 at 10:00; A's day-5 touch goes out because A wrote
    # on day 4, B's is held (more than 48 hours since B's last interaction)
    assert per_day[day(base, 0)] == 2
    assert per_day[day(base, 1)] == 2
    assert per_day[day(base, 2)] == 1
    assert per_day[day(base, 4)] == 1
    assert per_day[day(base, 5)] == 0
    assert f["totals"] == {"messages": 6, "held": 1, "skipped": 0, "invalid": 0, "handoffs": 0}
    assert f["outcomes"] == {"done": 2, "exited": 1}

    # a shorter window sees fewer contacts enter
    resp = client.post(f"/api/journeys/{jid}/forecast", json={"days": 1}, headers=auth)
    assert resp.status_code == 200 and resp.get_json()["entered"] == 0
    assert rows(settings) == before


def test_forecast_replays_answers_to_questions(client, auth, settings):
    jid = create(client, auth, "bant")
    base = base_day()
    happened(settings, "oF", "oa.subscribe", base, scene="lead_expo2025")
    for n, text in enumerate(["预算五万左右", "下个月", "我是老板"], start=1):
        happened(settings, "oF", "oa.text", base + timedelta(minutes=n), content=text)
    happened(settings, "oG", "oa.subscribe", base, scene="lead_expo2025")  # never answers
    happened(settings, "oH", "oa.subscribe", base, scene="poster_1")  # not a lead poster
    before = rows(settings)

    resp = client.post(f"/api/journeys/{jid}/forecast", headers=auth)  # default 30 days
    assert resp.status_code == 200
    f = resp.get_json()
    assert rows(settings) == before
    steps = {s["id"]: s["contacts"] for s in f["steps"]}
    assert (f["entered"], steps["ask_budget"], steps["ask_role"], steps["handoff"]) == (2, 2, 1, 1)
    assert (steps["thanks_qualified"], steps["unfinished"], steps["thanks_nurture"]) == (1, 1, 0)
    assert f["totals"]["handoffs"] == 1
    assert f["totals"]["messages"] == 5 and f["per_day"][day(base, 0)] == 5
    assert f["outcomes"] == {"converted": 1, "done": 1}


def test_forecast_reads_in_batches(settings, clean):
    base = welcome_history(settings)
    now = datetime.now(UTC)
    with db.session_scope(settings.database_url) as s:
        one = journey_forecast.forecast(
            s, library.load("welcome"), since=now - timedelta(days=30), now=now, batch_size=2
        )
        many = journey_forecast.forecast(
            s, library.load("welcome"), since=now - timedelta(days=30), now=now
        )
    assert one.to_json() == many.to_json()
    assert one.per_day[day(base, 0)] == 2
    table = one.table()
    assert "send_guide" in table and "发出 6 条" in table


def test_cli_forecast_prints_the_table(client, auth, settings):
    jid = create(client, auth, "welcome")
    welcome_history(settings)
    from bot.cli import main

    result = CliRunner().invoke(main, ["journeys", "forecast", str(jid), "--days", "30"])
    assert result.exit_code == 0, result.output
    assert "旅程「新关注欢迎系列」（welcome）预测" in result.output
    assert "会进入 3 人" in result.output and "发出 6 条" in result.output
    result = CliRunner().invoke(main, ["journeys", "forecast", "bant"])  # a ready-made one
    assert result.exit_code == 0 and "会进入 0 人" in result.output


# --- against the simulator -----------------------------------------------------------------


def test_preview_plays_into_the_simulators_inbox(sim, sim_settings):
    slept: list[float] = []
    inbox = preview_simulator.SimulatorInbox(
        sim.base_url, sim_settings, "o_preview", seconds_per_day=2.0, sleep=slept.append
    )
    start = inbox.now().astimezone(SH).replace(hour=9, minute=0, second=0, microsecond=0)
    transcript = journey_preview.preview(library.load("welcome"), start=start)
    shown: list[tuple[str, str | None]] = []
    played = inbox.play(transcript, lambda line, outcome: shown.append((line.kind, outcome)))

    assert (played.delivered, played.refused, played.not_sent) == (2, [], 1)  # day 5 is held
    got = sim.inbox("o_preview", kind="custom")
    assert len(got) == 2
    assert "欢迎关注鱼池" in got[0]["text"]
    assert got[1]["payload"]["news"]["articles"][0]["url"].endswith("/articles/intro")
    # the simulator's clock moved with the transcript: the second arrived 25 hours later
    assert got[1]["at"] - got[0]["at"] == pytest.approx(25 * 3600, abs=5)
    assert sim.state.clock.offset == 0  # and was put back
    assert sum(slept) == pytest.approx(2.0 * (4 + 11 / 24), rel=0.01)  # day 1 09:00 → day 5 20:00
    assert ("send", "送达模拟器") in shown
    assert sim.callbacks() == []  # Yuchi was never called: nothing stored
    with db.session_scope(sim_settings.database_url) as s:
        assert s.execute(sa.select(sa.func.count()).select_from(Contact)).scalar_one() == 0
