"""One person, one contact. A contact carries several identities (openid, unionid, WeCom
external_userids, a verified phone); when a new identity is already another contact's, the two
are the same person and are merged.

The older contact survives. Everything the other one has moves over (identities, events, tags,
score ledger, messages, follow users, lead assignments, tag syncs, the tags events earned,
campaign chains, sign-ups and points); the other row stays as a pointer (``merged_into_id``)
so late references still resolve, and the merge is an event on the survivor's timeline.
Merging is idempotent, and safe when two callbacks for the same person race: both contacts
are locked (in id order) before anything moves.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.contacts import record as events
from bot.core.db import dialect_insert
from bot.core.models import (
    Contact,
    ContactTag,
    CustomerTransfer,
    Event,
    EventTag,
    FollowUpReminder,
    FollowUser,
    Identity,
    LeadAssignment,
    Message,
    PointsBalance,
    PointsEntry,
    Referral,
    ScoreEntry,
    Signup,
    TagSync,
    utcnow,
)

log = logging.getLogger(__name__)

STAGE_ORDER = ["subscriber", "lead", "mql", "sql", "customer"]


_ALIVE = "yuchi.contacts.alive"


def resolve(session: Session, contact_id: int) -> int:
    """Follow merge pointers to the surviving contact. A contact found alive is remembered
    for the session (a background batch asks this of the same contact several times per
    event) until a merge in it (``merge``) or a lock taken for one (``_lock``) forgets it."""
    alive: set[int] = session.info.setdefault(_ALIVE, set())
    if contact_id in alive:
        return contact_id
    seen = set()
    while contact_id not in seen:
        seen.add(contact_id)
        target = session.execute(
            sa.select(Contact.merged_into_id).where(Contact.id == contact_id)
        ).scalar()
        if target is None:
            alive.add(contact_id)
            return contact_id
        contact_id = target
    raise RuntimeError(f"merge pointers loop at contact {contact_id}")


def seen_alive(session: Session, contact_id: int) -> None:
    """``contact_id`` was just read in this transaction, not merged: ``resolve`` need not ask."""
    session.info.setdefault(_ALIVE, set()).add(contact_id)


def known_alive(session: Session, contact_id: int) -> bool:
    """Was ``contact_id`` read unmerged in this transaction, with no merge since?"""
    return contact_id in session.info.get(_ALIVE, ())


def read_alive(session: Session, ids: Iterable[int]) -> None:
    """Read which of ``ids`` are not merged, in one statement, and remember them (a drain
    batch does this for its events' contacts before any step runs)."""
    wanted = sorted(set(ids))
    if not wanted:
        return
    alive = session.info.setdefault(_ALIVE, set())
    c = Contact.__table__.c
    alive.update(
        session.connection()
        .execute(sa.select(c.id).where(c.id.in_(wanted), c.merged_into_id.is_(None)))
        .scalars()
    )


def identity_owner(session: Session, kind: str, value: str, app_id: str = "") -> int | None:
    owner = session.execute(
        sa.select(Identity.contact_id).where(
            Identity.kind == kind, Identity.app_id == app_id, Identity.value == value
        )
    ).scalar()
    return resolve(session, owner) if owner is not None else None


def attach(
    session: Session, contact_id: int, kind: str, value: str, app_id: str = ""
) -> tuple[int, int | None]:
    """Give ``contact_id`` this identity. If another contact has it, merge the two.
    Returns (surviving contact id, outbox id of the merge event or None)."""
    contact_id = resolve(session, contact_id)
    owner = identity_owner(session, kind, value, app_id)
    if owner == contact_id:
        return contact_id, None
    if owner is None:
        inserted = session.execute(
            dialect_insert(session, Identity.__table__)
            .values(
                contact_id=contact_id, kind=kind, app_id=app_id, value=value, created_at=utcnow()
            )
            .on_conflict_do_nothing(index_elements=["kind", "app_id", "value"])
            .returning(Identity.__table__.c.id)
        ).scalar()
        if inserted is not None:
            return contact_id, None
        owner = identity_owner(session, kind, value, app_id)  # a concurrent attach won
        if owner is None or owner == contact_id:
            return contact_id, None
    return merge(session, contact_id, owner, reason=f"shared {kind}")


def _lock(session: Session, ids: list[int]) -> dict[int, Contact]:
    session.info.pop(_ALIVE, None)  # a merge is under way: ask the table again
    rows = session.execute(
        sa.select(Contact).where(Contact.id.in_(sorted(ids))).order_by(Contact.id).with_for_update()
    ).scalars()
    return {c.id: c for c in rows}


def _later(a: Any, b: Any) -> Any:
    return max(x for x in (a, b) if x is not None) if (a or b) else None


def _combine(keep: Any, gone: Any) -> None:
    """The survivor takes what the merged contact knew better: the wider seen span, the
    later interaction, a subscription, names, owner, channel and the further stage."""
    keep.first_seen_at = min(keep.first_seen_at, gone.first_seen_at)
    keep.last_seen_at = max(keep.last_seen_at, gone.last_seen_at)
    keep.last_interaction_at = _later(keep.last_interaction_at, gone.last_interaction_at)
    if gone.subscribed and not keep.subscribed:
        keep.subscribed, keep.subscribed_at = True, gone.subscribed_at
    keep.name = keep.name or gone.name
    keep.owner_userid = keep.owner_userid or gone.owner_userid
    keep.source_channel_id = keep.source_channel_id or gone.source_channel_id
    if gone.stage in STAGE_ORDER and keep.stage in STAGE_ORDER:
        if STAGE_ORDER.index(gone.stage) > STAGE_ORDER.index(keep.stage):
            keep.stage, keep.stage_manual = gone.stage, gone.stage_manual
    elif gone.stage_manual and not keep.stage_manual:  # customer/disqualified set by a person
        keep.stage, keep.stage_manual = gone.stage, True


def _move_campaigns(session: Session, gone_id: int, keep_id: int, move: Any) -> None:
    """Campaign chains and sign-ups: the survivor keeps its own (first touch wins) and takes the
    rest. Points: the ledger lines move (a line credited to both for the same form stays once)
    and the balance is the ledger's sum again."""
    for model in (Referral, Signup):
        t = model.__table__
        have = sa.select(t.c.campaign_id).where(t.c.contact_id == keep_id).scalar_subquery()
        move(model, t.c.campaign_id.not_in(have))
    gone, keep = f"c:{gone_id}", f"c:{keep_id}"
    pe, pb = PointsEntry.__table__, PointsBalance.__table__
    if session.execute(sa.select(pe.c.id).where(pe.c.holder == gone).limit(1)).first() is None:
        return
    keys = sa.select(pe.c.key).where(pe.c.holder == keep).scalar_subquery()
    session.execute(
        sa.update(pe).where(pe.c.holder == gone, pe.c.key.not_in(keys)).values(holder=keep)
    )
    session.execute(sa.delete(pe).where(pe.c.holder == gone))
    total = session.execute(
        sa.select(sa.func.coalesce(sa.func.sum(pe.c.points), 0)).where(pe.c.holder == keep)
    ).scalar_one()
    session.execute(sa.delete(pb).where(pb.c.holder.in_([gone, keep])))
    session.execute(sa.insert(pb).values(holder=keep, balance=total))


def _move_rows(session: Session, gone_id: int, keep_id: int) -> dict[str, int]:
    """Everything that points at the merged contact now points at the survivor; returns how
    many rows of each table moved."""
    moved: dict[str, int] = {}

    def move(model: Any, where: Any = None) -> None:
        t = model.__table__
        stmt = sa.update(t).where(t.c.contact_id == gone_id)
        if where is not None:
            stmt = stmt.where(where)
        moved[t.name] = session.execute(stmt.values(contact_id=keep_id)).rowcount

    move(Identity)
    move(Event)
    # The tags the moved events earned, found through their events (event_tag has no index
    # on contact_id).
    et = EventTag.__table__
    theirs = sa.select(Event.__table__.c.id).where(Event.__table__.c.contact_id == keep_id)
    moved[et.name] = session.execute(
        sa.update(et)
        .where(et.c.event_id.in_(theirs), et.c.contact_id == gone_id)
        .values(contact_id=keep_id)
    ).rowcount
    move(ScoreEntry)
    move(Message)
    move(LeadAssignment)
    move(TagSync)
    move(FollowUpReminder)
    move(CustomerTransfer)
    # Tags and follow users are unique per contact: move what the survivor lacks, drop the rest.
    tag_t = ContactTag.__table__
    have = sa.select(tag_t.c.tag).where(tag_t.c.contact_id == keep_id).scalar_subquery()
    move(ContactTag, tag_t.c.tag.not_in(have))
    session.execute(sa.delete(tag_t).where(tag_t.c.contact_id == gone_id))
    fu = FollowUser.__table__
    reps = sa.select(fu.c.userid).where(fu.c.contact_id == keep_id).scalar_subquery()
    move(FollowUser, fu.c.userid.not_in(reps))
    session.execute(sa.delete(fu).where(fu.c.contact_id == gone_id))

    _move_campaigns(session, gone_id, keep_id, move)
    return moved


def merge(session: Session, a: int, b: int, reason: str) -> tuple[int, int | None]:
    """Merge contacts ``a`` and ``b`` (the older survives). Idempotent. Returns (survivor,
    outbox id of the ``contact.merged`` event, or None if nothing was left to merge)."""
    a, b = resolve(session, a), resolve(session, b)
    if a == b:
        return a, None
    keep_id, gone_id = min(a, b), max(a, b)
    rows = _lock(session, [keep_id, gone_id])
    keep, gone = rows[keep_id], rows[gone_id]
    if gone.merged_into_id is not None:  # someone merged it while we waited for the lock
        return resolve(session, gone_id), None

    moved = _move_rows(session, gone_id, keep_id)
    _combine(keep, gone)
    gone.merged_into_id = keep_id
    session.info.pop(_ALIVE, None)
    gone.subscribed = False
    session.add_all([keep, gone])
    session.flush()
    outbox = events.append(
        session,
        keep_id,
        "contact.merged",
        {"merged_contact_id": gone_id, "reason": reason, "moved": moved},
        dedupe_key=f"merge:{gone_id}:{keep_id}",
    )
    log.info("merged contact %s into %s (%s): %s", gone_id, keep_id, reason, moved)
    return keep_id, outbox
