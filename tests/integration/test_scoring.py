"""Lead scoring end to end: signed callbacks in, the background job scores them, the ledger
explains every point, stages move and are recorded, new rule versions recompute to the same
numbers as scoring incrementally, and retries write nothing twice."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from support import event, post, run_worker, text

from bot.contacts.record import IncomingEvent, record
from bot.core import db, queue
from bot.core.context import Context
from bot.core.models import Contact, Event, Identity, Outbox, ScoreEntry, ScoringRuleSet
from bot.scoring import ledger as scoring
from bot.scoring import versions
from bot.scoring.explain import Verification
from bot.scoring.explain import explain as explain_score
from bot.scoring.explain import verify as verify_score
from bot.scoring.recompute import recompute, recompute_job_id
from bot.scoring.rules import MARKER, cents

SHANGHAI = ZoneInfo("Asia/Shanghai")


def noon() -> int:
    """Today's 12:00 in Shanghai (yesterday's if that is still ahead), as a Unix time: every
    event of a test falls on one local day, whatever the hour the tests run."""
    now = datetime.now(SHANGHAI)
    at = now.replace(hour=12, minute=0, second=0, microsecond=0)
    if at > now:
        at -= timedelta(days=1)
    return int(at.timestamp())


def contact_id(settings, openid: str) -> int:
    with db.session_scope(settings.database_url) as s:
        return s.execute(
            sa.select(Identity.contact_id).where(Identity.value == openid)
        ).scalar_one()


def contact(settings, cid: int) -> Contact:
    with db.session_scope(settings.database_url) as s:
        return s.get(Contact, cid)


def ledger(settings, cid: int, version: int | None = None) -> list[ScoreEntry]:
    with db.session_scope(settings.database_url) as s:
        q = sa.select(ScoreEntry).where(ScoreEntry.contact_id == cid, ScoreEntry.rule_id != MARKER)
        if version is not None:
            q = q.where(ScoreEntry.ruleset_version == version)
        return list(s.execute(q.order_by(ScoreEntry.id)).scalars())


def stage_events(settings, cid: int) -> list[dict]:
    with db.session_scope(settings.database_url) as s:
        rows = s.execute(
            sa.select(Event)
            .where(Event.contact_id == cid, Event.type == "contact.stage_changed")
            .order_by(Event.id)
        ).scalars()
        return [e.properties for e in rows]


def verify(settings, cid: int) -> Verification:
    with db.session_scope(settings.database_url) as s:
        return verify_score(s, cid)


def play(client, oa, openid: str, t0: int, msg_base: int) -> None:
    """A follower's day: follows, asks the price twice, chats, clicks the menu a lot, reads."""
    post(client, oa, event(oa, openid, "subscribe", t0))
    contents = ["你好", "请问价格", "报价多少", "好的", "多少钱", "谢谢", "再见", "在吗"]
    for i, content in enumerate(contents):
        post(client, oa, text(oa, openid, content, msg_base + i, create_time=t0 + 10 + i))
    for i in range(5):
        post(client, oa, event(oa, openid, "CLICK", t0 + 100 + i, EventKey="MENU_PRICE"))
    for i in range(3):
        url = f"https://mp.weixin.qq.com/s/article{i}"
        post(client, oa, event(oa, openid, "VIEW", t0 + 200 + i, EventKey=url))


# Expected under the default rules: follow 5 + texts 2×5 (capped at 10 a day) + price 10+10
# (capped at 20 ever) + clicks 3×3 (capped at 9 a day) + reads 5×3.
PLAY_TOTAL = 5 + 10 + 20 + 9 + 15


