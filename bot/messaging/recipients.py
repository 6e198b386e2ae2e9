"""What the send rules read about the people a message goes to and about the message: the
contacts' facts (locked in id order for a send, only read for a preview), the marketing
messages and mass sends each got lately. One round trip each, for any number of contacts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.core.config import Settings
from bot.core.models import Contact, Identity, Message
from bot.messaging import send_rules

Ids = list[int] | sa.Select  # contact ids, or a SELECT of them (a preview's audience)


def _among(column: Any, ids: Ids) -> Any:
    return column.in_(ids if isinstance(ids, sa.Select) else sorted(set(ids)))


def recent_marketing(
    session: Session, contact_ids: Ids, exclude: list[int], since: datetime
) -> dict[int, int]:
    """Marketing messages per contact sent since ``since`` or on their way (claimed or being
    sent), not counting the rows in ``exclude``."""
    t = Message.__table__.c
    rows = session.execute(
        sa.select(t.contact_id, sa.func.count())
        .where(
            _among(t.contact_id, contact_ids),
            t.marketing.is_(True),
            t.id.not_in(exclude) if exclude else sa.true(),
            sa.or_(
                sa.and_(t.status.in_(("sent", "delivered")), t.sent_at >= since),
                sa.and_(t.status.in_(("sending", "claimed")), t.updated_at >= since),
            ),
        )
        .group_by(t.contact_id)
    )
    return dict(rows.all())


def mass_this_month(session: Session, contact_ids: Ids, since: datetime) -> dict[int, int]:
    """Mass messages per contact sent (or being sent) since ``since`` (the month's start):
    what the monthly mass-send quota counts."""
    t = Message.__table__.c
    rows = session.execute(
        sa.select(t.contact_id, sa.func.count())
        .where(
            _among(t.contact_id, contact_ids),
            t.sent_kind == "mass",
            sa.or_(
                sa.and_(t.status.in_(("sent", "delivered")), t.sent_at >= since),
                sa.and_(t.status == "sending", t.updated_at >= since),
            ),
        )
        .group_by(t.contact_id)
    )
    return dict(rows.all())


def contacts(
    session: Session, settings: Settings, contact_ids: Ids, lock: bool = True
) -> dict[int, Any]:
    """The contacts (locked, in id order: one send decision at a time per contact, for the
    cap; ``lock=False``: only read, for a preview) with their openid, in one round trip."""
    c, i = Contact.__table__, Identity.__table__
    query = (
        sa.select(
            c.c.id, c.c.subscribed, c.c.stage, c.c.last_interaction_at, i.c.value.label("openid")
        )
        .select_from(
            c.outerjoin(
                i,
                sa.and_(
                    i.c.contact_id == c.c.id, i.c.kind == "openid", i.c.app_id == settings.oa_appid
                ),
            )
        )
        .where(_among(c.c.id, contact_ids))
        .order_by(c.c.id, i.c.id)
    )
    rows = session.execute(query.with_for_update(of=c) if lock else query)
    found: dict[int, Any] = {}
    for row in rows:
        found.setdefault(row.id, row)
    return found


def recipient(contact: Any, recent: int = 0, mass: int = 0) -> send_rules.Recipient:
    """The rules' view of a row from ``contacts``."""
    return send_rules.Recipient(
        subscribed=bool(contact.subscribed),
        stage=contact.stage,
        has_openid=contact.openid is not None,
        last_interaction=contact.last_interaction_at,
        recent_marketing=recent,
        mass_this_month=mass,
    )


def send_of(m: Message) -> send_rules.Send:
    return send_rules.Send(
        kind=m.kind,
        marketing=m.marketing,
        outside_window=m.outside_window,
        has_fallback=bool(m.fallback),
        exempt=m.reply_to_event_id is not None,
        channel=m.channel,
    )
