"""The raw DB-API path (bot.contacts.fast_record) writes what record.record writes, declines
every case it does not handle, and a broken raw connection costs the callback nothing."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
import sqlalchemy as sa

from bot.contacts import fast_record
from bot.contacts.record import LATER, IncomingEvent, record
from bot.core import db, rawdb
from bot.core.models import Contact, Event, Outbox, utcnow


def _event(key: str, value: str = "oFast", **kw) -> IncomingEvent:
    now = utcnow()
    return IncomingEvent(
        type="oa.text",
        source="oa",
        identity_kind="openid",
        identity_value=value,
        app_id="wxapp",
        occurred_at=now - timedelta(seconds=3),
        dedupe_key=key,
        properties={"content": "价格 ¥9.9", "msg_id": key},
        callback_nonce=f"n:{key}",
        body_digest=f"d:{key}",
        received_at=now,
        **kw,
    )


def _stored(url: str, key: str) -> tuple[dict, dict]:
    with db.session_scope(url) as s:
        ev = s.execute(sa.select(Event).where(Event.dedupe_key == key)).scalar_one()
        ob = s.execute(sa.select(Outbox).where(Outbox.event_id == ev.id)).scalar_one()
        return ev.model_dump(), ob.model_dump()


def _known(url: str, value: str = "oFast") -> None:
    with db.session_scope(url) as s:
        record(s, _event("first-" + value, value))


def test_the_raw_path_writes_the_rows_the_ordinary_path_writes(clean):
    url = clean.database_url
    _known(url)
    with db.session_scope(url) as s:
        record(s, _event("slow"), early=lambda *_: '{"r": 1}')
    fast = fast_record.record_known(url, _event("fast"), lambda asking: '{"r": 1}')
    assert fast is not None and not fast.duplicate and fast.reply == '{"r": 1}'
    (slow_ev, slow_ob), (fast_ev, fast_ob) = _stored(url, "slow"), _stored(url, "fast")
    differ = {"id", "event_id", "dedupe_key", "callback_nonce", "callback_digest", "properties"}
    differ |= {"received_at", "created_at", "occurred_at", "interacted_at"}  # clocks
    assert {k: v for k, v in slow_ev.items() if k not in differ} == {
        k: v for k, v in fast_ev.items() if k not in differ
    }
    assert {k: v for k, v in slow_ob.items() if k not in differ} == {
        k: v for k, v in fast_ob.items() if k not in differ
    }
    assert fast_ev["properties"] == {"content": "价格 ¥9.9", "msg_id": "fast"}
    assert fast_ev["occurred_at"].tzinfo == slow_ev["occurred_at"].tzinfo
    assert fast_ob["interacted_at"] is not None and fast_ob["status"] == "pending"
    assert fast.event_id == fast_ev["id"] and fast.outbox_id == fast_ob["id"]


def test_the_raw_path_declines_what_it_does_not_handle(clean):
    url = clean.database_url
    never = lambda asking: (_ for _ in ()).throw(AssertionError("not asked"))  # noqa: E731
    asked: list[bool] = []
    new = fast_record.record_known(url, _event("new", "oNobody"), lambda a: asked.append(a))
    assert new is None  # a new follower
    # SQLite reads the identity first; PostgreSQL decides the reply before its one statement
    assert asked == ([] if url.startswith("sqlite") else [False])
    _known(url)
    follow = dataclasses.replace(_event("sub"), type="oa.subscribe", subscribed=True)
    assert fast_record.record_known(url, follow, never) is None  # touches the contact now
    assert fast_record.record_known(url, _event("later"), lambda asking: LATER) is None
    assert fast_record.record_known(url, _event("once"), lambda asking: None) is not None
    assert fast_record.record_known(url, _event("once"), lambda asking: None) is None  # stored
    with db.session_scope(url) as s:
        events = s.execute(sa.select(sa.func.count()).select_from(Event)).scalar()
        outbox = s.execute(sa.select(sa.func.count()).select_from(Outbox)).scalar()
    assert events == outbox == 2  # the first sight and "once": nothing else was written


def test_on_postgresql_a_known_contacts_event_is_one_statement_in_autocommit(clean):
    url = clean.database_url
    if not url.startswith("postgresql"):
        pytest.skip("SQLite reads first, then writes the event and its outbox row")
    _known(url)
    seen: list[str] = []
    rawdb.observers.append(lambda sql, _params: seen.append(sql))
    try:
        got = fast_record.record_known(url, _event("one"), lambda a: '{"r": 1}')
    finally:
        rawdb.observers.pop()
    assert got is not None and len(seen) == 1  # no BEGIN, no COMMIT: the statement is both
    raw = rawdb.connection(url)
    assert not raw._conn.dbapi_connection.autocommit  # set back for the next write
    ev, ob = _stored(url, "one")
    assert (got.event_id, got.outbox_id, got.contact_id) == (ev["id"], ob["id"], ev["contact_id"])
    assert ev["reply"] == '{"r": 1}' and ob["status"] == "pending"
    # a contact a journey asks something: declined when its question may decide the reply
    with db.session_scope(url) as s:
        s.execute(sa.update(Contact).where(Contact.id == got.contact_id).values(asking=True))
    asked = _event("asked")
    assert fast_record.record_known(url, asked, lambda a: None, asking_matters=True) is None
    assert fast_record.record_known(url, asked, lambda a: None, asking_matters=False) is not None
    # merged away: declined, nothing written
    with db.session_scope(url) as s:
        other = record(s, _event("first-oOther", "oOther")).contact_id
        s.execute(
            sa.update(Contact).where(Contact.id == got.contact_id).values(merged_into_id=other)
        )
    before = _count(url, Event)
    assert fast_record.record_known(url, _event("merged"), lambda a: None) is None
    assert _count(url, Event) == before


def test_a_broken_raw_connection_falls_back_to_the_ordinary_path(clean, client, oa):
    from support import post, text

    post(client, oa, text(oa, "oBroken", "你好", 1))
    rawdb.connection(clean.database_url)._conn.dbapi_connection.close()  # the server went away
    reply = post(client, oa, text(oa, "oBroken", "还在吗", 2))
    assert reply is not None
    with db.session_scope(clean.database_url) as s:
        texts = s.execute(sa.select(Event.properties).where(Event.type == "oa.text")).scalars()
        assert sorted(p["content"] for p in texts) == ["你好", "还在吗"]
    again = dataclasses.replace(_event("again", "oBroken"), app_id=clean.oa_appid)
    assert fast_record.record_known(clean.database_url, again, lambda asking: None) is not None


def _count(url: str, model: type) -> int:
    with db.session_scope(url) as s:
        return s.execute(sa.select(sa.func.count()).select_from(model)).scalar()


def test_group_commit_batches_concurrent_callbacks_and_kicks_once_per_key(clean):
    """Threads of one process hand their writes to the writer: fewer commits than writes,
    every row durable before its caller returns, the after-commit action run once per key."""
    import threading

    from bot.core import group_commit

    url = clean.database_url
    for n in range(8):
        _known(url, f"oG{n}")
    before = _count(url, Event)
    kicks: list[int] = []
    writer = group_commit.writer(url)
    batches, writes = writer.batches, writer.writes
    gate = threading.Barrier(8)
    results: dict[int, object] = {}

    def kick(contact_id: int):
        return "part-0", lambda: kicks.append(contact_id)

    def one(n: int) -> None:
        gate.wait()
        for k in range(10):
            ev = _event(f"g{n}-{k}", f"oG{n}")
            results[n * 10 + k] = fast_record.record_known(url, ev, lambda a: None, kick)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r is not None and r.kicked for r in results.values())
    assert _count(url, Event) == before + 80 and _count(url, Outbox) == before + 80
    assert writer.writes - writes == 80
    assert writer.batches - batches < 80  # some commits carried several callbacks
    assert len(kicks) == writer.batches - batches  # one kick per batch (one key here)
    ids = {r.event_id for r in results.values()}
    assert len(ids) == 80


def test_group_commit_stores_a_retry_in_the_same_batch_once(clean):
    """Two copies of one callback racing through the writer: one row; the other declines (its
    caller takes the ordinary path, which answers with the stored reply)."""
    import threading

    from bot.core import group_commit

    url = clean.database_url
    _known(url)
    gate = threading.Barrier(2)
    got: list[object] = []

    def kick(contact_id: int):
        return 0, lambda: None

    def one() -> None:
        gate.wait()
        got.append(fast_record.record_known(url, _event("twice"), lambda a: None, kick))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r is None for r in got) == [False, True]
    with db.session_scope(url) as s:
        assert (
            s.execute(
                sa.select(sa.func.count()).select_from(Event).where(Event.dedupe_key == "twice")
            ).scalar()
            == 1
        )
    assert group_commit.writer(url).writes > 0


def test_a_failed_batch_fails_every_waiter_and_writes_nothing(clean, monkeypatch):
    """A database error inside a batch rolls the whole batch back; each caller gets
    rawdb.Error from the writer, and record_known declines (None) so the callback takes the
    ordinary path instead of losing the event."""
    from bot.core import group_commit

    url = clean.database_url
    _known(url)
    before = _count(url, Event)
    writer = group_commit.writer(url)

    def broken(raw: rawdb.Raw):
        raw.row(raw.prepared("broken", lambda: sa.text("SELECT * FROM no_such_table")), {})

    try:
        writer.run(broken)
    except rawdb.Error as exc:
        assert "no_such_table" in str(exc)
    else:
        raise AssertionError("the batch did not fail")
    assert fast_record.record_known(url, _event("after"), lambda a: None, lambda c: (0, int))
    assert _count(url, Event) == before + 1  # the writer recovered with a new connection


def test_a_failed_batch_declines_and_keeps_the_callers_connection(clean, monkeypatch):
    """record_known through a writer whose batch failed: None (the ordinary path takes the
    callback), and the request thread's own connection, which did nothing wrong, is kept."""
    from bot.core import group_commit

    url = clean.database_url
    _known(url)
    mine = rawdb.connection(url)

    def failed(self, work, after=None):
        raise rawdb.Error("the batch failed")

    monkeypatch.setattr(group_commit.Writer, "run", failed)
    got = fast_record.record_known(url, _event("declined"), lambda a: None, lambda c: (0, int))
    assert got is None and rawdb.connection(url) is mine
    assert _count(url, Event) == 1  # only the first sight