def test_callbacks_are_scored_line_by_line(client, oa, clean, auth):
    t0 = noon()
    post(client, oa, event(oa, "oScore", "subscribe", t0))
    run_worker(clean)  # the first event builds the ledger; the rest are added one by one
    cid = contact_id(clean, "oScore")
    assert [e.rule_id for e in ledger(clean, cid)] == ["follow"]
    play(client, oa, "oScore", t0, 100)
    run_worker(clean)

    lines = ledger(clean, cid)
    by_rule: dict[str, float] = {}
    for line in lines:
        by_rule[line.rule_id] = by_rule.get(line.rule_id, 0) + line.points
    assert by_rule == {
        "follow": 5,
        "text_message": 10,
        "price_interest": 20,
        "menu_click": 9,
        "read_article": 15,
    }
    assert contact(clean, cid).score == PLAY_TOTAL  # the incremental sum, undecayed
    assert verify(clean, cid).ok

    body = client.get(f"/api/contacts/{cid}/score", headers=auth).get_json()
    assert body["ledger_sum"] == PLAY_TOTAL and body["ledger_built"] is True
    assert body["stage"] == "mql" and body["ruleset_version"] == 1
    assert len(body["lines"]) == len(lines)
    assert sum(cents(ln["decayed"]) for ln in body["lines"]) == cents(body["total"])
    assert body["total"] == pytest.approx(PLAY_TOTAL * body["decay"]["factor"], abs=0.01)
    first = body["lines"][0]
    assert first["rule"] == "follow" and first["points"] == 5 and first["reason"] == "关注公众号 +5"
    assert first["event"]["type"] == "oa.subscribe" and first["event"]["id"] == lines[0].event_id

    changes = stage_events(clean, cid)
    assert [(c["from"], c["to"]) for c in changes] == [("subscriber", "lead"), ("lead", "mql")]
    assert changes[1]["reason"].startswith("score 5") and "mql threshold 50" in changes[1]["reason"]
    assert all(c["by"] == "rules" and c["event_id"] for c in changes)


def test_caps_hold_across_many_events_the_same_day(client, oa, clean):
    t0 = noon()
    post(client, oa, event(oa, "oCap", "subscribe", t0))
    run_worker(clean)
    for i in range(30):
        post(client, oa, event(oa, "oCap", "CLICK", t0 + 1 + i, EventKey=f"K{i}"))
        post(client, oa, text(oa, "oCap", "多少钱", 500 + i, create_time=t0 + 1 + i))
    run_worker(clean)
    cid = contact_id(clean, "oCap")
    totals: dict[str, float] = {}
    for line in ledger(clean, cid):
        totals[line.rule_id] = totals.get(line.rule_id, 0) + line.points
    assert totals == {"follow": 5, "menu_click": 9, "text_message": 10, "price_interest": 20}
    assert verify(clean, cid).ok


def test_decay_at_read_time(client, oa, clean, auth):
    t0 = noon()
    post(client, oa, event(oa, "oOld", "subscribe", t0))
    post(client, oa, text(oa, "oOld", "价格", 1, create_time=t0 + 1))
    run_worker(clean)
    cid = contact_id(clean, "oOld")
    with db.session_scope(clean.database_url) as s:
        last = s.get(Contact, cid).last_interaction_at
        later = explain_score(s, cid, last + timedelta(days=60))
        now = explain_score(s, cid, last)
    assert now["total"] == 17 and later["ledger_sum"] == 17
    assert later["total"] == 4.25 and later["decay"]["factor"] == pytest.approx(0.25)
    assert sum(cents(ln["decayed"]) for ln in later["lines"]) == 425
    assert contact(clean, cid).score == 17  # nothing decayed is ever written


def store(settings, openid: str, type_: str, at: datetime, **kw) -> None:
    """One event recorded directly (any time in the past), then the scoring job run."""
    with db.session_scope(settings.database_url) as s:
        record(
            s,
            IncomingEvent(
                type=type_,
                source="oa",
                identity_kind="openid",
                identity_value=openid,
                app_id=settings.oa_appid,
                occurred_at=at,
                dedupe_key=f"decay-{openid}-{type_}-{at.timestamp()}",
                **kw,
            ),
        )
    queue.kick_outbox(settings)
    run_worker(settings)


def decay_of(settings, openid: str, at: datetime) -> dict:
    with db.session_scope(settings.database_url) as s:
        return scoring.explain(s, contact_id(settings, openid), at)["decay"]


