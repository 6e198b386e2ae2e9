"""The callback's common case without a Session: a known contact (not merged away) says or
clicks something whose reply the reply rules decide before the insert. One read (identity and
contact), then the event and its outbox row in one short write transaction, straight on the
DB-API cursor (bot.core.rawdb). On SQLite the read runs before the writer lock is taken, so
the lock is held for the two inserts and the commit only.

Anything else (a new follower, a merged contact, a journey asking, a rule that tags, a retry
already stored, a database error) returns None and the caller takes ``record.record``, which
handles every case; the two paths write identical rows (see tests/integration)."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from bot.contacts import statements
from bot.contacts.record import LATER, IncomingEvent, Recorded, event_params, touch_later
from bot.core import group_commit, rawdb
from bot.core.models import utcnow


def _statement(raw: rawdb.Raw, key: str) -> rawdb.Prepared:
    return raw.prepared(key, lambda: statements.stmt(raw.dialect.name, key))


def _event_and_outbox(
    raw: rawdb.Raw, key: str, params: dict[str, Any], outbox: dict[str, Any]
) -> tuple[int, int] | None:
    """(outbox id, event id) of the event inserted with its outbox row; None when nothing was
    inserted. One statement on PostgreSQL, two on SQLite."""
    if not raw.sqlite:
        return raw.row(_statement(raw, key + "_outbox"), {**params, **outbox})
    inserted = raw.row(_statement(raw, key), params)
    if inserted is None:
        return None
    row = raw.row(
        _statement(raw, "outbox"), {**outbox, "event_id": inserted[0], "now": params["now"]}
    )
    return row[0], inserted[0]


Kick = Callable[[int], tuple[Hashable, Callable[[], object]]]


def record_known(
    url: str,
    ev: IncomingEvent,
    early: Callable[[bool], Any],
    grouped: Kick | None = None,
    asking_matters: bool = True,
) -> Recorded | None:
    """Store ``ev`` of a known contact with the reply ``early(asking)`` decides, or None
    (nothing written) when this is not the common case. ``early`` returns LATER to decline;
    ``asking_matters``: its answer may depend on ``asking`` (a journey's question).

    ``grouped``: commit through the process's writer thread (bot.core.group_commit), which
    runs ``grouped(contact_id)``'s (key, action) once per batch and key after the commit (the
    outbox kick); the result then says ``kicked``."""
    if not ev.identity_value or not touch_later(ev):
        return None
    try:
        raw = rawdb.connection(url)
    except rawdb.Error:
        return None
    if not raw.sqlite and grouped is None:
        return _at_once(raw, url, ev, early, asking_matters)
    try:
        who = {"kind": ev.identity_kind, "app_id": ev.app_id, "value": ev.identity_value}
        found = raw.row(_statement(raw, "find"), who)
        if found is None or found[1] is not None:  # a new follower, or merged away
            raise _Declined
        contact_id, asking = found[0], bool(found[2])
        reply = early(asking)
        if reply is LATER:
            raise _Declined
        now = utcnow()
        params = event_params(ev, contact_id, reply, now)
        outbox = {
            "priority": int(ev.source == "bot"),
            "interacted_at": ev.received_at or ev.occurred_at,
        }

        def write(conn: rawdb.Raw) -> tuple[int, int] | None:
            return _event_and_outbox(conn, "event_guarded", params, outbox)

        if grouped is None:
            with raw.writing():
                added = write(raw)
        else:
            raw.end()  # close the read's transaction (PostgreSQL): the writer has its own
            try:
                added = group_commit.writer(url).run(
                    write, after=lambda done: grouped(contact_id) if done else None
                )
            except rawdb.Error:  # the writer's batch failed; this thread's connection is fine
                raise _Declined from None
        if added is None:  # stored already, or merged meanwhile: nothing written
            raise _Declined
    except _Declined:
        raw.end()
        return None
    except rawdb.Error:
        rawdb.discard(url)
        return None
    except BaseException:
        raw.end()  # never leave the thread's connection inside a transaction
        raise
    return Recorded(
        added[1], contact_id, added[0], reply, duplicate=False, kicked=grouped is not None
    )


def _at_once(
    raw: rawdb.Raw,
    url: str,
    ev: IncomingEvent,
    early: Callable[[bool], Any],
    asking_matters: bool,
) -> Recorded | None:
    """PostgreSQL: the reply decided first (as for a contact no journey asks), then the
    identity, the event and its outbox row in one statement run as its own transaction: one
    round trip where the read-then-write takes four (BEGIN, read, write, COMMIT). A contact
    that is unknown, merged away or (when it matters) asked something, or an event stored
    already, writes nothing: None, and record.record takes it."""
    reply = early(False)
    if reply is LATER:
        return None
    now = utcnow()
    params = event_params(ev, None, reply, now)
    del params["contact_id"]  # the identity's, in the statement
    params.update(
        kind=ev.identity_kind,
        app_id=ev.app_id,
        value=ev.identity_value,
        gate=asking_matters,
        priority=int(ev.source == "bot"),
        interacted_at=ev.received_at or ev.occurred_at,
    )
    try:
        added = raw.once(_statement(raw, "known_event_outbox"), params)
    except rawdb.Error:
        rawdb.discard(url)
        return None
    if added is None:
        return None
    outbox_id, event_id, contact_id = added
    return Recorded(event_id, contact_id, outbox_id, reply, duplicate=False, kicked=False)


def append_unowned(
    url: str,
    type: str,
    properties: dict[str, Any],
    dedupe_key: str,
    source: str,
    grouped: tuple[Hashable, Callable[[], object]] | None = None,
    durable: bool = True,
) -> int | None:
    """An event about no one yet (an H5 arrival) and its outbox row, in one write; the outbox
    id, or None when ``dedupe_key`` is stored already. Raises rawdb.Error when the database
    failed (the caller takes the ordinary path). ``grouped``: commit through the process's
    writer thread, which runs this (key, action) once per batch after the commit.
    ``durable`` False: see rawdb.Raw.writing."""
    now = utcnow()
    ev = IncomingEvent(type, source, "", "", "", now, dedupe_key, properties, interaction=False)
    params = event_params(ev, None, None, now)
    outbox = {"priority": 0, "interacted_at": None}

    def write(raw: rawdb.Raw) -> int | None:
        added = _event_and_outbox(raw, "event", params, outbox)
        return None if added is None else added[0]

    if grouped is not None:
        return group_commit.writer(url).run(write, after=lambda done: grouped if done else None)
    try:
        raw = rawdb.connection(url)
        with raw.writing(durable):
            return write(raw)
    except rawdb.Error:
        rawdb.discard(url)
        raise


class _Declined(Exception):
    pass
