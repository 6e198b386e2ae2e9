"""What a rep does from the sidebar, each checked against the access rules first: open the
customer of the current chat, edit tags (synced to WeCom), write a note, change the stage,
hold or remove the customer in a journey (managers), accept or return a lead."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from bot.automation import lifecycle
from bot.contacts import record as events
from bot.core import queue, wechat
from bot.core.config import Settings
from bot.core.db import session_scope
from bot.core.models import LeadAssignment, LeadReturnReason
from bot.sales import handoff, returns
from bot.sales.access import staff, visible_contact
from bot.scoring import edits as scoring_edits
from bot.tagging import edits as tag_edits
from bot.wecom.sync import customer_for

# the stage a rep picks: (stored stage, whether a reason is required)
STAGE_MOVES = {"sql": ("sql", False), "won": ("customer", False), "lost": ("disqualified", True)}
JOURNEY_ACTIONS = ("pause", "resume", "remove")
# a return's outcome, as the rep reads it once the lead is back
RETURNED = {
    "nurture": "线索已退回：客户回到培育阶段，由自动化继续跟进。",
    "reassign": "线索已退回：将转给下一位销售跟进。",
    "disqualify": "线索已退回：客户已标记为已流失，不再发送营销消息。",
}


class Forbidden(Exception):
    """Not this rep's customer (or lead), or not a manager; unknown ids look the same."""


class Refused(Exception):
    """The request cannot be done as it stands; the message, in Chinese, says why."""


class Invalid(Refused):
    """A value the rep gave cannot be used (a time gone, or not a time); the message says why."""


def visible(session: Session, userid: str, contact_id: int) -> int:
    """The (surviving) contact id when this rep may see it; Forbidden otherwise."""
    cid = visible_contact(session, userid, contact_id)
    if cid is None:
        raise Forbidden(contact_id)
    return cid


def open_customer(settings: Settings, userid: str, external_userid: str) -> int:
    """The contact id of the chat's customer (created on the spot when new); Forbidden when
    not this rep's; Refused when WeCom does not know the external_userid."""
    try:
        cid = customer_for(settings, external_userid, userid)
    except wechat.PlatformError as exc:
        raise Refused(f"企业微信查不到这位客户（{exc.errcode}）") from None
    with session_scope(settings.database_url) as session:
        return visible(session, userid, cid)


def add_tag(settings: Settings, userid: str, contact_id: int, tag: str) -> bool:
    """True when the tag is new; the sync to WeCom's corp tags is queued."""
    with session_scope(settings.database_url) as session:
        cid = visible(session, userid, contact_id)
        return tag_edits.tag_contact(settings, session, cid, tag, by=userid)[1]


def remove_tag(settings: Settings, userid: str, contact_id: int, tag: str) -> bool:
    with session_scope(settings.database_url) as session:
        cid = visible(session, userid, contact_id)
        return tag_edits.untag_contact(settings, session, cid, tag, by=userid)


def add_note(settings: Settings, userid: str, contact_id: int, text: str, key: str) -> bool:
    """A note (follow-up record) on the timeline; ``key`` (the form's) makes a resend a no-op.
    True when stored now."""
    with session_scope(settings.database_url) as session:
        cid = visible(session, userid, contact_id)
        outbox_id = events.append(
            session,
            cid,
            "note.added",
            {"author": userid, "text": text},
            dedupe_key=f"note:{userid}:{key}",
            source="sidebar",
        )
    if outbox_id is not None:
        queue.kick_outbox(settings)
    return outbox_id is not None


def set_stage(settings: Settings, userid: str, contact_id: int, move: str, reason: str) -> str:
    """``move``: sql | won | lost (lost needs a reason); the stored stage."""
    if move not in STAGE_MOVES:
        raise Refused("阶段只能是 SQL、成交或流失")
    stage, needs_reason = STAGE_MOVES[move]
    if needs_reason and not reason:
        raise Refused("标记流失时请填写原因")
    with session_scope(settings.database_url) as session:
        cid = visible(session, userid, contact_id)
        scoring_edits.set_stage(settings, session, cid, stage, by=userid, note=reason or None)
    return stage


def journey_action(
    settings: Settings, userid: str, contact_id: int, journey_id: int, action: str
) -> dict[str, Any] | int:
    """A manager holds (pause), lets go on (resume) or removes the customer in one journey."""
    if action not in JOURNEY_ACTIONS:
        raise Refused("未知的操作")
    with session_scope(settings.database_url) as session:
        cid = visible(session, userid, contact_id)
        if staff(session, userid).role != "manager":
            raise Forbidden(contact_id)
        try:
            if action == "pause":
                return lifecycle.pause_contact(session, journey_id, cid)
            if action == "resume":
                return lifecycle.resume_contact(settings, session, journey_id, cid)
            return lifecycle.remove_contact(settings, session, journey_id, cid)
        except lifecycle.NotFound:
            raise Forbidden(contact_id) from None
        except lifecycle.Refused:
            raise Refused("客户不在这个旅程中，或已处于该状态") from None


def answer_lead(
    settings: Settings,
    userid: str,
    lead_id: int,
    accept: bool,
    note: str,
    reason: int | str | None = None,
) -> dict[str, Any]:
    """Accept or return (with a reason) one's own lead, as the rep, no API token: the lead's
    new status, and for a return the reason and what it did (its outcome)."""
    with session_scope(settings.database_url) as session:
        lead = session.get(LeadAssignment, lead_id)
        if lead is None or lead.userid != userid or staff(session, userid) is None:
            raise Forbidden(lead_id)
    if not accept and reason is None:
        raise Refused("请选择退回原因")
    try:
        if accept:
            return {"status": handoff.accept(settings, lead_id, userid, note).status}
        done = returns.return_lead(settings, lead_id, userid, reason, note)
    except returns.UnknownReason:
        raise Refused("没有这个退回原因") from None
    except returns.NoteRequired:
        raise Refused("这个退回原因需要填写说明") from None
    except handoff.LeadError:
        raise Refused("这条线索已经处理过了") from None
    with session_scope(settings.database_url) as session:
        why = session.get(LeadReturnReason, done.return_reason_id)
        outcome = why.outcome if why is not None else None
    return {
        "status": done.status,
        "reason": done.return_reason,
        "outcome": outcome,
        "message": RETURNED.get(outcome, "线索已退回。"),
    }