def test_decay_starts_from_the_last_interaction_when_it_is_later(clean):
    """Rule (bot/scoring/ledger.py): decay starts from the later of the last interaction and the last
    positive ledger line. An interaction no rule scores (an image) restarts the clock too."""
    t0 = datetime.fromtimestamp(noon(), UTC) - timedelta(days=90)
    store(clean, "oDecayA", "oa.subscribe", t0, properties={}, subscribed=True)  # +5
    store(clean, "oDecayA", "oa.image", t0 + timedelta(days=30), properties={})  # no points
    assert [e.rule_id for e in ledger(clean, contact_id(clean, "oDecayA"))] == ["follow"]
    half_life = timedelta(days=versions.default_rules().half_life)
    decay = decay_of(clean, "oDecayA", t0 + timedelta(days=30) + half_life)
    assert decay["last_activity_at"] == (t0 + timedelta(days=30)).isoformat()
    assert decay["factor"] == pytest.approx(0.5)  # one half-life since the image


def test_negative_lines_do_not_restart_decay(clean):
    """Rule (bot/scoring/ledger.py): only a line with positive points counts as activity; an
    unfollow's -30 is not activity and leaves the decay clock where it was."""
    t0 = datetime.fromtimestamp(noon(), UTC) - timedelta(days=90)
    store(clean, "oDecayB", "oa.subscribe", t0, properties={}, subscribed=True)  # +5
    store(
        clean,
        "oDecayB",
        "oa.unsubscribe",
        t0 + timedelta(days=7),
        properties={},
        interaction=False,
        subscribed=False,
    )  # -30
    rules = [e.rule_id for e in ledger(clean, contact_id(clean, "oDecayB"))]
    assert rules == ["follow", "unsubscribe"]
    half_life = timedelta(days=versions.default_rules().half_life)
    decay = decay_of(clean, "oDecayB", t0 + half_life)
    assert decay["last_activity_at"] == t0.isoformat()
    assert decay["factor"] == pytest.approx(0.5)  # one half-life since the follow


def test_manual_stage_sticks_and_auto_hands_it_back(client, oa, clean, auth):
    t0 = noon()
    post(client, oa, event(oa, "oMan", "subscribe", t0))
    run_worker(clean)
    cid = contact_id(clean, "oMan")
    resp = client.put(
        f"/api/contacts/{cid}/stage",
        json={"stage": "sql", "by": "王经理", "note": "电话沟通"},
        headers=auth,
    )
    assert resp.status_code == 200
    assert resp.get_json() == {
        "contact_id": cid,
        "stage": "sql",
        "previous": "subscriber",
        "stage_manual": True,
    }
    play(client, oa, "oMan", t0 + 1000, 900)  # enough points for mql: the manual stage stays
    run_worker(clean)
    c = contact(clean, cid)
    assert (c.stage, c.stage_manual) == ("sql", True)
    [manual] = stage_events(clean, cid)
    assert manual["to"] == "sql" and manual["by"] == "王经理" and "电话沟通" in manual["reason"]

    client.put(f"/api/contacts/{cid}/stage", json={"stage": "customer"}, headers=auth)
    assert contact(clean, cid).stage == "customer"
    resp = client.put(f"/api/contacts/{cid}/stage", json={"stage": "auto"}, headers=auth)
    assert resp.get_json()["stage"] == "mql" and resp.get_json()["stage_manual"] is False
    assert [(e["from"], e["to"]) for e in stage_events(clean, cid)] == [
        ("subscriber", "sql"),
        ("sql", "customer"),
        ("customer", "mql"),
    ]
    run_worker(clean)  # the stage events themselves go through the pipeline harmlessly
    assert verify(clean, cid).ok


