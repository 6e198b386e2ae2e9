"""Visitors: a browser's first-party cookie is an ``h5_visitor`` identity of a contact, made on
first sight; OAuth (an ``openid``) or a follow later merges it with the person Yuchi knows.
Redis remembers cookie → contact so a page view does not ask the database; a first page view
makes no contact itself (see bot.campaigns.arrivals)."""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.contacts import identity
from bot.core import queue
from bot.core.config import Settings
from bot.core.models import Contact, Identity, utcnow

KIND = "h5_visitor"
CACHE_SECONDS = 3600
# The cache's value for a cookie first seen by a page view: its contact is made in the
# background (bot.campaigns.arrivals), which then caches "<contact>:<has openid>".
PENDING = "0:0"


def new_token() -> str:
    return secrets.token_urlsafe(18)


def valid_token(token: str | None) -> bool:
    return bool(token) and len(token) == 24 and token.replace("-", "").replace("_", "").isalnum()


def cache_key(token: str) -> str:
    return f"yuchi:h5:visitor:{token}"


def cached(settings: Settings, token: str) -> tuple[int, bool] | None:
    """(contact id, has an openid) from Redis, or None (also while the cookie is PENDING)."""
    raw = queue.get_redis(settings).get(cache_key(token))
    if raw is None or raw.decode() == PENDING:
        return None
    contact, _, openid = raw.decode().partition(":")
    return int(contact), openid == "1"


def remember(settings: Settings, token: str, contact_id: int, has_openid: bool) -> None:
    queue.get_redis(settings).set(
        cache_key(token), f"{contact_id}:{int(has_openid)}", ex=CACHE_SECONDS
    )


def contact_for(session: Session, token: str) -> int:
    """The contact behind this cookie, made now on first sight (in the caller's transaction)."""
    owner = identity.identity_owner(session, KIND, token)
    if owner is not None:
        return owner
    now = utcnow()
    contact = Contact(first_seen_at=now, last_seen_at=now, created_at=now, stage="subscriber")
    session.add(contact)
    session.flush()
    survivor, _ = identity.attach(session, contact.id, KIND, token)
    return survivor


def has_openid(session: Session, contact_id: int, appid: str) -> bool:
    t = Identity.__table__.c
    return (
        session.execute(
            sa.select(t.id).where(t.contact_id == contact_id, t.kind == "openid", t.app_id == appid)
        ).first()
        is not None
    )


def identify(
    session: Session, settings: Settings, token: str, openid: str, nickname: str | None = None
) -> int:
    """OAuth told us who this browser is: the cookie's contact and the openid's become one.
    Returns the surviving contact (not committed)."""
    cookie_contact = contact_for(session, token)
    keep, _ = identity.attach(session, cookie_contact, "openid", openid, settings.oa_appid)
    if nickname:
        contact = session.get(Contact, keep)
        if contact is not None and not contact.name:
            contact.name = nickname[:128]
    return keep
