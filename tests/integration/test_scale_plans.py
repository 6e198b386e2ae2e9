"""The plans PostgreSQL chooses for the paths that must stay fast at a million contacts,
checked on the statements those paths really run (captured as they execute): every lookup of
a person by openid, unionid or external_userid reads an index, a deep timeline page bounds its
index scan with the row comparison, and an event-history count scans only its index.

The tables hold enough rows (tens of thousands in new tables, then ANALYZE) for the planner to choose as it
would on a big table; no planner setting is changed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from support import post, text

from bot.contacts import history, identity
from bot.contacts import timeline as store
from bot.contacts.record import IncomingEvent, record
from bot.core import db, rawdb

PEOPLE = 5000
HEAVY = 1  # the contact with a long history
HEAVY_EVENTS = 20000
CORP = "wwcorp"
NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.fixture
def big(clean):
    engine = db.get_engine(clean.database_url)
    if engine.dialect.name != "postgresql":
        pytest.skip("query plans are PostgreSQL's")
    with engine.begin() as conn:
        seed = [
            # New, empty files, as a restored database has: ``clean`` DELETEs, which leaves the
            # earlier tests' dead rows in the tables and their indexes.
            "TRUNCATE contact, identity, event CASCADE",
            "INSERT INTO contact (id, subscribed, first_seen_at, last_seen_at, created_at, stage,"
            " stage_manual, score) SELECT g, true, now(), now(), now(), 'subscriber', false, 0"
            f" FROM generate_series(1, {PEOPLE}) g",
            "SELECT setval('contact_id_seq', (SELECT max(id) FROM contact))",
            "INSERT INTO identity (contact_id, kind, app_id, value, created_at)"
            " SELECT g, k.kind, k.app, k.prefix || g, now() FROM generate_series(1, "
            f"{PEOPLE}) g, (VALUES ('openid', '{clean.oa_appid}', 'o'), ('unionid', '', 'u'),"
            f" ('external_userid', '{CORP}', 'wm')) AS k(kind, app, prefix)",
            "INSERT INTO event (contact_id, type, source, properties, occurred_at, received_at)"
            f" SELECT CASE WHEN g <= {HEAVY_EVENTS} THEN {HEAVY} ELSE 2 + g % {PEOPLE - 1} END,"
            " (ARRAY['oa.click', 'oa.text', 'oa.view', 'oa.subscribe'])[1 + g % 4], 'oa', '{}',"
            " timestamptz '2026-12-01' - g * interval '1 minute', now()"
            f" FROM generate_series(1, {HEAVY_EVENTS + 4 * PEOPLE}) g",
            "ANALYZE contact",
            "ANALYZE identity",
            "ANALYZE event",
        ]
        for statement in seed:
            conn.execute(sa.text(statement))
    return clean


@contextmanager
def captured(settings) -> Iterator[list[tuple[str, Any]]]:
    """The statements run on the app's engine meanwhile, with their parameters."""
    engine = db.get_engine(settings.database_url)
    seen: list[tuple[str, Any]] = []

    def hook(conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        if not executemany:
            seen.append((statement, parameters))

    def raw(statement: str, parameters: Any) -> None:  # the callback's DB-API path
        seen.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", hook)
    rawdb.observers.append(raw)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", hook)
        rawdb.observers.remove(raw)


def plan_of(settings, statement: str, parameters: Any) -> dict:
    with db.get_engine(settings.database_url).connect() as conn:
        got = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).scalar()
    return got[0]["Plan"]


def nodes(plan: dict) -> Iterator[dict]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def reads(
    settings, seen: list[tuple[str, Any]], table: str, mentioning: str | None = None
) -> list[dict]:
    """The plan nodes reading ``table`` in the captured SELECTs (and WITH statements: a
    callback's one statement on PostgreSQL; EXPLAIN does not run them) that mention
    ``mentioning`` (default: the table)."""
    found = []
    for statement, parameters in seen:
        if (
            statement.lstrip().upper().startswith(("SELECT", "WITH"))
            and (mentioning or f"{table}.") in statement
        ):
            plan = plan_of(settings, statement, parameters)
            found += [n for n in nodes(plan) if n.get("Relation Name") == table]
    return found


def assert_indexed(found: list[dict], index: str | None = None) -> None:
    assert found, "no statement read the table"
    for node in found:
        assert node["Node Type"] in ("Index Scan", "Index Only Scan", "Bitmap Heap Scan"), node
        if index and node["Node Type"] != "Bitmap Heap Scan":
            assert node["Index Name"] in index, node