def _commit_level(raw: rawdb.Raw) -> str:
    """What this transaction's commit waits for: SQLite's synchronous, PostgreSQL's
    synchronous_commit (both read inside the transaction)."""
    if raw.sqlite:
        raw._cursor.execute("PRAGMA synchronous")
        return {1: "NORMAL", 2: "FULL"}[raw._cursor.fetchone()[0]]
    raw._cursor.execute("SHOW synchronous_commit")
    return raw._cursor.fetchone()[0]


def test_a_write_that_need_not_wait_for_the_disk_leaves_the_next_durable(clean):
    """writing(durable=False) commits without an fsync (SQLite NORMAL, PostgreSQL
    synchronous_commit off) for that transaction only; the thread's next write is durable."""
    raw = rawdb.connection(clean.database_url)
    durable = "FULL" if raw.sqlite else "on"
    relaxed = "NORMAL" if raw.sqlite else "off"
    levels = []
    for flag in (True, False, False, True):
        with raw.writing(durable=flag):
            levels.append(_commit_level(raw))
    assert levels == [durable, relaxed, relaxed, durable]
    added = fast_record.append_unowned(
        clean.database_url,
        "h5.arrival",
        {"visitor": "t"},
        "h5:arrive:1:relaxed",
        "h5",
        durable=False,
    )
    assert added is not None
    with pytest.raises(RuntimeError), raw.writing(durable=False):
        raise RuntimeError("rolled back")
    with raw.writing():  # neither a commit nor a rollback leaves the connection relaxed
        assert _commit_level(raw) == durable
    with db.session_scope(clean.database_url) as s:  # another connection sees it committed
        ev = s.execute(sa.select(Event).where(Event.dedupe_key == "h5:arrive:1:relaxed"))
        assert ev.scalar_one().properties == {"visitor": "t"}
