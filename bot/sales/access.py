"""Who may see which customer in the sidebar. A rep sees a customer they follow (an active
WeCom follow user) or own (the contact's owner, or the rep of an open lead); a manager also
sees every customer of the reps in their team. Nothing else: unknown ids look the same as
forbidden ones to the caller."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.contacts import identity as contacts
from bot.core.models import Contact, FollowUser, LeadAssignment, Rep

ROLES = ("rep", "manager")
OPEN_LEADS = ("assigned", "accepted")


def staff(session: Session, userid: str) -> Rep | None:
    """The active rep with this userid, or None (left, paused or unknown)."""
    rep = session.get(Rep, userid) if userid else None
    return rep if rep is not None and rep.active and rep.left_at is None else None


def team_of(session: Session, rep: Rep) -> set[str]:
    """The userids a rep answers for: themself, and their team's reps when a manager."""
    if rep.role != "manager" or not rep.team:
        return {rep.userid}
    rows = session.execute(sa.select(Rep.userid).where(Rep.team == rep.team)).scalars()
    return set(rows) | {rep.userid}


def people_of(session: Session, contact_id: int) -> set[str]:
    """The reps a customer belongs to: active follow users, owner, reps of open leads."""
    fu, la = FollowUser.__table__.c, LeadAssignment.__table__.c
    found = set(
        session.execute(
            sa.select(fu.userid).where(fu.contact_id == contact_id, fu.status == "active")
        ).scalars()
    )
    found |= set(
        session.execute(
            sa.select(la.userid).where(la.contact_id == contact_id, la.status.in_(OPEN_LEADS))
        ).scalars()
    )
    owner = session.execute(
        sa.select(Contact.owner_userid).where(Contact.id == contact_id)
    ).scalar()
    return found | ({owner} if owner else set())


def visible_contact(session: Session, userid: str, contact_id: int) -> int | None:
    """The (surviving) contact id when this rep may see it, else None."""
    rep = staff(session, userid)
    if rep is None or session.get(Contact, contact_id) is None:
        return None
    cid = contacts.resolve(session, contact_id)
    return cid if people_of(session, cid) & team_of(session, rep) else None
