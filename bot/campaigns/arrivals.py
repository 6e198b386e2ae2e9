"""A person's first view of a campaign costs the request one write: an ``h5.arrival`` event
about no one yet (with its outbox row, in one commit) naming the campaign, the browser's
cookie and the verified referral code it came with. By default (YUCHI_VIEW_COMMIT=fast) that
commit does not wait for the disk: it survives any crash of a process, and a power cut can
lose only the first views since the last durable commit (the next callback's, form's or
drain batch's commit syncs the log they share). A page view is nobody's acknowledged
message, and its fsync was what kept first views under half the rate of a static page
(bench/README.md). The background path (a system step of the
pipeline, drain 0) then makes what the view used to make itself: the cookie's contact and
identity, the chain node and the ``h5.visit``, idempotently (first touch wins, one visit per
person and campaign), and caches the cookie's contact for the next request.

A visitor's own share link names them by ``codes.visitor_ref`` of their cookie, so it works
before they are a contact: whoever places a sharer named so settles that visitor's arrival
first, so the chain does not depend on the order the drain takes arrivals in."""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.campaigns import actions, chain, codes, visitors
from bot.contacts import fast_record, identity, record
from bot.core import queue, rawdb
from bot.core.config import Settings
from bot.core.db import session_scope
from bot.core.models import Campaign, Event

if TYPE_CHECKING:
    from bot.core.context import Context

log = logging.getLogger(__name__)
ARRIVAL = "h5.arrival"
MAX_HOPS = 64  # chains are far shallower: a guard, not a limit anyone meets
ARRIVALS_DRAIN = 0  # events about no one are drain 0's (see bot.background.jobs.drain_outbox)


def arrival_key(campaign_id: int, ref: str) -> str:
    return f"h5:arrive:{campaign_id}:{ref}"


def record_arrival(
    settings: Settings, camp: Campaign, token: str, code: str | None, kick: bool = True
) -> bool:
    """The request's part of a first view: one event and its outbox row, one commit (a second
    arrival of the same browser at the same campaign adds nothing), then the drain kicked.
    With ``kick`` False the caller kicks it (in its own round trip) when this returns True."""
    sharer = actions.sharer_from(settings, code)  # a refused code is logged now, and dropped
    props = {
        "campaign_id": camp.id,
        "campaign": camp.slug,
        "visitor": token,
        "ref": code if sharer is not None else None,
    }
    key = arrival_key(camp.id, codes.visitor_ref(settings.secret_key, token))
    grouped = None
    durable = settings.view_commit == "durable"
    if settings.group_commit and durable:  # the writer thread kicks the drain once per batch
        grouped = ARRIVALS_DRAIN, lambda: queue.kick_outbox(settings, contact_id=ARRIVALS_DRAIN)
    try:
        added = fast_record.append_unowned(
            settings.database_url,
            ARRIVAL,
            props,
            key,
            "h5",
            grouped,
            durable,
        )
    except rawdb.Error:  # the raw connection failed: the ordinary path (pool, reconnect)
        grouped = None
        with session_scope(settings.database_url) as session:
            added = record.append(session, None, ARRIVAL, props, key, source="h5")
    needs_kick = added is not None and grouped is None
    if needs_kick and kick:
        queue.kick_outbox(settings, contact_id=ARRIVALS_DRAIN)
        return False
    return needs_kick


def _arrival(session: Session, campaign_id: int, ref: str) -> dict[str, Any] | None:
    e = Event.__table__.c
    return session.execute(
        sa.select(e.properties).where(e.dedupe_key == arrival_key(campaign_id, ref))
    ).scalar()


def settle(
    session: Session, settings: Settings, props: dict[str, Any], hops: int = 0
) -> int | None:
    """The contact of an arrival's cookie, in the chain and with its ``h5.visit``: made now
    unless they are already (in the caller's transaction). None for an arrival at a
    campaign that is gone."""
    camp = session.get(Campaign, props.get("campaign_id"))
    token = props.get("visitor")
    if camp is None or not isinstance(token, str):
        log.warning("arrival at an unknown campaign ignored: %r", props.get("campaign_id"))
        return None
    contact_id = visitors.contact_for(session, token)
    sharer = codes.read_referral(settings.secret_key, props.get("ref"))
    sharer = placed(session, settings, camp.id, sharer, token, hops)
    node, _ = chain.join(session, camp.id, contact_id, sharer)
    actions.visit_once(session, camp, contact_id, node)
    return contact_id


def placed(
    session: Session,
    settings: Settings,
    campaign_id: int,
    sharer: codes.Sharer | None,
    token: str,
    hops: int = 0,
) -> codes.Sharer | None:
    """``sharer`` as bot.campaigns.chain takes it: a visitor named by their cookie's ref
    becomes their contact, their own arrival settled first. Their own ref is self-referral,
    a ref that never arrived here is ignored (both logged)."""
    if sharer is None or sharer.visitor is None or sharer.campaign_id != campaign_id:
        return sharer
    if sharer.visitor == codes.visitor_ref(settings.secret_key, token):
        log.info("self-referral ignored: a visitor's own link, campaign %s", campaign_id)
        return None
    found = _arrival(session, campaign_id, sharer.visitor)
    if found is None or hops >= MAX_HOPS:
        log.warning("sharer %s never visited campaign %s: ignored", sharer.visitor, campaign_id)
        return None
    contact_id = identity.identity_owner(session, visitors.KIND, str(found.get("visitor")))
    if contact_id is None or chain.node_of(session, campaign_id, contact_id) is None:
        contact_id = settle(session, settings, found, hops + 1)  # not settled yet: now
    return codes.Sharer(campaign_id, contact_id=contact_id) if contact_id else None


def settle_own(session: Session, settings: Settings, campaign_id: int, token: str) -> None:
    """Before this browser acts on the campaign (a share, a form), its arrival is settled, so
    the chain keeps who brought them even if the drain has not got there yet."""
    found = _arrival(session, campaign_id, codes.visitor_ref(settings.secret_key, token))
    if found is not None:
        settle(session, settings, found)


def on_system_event(ctx: Context) -> None:
    """Pipeline step (for events about no one): an arrival settled."""
    ev = ctx.event
    if ev.type != ARRIVAL:
        return
    props = ev.properties or {}
    contact_id = settle(ctx.session, ctx.settings, props)
    if contact_id is None:
        return
    has_openid = visitors.has_openid(ctx.session, contact_id, ctx.settings.oa_appid)
    ctx.after_commit.append(functools.partial(_known, ctx.settings, props, contact_id, has_openid))


def _known(settings: Settings, props: dict, contact_id: int, has_openid: bool) -> None:
    """After commit: the next request finds the cookie's contact (and its first view of the
    campaign claimed) in Redis; the ``h5.visit`` goes down the contact's drain."""
    try:
        with queue.get_redis(settings).pipeline(transaction=False) as pipe:
            pipe.set(
                visitors.cache_key(props["visitor"]),
                f"{contact_id}:{int(has_openid)}",
                ex=visitors.CACHE_SECONDS,
            )
            pipe.set(actions.seen_key(props["campaign_id"], contact_id), 1, ex=actions.SEEN_SECONDS)
            pipe.execute()
    except queue.REDIS_ERRORS as exc:  # the next request asks the database instead
        log.warning("visitor cache not updated (%s)", exc)
    actions.kick(settings, contact_id)
