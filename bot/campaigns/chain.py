"""The share chain: one tree per campaign. A contact's node is made on their first touch (a
visit, a follow through the QR code) and never changes: first touch wins, so a later link
cannot move anyone, nobody refers themself, and a node's parent always existed before it (no
cycles)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.campaigns.codes import Sharer
from bot.contacts import identity
from bot.core.db import dialect_insert
from bot.core.models import Contact, Referral, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Node:
    id: int
    contact_id: int
    parent_id: int | None
    sharer_userid: str | None
    depth: int


def _node(row: Any) -> Node:
    return Node(row.id, row.contact_id, row.parent_id, row.sharer_userid, row.depth)


def node_of(session: Session, campaign_id: int, contact_id: int) -> Node | None:
    t = Referral.__table__.c
    row = session.execute(
        sa.select(Referral.__table__).where(
            t.campaign_id == campaign_id, t.contact_id == contact_id
        )
    ).first()
    return _node(row) if row is not None else None


def _parent_for(
    session: Session, campaign_id: int, contact_id: int, sharer: Sharer | None
) -> tuple[int | None, str | None, int]:
    """(parent node id, root employee, depth) for a newcomer brought by ``sharer``."""
    if sharer is None or sharer.campaign_id != campaign_id:
        return None, None, 0
    if sharer.userid:
        return None, sharer.userid, 1
    if sharer.contact_id is None:  # a visitor's code that bot.campaigns.arrivals could not place
        return None, None, 0
    sharer_contact = identity.resolve(session, sharer.contact_id)
    if sharer_contact == contact_id:
        log.info("self-referral ignored: contact %s, campaign %s", contact_id, campaign_id)
        return None, None, 0
    parent = node_of(session, campaign_id, sharer_contact)
    if parent is None:
        log.warning("sharer %s never joined campaign %s: ignored", sharer_contact, campaign_id)
        return None, None, 0
    return parent.id, parent.sharer_userid, parent.depth + 1


def join(
    session: Session, campaign_id: int, contact_id: int, sharer: Sharer | None
) -> tuple[Node, bool]:
    """The contact's node in this campaign, made now if this is their first touch.
    Returns (node, new)."""
    found = node_of(session, campaign_id, contact_id)
    if found is not None:
        return found, False
    parent_id, userid, depth = _parent_for(session, campaign_id, contact_id, sharer)
    inserted = session.execute(
        dialect_insert(session, Referral.__table__)
        .values(
            campaign_id=campaign_id,
            contact_id=contact_id,
            parent_id=parent_id,
            sharer_userid=userid,
            depth=depth,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["campaign_id", "contact_id"])
        .returning(Referral.__table__.c.id)
    ).scalar()
    node = node_of(session, campaign_id, contact_id)
    assert node is not None
    return node, inserted is not None


def ancestors(session: Session, node: Node, levels: int) -> list[tuple[int, str]]:
    """[(level, holder)] of the people up the chain from ``node``: level 1 is who brought
    them, up to ``levels``; the employee at the root is a holder too."""
    out: list[tuple[int, str]] = []
    current = node
    for level in range(1, levels + 1):
        if current.parent_id is None:
            if current.sharer_userid and current.depth == 1:
                out.append((level, f"u:{current.sharer_userid}"))
            break
        parent = session.get(Referral, current.parent_id)
        out.append((level, f"c:{parent.contact_id}"))
        current = _node(parent)
    return out


def holder_of(node: Node, session: Session) -> str | None:
    """The holder who brought this node's contact, or None."""
    found = ancestors(session, node, 1)
    return found[0][1] if found else None


def referring_employee(session: Session, contact_id: int) -> str | None:
    """The employee at the root of this contact's first chain (any campaign), or None."""
    t = Referral.__table__.c
    return session.execute(
        sa.select(t.sharer_userid)
        .where(t.contact_id == contact_id, t.sharer_userid.is_not(None))
        .order_by(t.created_at, t.id)
        .limit(1)
    ).scalar()


def tree(session: Session, campaign_id: int, root: Node | None, userid: str | None) -> list[dict]:
    """The chain below a contact's node (or below an employee) as nested JSON."""
    t = Referral.__table__.c
    rows = session.execute(
        sa.select(Referral.__table__, Contact.name)
        .join(Contact, Contact.id == t.contact_id)
        .where(t.campaign_id == campaign_id)
        .order_by(t.id)
    ).all()
    children: dict[int | None, list[Any]] = {}
    for row in rows:
        children.setdefault(row.parent_id, []).append(row)

    def grow(row: Any) -> dict:
        return {
            "contact_id": row.contact_id,
            "name": row.name,
            "depth": row.depth,
            "joined_at": row.created_at.isoformat(),
            "children": [grow(c) for c in children.get(row.id, [])],
        }

    if root is not None:
        return [grow(c) for c in children.get(root.id, [])]
    return [grow(r) for r in children.get(None, []) if userid and r.sharer_userid == userid]
