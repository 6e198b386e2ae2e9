"""What keeps working at a million contacts, checked on small data: deep timeline pages use
the row comparison (ties included), a score explain never replays a history in the request
(it answers from the built ledger and says what is pending), and a recompute runs in parts
every worker takes, resumes where a dead job stopped, and reports its progress.

The query plans themselves (an index for every lookup by identity, the keyset as an index
condition) are checked on PostgreSQL in test_scale_plans.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from support import run_worker

from bot.contacts.record import IncomingEvent, record
from bot.core import db, queue
from bot.core.models import Event, ScoreRecompute
from bot.scoring import recompute, versions
from bot.scoring import rules as score_rules
from bot.scoring.explain import explain, verify

T0 = datetime(2026, 11, 20, 4, 0, tzinfo=UTC)


def store(settings, openid: str, kind: str, at: datetime, key: str, **props) -> int:
    ev = IncomingEvent(
        type=kind,
        source="oa",
        identity_kind="openid",
        identity_value=openid,
        app_id="wxapp",
        occurred_at=at,
        dedupe_key=key,
        properties=props,
    )
    with db.session_scope(settings.database_url) as s:
        return record(s, ev).contact_id


def seed(settings, people: int, clicks: int) -> list[int]:
    """``people`` followers, each following and clicking the menu ``clicks`` times; scored."""
    ids = []
    for p in range(people):
        ids.append(store(settings, f"o{p}", "oa.subscribe", T0, f"s{p}"))
        for i in range(clicks):
            at = T0 + timedelta(minutes=i + 1)
            store(settings, f"o{p}", "oa.click", at, f"c{p}:{i}", event_key="MENU")
    queue.kick_outbox(settings)
    run_worker(settings)
    return ids


V2 = {
    "events": [
        {"id": "follow", "event": "oa.subscribe", "points": 10},
        {"id": "menu_click", "event": "oa.click", "points": 1},
    ],
    "decay": {"half_life_days": 14},
    "stages": {"lead": 20, "mql": 40, "sql": 80},
}


def publish_v2(settings) -> int:
    with db.session_scope(settings.database_url) as s:
        version = versions.publish(s, score_rules.RuleSet.model_validate(V2))
        s.commit()
    return version


def events_of(settings, cid: int) -> int:
    with db.session_scope(settings.database_url) as s:
        return s.execute(sa.select(sa.func.count()).where(Event.contact_id == cid)).scalar_one()


def parts(settings, version: int) -> list[ScoreRecompute]:
    with db.session_scope(settings.database_url) as s:
        q = sa.select(ScoreRecompute).where(ScoreRecompute.version == version)
        return list(s.execute(q.order_by(ScoreRecompute.part)).scalars())


def test_deep_timeline_pages_with_equal_times(client, clean, auth):
    """Events sharing one occurred_at page by id: the row comparison loses and repeats none."""
    for i in range(9):
        at = T0 + timedelta(seconds=i // 3)  # three events at each of three moments
        cid = store(clean, "oTies", "oa.click", at, f"tie{i}", n=i)
    seen, before = [], None
    while True:
        q = f"/api/contacts/{cid}/events?limit=2" + (f"&before={before}" if before else "")
        page = client.get(q, headers=auth).get_json()
        seen += [(e["occurred_at"], e["id"]) for e in page["events"]]
        before = page["next_before"]
        if before is None:
            break
    assert len(seen) == 9 and seen == sorted(seen, reverse=True)
    assert len(set(seen)) == 9


def test_explain_answers_from_the_built_ledger_and_says_what_is_pending(client, clean, auth):
    [cid] = seed(clean, 1, 4)
    before = client.get(f"/api/contacts/{cid}/score", headers=auth).get_json()
    assert before["ledger_built"] is True and before["pending"] is None
    version = publish_v2(clean)  # published; its recompute has not run yet

    body = client.get(f"/api/contacts/{cid}/score", headers=auth).get_json()
    assert body["ruleset_version"] == version and body["ledger_built"] is False
    assert body["pending"]["ruleset_version"] == version
    assert body["pending"]["answered_from_version"] == 1
    assert body["pending"]["events"] == events_of(clean, cid) >= 5  # and a stage change
    assert [ln["rule"] for ln in body["lines"]] == [ln["rule"] for ln in before["lines"]]
    assert body["ledger_sum"] == before["ledger_sum"]  # the built (v1) ledger, not a replay
    with db.session_scope(clean.database_url) as s:  # nothing was written by reading
        assert verify(s, cid).built is False

    recompute.enqueue_recompute(clean, version)
    run_worker(clean)
    after = client.get(f"/api/contacts/{cid}/score", headers=auth).get_json()
    assert after["ledger_built"] is True and after["pending"] is None
    assert after["ledger_sum"] == 10 + 4


def test_a_heavy_explain_lists_the_newest_lines_and_sums_every_rule(client, clean, auth):
    """A heavy contact's explanation lists only its newest lines (?lines=, default 50) and
    sums every line per rule; the rule shares still add up to the total to the cent."""
    publish_v2(clean)  # a point for every click, no daily cap: 60 lines
    [cid] = seed(clean, 1, 60)
    full = client.get(f"/api/contacts/{cid}/score?lines=1000", headers=auth).get_json()
    body = client.get(f"/api/contacts/{cid}/score", headers=auth).get_json()
    assert full["lines_total"] == body["lines_total"] == len(full["lines"]) > 50
    assert body["lines"] == full["lines"][-50:]  # the newest, in the same order
    assert body["total"] == full["total"] and body["rules"] == full["rules"]
    assert sum(r["lines"] for r in body["rules"]) == body["lines_total"]
    assert round(sum(r["decayed"] for r in body["rules"]), 2) == body["total"]
    assert [r["decayed"] for r in body["rules"]] == sorted(
        (r["decayed"] for r in body["rules"]), reverse=True
    )
    few = client.get(f"/api/contacts/{cid}/score?lines=3", headers=auth).get_json()
    assert [ln["id"] for ln in few["lines"]] == [ln["id"] for ln in full["lines"][-3:]]
    none = client.get(f"/api/contacts/{cid}/score?lines=0", headers=auth).get_json()
    assert none["lines"] == [] and none["rules"] == full["rules"]
    bad = client.get(f"/api/contacts/{cid}/score?lines=1001", headers=auth)
    assert bad.status_code == 422 and "lines" in bad.get_json()["fields"]


def test_every_listed_line_names_its_event_type(client, clean, auth):
    """Event types are read for the listed lines only; every listed line has its own, also
    when lines newer than the ledger's marker were scored after the build."""
    [cid] = seed(clean, 1, 6)
    version = publish_v2(clean)
    recompute.enqueue_recompute(clean, version)
    run_worker(clean)  # the ledger under v2 built now: its marker is dated now
    later = datetime.now(UTC) + timedelta(minutes=5)
    for i in range(3):
        store(clean, "o0", "oa.click", later + timedelta(seconds=i), f"late{i}", event_key="M")
    queue.kick_outbox(clean)
    run_worker(clean)
    full = client.get(f"/api/contacts/{cid}/score?lines=1000", headers=auth).get_json()
    assert full["ledger_built"] is True and full["lines_total"] == 1 + 6 + 3
    types = [ln["event"]["type"] for ln in full["lines"]]
    assert types == ["oa.subscribe"] + ["oa.click"] * 9
    for n in (0, 1, 3, 9):
        few = client.get(f"/api/contacts/{cid}/score?lines={n}", headers=auth).get_json()
        assert few["lines"] == (full["lines"][-n:] if n else [])
        assert few["rules"] == full["rules"] and few["total"] == full["total"]


