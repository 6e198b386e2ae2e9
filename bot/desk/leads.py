""" "My leads": the rep's open leads (a manager's: the team's) by status, then score, hot ones
first, each with the reason it is hot; and a lead's own page (which customer, whether it is
this rep's to answer)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from bot.core.config import Settings
from bot.core.db import session_scope
from bot.core.models import Contact, LeadAssignment, utcnow
from bot.desk import sentences
from bot.desk.screen import rep_names
from bot.sales.access import staff, team_of, visible_contact
from bot.scoring.summary import summary

STATUS_ORDER = {"assigned": 0, "accepted": 1}  # waiting for an answer first
STATUS_LABELS = {"assigned": "待接受", "accepted": "跟进中"}
SHOWN = 200


def _why(trend: float, reasons: list) -> str:
    top = reasons[0].reason if reasons else ""
    if trend > 0:
        return f"近7天 +{trend:g} 分" + (f"：{top}" if top else "")
    return top or "分数达到线索门槛"


def my_leads(settings: Settings, userid: str) -> dict[str, Any] | None:
    """The leads this rep answers for; None when they are not on the staff."""
    now = utcnow()
    with session_scope(settings.database_url) as session:
        rep = staff(session, userid)
        if rep is None:
            return None
        team, names = team_of(session, rep), rep_names(session)
        la = LeadAssignment.__table__.c
        rows = session.execute(
            sa.select(LeadAssignment, Contact)
            .join(Contact, Contact.id == la.contact_id)
            .where(la.userid.in_(team), la.status.in_(tuple(STATUS_ORDER)))
            .order_by(la.id.desc())
            .limit(SHOWN)
        ).all()
        leads = []
        for lead, contact in rows:
            scored = summary(session, contact, now)
            leads.append(
                {
                    "id": lead.id,
                    "name": contact.name or f"客户 #{contact.id}",
                    "status": lead.status,
                    "status_label": STATUS_LABELS[lead.status],
                    "owner": names.get(lead.userid, lead.userid),
                    "mine": lead.userid == userid,
                    "score": scored.score,
                    "hot": scored.trend > 0,
                    "why": _why(scored.trend, scored.reasons),
                    "stage": sentences.STAGES.get(contact.stage, contact.stage),
                }
            )
    leads.sort(key=lambda x: (STATUS_ORDER[x["status"]], not x["hot"], -x["score"]))
    return {"manager": rep.role == "manager", "leads": leads, "rep": rep.name or rep.userid}


def lead_contact(settings: Settings, userid: str, lead_id: int) -> int | None:
    """The customer of this lead when the rep may see it, else None."""
    with session_scope(settings.database_url) as session:
        lead = session.get(LeadAssignment, lead_id)
        if lead is None:
            return None
        return visible_contact(session, userid, lead.contact_id)
