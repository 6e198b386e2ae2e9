"""Gated resources (白皮书 / 资料下载): after the form, a signed link that expires; each
download is an ``h5.download`` event."""

from __future__ import annotations

import time

from bot.campaigns import actions, chain, codes
from bot.core.config import Settings
from bot.core.db import session_scope
from bot.core.models import Campaign


def link_token(
    settings: Settings, campaign_id: int, contact_id: int, now: float | None = None
) -> str:
    exp = int((now or time.time()) + settings.h5_link_ttl)
    return codes.sign(
        settings.secret_key, "download", {"c": campaign_id, "p": contact_id, "exp": exp}
    )


def read_link(settings: Settings, token: str) -> tuple[int, int] | None:
    """(campaign id, contact id) of an unexpired, untampered link; else None."""
    payload = codes.unsign(settings.secret_key, "download", token)
    if payload is None:
        return None
    campaign_id, contact_id = payload.get("c"), payload.get("p")
    if not isinstance(campaign_id, int) or not isinstance(contact_id, int):
        return None
    return campaign_id, contact_id


def download(settings: Settings, camp: Campaign, contact_id: int) -> str:
    """Count the download; returns where the file is."""
    with session_scope(settings.database_url) as session:
        node, _ = chain.join(session, camp.id, contact_id, None)
        resource = camp.spec["resource"]
        props = actions.properties(
            camp, node, session, file=resource.get("filename") or resource["url"]
        )
        actions.emit(session, camp, contact_id, "h5.download", props, None)
    actions.kick(settings, contact_id)
    return camp.spec["resource"]["url"]
