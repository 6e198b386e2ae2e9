"""Event campaigns (会销 / 直播): a sign-up per person, a personal check-in pass (a signed
token in a QR code) that staff scan at the door, or the live link the visitor opens; either
way attendance is one ``h5.checkin`` event."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.campaigns import actions, chain, codes
from bot.core.config import Settings
from bot.core.db import dialect_insert, session_scope
from bot.core.models import Campaign, Signup, utcnow

ST = Signup.__table__


def sign_up(session: Session, camp: Campaign, node: chain.Node, props: dict) -> int:
    """The person's sign-up (made once) and its ``h5.signup`` event; returns its id."""
    session.execute(
        dialect_insert(session, ST)
        .values(campaign_id=camp.id, contact_id=node.contact_id, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["campaign_id", "contact_id"])
    )
    signup_id = session.execute(
        sa.select(ST.c.id).where(ST.c.campaign_id == camp.id, ST.c.contact_id == node.contact_id)
    ).scalar_one()
    actions.emit(
        session, camp, node.contact_id, "h5.signup", props, f"h5:signup:{camp.id}:{node.contact_id}"
    )
    return signup_id


def pass_token(secret: str, signup_id: int) -> str:
    return codes.sign(secret, "checkin", {"s": signup_id})


def signup_of(session: Session, campaign_id: int, contact_id: int) -> Signup | None:
    return session.execute(
        sa.select(Signup).where(Signup.campaign_id == campaign_id, Signup.contact_id == contact_id)
    ).scalar()


@dataclass(frozen=True)
class CheckedIn:
    signup_id: int
    contact_id: int
    campaign_id: int
    first: bool
    at: str


def check_in(settings: Settings, signup_id: int, by: str, how: str) -> CheckedIn | None:
    """Attendance for a sign-up (once: a second scan answers the first time); None when the
    sign-up does not exist."""
    with session_scope(settings.database_url) as session:
        row = session.execute(
            sa.select(Signup).where(Signup.id == signup_id).with_for_update()
        ).scalar()
        if row is None:
            return None
        first = row.checked_in_at is None
        if first:
            row.checked_in_at, row.checked_in_by = utcnow(), by
            camp = session.get(Campaign, row.campaign_id)
            node, _ = chain.join(session, camp.id, row.contact_id, None)
            props = actions.properties(camp, node, session, how=how, by=by)
            actions.emit(session, camp, row.contact_id, "h5.checkin", props, f"h5:checkin:{row.id}")
        result = CheckedIn(
            row.id, row.contact_id, row.campaign_id, first, row.checked_in_at.isoformat()
        )
    actions.kick(settings, result.contact_id)
    return result


def check_in_pass(settings: Settings, campaign_id: int, token: str, by: str) -> CheckedIn | None:
    """Staff scanned a pass: None when the pass is forged or belongs to another campaign."""
    payload = codes.unsign(settings.secret_key, "checkin", token)
    if payload is None or not isinstance(payload.get("s"), int):
        return None
    with session_scope(settings.database_url) as session:
        row = session.get(Signup, payload["s"])
        if row is None or row.campaign_id != campaign_id:
            return None
    return check_in(settings, payload["s"], by, "scan")


def live_check_in(settings: Settings, camp: Campaign, contact_id: int) -> CheckedIn | None:
    with session_scope(settings.database_url) as session:
        row = signup_of(session, camp.id, contact_id)
        signup_id = row.id if row is not None else None
    return None if signup_id is None else check_in(settings, signup_id, "live", "live")
