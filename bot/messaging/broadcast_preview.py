"""What a broadcast would do if it were sent now, before anything is sent: how many go by
which route, how many are capped, over the monthly mass quota, in quiet hours or skipped.
Every figure comes from ``send_rules.decide`` — the rules delivery and the mass send apply —
over the same contact facts they read (``recipients.contacts``, the cap and quota counts)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from bot.core.config import Settings
from bot.core.models import Contact, utcnow
from bot.messaging import mass, recipients, send_rules
from bot.messaging.broadcasts import BroadcastRequest, audience_contact_ids, audience_select
from bot.messaging.outbox import policy

CHUNK = 5000  # contacts decided per round of reads
ROUTES = ("cs", "template", "mass", "hold", "fail")
NOT_SENT = ("capped", "quota", "quiet", "skip")


def preview(
    session: Session, settings: Settings, req: BroadcastRequest, now: datetime | None = None
) -> dict[str, Any]:
    now = now or utcnow()
    pol = policy(settings)
    outside, fallback = req.rows_policy()
    send = send_rules.Send(
        kind=req.kind,
        marketing=req.marketing,
        outside_window=outside,
        has_fallback=fallback is not None,
    )
    audience = req.stored_audience()
    ids = audience_contact_ids(session, audience)
    whole = audience_select(session, audience)
    counts = dict.fromkeys(ROUTES + NOT_SENT, 0)
    reasons: dict[str, int] = {}
    for n in range(0, len(ids), CHUNK):
        chunk = ids[n : n + CHUNK]
        # the audience's own SELECT over this id range: one join, not thousands of parameters
        part = whole.where(Contact.id.between(chunk[0], chunk[-1]))
        found = recipients.contacts(session, settings, part, lock=False)
        recent = (
            recipients.recent_marketing(session, part, [], now - pol.cap_window)
            if req.marketing
            else {}
        )
        month = (
            recipients.mass_this_month(session, part, send_rules.month_start(now, pol))
            if outside == "mass"
            else {}
        )
        for cid in chunk:
            if cid not in found:
                counts["skip"] += 1
                reasons["no such contact"] = reasons.get("no such contact", 0) + 1
                continue
            r = recipients.recipient(found[cid], recent.get(cid, 0), month.get(cid, 0))
            d = send_rules.decide(r, send, now, pol)
            counts[d.route] += 1
            if d.route == "skip" and d.reason:
                reasons[d.reason] = reasons.get(d.reason, 0) + 1
    massed = counts["mass"]
    lone = massed == 1  # a mass send needs 2 openids: held (mass.run does the same)
    if lone:
        counts["mass"], counts["hold"] = 0, counts["hold"] + 1
    target = None
    if counts["mass"]:
        tag_id = mass.tag_target(session, req.stored_audience(), counts["mass"] == len(ids))
        calls = 1 if tag_id is not None else len(mass.chunks(list(range(counts["mass"]))))
        target = {
            "by": "tag" if tag_id is not None else "openids",
            "tag_id": tag_id,
            "calls": calls,
        }
    return {
        "total": len(ids),
        "routes": {k: counts[k] for k in ROUTES},
        "not_sent": {
            "capped": counts["capped"],
            "quota": counts["quota"],
            "quiet": counts["quiet"],
            "skipped": counts["skip"],
        },
        "skipped_reasons": reasons,
        "mass": target,
        "lone_mass_held": lone,
        "quiet_until": send_rules.quiet_until(now, pol).isoformat()
        if counts["quiet"] and send_rules.quiet_until(now, pol)
        else None,
        "mass_monthly_quota": pol.mass_quota,
        "at": now.isoformat(),
    }