BY_VALUE = "identity.value ="  # a lookup by identity, not the identities of known contacts
IDENTITIES = [("openid", "o42"), ("unionid", "u42"), ("external_userid", "wm42")]


@pytest.mark.parametrize(("kind", "value"), IDENTITIES)
def test_contacts_api_by_identity_reads_indexes(big, client, auth, kind, value):
    with captured(big) as seen:
        got = client.get(f"/api/contacts?{kind}={value}", headers=auth).get_json()
    assert [c["id"] for c in got["contacts"]] == [42]
    assert_indexed(reads(big, seen, "identity", BY_VALUE), "ix_identity_kind_value uq_identity")
    contact = reads(big, seen, "contact", BY_VALUE)
    assert_indexed(contact)
    assert all("Index Cond" in n for n in contact), contact  # found by id, not scanned


@pytest.mark.parametrize(("kind", "value"), IDENTITIES)
def test_identity_owner_reads_the_unique_index(big, kind, value):
    app_id = {"openid": big.oa_appid, "unionid": "", "external_userid": CORP}[kind]
    with captured(big) as seen, db.session_scope(big.database_url) as s:
        assert identity.identity_owner(s, kind, value, app_id) == 42
    assert_indexed(reads(big, seen, "identity", BY_VALUE), "uq_identity ix_identity_kind_value")


@pytest.mark.parametrize(("kind", "value"), IDENTITIES)
def test_recording_an_event_finds_the_contact_by_index(big, kind, value):
    app_id = {"openid": big.oa_appid, "unionid": "", "external_userid": CORP}[kind]
    ev = IncomingEvent("oa.click", "oa", kind, value, app_id, NOW, f"k-{kind}")
    with captured(big) as seen, db.session_scope(big.database_url) as s:
        assert record(s, ev).contact_id == 42
    assert_indexed(reads(big, seen, "identity", BY_VALUE), "uq_identity ix_identity_kind_value")


def test_a_signed_callback_finds_the_contact_by_index(big, client, oa):
    with captured(big) as seen:
        post(client, oa, text(oa, "o42", "你好", 4242))
    assert_indexed(reads(big, seen, "identity", BY_VALUE), "uq_identity ix_identity_kind_value")


def test_a_deep_timeline_page_is_bounded_by_the_index(big, client, auth):
    before = None
    for _ in range(20):
        q = f"/api/contacts/{HEAVY}/events?limit=50" + (f"&before={before}" if before else "")
        with captured(big) as seen:
            page = client.get(q, headers=auth).get_json()
        before = page["next_before"]
    found = [n for n in reads(big, seen, "event") if n.get("Index Name") == "ix_event_timeline"]
    assert found and all(n["Node Type"] in ("Index Scan", "Index Only Scan") for n in found)
    keyset = [n for n in found if "ROW(" in n.get("Index Cond", "")]
    assert len(keyset) == 1 and "Filter" not in keyset[0], keyset  # bounded, not filtered


def test_event_history_reads_its_index_only(big):
    with captured(big) as seen, db.session_scope(big.database_url) as s:
        since = NOW - timedelta(days=14)
        assert history.count_contacts_with_events(s, "oa.click", 2, since) > 0
    assert_indexed(reads(big, seen, "event"), "ix_event_type_time_contact")
    with db.session_scope(big.database_url) as s:  # and the answer is right
        ids = set(s.execute(history.contacts_with_events("oa.click", 2, since)).scalars())
        e = sa.table("event", sa.column("contact_id"), sa.column("type"), sa.column("occurred_at"))
        rows = s.execute(
            sa.select(e.c.contact_id).where(e.c.type == "oa.click", e.c.occurred_at >= since)
        ).scalars()
    counts: dict[int, int] = {}
    for cid in rows:
        counts[cid] = counts.get(cid, 0) + 1
    assert ids == {cid for cid, n in counts.items() if n >= 2}


def test_find_contacts_without_identity_pages_by_id(big):
    with captured(big) as seen, db.session_scope(big.database_url) as s:
        first, before = store.find_contacts(s, None, 50, None)
        second, _ = store.find_contacts(s, None, 50, before)
    assert [c["id"] for c in first + second] == list(range(PEOPLE, PEOPLE - 100, -1))
    assert_indexed(reads(big, seen, "contact"))


