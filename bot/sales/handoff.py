"""Handing leads to sales. When a contact becomes an MQL (a ``contact.stage_changed`` event to
``mql``) it gets an owner: the rep who already has them as a WeCom contact; else the employee whose campaign link
brought them (the root of their share chain); else round-robin
among active reps with room (fewest open leads, then longest since their last lead). The rep is
told by a WeCom app message (who, score, why — the top ledger lines — and a link); they accept
or return the lead (with a reason: bot.sales.returns); an unanswered lead escalates to the next rep after a while; a rep who
leaves (离职继承) hands their contacts on. Every step is an event on the contact's timeline.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.campaigns import chain
from bot.contacts import record as events
from bot.core import queue
from bot.core.config import Settings
from bot.core.db import session_scope
from bot.core.models import Contact, FollowUser, LeadAssignment, Rep, utcnow
from bot.messaging import outbox as messaging
from bot.messaging.payloads import SendRequest
from bot.sales import transfers
from bot.scoring.explain import explain
from bot.scoring.rules import STAGE_LABELS

if TYPE_CHECKING:
    from bot.core.context import Context

log = logging.getLogger(__name__)
ESCALATE_AFTER = timedelta(hours=4)
OPEN = ("assigned", "accepted")


class LeadError(Exception):
    """A request about a lead that cannot be done (wrong rep, already answered…)."""


def cooldown(settings: Settings) -> timedelta:
    """How long a rep who returned a contact's lead is not handed that contact again."""
    return timedelta(days=settings.lead_cooldown_days)


def recently_returned(session: Session, contact_id: int, since: datetime) -> set[str]:
    """The reps who returned this contact's lead since ``since``."""
    t = LeadAssignment.__table__.c
    return set(
        session.execute(
            sa.select(t.userid).where(
                t.contact_id == contact_id, t.status == "returned", t.responded_at >= since
            )
        ).scalars()
    )


def on_event(ctx: Context) -> None:
    ev = ctx.event
    if ev.type == "contact.stage_changed" and ev.properties.get("to") == "mql":
        assignment = assign(
            ctx.session, ev.contact_id, "became an MQL", cooldown=cooldown(ctx.settings)
        )
        if assignment is not None:
            settings, aid = ctx.settings, assignment.id
            ctx.after_commit.append(lambda: notify(settings, aid))


def _open_leads(session: Session) -> dict[str, int]:
    t = LeadAssignment.__table__.c
    rows = session.execute(
        sa.select(t.userid, sa.func.count()).where(t.status.in_(OPEN)).group_by(t.userid)
    )
    return dict(rows.all())


def _last_assigned(session: Session) -> dict[str, datetime]:
    t = LeadAssignment.__table__.c
    return dict(
        session.execute(sa.select(t.userid, sa.func.max(t.assigned_at)).group_by(t.userid)).all()
    )


def pick_rep(
    session: Session, contact_id: int, exclude: set[str] = frozenset()
) -> tuple[str, str] | None:
    """(userid, why) for this contact, or None when no active rep has room."""
    reps = {
        r.userid: r for r in session.execute(sa.select(Rep).where(Rep.active.is_(True))).scalars()
    }
    open_leads = _open_leads(session)
    friends = session.execute(
        sa.select(FollowUser.userid)
        .where(FollowUser.contact_id == contact_id, FollowUser.status == "active")
        .order_by(FollowUser.added_at.desc())
    ).scalars()
    for userid in friends:
        if userid in reps and userid not in exclude:
            return userid, "already their WeCom contact"
    referrer = chain.referring_employee(session, contact_id)
    if referrer in reps and referrer not in exclude:
        return referrer, "their campaign link brought them"
    candidates = [
        r
        for r in reps.values()
        if r.userid not in exclude and open_leads.get(r.userid, 0) < r.capacity
    ]
    if not candidates:
        return None
    last = _last_assigned(session)
    epoch = datetime.min.replace(tzinfo=utcnow().tzinfo)
    best = min(
        candidates, key=lambda r: (open_leads.get(r.userid, 0), last.get(r.userid, epoch), r.userid)
    )
    return best.userid, "round robin"