def test_explain_counts_pending_events_only_up_to_its_cap(clean, monkeypatch):
    from bot.scoring import explain as explain_module

    cid = store(clean, "oCap", "oa.subscribe", T0, "cap0")
    for i in range(4):
        store(clean, "oCap", "oa.click", T0 + timedelta(minutes=i + 1), f"cap{i + 1}")
    monkeypatch.setattr(explain_module, "PENDING_CAP", 3)
    with db.session_scope(clean.database_url) as s:
        body = explain(s, cid, T0)
    assert body["pending"]["events"] == 3 and body["pending"]["events_at_least"] is True


def test_explain_of_a_contact_with_no_ledger_yet(clean):
    cid = store(clean, "oNew", "oa.subscribe", T0, "new")  # stored, not yet processed
    with db.session_scope(clean.database_url) as s:
        body = explain(s, cid, T0)
    assert body["lines"] == [] and body["total"] == 0 and body["ledger_built"] is False
    assert body["pending"]["events"] == 1 and body["pending"]["answered_from_version"] is None
    assert body["pending"]["events_at_least"] is False


def test_publish_recomputes_in_parts_with_progress(client, clean, auth):
    ids = seed(clean, 5, 2)
    resp = client.post("/api/scoring/rulesets", json=V2, headers=auth)
    assert resp.status_code == 201
    version = resp.get_json()["version"]
    run_worker(clean)  # the planning job, then one job per part

    rows = parts(clean, version)
    assert len(rows) == recompute.PARTS and all(r.done_at is not None for r in rows)
    assert sum(r.contacts for r in rows) == 5
    got = client.get("/api/scoring/recompute", headers=auth).get_json()
    assert got["version"] == version and got["parts_done"] == got["parts"] == recompute.PARTS
    assert (got["contacts"], got["ids_left"]) == (5, 0)
    assert got["events"] == sum(events_of(clean, cid) for cid in ids)
    with db.session_scope(clean.database_url) as s:
        for cid in ids:
            assert verify(s, cid).ok
            assert explain(s, cid, T0)["ledger_sum"] == 10 + 2


