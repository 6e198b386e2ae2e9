"""What the campaign pages (h5/) ask for besides the actions: each call one transaction."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from bot.campaigns import codes, downloads, oauth, points, sharing, signups, stats, visitors
from bot.campaigns.actions import submitted, visitor
from bot.core import queue
from bot.core.config import Settings
from bot.core.db import session_scope
from bot.core.models import Campaign, Contact, Rep
from bot.core.wechat import PlatformError

log = logging.getLogger(__name__)


@dataclass
class Done:
    """What the page shows after the form: nothing yet, the download, or the check-in pass."""

    submitted: bool
    download_token: str | None = None
    pass_token: str | None = None
    checked_in: bool = False
    follow_qr: str | None = None  # the OA QR image whose scene is this visitor's own


def done_state(settings: Settings, camp: Campaign, contact_id: int) -> Done:
    with session_scope(settings.database_url) as session:
        if not submitted(session, camp.id, contact_id):
            return Done(False)
        row = signups.signup_of(session, camp.id, contact_id)
    done = Done(True)
    if camp.kind == "resource":
        done.download_token = downloads.link_token(settings, camp.id, contact_id)
    if row is not None:
        done.pass_token = signups.pass_token(settings.secret_key, row.id)
        done.checked_in = row.checked_in_at is not None
    if camp.spec.get("follow"):
        own = codes.Sharer(camp.id, contact_id=contact_id, own=True)
        try:
            done.follow_qr = sharing.follow_qr(settings, own)["image"]
        except (PlatformError, ValueError) as exc:
            log.warning("no follow QR for contact %s: %s", contact_id, exc)
    return done


def signed_in(settings: Settings, token: str, code: str, state: str) -> str:
    """The OAuth callback: the state taken (once), the code exchanged, the cookie's contact
    merged with the openid. Returns the page to go back to. Raises oauth.StateRefused or
    oauth.CodeRefused."""
    next_path = oauth.take_state(settings, token, state)
    user = oauth.exchange(settings, code)
    with session_scope(settings.database_url) as session:
        contact_id = visitors.identify(session, settings, token, user.openid, user.nickname)
    visitors.remember(settings, token, contact_id, True)
    queue.kick_outbox(settings, contact_id=contact_id)
    return next_path


def friends(settings: Settings, camp: Campaign, token: str) -> dict[str, Any]:
    contact_id, _ = visitor(settings, token)
    with session_scope(settings.database_url) as session:
        return stats.sharer_tree(session, camp, None, contact_id)


def points_page(settings: Settings, token: str) -> dict[str, Any]:
    contact_id, _ = visitor(settings, token)
    holder = f"c:{contact_id}"
    with session_scope(settings.database_url) as session:
        return {
            "holder": holder,
            "balance": points.balance(session, holder),
            "ledger": points.ledger(session, holder),
            "rewards": [
                {"id": r.id, "name": r.name, "kind": r.kind, "cost": r.cost, "stock": r.stock}
                for r in points.rewards(session)
            ],
        }


def redeem(settings: Settings, token: str, reward_id: int, request_key: str) -> points.Redeemed:
    contact_id, _ = visitor(settings, token)
    with session_scope(settings.database_url) as session:
        return points.redeem(session, f"c:{contact_id}", reward_id, request_key)


def sharer_name(settings: Settings, sharer: codes.Sharer) -> str:
    with session_scope(settings.database_url) as session:
        if sharer.userid:
            rep = session.get(Rep, sharer.userid)
            return (rep.name if rep and rep.name else sharer.userid)[:20]
        if sharer.contact_id is None:  # known by their browser only: no name yet
            return "你的好友"
        contact = session.get(Contact, sharer.contact_id)
        return (contact.name if contact and contact.name else "你的好友")[:20]


def campaign_by_id(settings: Settings, campaign_id: int) -> Campaign | None:
    with session_scope(settings.database_url) as session:
        row = session.get(Campaign, campaign_id)
        if row is not None:
            session.expunge(row)
        return row