def test_attributes_from_forms_and_answers(clean):
    now = datetime.now(UTC)

    def submit(props: dict, n: int) -> None:
        with db.session_scope(clean.database_url) as s:
            record(
                s,
                IncomingEvent(
                    type="h5.form_submit",
                    source="h5",
                    identity_kind="openid",
                    identity_value="oForm",
                    app_id=clean.oa_appid,
                    occurred_at=now + timedelta(seconds=n),
                    dedupe_key=f"form-{n}",
                    properties=props,
                ),
            )
        queue.kick_outbox(clean)
        run_worker(clean)

    submit({"attributes": {"budget": "80000", "role": "CEO", "company_size": 300}}, 1)
    cid = contact_id(clean, "oForm")
    assert contact(clean, cid).score == 20 + 15 + 10
    submit({"attributes": {"budget": "90000", "role": "CEO"}}, 2)  # nothing new
    assert contact(clean, cid).score == 45
    submit({"attribute": "budget", "value": 3000}, 3)
    submit({"attribute": "interest", "value": "not_interested"}, 4)
    assert contact(clean, cid).score == 45 - 20 - 20
    assert [ln.rule_id for ln in ledger(clean, cid)][-2:] == ["budget_high", "not_interested"]
    assert verify(clean, cid).ok
    assert [(e["from"], e["to"]) for e in stage_events(clean, cid)] == [("subscriber", "lead")]


NEW_RULES = {
    "note": "v2: chatting counts more, clicks less",
    "events": [
        {"id": "follow", "event": "oa.subscribe", "points": 10},
        {"id": "text_message", "event": "oa.text", "points": 4, "cap_per_day": 12},
        {"id": "menu_click", "event": "oa.click", "points": 1},
        {
            "id": "price_interest",
            "event": "oa.text",
            "when": {"content": {"contains_any": ["价格", "多少钱"]}},
            "points": 15,
            "cap_lifetime": 15,
        },
    ],
    "decay": {"half_life_days": 14},
    "stages": {"lead": 20, "mql": 40, "sql": 80},
}


def test_new_version_recompute_equals_incremental_scoring(client, oa, clean, auth):
    t0 = noon()
    play(client, oa, "oA", t0, 100)
    play(client, oa, "oB", t0, 200)
    run_worker(clean)
    a, b = contact_id(clean, "oA"), contact_id(clean, "oB")
    assert contact(clean, a).score == PLAY_TOTAL

    resp = client.post("/api/scoring/rulesets", json=NEW_RULES, headers=auth)
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["version"] == 2 and body["recompute"]["queued"] is True
    assert body["rules"]["note"] == NEW_RULES["note"]
    # published in the one condition language's spelling: when -> conditions, contains_any
    # -> contains
    assert body["rules"]["events"][3]["conditions"] == {"content": {"contains": ["价格", "多少钱"]}}
    assert "when" not in body["rules"]["events"][3]
    assert client.get("/api/scoring/ruleset", headers=auth).get_json()["version"] == 2
    run_worker(clean)  # the recompute job

    # v2: follow 10 + texts 4×3 (cap 12) + price 15 (cap 15) + clicks 1×5 = 42
    expected = 10 + 12 + 15 + 5
    for cid in (a, b):
        assert contact(clean, cid).score == expected
        assert sum(e.points for e in ledger(clean, cid, version=2)) == expected
        assert verify(clean, cid).ok
    assert sum(e.points for e in ledger(clean, a, version=1)) == PLAY_TOTAL  # history kept

    # The same day played by a new follower, scored incrementally under v2, gives the same.
    post(client, oa, event(oa, "oC", "subscribe", t0))
    run_worker(clean)
    play(client, oa, "oC", t0, 300)  # the follow is a duplicate callback: stored once
    run_worker(clean)
    c = contact_id(clean, "oC")
    assert contact(clean, c).score == expected and verify(clean, c).ok
    got = client.get(f"/api/contacts/{c}/score", headers=auth).get_json()
    assert got["ruleset_version"] == 2 and got["ledger_sum"] == expected
    assert got["decay"]["half_life_days"] == 14


def test_events_arriving_during_a_publish_are_not_lost(client, oa, clean, auth):
    """Stored before the publish, processed after it and before the recompute job: the first
    event of a contact under the new version builds its ledger from its whole history."""
    t0 = noon()
    play(client, oa, "oMid", t0, 100)
    assert client.post("/api/scoring/rulesets", json=NEW_RULES, headers=auth).status_code == 201
    queue.get_queue(clean, queue.BULK).remove(recompute_job_id(2))  # as if it had not run yet
    run_worker(clean)
    cid = contact_id(clean, "oMid")
    assert contact(clean, cid).score == 42 and verify(clean, cid).ok


