"""A callback that races a One ID merge: its event lands on the survivor, in the survivor's
drain partition, never on the merged contact (issue 15)."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from bot.background import jobs
from bot.contacts import fast_record
from bot.contacts import identity as contacts
from bot.contacts.record import IncomingEvent, record
from bot.core import db
from bot.core.models import Contact, Event, Outbox, utcnow


def _event(openid: str, key: str) -> IncomingEvent:
    return IncomingEvent(
        type="oa.text",
        source="oa",
        identity_kind="openid",
        identity_value=openid,
        app_id="wxrace",
        occurred_at=utcnow(),
        dedupe_key=key,
        properties={"content": "在吗"},
    )


def _store(settings, ev: IncomingEvent, raw: bool = False) -> int:
    """Store ``ev`` as a callback does: the raw path first when ``raw`` (it declines a
    contact merged meanwhile), else (and then) record.record."""
    found = (
        fast_record.record_known(settings.database_url, ev, lambda asking: None) if raw else None
    )
    if found is not None:
        return found.contact_id
    with Session(db.get_engine(settings.database_url), expire_on_commit=False) as s:
        return record(s, ev).contact_id


@pytest.mark.parametrize("raw", [False, True], ids=["session", "raw"])
def test_a_callback_waiting_on_a_merge_lands_on_the_survivor(clean, raw):
    if not clean.database_url.startswith("postgresql"):
        pytest.skip("SQLite runs one writer at a time: the callback cannot interleave")
    keep = _store(clean, _event("oKeep", "race-1"))
    gone = _store(clean, _event("oGone", "race-2"))
    engine = db.get_engine(clean.database_url)
    merging = Session(engine)
    survivor, _ = contacts.merge(merging, keep, gone, "test")
    assert survivor == keep
    # The merge holds both contacts' rows (not committed). A callback for the merged one
    # reads the identity as it was (still "gone") and has to wait for the contact row.
    stored: list[int] = []
    ev = _event("oGone", "race-3")
    callback = threading.Thread(target=lambda: stored.append(_store(clean, ev, raw)))
    callback.start()
    with engine.connect() as watch:  # until the callback waits on the merge's lock
        for _ in range(200):
            waiting = watch.execute(
                sa.text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
            ).scalar()
            if waiting:
                break
            time.sleep(0.02)
    merging.commit()
    merging.close()
    callback.join(timeout=20)
    assert stored == [keep]
    with db.session_scope(clean.database_url) as s:
        owner = s.execute(sa.select(Event.contact_id).where(Event.dedupe_key == "race-3")).scalar()
        assert owner == keep  # on the survivor's timeline and in its drain's partition
        assert s.get(Contact, gone).merged_into_id == keep
        left = s.execute(sa.select(sa.func.count()).where(Event.contact_id == gone)).scalar()
        assert left == 0


def test_a_drain_batch_moves_an_event_left_on_a_merged_contact(clean):
    """The batch reads its contacts' merge pointers once, before any step: an event still on
    a contact merged since it was stored is moved to the survivor, the rest are untouched."""
    keep = _store(clean, _event("oKeep", "race-1"))
    gone = _store(clean, _event("oGone", "race-2"))
    other = _store(clean, _event("oOther", "race-3"))
    with db.session_scope(clean.database_url) as s:
        contacts.merge(s, keep, gone, "test")
    with db.session_scope(clean.database_url) as s:  # as a callback that raced the merge
        s.execute(sa.update(Event).where(Event.dedupe_key == "race-2").values(contact_id=gone))
        pending = s.execute(
            sa.select(Outbox.id).where(Outbox.status == "pending").order_by(Outbox.id)
        ).scalars()
        ids = list(pending)
    outcome = jobs.process_batch(clean, ids)
    assert set(outcome.values()) == {"done"}
    with db.session_scope(clean.database_url) as s:
        owners = dict(s.execute(sa.select(Event.dedupe_key, Event.contact_id)).all())
    assert owners["race-2"] == keep
    assert owners["race-1"] == keep and owners["race-3"] == other


def test_a_merge_in_the_batch_forgets_the_contacts_read_alive(clean):
    keep = _store(clean, _event("oKeep", "race-1"))
    gone = _store(clean, _event("oGone", "race-2"))
    with db.session_scope(clean.database_url) as s:
        contacts.read_alive(s, [keep, gone])
        assert contacts.known_alive(s, keep) and contacts.known_alive(s, gone)
        contacts.merge(s, keep, gone, "test")
        assert not contacts.known_alive(s, gone)
        assert contacts.resolve(s, gone) == keep
