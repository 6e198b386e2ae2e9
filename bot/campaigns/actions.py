"""What visitors do on a campaign page, each an ``h5.*`` event on their timeline (through
bot.contacts.record, so tag rules, scoring and journeys see it) with the campaign, the sharer
and the depth: visits (once per person and campaign; repeat views only count in Redis),
shares, forms, downloads, sign-ups, check-ins. A first view's contact, chain node and visit
are made in the background (bot.campaigns.arrivals)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.campaigns import arrivals, chain, codes, points, store, visitors
from bot.contacts import record
from bot.core import queue
from bot.core.config import Settings
from bot.core.db import session_scope
from bot.core.models import Campaign, Contact, Event, utcnow
from bot.scoring.rules import DIRECT_POINTS
from bot.tagging import tags

log = logging.getLogger(__name__)
CAMPAIGN_CACHE_SECONDS = 5.0
STEP_NAMES = {
    "h5.visit": "访问",
    "h5.share": "分享",
    "h5.form_submitted": "提交表单",
    "h5.download": "下载资料",
    "h5.signup": "报名",
    "h5.checkin": "签到",
    "h5.follow": "扫码关注",
}
SEEN_SECONDS = 30 * 86400
_campaigns: dict[tuple[str, str], tuple[float, Campaign | None]] = {}


def campaign(settings: Settings, slug: str) -> Campaign | None:
    """The campaign by slug, kept a few seconds per process (a page view reads no table)."""
    key = (settings.database_url, slug)
    hit = _campaigns.get(key)
    if hit is not None and time.monotonic() < hit[0]:
        return hit[1]
    with session_scope(settings.database_url) as session:
        row = store.by_slug(session, slug)
        if row is not None:
            session.expunge(row)
    _campaigns[key] = (time.monotonic() + CAMPAIGN_CACHE_SECONDS, row)
    return row


def forget_campaigns() -> None:
    _campaigns.clear()


def status(camp: Campaign, now: datetime | None = None) -> str:
    """``open``, ``upcoming`` (before ``starts_at``) or ``ended`` (after ``ends_at``)."""
    now = now or utcnow()
    starts, ends = camp.spec.get("starts_at"), camp.spec.get("ends_at")
    if starts and now < datetime.fromisoformat(starts):
        return "upcoming"
    if ends and now >= datetime.fromisoformat(ends):
        return "ended"
    return "open"


def sharer_from(settings: Settings, code: str | None) -> codes.Sharer | None:
    """The sharer a referral code names; a tampered or forged code is logged and ignored."""
    if not code:
        return None
    sharer = codes.read_referral(settings.secret_key, code)
    if sharer is None:
        log.warning("referral code refused (tampered or forged): %r", code[:80])
        queue.get_redis(settings).incr("yuchi:h5:refused_codes")
    return sharer


def properties(camp: Campaign, node: chain.Node, session: Session, **extra: Any) -> dict:
    return {
        "campaign_id": camp.id,
        "campaign": camp.slug,
        "sharer": chain.holder_of(node, session),
        "depth": node.depth,
        **extra,
    }


def emit(
    session: Session, camp: Campaign, contact_id: int, type_: str, props: dict, key: str | None
) -> bool:
    """One h5 event for the pipeline, in the caller's transaction; False if ``key`` is stored.
    When the campaign's ``score_events`` give this event points, a direct-points event goes
    with it (the score ledger explains it as this campaign's)."""
    new = record.append(session, contact_id, type_, props, key, source="h5") is not None
    points = (camp.spec.get("score_events") or {}).get(type_)
    if new and points:
        reason = f"活动「{camp.title}」{STEP_NAMES.get(type_, type_)}"
        record.append(
            session,
            contact_id,
            DIRECT_POINTS,
            {"points": points, "reason": reason, "campaign_id": camp.id},
            f"{key}:points" if key else None,
            source="h5",
        )
    return new


def kick(settings: Settings, contact_id: int) -> None:
    queue.kick_outbox(settings, contact_id=contact_id)


@dataclass
class View:
    campaign: Campaign
    contact_id: int | None  # None: a browser whose contact the background path makes
    has_openid: bool
    share_code: str
    first: bool = False


def visitor(settings: Settings, token: str) -> tuple[int, bool]:
    """(contact id, has an openid) for a cookie, from Redis or made now."""
    hit = visitors.cached(settings, token)
    if hit is not None:
        return hit
    with session_scope(settings.database_url) as session:
        contact_id = visitors.contact_for(session, token)
        found = visitors.has_openid(session, contact_id, settings.oa_appid)
    visitors.remember(settings, token, contact_id, found)
    return contact_id, found


def own_code(settings: Settings, campaign_id: int, contact_id: int) -> str:
    """A contact's own referral code: the link they share onward."""
    return codes.referral_code(
        settings.secret_key, codes.Sharer(campaign_id, contact_id=contact_id)
    )


def visitor_code(settings: Settings, campaign_id: int, token: str) -> str:
    """A browser's own referral code, good before it is a contact (see bot.campaigns.arrivals)."""
    ref = codes.visitor_ref(settings.secret_key, token)
    return codes.referral_code(settings.secret_key, codes.Sharer(campaign_id, visitor=ref))


def seen_key(campaign_id: int, who: int | str) -> str:
    """Redis' claim on a person's (or a not yet known browser's: ``t<cookie>``) first view."""
    return f"yuchi:h5:seen:{campaign_id}:{who}"


# One round trip for a page view. Inside WeChat (ARGV[1] = 1) a cookie not cached answers {}
# (the caller looks it up), one without an openid {v, -1} ("sign in first"). Elsewhere a
# cookie not cached is marked PENDING (its contact is the background's to make). Then the view
# is counted and the first view claimed, by contact or (PENDING) by cookie: {v, 1 | 0}.
_VIEW = """
local v = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if not v or v == ARGV[6] then return {} end
  if string.sub(v, -2) == ':0' then return {v, -1} end
elseif not v then
  v = ARGV[6]
  redis.call('SET', KEYS[1], v, 'EX', tonumber(ARGV[5]))
end
redis.call('INCR', KEYS[2])
local who = string.match(v, '^(%d+):')
if v == ARGV[6] then who = 't' .. ARGV[4] end
local first = redis.call('SET', ARGV[2] .. who, 1, 'NX', 'EX', tonumber(ARGV[3]))
if first then return {v, 1} end
return {v, 0}
"""
_scripts: dict[int, Any] = {}


def _view_script(conn: Any) -> Any:
    script = _scripts.get(id(conn))
    if script is None:
        script = _scripts[id(conn)] = conn.register_script(_VIEW)
    return script


def view(
    settings: Settings,
    camp: Campaign,
    token: str,
    code: str | None,
    want_openid: bool = False,
    new: bool = False,
) -> View | None:
    """A page view: counted in Redis; a person's first view of the campaign is also an
    arrival (one write: see bot.campaigns.arrivals). None when ``want_openid`` and the visitor
    has none yet (the page sends them through OAuth first; nothing is counted). ``new``: the
    cookie was made for this response."""
    if new and not want_openid:
        return _new_browser(settings, camp, token, code)
    conn = queue.get_redis(settings)
    keys = [visitors.cache_key(token), f"yuchi:h5:views:{camp.id}"]
    args = [
        int(want_openid),
        seen_key(camp.id, ""),
        SEEN_SECONDS,
        token,
        visitors.CACHE_SECONDS,
        visitors.PENDING,
    ]
    answer = _view_script(conn)(keys=keys, args=args)
    if not answer:
        visitor(settings, token)  # made and cached now; they sign in before the visit counts
        answer = _view_script(conn)(keys=keys, args=args)
    if answer[1] == -1:
        return None
    cached = answer[0].decode()
    contact_id = None if cached == visitors.PENDING else int(cached.partition(":")[0])
    if answer[1] == 1:
        try:
            arrivals.record_arrival(settings, camp, token, code)
        except Exception:
            conn.delete(seen_key(camp.id, contact_id or f"t{token}"))  # the next view retries
            raise
    share_code = visitor_code(settings, camp.id, token)
    return View(camp, contact_id, cached.endswith(":1"), share_code, answer[1] == 1)


def _new_browser(settings: Settings, camp: Campaign, token: str, code: str | None) -> View:
    """The view of a cookie made just now: nothing in Redis can know it, so its first view
    needs no claim before the write (the arrival's dedupe key guards the database). The
    arrival is written first; then one round trip counts the view, claims the first view for
    the cookie's next request and kicks the drain. (The cookie is not marked PENDING here: the
    drain may have cached its contact already; its next view marks it if not.)"""
    needs_kick = arrivals.record_arrival(settings, camp, token, code, kick=False)
    part = queue.drain_part(settings, arrivals.ARRIVALS_DRAIN)
    try:
        with queue.get_redis(settings).pipeline(transaction=False) as pipe:
            pipe.incr(f"yuchi:h5:views:{camp.id}")
            pipe.set(seen_key(camp.id, f"t{token}"), 1, ex=SEEN_SECONDS)
            if needs_kick:
                queue.flag_drain(pipe, part)
            flagged = pipe.execute()[-1]
        if needs_kick and flagged:
            queue.enqueue_drain(settings, part)
    except queue.REDIS_ERRORS as exc:  # the arrival is stored: the sweeper settles it
        log.warning("first view stored but not counted (%s)", exc)
    return View(camp, None, False, visitor_code(settings, camp.id, token), True)


def share(settings: Settings, camp: Campaign, token: str, channel: str) -> None:
    contact_id, _ = visitor(settings, token)
    with session_scope(settings.database_url) as session:
        arrivals.settle_own(session, settings, camp.id, token)
        node, _ = chain.join(session, camp.id, contact_id, None)
        emit(
            session,
            camp,
            contact_id,
            "h5.share",
            properties(camp, node, session, channel=channel),
            None,
        )
    kick(settings, contact_id)


def happened(session: Session, type_: str, campaign_id: int, contact_id: int) -> bool:
    """Is there such an h5 event of this person (under this contact id or one merged into
    it: dedupe keys keep the id they were made under)?"""
    e = Event.__table__.c
    return (
        session.execute(
            sa.select(e.id)
            .where(
                e.contact_id == contact_id,
                e.type == type_,
                e.properties["campaign_id"].as_integer() == campaign_id,
            )
            .limit(1)
        ).first()
        is not None
    )


def submitted(session: Session, campaign_id: int, contact_id: int) -> bool:
    return happened(session, "h5.form_submitted", campaign_id, contact_id)


def visit_once(session: Session, camp: Campaign, contact_id: int, node: chain.Node) -> bool:
    """The person's ``h5.visit`` of this campaign, unless they have one."""
    if happened(session, "h5.visit", camp.id, contact_id):
        return False
    props = properties(camp, node, session)
    return emit(session, camp, contact_id, "h5.visit", props, f"h5:visit:{camp.id}:{contact_id}")


@dataclass
class Submitted:
    contact_id: int
    new: bool
    signup_id: int | None = None
    credited: list[dict] = field(default_factory=list)


def _contact_fields(contact: Contact, camp: Campaign, values: dict, referrer: str | None) -> None:
    fields = dict(contact.fields or {})
    fields.update({k: v for k, v in values.items() if k != "name"})
    fields.setdefault("source", f"campaign:{camp.slug}")
    fields.setdefault("campaign", camp.slug)  # the lead-quality report groups by it
    if referrer:
        fields.setdefault("referrer", referrer)
    contact.fields = fields
    if values.get("name"):
        contact.name = str(values["name"])[:128]


def submit(
    settings: Settings, camp: Campaign, token: str, code: str | None, values: dict
) -> Submitted:
    """A checked form: the contact's fields and tags, ``h5.form_submitted`` (once per person
    and campaign: a second form updates the fields only), the sharers' points, and for an
    event campaign the sign-up."""
    from bot.campaigns import signups

    contact_id, _ = visitor(settings, token)
    sharer = sharer_from(settings, code)
    with session_scope(settings.database_url) as session:
        arrivals.settle_own(session, settings, camp.id, token)
        sharer = arrivals.placed(session, settings, camp.id, sharer, token)
        node, _ = chain.join(session, camp.id, contact_id, sharer)
        contact = session.get(Contact, contact_id)
        _contact_fields(contact, camp, values, chain.holder_of(node, session))
        for tag in camp.spec.get("tags") or []:
            tags.add_tag(session, contact_id, tag, "campaign", camp.slug)
        props = properties(camp, node, session, fields=values)
        key = f"h5:form:{camp.id}:{contact_id}"
        new = not submitted(session, camp.id, contact_id) and emit(
            session, camp, contact_id, "h5.form_submitted", props, key
        )
        done = Submitted(contact_id, new)
        if new:
            done.credited = points.credit_form(session, camp, node, values.get("name") or "好友")
        if camp.kind == "event":
            done.signup_id = signups.sign_up(session, camp, node, props)
    kick(settings, contact_id)
    return done
