"""The follow step: a ``subscribe`` or ``SCAN`` through a campaign's parametric QR code (its
scene names the campaign and the sharer, signed) joins the follower to the chain and is an
``h5.follow`` event. A scene that does not verify is logged and ignored."""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

from bot.campaigns import actions, chain, codes
from bot.contacts import identity
from bot.core.models import Campaign

if TYPE_CHECKING:
    from bot.core.context import Context

log = logging.getLogger(__name__)
FOLLOW_EVENTS = {"oa.subscribe", "oa.scan"}


def on_event(ctx: Context) -> None:
    """Pipeline step."""
    ev = ctx.event
    scene = str((ev.properties or {}).get("scene") or "")
    if ev.type not in FOLLOW_EVENTS or not scene.startswith("h5."):
        return
    sharer = codes.read_scene(ctx.settings.secret_key, scene)
    camp = ctx.session.get(Campaign, sharer.campaign_id) if sharer is not None else None
    if camp is None:
        log.warning("campaign QR scene refused (tampered or unknown): %r", scene[:64])
        return
    if sharer.own:
        _same_person(ctx, sharer.contact_id)
        sharer = None  # they are already in the chain, under whoever brought them
    node, _ = chain.join(ctx.session, camp.id, ev.contact_id, sharer)
    props = actions.properties(camp, node, ctx.session, via=ev.type)
    key = f"h5:follow:{camp.id}:{ev.contact_id}"
    if actions.emit(ctx.session, camp, ev.contact_id, "h5.follow", props, key):
        ctx.after_commit.append(functools.partial(actions.kick, ctx.settings, ev.contact_id))


def _same_person(ctx: Context, visitor_contact: int) -> None:
    """The follower scanned the QR on their own page: the browser's contact and the openid's
    are one person (the older survives; this event moves to the survivor)."""
    ev = ctx.event
    keep, _ = identity.merge(
        ctx.session, ev.contact_id, visitor_contact, "followed through their campaign QR"
    )
    ev.contact_id = keep
    ctx.session.add(ev)
    ctx.session.flush()
    ctx.after_commit.append(functools.partial(actions.kick, ctx.settings, keep))