def assign(
    session: Session,
    contact_id: int,
    reason: str,
    exclude: set[str] = frozenset(),
    now: datetime | None = None,
    cooldown: timedelta = timedelta(0),
) -> LeadAssignment | None:
    """Give the contact an owner (unless they have an open lead already); reps who returned
    this contact within ``cooldown`` are left out."""
    now = now or utcnow()
    if cooldown:
        exclude = set(exclude) | recently_returned(session, contact_id, now - cooldown)
    t = LeadAssignment.__table__.c
    existing = session.execute(
        sa.select(LeadAssignment).where(t.contact_id == contact_id, t.status.in_(OPEN))
    ).scalar()
    if existing is not None:
        return None
    picked = pick_rep(session, contact_id, exclude)
    if picked is None:
        log.warning("no active rep with room for contact %s", contact_id)
        events.append(
            session, contact_id, "lead.unassigned", {"reason": "no active rep with room"}, None
        )
        return None
    userid, why = picked
    row = LeadAssignment(
        contact_id=contact_id,
        userid=userid,
        reason=f"{reason}; {why}",
        assigned_at=now,
        escalate_at=now + ESCALATE_AFTER,
    )
    session.add(row)
    contact = session.get(Contact, contact_id)
    contact.owner_userid = userid
    session.add(contact)
    session.flush()
    events.append(
        session,
        contact_id,
        "lead.assigned",
        {"assignment_id": row.id, "userid": userid, "why": why},
        dedupe_key=f"lead:{row.id}:assigned",
    )
    return row


def notify(settings: Settings, assignment_id: int) -> int | None:
    """The rep's WeCom app message: who, score, why, and a link. Returns the message id."""
    with session_scope(settings.database_url) as session:
        a = session.get(LeadAssignment, assignment_id)
        contact = session.get(Contact, a.contact_id)
        explained = explain(session, a.contact_id, utcnow()) or {
            "total": contact.score,
            "lines": [],
        }
        top = sorted(explained["lines"], key=lambda ln: -abs(ln.get("points", 0)))[:3]
        why = "；".join(
            f"{ln.get('reason') or ln.get('rule_id')} {ln.get('points'):+g}" for ln in top
        )
        name = contact.name or f"客户 #{contact.id}"
        stage = STAGE_LABELS.get(contact.stage, contact.stage)
        userid = a.userid
    description = (
        f'<div class="gray">{name} · 分数 {explained["total"]:g} · 阶段 {stage}</div>'
        f'<div class="normal">{why or "得分达到 MQL 门槛"}</div>'
        f'<div class="highlight">请在 {int(ESCALATE_AFTER.total_seconds() // 3600)} 小时内接受或退回</div>'
    )
    req = SendRequest.model_validate(
        {
            "kind": "wecom_textcard",
            "to_user": [userid],
            "payload": {
                "title": f"新线索：{name}",
                "description": description[:512],
                "url": f"{settings.public_url}/sidebar/leads/{a.id}",
                "btntxt": "查看",
            },
            "idempotency_key": f"lead-notify-{assignment_id}",
        }
    )
    row, _ = messaging.create(settings, req)
    return row.id


def lock_open_lead(session: Session, lead_id: int, userid: str) -> LeadAssignment:
    """The lead, locked, if it is ``userid``'s and still unanswered; LeadError otherwise."""
    a = session.execute(
        sa.select(LeadAssignment).where(LeadAssignment.id == lead_id).with_for_update()
    ).scalar()
    if a is None:
        raise LeadError(f"no lead {lead_id}")
    if a.userid != userid:
        raise LeadError(f"lead {lead_id} belongs to {a.userid}, not {userid}")
    if a.status != "assigned":
        raise LeadError(f"lead {lead_id} is already {a.status}")
    return a


