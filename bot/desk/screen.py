"""What the sidebar shows for one customer: the header (who, stage, owner, score with its trend
and reasons, source), tags, the timeline in Chinese (a page of it, by kind), the journeys they
are in, notes, and the open lead. ``None`` when the rep may not see the customer."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.contacts import timeline as store
from bot.core.config import Settings
from bot.core.db import session_scope
from bot.core.models import (
    Channel,
    Contact,
    ContactTag,
    Enrollment,
    Event,
    Journey,
    LeadAssignment,
    Rep,
    utcnow,
)
from bot.desk import followups, sentences
from bot.sales import returns
from bot.sales.access import staff, visible_contact
from bot.scoring.summary import summary

PAGE = 20
NOTES_SHOWN = 5
OPEN_ENROLLMENTS = ("active", "waiting", "asking", "paused")
STAGE_CHOICES = ("lead", "mql", "sql", "customer", "disqualified")


def rep_names(session: Session) -> dict[str, str]:
    return {u: n or u for u, n in session.execute(sa.select(Rep.userid, Rep.name)).all()}


def _filter(kind: str | None) -> dict[str, Any]:
    if kind is None:
        return {}
    if kind == "other":
        known = [t for t, (k, _) in sentences.TEMPLATES.items() if k != "other"]
        return {"other_than": known}
    return {"types": sentences.types_of(kind)}


def timeline_page(
    settings: Settings,
    session: Session,
    contact_id: int,
    kind: str | None,
    before: int | None,
    now: datetime,
    names: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One page of the timeline, each event as {id, kind, text, when, at}."""
    rows, more = store.timeline(session, contact_id, PAGE, before, **_filter(kind))
    names = rep_names(session) if names is None else names
    journey_ids = {sentences.journey_of(r["properties"]) for r in rows} - {None}
    journeys = dict(
        session.execute(
            sa.select(Journey.id, Journey.name).where(Journey.id.in_(journey_ids))
        ).all()
    )
    zone, items = ZoneInfo(settings.timezone), []
    for r in rows:
        props = dict(r["properties"])
        if sentences.journey_of(props) in journeys:
            props["journey_name"] = journeys[sentences.journey_of(props)]
        kind_of, text = sentences.sentence(r["type"], props, names, zone)
        at = datetime.fromisoformat(r["occurred_at"])
        items.append(
            {
                "id": r["id"],
                "type": r["type"],
                "kind": kind_of,
                "text": text,
                "when": sentences.when(at, now, zone),
                "at": r["occurred_at"],
            }
        )
    return {"events": items, "next_before": more, "kind": kind}


def _source(session: Session, contact: Contact) -> dict[str, str | None]:
    fields = contact.fields or {}
    channel = session.get(Channel, contact.source_channel_id) if contact.source_channel_id else None
    return {
        "channel": channel.name if channel else None,
        "campaign": fields.get("campaign"),
        "referrer": fields.get("referrer"),
    }


def _header(session: Session, contact: Contact, now: datetime) -> dict[str, Any]:
    fields = contact.fields or {}
    scored = summary(session, contact, now)
    owner = session.get(Rep, contact.owner_userid) if contact.owner_userid else None
    return {
        "id": contact.id,
        "name": contact.name or f"客户 #{contact.id}",
        "avatar": fields.get("avatar"),
        "company": fields.get("company") or fields.get("corp_name"),
        "stage": contact.stage,
        "stage_label": sentences.STAGES.get(contact.stage, contact.stage),
        "owner": (owner.name or owner.userid) if owner else contact.owner_userid,
        "score": scored.score,
        "trend": scored.trend,
        "reasons": [
            {"reason": r.reason, "points": r.points, "times": r.times} for r in scored.reasons
        ],
        "source": _source(session, contact),
    }


def _journeys(session: Session, settings: Settings, cid: int, now: datetime) -> list[dict]:
    en = Enrollment.__table__.c
    rows = session.execute(
        sa.select(Enrollment, Journey.name)
        .join(Journey, Journey.id == en.journey_id)
        .where(en.contact_id == cid, en.status.in_(OPEN_ENROLLMENTS))
        .order_by(en.id)
    ).all()
    return [
        {
            "journey_id": e.journey_id,
            "name": name,
            "status": e.status,
            "step": e.step,
            "wake": sentences.until(e.wake_at, now, ZoneInfo(settings.timezone))
            if e.wake_at
            else None,
        }
        for e, name in rows
    ]


def _notes(session: Session, cid: int, names: dict[str, str], settings: Settings, now: datetime):
    rows = session.execute(
        sa.select(Event.properties, Event.occurred_at)
        .where(Event.contact_id == cid, Event.type == "note.added")
        .order_by(Event.occurred_at.desc(), Event.id.desc())
        .limit(NOTES_SHOWN)
    ).all()
    return [
        {
            "author": names.get(p.get("author"), p.get("author")),
            "text": p.get("text", ""),
            "when": sentences.when(at, now, ZoneInfo(settings.timezone)),
        }
        for p, at in rows
    ]


def _lead(session: Session, cid: int, userid: str) -> dict[str, Any] | None:
    la = LeadAssignment.__table__.c
    row = session.execute(
        sa.select(LeadAssignment)
        .where(la.contact_id == cid, la.status.in_(("assigned", "accepted")))
        .order_by(la.id.desc())
        .limit(1)
    ).scalar()
    if row is None:
        return None
    return {"id": row.id, "status": row.status, "mine": row.userid == userid, "owner": row.userid}


def contact_screen(
    settings: Settings, userid: str, contact_id: int, kind: str | None, before: int | None
) -> dict[str, Any] | None:
    """The first screen (or a later timeline page) for this rep; None: not theirs to see."""
    now = utcnow()
    with session_scope(settings.database_url) as session:
        cid = visible_contact(session, userid, contact_id)
        if cid is None:
            return None
        rep = staff(session, userid)
        contact = session.get(Contact, cid)
        names = rep_names(session)
        tags = session.execute(
            sa.select(ContactTag.tag, ContactTag.source)
            .where(ContactTag.contact_id == cid)
            .order_by(ContactTag.id)
        ).all()
        lead = _lead(session, cid, userid)
        answerable = lead is not None and lead["mine"] and lead["status"] == "assigned"
        reasons = returns.list_reasons(session, active_only=True) if answerable else []
        return {
            "rep": {"userid": rep.userid, "name": rep.name or rep.userid, "role": rep.role},
            "contact": _header(session, contact, now),
            "tags": [{"tag": t, "source": s} for t, s in tags],
            "timeline": timeline_page(settings, session, cid, kind, before, now, names),
            "journeys": _journeys(session, settings, cid, now),
            "notes": _notes(session, cid, names, settings, now),
            "lead": lead,
            "return_reasons": [returns.reason_json(r) for r in reasons],
            "reminder": followups.pending(settings, session, cid, userid),
            "due_choices": followups.due_choices(settings),
            "return_outcomes": sentences.RETURN_OUTCOMES,
            "kinds": sentences.KINDS,
            "stages": {s: sentences.STAGES[s] for s in STAGE_CHOICES},
        }


def timeline_only(
    settings: Settings, userid: str, contact_id: int, kind: str | None, before: int | None
) -> dict[str, Any] | None:
    with session_scope(settings.database_url) as session:
        cid = visible_contact(session, userid, contact_id)
        if cid is None:
            return None
        return timeline_page(settings, session, cid, kind, before, utcnow())