def test_retried_job_writes_no_duplicate_lines(client, oa, clean):
    from bot.background.jobs import process_event

    t0 = noon()
    post(client, oa, event(oa, "oRetry", "subscribe", t0))
    post(client, oa, text(oa, "oRetry", "价格", 77, create_time=t0 + 1))
    run_worker(clean)
    cid = contact_id(clean, "oRetry")
    before = len(ledger(clean, cid))
    with db.session_scope(clean.database_url) as s:
        outbox_ids = list(s.execute(sa.select(Outbox.id).order_by(Outbox.id)).scalars())
    for outbox_id in outbox_ids:
        assert process_event(outbox_id) == "done"
    # Re-run the step itself on an already scored event (a retry after a lost commit ack).
    with db.session_scope(clean.database_url) as s:
        ev = s.execute(sa.select(Event).where(Event.type == "oa.text")).scalar_one()
        scoring.on_event(Context(clean, s, ev))
        scoring.on_event(Context(clean, s, ev))
    assert len(ledger(clean, cid)) == before == 3
    assert contact(clean, cid).score == 17 and verify(clean, cid).ok


def test_recompute_is_idempotent_and_keeps_stages_forward(client, oa, clean):
    t0 = noon()
    play(client, oa, "oRe", t0, 100)
    run_worker(clean)
    cid = contact_id(clean, "oRe")
    lines = [(e.event_id, e.rule_id, e.points) for e in ledger(clean, cid)]
    for _ in range(2):
        result = recompute(clean)
        assert result.contacts == 1 and result.stage_changes == 0 and not result.superseded
        assert result.events == len([e for e in _events(clean, cid)])
    assert [(e.event_id, e.rule_id, e.points) for e in ledger(clean, cid)] == lines
    assert contact(clean, cid).stage == "mql" and verify(clean, cid).ok


def _events(settings, cid: int) -> list[Event]:
    with db.session_scope(settings.database_url) as s:
        return list(s.execute(sa.select(Event).where(Event.contact_id == cid)).scalars())


def test_cli_import_publish_recompute(client, oa, clean, tmp_path):
    from bot.cli import main

    rules = tmp_path / "rules.yaml"
    rules.write_text(
        textwrap.dedent(
            """
            events:
              - {id: text_message, event: oa.text, points: 1}
            stages: {lead: 1, mql: 2, sql: 3}
            """
        ),
        encoding="utf-8",
    )
    runner = CliRunner()
    result = runner.invoke(main, ["scoring", "import", str(rules)])
    assert result.exit_code == 0 and "installed as version 1" in result.output
    assert runner.invoke(main, ["scoring", "import", str(rules)]).exit_code == 1
    post(client, oa, text(oa, "oCli", "hi", 1))
    run_worker(clean)
    cid = contact_id(clean, "oCli")
    assert contact(clean, cid).score == 1

    rules.write_text(rules.read_text().replace("points: 1", "points: 7"), encoding="utf-8")
    result = runner.invoke(main, ["scoring", "publish", str(rules), "--now"])
    assert result.exit_code == 0, result.output
    assert "published as version 2" in result.output and "1 contact(s) recomputed" in result.output
    assert contact(clean, cid).score == 7
    result = runner.invoke(main, ["scoring", "recompute", "--contact", str(cid)])
    assert result.exit_code == 0 and "events/s" in result.output

    rules.write_text("events: [{id: x, event: oa.text, points: 0}]\n", encoding="utf-8")
    result = runner.invoke(main, ["scoring", "publish", str(rules)])
    assert result.exit_code == 1 and "events.0.points: must not be 0" in result.output
    with db.session_scope(clean.database_url) as s:
        assert s.execute(sa.select(sa.func.count()).select_from(ScoringRuleSet)).scalar() == 2