def accept(settings: Settings, lead_id: int, userid: str, note: str = "") -> LeadAssignment:
    """The rep accepts the lead. (Returning one takes a reason: bot.sales.returns.)"""
    with session_scope(settings.database_url) as session:
        a = lock_open_lead(session, lead_id, userid)
        a.status, a.responded_at = "accepted", utcnow()
        session.add(a)
        session.flush()
        events.append(
            session,
            a.contact_id,
            "lead.accepted",
            {"assignment_id": a.id, "userid": userid, "note": note},
            dedupe_key=f"lead:{a.id}:accepted",
        )
        result = a
    queue.kick_outbox(settings)
    return result


def escalate_due(settings: Settings, now: datetime | None = None) -> int:
    """Leads nobody answered in time go to the next rep (the sweeper calls this)."""
    now = now or utcnow()
    moved: list[int] = []
    with session_scope(settings.database_url) as session:
        t = LeadAssignment.__table__.c
        due = list(
            session.execute(
                sa.select(LeadAssignment)
                .where(t.status == "assigned", t.escalate_at <= now)
                .with_for_update()
            ).scalars()
        )
        for a in due:
            a.status = "escalated"
            session.add(a)
            session.flush()
            events.append(
                session,
                a.contact_id,
                "lead.escalated",
                {"assignment_id": a.id, "userid": a.userid},
                f"lead:{a.id}:escalated",
            )
            nxt = assign(
                session,
                a.contact_id,
                f"escalated from {a.userid}",
                exclude={a.userid},
                now=now,
                cooldown=cooldown(settings),
            )
            if nxt is not None:
                moved.append(nxt.id)
    for aid in moved:
        notify(settings, aid)
    if due:
        queue.kick_outbox(settings)
    return len(due)


def _inherit(
    settings: Settings, session: Session, contact: Contact, userid: str, to_userid: str | None
) -> LeadAssignment | None:
    """The departed rep's contact and open leads go to ``to_userid`` (else ``pick_rep``'s
    choice); the new assignment, if any."""
    t = LeadAssignment.__table__.c
    for a in session.execute(
        sa.select(LeadAssignment).where(t.contact_id == contact.id, t.status.in_(OPEN))
    ).scalars():
        a.status = "reassigned"
        session.add(a)
    session.flush()
    why = f"inherited from {userid}"
    if to_userid is None:
        return assign(session, contact.id, why, exclude={userid}, cooldown=cooldown(settings))
    new = LeadAssignment(
        contact_id=contact.id,
        userid=to_userid,
        reason=why,
        escalate_at=utcnow() + ESCALATE_AFTER,
    )
    session.add(new)
    contact.owner_userid = to_userid
    session.add(contact)
    session.flush()
    return new


def rep_leaves(settings: Settings, userid: str, to_userid: str | None = None) -> dict[str, Any]:
    """离职继承: mark the rep inactive and move their contacts and open leads to ``to_userid``
    (or, one by one, to whoever ``pick_rep`` chooses), recorded on every contact moved; then
    ask WeCom to hand their customers on (``transfers``: the outcome per customer)."""
    moved: list[tuple[int, str]] = []
    notices: list[int] = []
    with session_scope(settings.database_url) as session:
        rep = session.get(Rep, userid)
        if rep is None:
            raise LeadError(f"no rep {userid}")
        if to_userid is not None:
            heir = session.get(Rep, to_userid)
            if heir is None or not heir.active or to_userid == userid:
                raise LeadError(f"{to_userid} is not an active rep who can take over")
        rep.active, rep.left_at = False, utcnow()
        session.add(rep)
        session.flush()
        owned = list(
            session.execute(sa.select(Contact).where(Contact.owner_userid == userid)).scalars()
        )
        for contact in owned:
            new = _inherit(settings, session, contact, userid, to_userid)
            heir_id = new.userid if new else None
            if new is not None:
                notices.append(new.id)
            events.append(
                session,
                contact.id,
                "lead.reassigned",
                {"from": userid, "to": heir_id},
                dedupe_key=f"leave:{userid}:{contact.id}:{rep.left_at.timestamp()}",
            )
            moved.append((contact.id, heir_id or ""))
    for aid in notices:
        notify(settings, aid)
    queue.kick_outbox(settings)
    return {
        "userid": userid,
        "moved": [{"contact_id": c, "to": to} for c, to in moved],
        "transfers": _hand_on_in_wecom(settings, userid, moved, to_userid),
    }