def test_a_part_resumes_from_its_cursor(clean, monkeypatch):
    ids = seed(clean, 6, 1)
    version = publish_v2(clean)
    assert recompute.plan(clean, version, parts=2) == [0, 1]
    real_build, calls = recompute.build, []

    def dies_on_the_second_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("worker killed")
        return real_build(*args, **kwargs)

    monkeypatch.setattr(recompute, "build", dies_on_the_second_batch)
    with pytest.raises(RuntimeError):
        recompute.run_part(clean, version, 0, batch=1)
    [first, second] = parts(clean, version)
    assert (first.contacts, first.next_id, first.done_at) == (1, ids[0] + 1, None)

    monkeypatch.setattr(recompute, "build", real_build)
    resumed = recompute.run_part(clean, version, 0, batch=1)
    assert resumed.contacts == 2  # the two left of its three, not the first again
    assert recompute.run_part(clean, version, 0).contacts == 0  # done: nothing more
    recompute.run_part(clean, version, 1)
    with db.session_scope(clean.database_url) as s:
        left = recompute.progress(s, version)
        assert (left["parts_done"], left["contacts"], left["ids_left"]) == (2, 6, 0)
        assert all(verify(s, cid).ok for cid in ids)


def test_the_sweeper_queues_a_part_redis_lost(clean):
    seed(clean, 3, 1)
    version = publish_v2(clean)
    recompute.plan(clean, version, parts=2)  # planned, but its jobs never reached Redis
    with db.session_scope(clean.database_url) as s:
        long_ago = datetime.now(UTC) - timedelta(hours=1)
        s.execute(sa.update(ScoreRecompute).values(updated_at=long_ago))
        s.commit()
    assert recompute.sweep(clean) == 2
    assert recompute.sweep(clean) == 0  # queued already
    run_worker(clean)
    assert all(r.done_at is not None for r in parts(clean, version))
    assert sum(r.contacts for r in parts(clean, version)) == 3


def test_a_newer_version_supersedes_a_part(clean):
    seed(clean, 2, 1)
    old = publish_v2(clean)
    recompute.plan(clean, old, parts=1)
    publish_v2(clean)
    assert recompute.run_part(clean, old, 0).superseded is True