def test_api_auth_404_and_422(client, clean, auth):
    assert client.get("/api/contacts/1/score").status_code == 401
    assert client.put("/api/contacts/1/stage", json={"stage": "sql"}).status_code == 401
    assert client.get("/api/scoring/ruleset").status_code == 401
    assert client.post("/api/scoring/rulesets", json=NEW_RULES).status_code == 401

    resp = client.get("/api/contacts/999999/score", headers=auth)
    assert resp.status_code == 404 and resp.get_json()["error"] == "no contact 999999"
    resp = client.put("/api/contacts/999999/stage", json={"stage": "sql"}, headers=auth)
    assert resp.status_code == 404

    resp = client.put("/api/contacts/1/stage", json={"stage": "whale"}, headers=auth)
    assert resp.status_code == 422 and "stage" in resp.get_json()["fields"]
    resp = client.put("/api/contacts/1/stage", json=["sql"], headers=auth)
    assert resp.status_code == 422

    bad = {
        "events": [{"id": "a", "event": "oa.text", "points": 1, "cap_per_day": 0}],
        "attributes": [{"id": "a", "attribute": "budget", "gte": 1, "points": 2}],
        "stages": {"lead": 10, "mql": 5, "sql": 100},
    }
    resp = client.post("/api/scoring/rulesets", json=bad, headers=auth)
    assert resp.status_code == 422
    assert resp.get_json()["fields"] == {
        "events.0.cap_per_day": "Input should be greater than 0",
        "stages.mql": "must be above lead",
    }
    bad["events"][0]["cap_per_day"], bad["stages"]["mql"] = 5, 50
    resp = client.post("/api/scoring/rulesets", json=bad, headers=auth)
    assert resp.get_json()["fields"] == {"attributes.0.id": "duplicate rule id 'a'"}
    assert client.post("/api/scoring/rulesets", data="x", headers=auth).status_code == 422

    body = client.get("/api/scoring/ruleset", headers=auth).get_json()  # the default, installed
    assert body["version"] == 1 and body["rules"]["stages"] == {"lead": 10, "mql": 50, "sql": 100}


def test_a_one_id_merge_moves_both_ledgers_and_recomputes(client, oa, clean):
    from bot.contacts import identity as contacts

    t0 = noon()
    play(client, oa, "oM1", t0, 100)
    post(client, oa, event(oa, "oM2", "subscribe", t0 - 86400))  # the day before
    post(client, oa, text(oa, "oM2", "多少钱", 999, create_time=t0 - 86399))
    run_worker(clean)
    a, b = contact_id(clean, "oM1"), contact_id(clean, "oM2")
    with db.session_scope(clean.database_url) as s:  # both ledgers have a marker line
        survivor, _ = contacts.merge(s, a, b, "same unionid")
    recompute(clean, [survivor])
    # One history replayed in time order: the day before, follow 5, text 2, price 10; then
    # follow 0 (once ever), texts 10, price 10 (20 ever), clicks 9, reads 15.
    assert contact(clean, survivor).score == PLAY_TOTAL + 2
    assert verify(clean, survivor).ok


def test_the_active_version_is_read_again_with_the_totals(client, oa, clean, auth):
    """PostgreSQL's step reads the active version and the totals in one statement under the
    contact's lock: the same totals as the version's own query, and a version published
    since the batch read its rules wins."""
    from bot.scoring.ledger import _active_totals, _totals

    t0 = noon()
    play(client, oa, "oTot", t0, 100)
    run_worker(clean)
    cid = contact_id(clean, "oTot")
    with db.session_scope(clean.database_url) as s:
        ev = s.execute(sa.select(Event).where(Event.contact_id == cid).limit(1)).scalar_one()
        batch = versions.active(s)
        act, totals = _active_totals(s, batch, cid, ev)
        assert act is batch and totals == _totals(s, batch, cid, ev) and totals
    assert client.post("/api/scoring/rulesets", json=NEW_RULES, headers=auth).status_code == 201
    with db.session_scope(clean.database_url) as s:
        act, totals = _active_totals(s, batch, cid, ev)
        assert act.version == 2 and totals == _totals(s, act, cid, ev)