def _hand_on_in_wecom(
    settings: Settings, userid: str, moved: list[tuple[int, str]], to_userid: str | None
) -> list[dict[str, Any]] | dict[str, str]:
    """离职继承 in WeCom: the departed rep's customers follow their contacts' new owners (all
    of them to ``to_userid`` when one heir was named)."""
    heirs = {c: to for c, to in moved if to}
    if to_userid is not None:
        with session_scope(settings.database_url) as session:
            for contact_id, _ in transfers.customers_of(session, userid):
                heirs.setdefault(contact_id, to_userid)
    if not heirs:
        return []
    try:
        return transfers.resigned_customers(settings, userid, heirs)
    except transfers.TransferUnavailable as exc:
        log.warning("离职继承 of %s not asked for: %s", userid, exc)
        return {"error": f"WeCom unreachable: {exc}"}


def lead_json(a: LeadAssignment, contact: Contact | None) -> dict[str, Any]:
    return {
        "id": a.id,
        "contact_id": a.contact_id,
        "contact_name": contact.name if contact else None,
        "score": round(contact.score, 2) if contact else None,
        "stage": contact.stage if contact else None,
        "owner": a.userid,
        "status": a.status,
        "reason": a.reason,
        "assigned_at": a.assigned_at.isoformat(),
        "responded_at": a.responded_at.isoformat() if a.responded_at else None,
        "escalate_at": a.escalate_at.isoformat() if a.escalate_at else None,
        "return_reason": a.return_reason,
        "return_note": a.return_note,
    }


def list_leads(
    session: Session, owner: str | None, status: str | None, limit: int
) -> list[dict[str, Any]]:
    t = LeadAssignment.__table__.c
    query = sa.select(LeadAssignment).order_by(t.id.desc()).limit(limit)
    if owner:
        query = query.where(t.userid == owner)
    if status:
        query = query.where(t.status == status)
    rows = list(session.execute(query).scalars())
    people = {
        c.id: c
        for c in session.execute(
            sa.select(Contact).where(Contact.id.in_({r.contact_id for r in rows}))
        ).scalars()
    }
    return [lead_json(r, people.get(r.contact_id)) for r in rows]


# --- the staff directory as the API shows and edits it ----------------------------------------


def rep_json(r: Rep) -> dict[str, Any]:
    return {
        "userid": r.userid,
        "name": r.name,
        "active": r.active,
        "capacity": r.capacity,
        "role": r.role,
        "team": r.team,
        "left_at": r.left_at.isoformat() if r.left_at else None,
    }


def list_reps(session: Session) -> list[Rep]:
    return list(session.execute(sa.select(Rep).order_by(Rep.userid)).scalars())


def change_rep(session: Session, userid: str, changes: dict[str, Any]) -> Rep | None:
    """Set a rep's ``capacity`` (open leads they can take), pause them (``active`` false),
    their ``role`` (rep | manager) or ``team``, and commit; None for an unknown rep. A missing
    or None value leaves that setting as it is."""
    rep = session.get(Rep, userid)
    if rep is None:
        return None
    for name in ("capacity", "active", "role", "team"):
        if changes.get(name) is not None:
            setattr(rep, name, changes[name])
    session.add(rep)
    session.commit()
    return rep
