"""Saved segments: the one condition language compiled to one SQL query. A table of clauses
against hand-built contacts (each clause's members exactly; where journeys also read the
clause, the same answer as the pure engine's ``holds``), the API (422 naming the clause, count,
keyset pages) and membership in journeys (a condition, a trigger on entering and leaving)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

import journeys
from bot.audiences import segments
from bot.core import db
from bot.core.models import Channel, Contact, ContactTag, Event, Identity
from journeys.model import Pred
from journeys.predicates import holds

NOW = datetime.now(UTC).replace(microsecond=0)
HALF_LIFE = 30  # the default scoring rules' half-life in days


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


# name: (contact columns, tags, identities, events [(type, props, days ago)])
PEOPLE: dict[str, tuple[dict, list[str], list[tuple[str, str]], list[tuple[str, dict, float]]]] = {
    "ann": (
        dict(
            subscribed=True,
            score=80.0,
            last_interaction_at=ago(1),
            last_seen_at=ago(1),
            stage="mql",
            owner_userid="rep1",
            source="A",
            fields={"city": "上海", "budget": "50,000", "interests": ["价格", "案例"], "vip": True},
        ),
        ["意向:价格", "渠道:海报1"],
        [("openid", "o-ann"), ("unionid", "u-ann"), ("phone", "13800000001")],
        [
            ("oa.click", {"key": "V1"}, 1),
            ("oa.click", {"key": "V1"}, 2),
            ("oa.click", {"key": "V1"}, 5),
            ("oa.text", {"content": "你好"}, 40),
        ],
    ),
    "bob": (
        dict(
            subscribed=True,
            score=30.0,
            last_interaction_at=ago(60),
            last_seen_at=ago(20),
            stage="lead",
            fields={"city": " 北京 ", "budget": 20000},
        ),
        ["意向:价格"],
        [("openid", "o-bob")],
        [
            ("oa.click", {"key": "V1"}, 20),
            ("oa.click", {"key": "V2"}, 20),
            ("oa.click", {"key": "V2"}, 21),
        ],
    ),
    "cat": (
        dict(subscribed=False, score=0.0, last_seen_at=ago(45), stage="subscriber", fields=None),
        [],
        [("openid", "o-cat")],
        [],
    ),
    "eve": (
        dict(
            subscribed=True,
            score=-5.0,
            last_interaction_at=ago(2),
            last_seen_at=ago(2),
            stage="customer",
            owner_userid="rep2",
            source="B",
            fields={"city": "上海市", "budget": "abc", "n": 618, "interests": []},
        ),
        ["渠道:海报1"],
        [("openid", "o-eve"), ("phone", "13900000002")],
        [("oa.view", {"url": "https://x/1"}, 10), ("h5.form_submit", {"form": "试用"}, 2)],
    ),
    "dan": (  # merged into ann: never counts
        dict(subscribed=True, score=99.0, last_seen_at=ago(1), stage="sql", merged="ann"),
        ["意向:价格"],
        [],
        [("oa.click", {"key": "V1"}, 1)],
    ),
}

# (definition, members). "journeys": the pure engine reads this clause too, and must agree.
TABLE: list[tuple[dict, set[str], bool]] = [
    ({"tag": "意向:价格"}, {"ann", "bob"}, True),
    ({"no_tag": "意向:价格"}, {"cat", "eve"}, True),
    ({"all": [{"tag": "意向:价格"}, {"tag": "渠道:海报1"}]}, {"ann"}, True),
    ({"any": [{"tag": "渠道:海报1"}, {"stage": "lead"}]}, {"ann", "bob", "eve"}, True),
    ({"not": {"tag": "渠道:海报1"}}, {"bob", "cat"}, True),
    ({"stage": {"in": ["mql", "sql", "customer"]}}, {"ann", "eve"}, True),
    ({"stage": {"prefix": "sub"}}, {"cat"}, True),
    # the score decays: bob's 30 last active 60 days ago is 7.5 now; eve's -5 barely moves
    ({"score": {"gte": 20}}, {"ann"}, True),
    ({"score": {"gt": 0, "lt": 10}}, {"bob"}, True),
    ({"score": {"lt": 0}}, {"eve"}, True),
    ({"score": {"eq": 0}}, {"cat"}, True),
    ({"field": "city", "is": {"eq": "北京"}}, {"bob"}, True),  # trimmed
    ({"field": "city", "is": {"prefix": "上海"}}, {"ann", "eve"}, True),
    ({"field": "city", "is": {"contains": "海市"}}, {"eve"}, True),
    ({"field": "budget", "is": {"gte": 30000}}, {"ann"}, True),  # "50,000" reads as a number
    ({"field": "budget", "is": {"eq": 20000}}, {"bob"}, True),
    ({"field": "n", "is": {"eq": "618"}}, {"eve"}, True),  # numbers as numbers
    ({"field": "interests", "is": {"eq": "案例"}}, {"ann"}, True),  # a list: any element
    ({"field": "interests", "is": {"exists": False}}, {"bob", "cat", "eve"}, True),  # [] is absent
    ({"field": "vip", "is": {"eq": True}}, {"ann"}, True),
    ({"field": "vip", "is": {"eq": "true"}}, set(), True),  # true only equals true
    ({"field": "city", "is": {"exists": True}}, {"ann", "bob", "eve"}, True),
    ({"event": "oa.click"}, {"ann", "bob"}, True),
    ({"event": "oa.*", "count": {"gte": 3}}, {"ann", "bob"}, True),
    ({"event": "oa.click", "count": {"lt": 2}}, {"cat", "eve"}, True),  # zero counts
    ({"event": "*", "count": {"eq": 2}}, {"eve"}, True),
    ({"silent_days": {"gte": 30}}, {"cat"}, True),
    ({"silent_days": {"lt": 3}}, {"ann", "eve"}, True),
    # segment-only clauses
    (
        {"event": "oa.click", "conditions": {"key": "V1"}, "count": {"gte": 2}, "within": "14d"},
        {"ann"},
        False,
    ),
    ({"event": "oa.click", "within": "14d"}, {"ann"}, False),
    ({"not": {"event": "oa.*", "within": "14d"}}, {"bob", "cat"}, False),
    ({"event": "h5.form_submit", "conditions": {"form": {"contains": "试"}}}, {"eve"}, False),
    # beside a tag or identity: a probe per contact (EXISTS … OFFSET n-1, or a scalar count)
    (
        {"all": [{"tag": "意向:价格"}, {"event": "oa.click", "count": {"gte": 3}}]},
        {"ann", "bob"},
        True,
    ),
    (
        {"all": [{"tag": "意向:价格"}, {"event": "oa.click", "within": "14d", "count": {"gt": 2}}]},
        {"ann"},
        False,
    ),
    (
        {
            "all": [
                {"tag": "意向:价格"},
                {"event": "oa.click", "conditions": {"key": "V2"}, "count": {"eq": 2}},
            ]
        },
        {"bob"},
        False,
    ),
    ({"all": [{"tag": "意向:价格"}, {"event": "oa.click", "count": {"lt": 3}}]}, set(), True),
    (
        {"all": [{"identity": "openid"}, {"not": {"event": "oa.*", "within": "14d"}}]},
        {"bob", "cat"},
        False,
    ),
    ({"all": [{"identity": "openid"}, {"event": "*", "count": {"lte": 2}}]}, {"cat", "eve"}, False),
    ({"subscribed": False}, {"cat"}, False),
    ({"owner": {"exists": True}}, {"ann", "eve"}, False),
    ({"owner": {"exists": False}}, {"bob", "cat"}, False),
    ({"owner": "rep2"}, {"eve"}, False),
    ({"source": 902}, {"eve"}, False),
    ({"source": {"exists": False}}, {"bob", "cat"}, False),
    ({"identity": "unionid"}, {"ann"}, False),
    ({"identity": "phone", "is": {"prefix": "139"}}, {"eve"}, False),
    ({"not": {"identity": "phone"}}, {"bob", "cat"}, False),
]


def build(settings) -> dict[str, int]:
    """The hand-built contacts; their ids by name. Sources are channel ids made here."""
    ids: dict[str, int] = {}
    with db.session_scope(settings.database_url) as s:
        channels = {}
        for name, cid in (("A", 901), ("B", 902)):
            ch = Channel(id=cid, name=f"渠道{name}", state=f"seg{name}")
            s.add(ch)
            s.flush()
            channels[name] = ch.id
        for name, (cols, tags, idents, evs) in PEOPLE.items():
            cols = dict(cols)
            merged = cols.pop("merged", None)
            source = cols.pop("source", None)
            c = Contact(
                name=name,
                first_seen_at=ago(90),
                source_channel_id=channels.get(source) if source else None,
                merged_into_id=ids.get(merged) if merged else None,
                **cols,
            )
            s.add(c)
            s.flush()
            ids[name] = c.id
            for tag in tags:
                s.add(ContactTag(contact_id=c.id, tag=tag, source="manual"))
            for kind, value in idents:
                s.add(Identity(contact_id=c.id, kind=kind, value=value))
            for type_, props, days in evs:
                s.add(
                    Event(
                        contact_id=c.id,
                        type=type_,
                        source="test",
                        properties=props,
                        occurred_at=ago(days),
                    )
                )
        s.commit()
    return ids


def engine_view(name: str, cid: int) -> journeys.Contact:
    """The contact as the pure engine sees it, the score decayed as the segment reads it."""
    cols, tags, _idents, evs = PEOPLE[name]
    last = cols.get("last_interaction_at")
    score = cols["score"] * (
        0.5 ** ((NOW - last).total_seconds() / 86400 / HALF_LIFE) if last else 1
    )
    counts: dict[str, int] = {}
    for type_, _props, _days in evs:
        counts[type_] = counts.get(type_, 0) + 1
    return journeys.Contact(
        id=cid,
        tags=frozenset(tags),
        fields=cols.get("fields") or {},
        score=score,
        stage=cols["stage"],
        event_counts=counts,
        last_seen_at=cols["last_seen_at"],
    )


@pytest.fixture
def people(clean):
    return build(clean)


def test_clause_table(clean, people):
    names = {v: k for k, v in people.items()}
    wrong = []
    with db.session_scope(clean.database_url) as s:
        for i, (definition, expected, shared) in enumerate(TABLE):
            row = segments.create(s, segments.SegmentIn(f"s{i}", definition))
            got = {names[c] for c in s.execute(segments.member_ids(s, row.id, NOW)).scalars()}
            one_by_one = {n for n, c in people.items() if segments.matches(s, row.id, c, NOW)}
            if got != expected or one_by_one != expected:
                wrong.append((definition, expected, got, one_by_one))
            if shared:
                pred = Pred.model_validate(definition)
                pure = {
                    n
                    for n, c in people.items()
                    if n != "dan" and holds(pred, engine_view(n, c), {}, NOW)
                }
                if pure != expected:
                    wrong.append(("engine", definition, expected, pure))
        s.commit()
    for w in wrong:
        print(w)
    assert wrong == []


def test_segment_in_segment_and_cycles(clean, people):
    with db.session_scope(clean.database_url) as s:
        price = segments.create(s, segments.SegmentIn("价格", {"tag": "意向:价格"}))
        both = segments.create(
            s,
            segments.SegmentIn(
                "价格+上海",
                {"all": [{"segment": price.id}, {"field": "city", "is": {"prefix": "上海"}}]},
            ),
        )
        assert set(s.execute(segments.member_ids(s, both.id, NOW)).scalars()) == {people["ann"]}
        with pytest.raises(segments.SegmentInvalid) as caught:
            segments.update(s, price.id, segments.SegmentIn("价格", {"segment": both.id}))
        assert "definition.segment" in caught.value.fields
        with pytest.raises(segments.SegmentInvalid):
            segments.delete(s, price.id)
        s.rollback()


# --- the API -------------------------------------------------------------------------------


def test_api_names_the_bad_clause(client, auth):
    bad = {
        "all": [
            {"tag": "意向:价格"},
            {"score": {"prefix": "1"}},
            {"event": "oa.click", "within": "-1d"},
            {"answer": "budget", "is": {"eq": 1}},
        ]
    }
    resp = client.post("/api/segments", json={"name": "坏的", "definition": bad}, headers=auth)
    assert resp.status_code == 422
    fields = resp.get_json()["fields"]
    assert "definition.all[2]" in fields  # within must be longer than zero
    resp = client.post(
        "/api/segments",
        json={
            "name": "坏的",
            "definition": {"all": [{"score": {"prefix": "1"}}, {"answer": "b", "is": {"eq": 1}}]},
        },
        headers=auth,
    )
    assert resp.status_code == 422
    assert set(resp.get_json()["fields"]) == {
        "definition.all[0].score.prefix",
        "definition.all[1].answer",
    }
    for definition, where in [
        ({"tag": "a", "no_tag": "b"}, "definition"),
        ({"stage": {"between": 1}}, "definition.stage.between"),
        ({"not": {"field": "city"}}, "definition.not"),
        ({"identity": "email"}, "definition.identity"),
        (
            {"event": "oa.text", "conditions": {"content": {"keywords": ["价格"]}}},
            "definition.conditions.content.keywords",
        ),
        ({"segment": 999}, "definition.segment"),
        ({"field": 'a"b', "is": {"eq": 1}}, "definition.field"),
        ({"event": "oa.click", "conditions": {"a..b": 1}}, "definition.conditions.a..b"),
    ]:
        resp = client.post(
            "/api/segments", json={"name": "x", "definition": definition}, headers=auth
        )
        assert resp.status_code == 422, definition
        assert where in resp.get_json()["fields"], (definition, resp.get_json())
    assert client.get("/api/segments", headers=auth).get_json() == {"segments": []}


def test_api_crud_count_and_pages(client, auth, people):
    body = {
        "name": "价格意向",
        "definition": {"any": [{"tag": "意向:价格"}, {"tag": "渠道:海报1"}]},
    }
    resp = client.post("/api/segments", json=body, headers=auth)
    assert resp.status_code == 201, resp.get_json()
    sid = resp.get_json()["id"]
    assert client.post("/api/segments", json=body, headers=auth).status_code == 422  # name
    assert client.get(f"/api/segments/{sid}", headers=auth).get_json()["name"] == "价格意向"
    got = client.get(f"/api/segments/{sid}/count", headers=auth).get_json()
    assert got["count"] == 3  # ann, bob, eve; dan is merged
    seen, cursor = [], None
    while True:
        url = f"/api/segments/{sid}/contacts?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(url, headers=auth).get_json()
        seen += [c["name"] for c in page["contacts"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["ann", "bob", "eve"]
    body["definition"] = {"tag": "渠道:海报1"}
    assert client.put(f"/api/segments/{sid}", json=body, headers=auth).status_code == 200
    assert client.get(f"/api/segments/{sid}/count", headers=auth).get_json()["count"] == 2
    assert client.get(f"/api/segments/{sid}/contacts?cursor=x", headers=auth).status_code == 422
    assert client.delete(f"/api/segments/{sid}", headers=auth).status_code == 204
    assert client.get(f"/api/segments/{sid}/count", headers=auth).status_code == 404


# --- journeys ------------------------------------------------------------------------------


def journey(trigger: dict, segment_check: int) -> dict:
    return {
        "id": f"j-{trigger['on']}",
        "name": trigger["on"],
        "steps": [
            {"id": "t", "type": "trigger", **trigger, "entry": {"mode": "every_time"}, "next": "c"},
            {
                "id": "c",
                "type": "condition",
                "if": {"segment": segment_check},
                "yes": "y",
                "no": "n",
            },
            {"id": "y", "type": "action", "do": "add_tag", "tag": f"{trigger['on']}:上海"},
            {"id": "n", "type": "action", "do": "add_tag", "tag": f"{trigger['on']}:其他"},
        ],
    }


def tags_of(settings, cid: int) -> set[str]:
    with db.session_scope(settings.database_url) as s:
        return set(
            s.execute(sa.select(ContactTag.tag).where(ContactTag.contact_id == cid)).scalars()
        )


def test_journeys_enter_and_leave_saved_segments(client, auth, people, clean):
    from bot.automation import segments as journey_segments

    def save(name: str, definition: dict) -> int:
        resp = client.post(
            "/api/segments", json={"name": name, "definition": definition}, headers=auth
        )
        assert resp.status_code == 201, resp.get_json()
        return resp.get_json()["id"]

    vip = save("VIP", {"tag": "VIP"})
    shanghai = save("上海", {"field": "city", "is": {"prefix": "上海"}})
    for on in ("segment_entered", "segment_left"):
        body = {"name": on, "definition": journey({"on": on, "segment_id": vip}, shanghai)}
        resp = client.post("/api/journeys", json=body, headers=auth)
        assert resp.status_code == 201, resp.get_json()
        resp = client.post(f"/api/journeys/{resp.get_json()['id']}/publish", headers=auth)
        assert resp.status_code == 200, resp.get_json()

    def tag(name: str, on: bool) -> None:
        with db.session_scope(clean.database_url) as s:
            if on:
                s.add(ContactTag(contact_id=people[name], tag="VIP", source="manual"))
            else:
                s.execute(
                    sa.delete(ContactTag).where(
                        ContactTag.contact_id == people[name], ContactTag.tag == "VIP"
                    )
                )

    tag("ann", True)
    first = journey_segments.sweep_saved(clean)
    assert first == {"segments": 1, "entered": 0, "left": 0, "enrolled": 0}  # remembered only
    tag("bob", True)
    tag("eve", True)
    tag("dan", True)  # merged: never a member
    got = journey_segments.sweep_saved(clean)
    assert (got["entered"], got["left"], got["enrolled"]) == (2, 0, 2)
    assert "segment_entered:其他" in tags_of(clean, people["bob"])  # condition: not in 上海
    assert "segment_entered:上海" in tags_of(clean, people["eve"])  # 上海市
    assert not any(t.startswith("segment_") for t in tags_of(clean, people["ann"]))
    assert journey_segments.sweep_saved(clean)["enrolled"] == 0  # nothing changed
    tag("ann", False)
    got = journey_segments.sweep_saved(clean)
    assert (got["entered"], got["left"], got["enrolled"]) == (0, 1, 1)
    assert "segment_left:上海" in tags_of(clean, people["ann"])
    resp = client.delete(f"/api/segments/{vip}", headers=auth)
    assert resp.status_code == 409 and "segment_entered" in resp.get_json()["fields"]["id"]


def test_journeys_refuse_segment_only_clauses(client, auth):
    definition = journey({"on": "event", "event": "oa.text"}, 1)
    definition["steps"][1]["if"] = {"all": [{"tag": "a"}, {"owner": {"exists": True}}]}
    resp = client.post("/api/journeys", json={"name": "x", "definition": definition}, headers=auth)
    body = resp.get_json()
    problems = json.dumps(body, ensure_ascii=False)
    if resp.status_code == 201:  # drafts are kept; publishing checks
        resp = client.post(f"/api/journeys/{body['id']}/publish", headers=auth)
        problems = json.dumps(resp.get_json(), ensure_ascii=False)
        assert resp.status_code == 422
    assert "if.all[1].owner" in problems


def test_a_journey_names_saved_segments_that_exist(client, auth):
    definition = journey({"on": "segment_entered", "segment_id": 4242}, 4343)
    resp = client.post("/api/journeys", json={"name": "x", "definition": definition}, headers=auth)
    assert resp.status_code == 201, resp.get_json()
    jid = resp.get_json()["id"]
    resp = client.post(f"/api/journeys/{jid}/preview", json={}, headers=auth)
    assert resp.status_code == 200, resp.get_json()
    assert "4242" in json.dumps(resp.get_json(), ensure_ascii=False)
    resp = client.post(f"/api/journeys/{jid}/forecast", json={}, headers=auth)
    assert resp.status_code == 200, resp.get_json()  # no event enters it: the sweep does
    resp = client.post(f"/api/journeys/{jid}/publish", headers=auth)
    assert resp.status_code == 422
    problems = json.dumps(resp.get_json(), ensure_ascii=False)
    assert "no saved segment 4242" in problems and "no saved segment 4343" in problems


# --- the decayed score is the one the score explain shows ----------------------------------


def test_segment_score_is_the_explained_decayed_score(clean):
    from support import run_worker

    from bot.contacts.record import IncomingEvent, record
    from bot.core import queue
    from bot.scoring.explain import explain

    t0 = NOW - timedelta(days=80)

    def store(type_: str, at: datetime, **kw) -> None:
        with db.session_scope(clean.database_url) as s:
            record(
                s,
                IncomingEvent(
                    type=type_,
                    source="oa",
                    identity_kind="openid",
                    identity_value="oScore",
                    app_id=clean.oa_appid,
                    occurred_at=at,
                    dedupe_key=f"seg-{type_}-{at.timestamp()}",
                    **kw,
                ),
            )
        queue.kick_outbox(clean)
        run_worker(clean)

    store("oa.subscribe", t0, properties={}, subscribed=True)  # +5: activity
    store(
        "oa.unsubscribe",
        t0 + timedelta(days=20),
        properties={},
        interaction=False,
        subscribed=False,
    )  # -30: not activity
    store(
        "oa.subscribe", t0 + timedelta(days=10), properties={}, subscribed=True, interaction=False
    )
    with db.session_scope(clean.database_url) as s:
        cid = s.execute(
            sa.select(Identity.contact_id).where(Identity.value == "oScore")
        ).scalar_one()
        c = s.get(Contact, cid)
        shown = explain(s, cid, NOW)
        assert c.score_activity_at == datetime.fromisoformat(shown["decay"]["last_activity_at"])
        total = shown["total"]
        assert shown["decay"]["factor"] < 1
        near = segments.create(
            s, segments.SegmentIn("near", {"score": {"gte": total - 0.01, "lte": total + 0.01}})
        )
        raw = segments.create(s, segments.SegmentIn("raw", {"score": {"eq": c.score}}))
        assert segments.matches(s, near.id, cid, NOW)
        assert not segments.matches(s, raw.id, cid, NOW)  # the undecayed sum is not the score
        s.rollback()
