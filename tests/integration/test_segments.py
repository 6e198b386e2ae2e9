"""Saved segments: the one condition language compiled to one SQL query. A table of clauses
against hand-built contacts (each clause's members exactly; where journeys also read the
clause, the same answer as the pure engine's ``holds``), the API (422 naming the clause, count,
keyset pages) and membership in journeys (a condition, a trigger on entering and leaving)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

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