def test_a_heavy_explain_reads_the_events_of_its_listed_lines_only(big, client, auth):
    """The heavy contact's 300 ledger lines are read by the index; its events (each a page of
    the event table) only for the ``?lines=`` listed, plus the marker's place."""
    with db.get_engine(big.database_url).begin() as conn:
        conn.execute(  # everyone else's lines: a table the planner reads by its index
            sa.text(
                "INSERT INTO score_entry (contact_id, event_id, rule_id, ruleset_version, points,"
                " reason, occurred_at, created_at) SELECT contact_id, id, 'click', 1, 1, '',"
                " occurred_at, now() FROM event WHERE contact_id <> :c"
            ),
            {"c": HEAVY},
        )
        conn.execute(
            sa.text(
                "INSERT INTO score_entry (contact_id, event_id, rule_id, ruleset_version, points,"
                " reason, occurred_at, created_at) SELECT :c, id, 'click', 1, 1, '',"
                " occurred_at, now() FROM event WHERE contact_id = :c ORDER BY occurred_at DESC"
                " LIMIT 300"
            ),
            {"c": HEAVY},
        )
        conn.execute(
            sa.text(
                "INSERT INTO score_entry (contact_id, event_id, rule_id, ruleset_version, points,"
                " reason, occurred_at, created_at) VALUES (:c, -:c, '@ledger', 1, 0, 'built',"
                " now(), now())"
            ),
            {"c": HEAVY},
        )
        conn.execute(sa.text("ANALYZE score_entry"))
    with captured(big) as seen:
        body = client.get(f"/api/contacts/{HEAVY}/score?lines=5", headers=auth).get_json()
    assert body["ledger_built"] is True and body["lines_total"] == 300
    assert [ln["event"]["type"] is not None for ln in body["lines"]] == [True] * 5
    [(statement, parameters)] = [(s, p) for s, p in seen if "FROM score_entry" in s]
    with db.get_engine(big.database_url).connect() as conn:
        plan = conn.exec_driver_sql(
            "EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters
        ).scalar()[0]["Plan"]
    ledger = [n for n in nodes(plan) if n.get("Relation Name") == "score_entry"]
    assert_indexed(ledger)
    events = [n for n in nodes(plan) if n.get("Relation Name") == "event"]
    assert events and sum(n["Actual Loops"] for n in events) <= 5 + 1, events


def test_a_drain_finds_its_rows_by_key_even_with_statistics_of_empty_tables(clean):
    """A burst grows the event and outbox tables faster than autovacuum analyzes them. The
    drain's query for its pending rows must not then loop over the event table for each
    pending row (as the join it once was did: about a second a batch at 5,000 rows): each
    row's event is read by its primary key."""
    from bot.background.jobs import pending_query

    engine = db.get_engine(clean.database_url)
    if engine.dialect.name != "postgresql":
        pytest.skip("query plans are PostgreSQL's")
    with engine.begin() as conn:
        for statement in [
            "TRUNCATE contact, event, outbox CASCADE",
            "ANALYZE contact",
            "ANALYZE event",
            "ANALYZE outbox",  # the statistics now say: empty
            "INSERT INTO contact (id, subscribed, first_seen_at, last_seen_at, created_at, stage,"
            " stage_manual, score) SELECT g, true, now(), now(), now(), 'subscriber', false, 0"
            " FROM generate_series(1, 500) g",
            "INSERT INTO event (id, contact_id, type, source, properties, occurred_at,"
            " received_at) SELECT g, 1 + g % 500, 'oa.text', 'oa', '{}', now(), now()"
            " FROM generate_series(1, 5000) g",
            "INSERT INTO outbox (event_id, status, priority, attempts, created_at)"
            " SELECT g, 'pending', 0, 0, now() FROM generate_series(1, 5000) g",
        ]:
            conn.execute(sa.text(statement))
    query = pending_query(0, 2).compile(engine, compile_kwargs={"literal_binds": True})
    found = [n for n in nodes(plan_of(clean, str(query), ())) if n.get("Relation Name") == "event"]
    assert found, "the query does not read the event table"
    for node in found:
        assert node["Node Type"] in ("Index Scan", "Index Only Scan"), node
        assert node["Index Name"] == "event_pkey", node
        assert node.get("Parent Relationship") == "SubPlan" or node.get("Subplan Name"), node
