"""Which menu version a click came from: a pipeline step that stamps menu events with
``menu_version`` (the MenuVersion id) and ``menu`` (our Menu id), before tags, scores and
journeys read them.

A conditional menu's VIEW event carries the platform's ``MenuId`` (``menu_id``), unique to one
version: the version holding it is the one clicked. A CLICK carries no MenuId (the platform's
documented CLICK fields are the key only), so the menu is worked out as the platform chose it:
among the menus of a version that have the clicked key (or link), the conditional menu of the
contact's most recently added tag, else the default menu, else the first that has it. The
version is the newest published before the event arrived that has the key: WeChat clients
refresh their menu only every few minutes, so a click just after a publish may come from the
version before. Nothing has it: the newest version's default menu. No published version (a
menu made in the platform's console): nothing is stamped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from bot.core.context import Context
from bot.core.models import ContactTag, MenuVersion
from bot.menus import spec

MENU_EVENTS = frozenset(
    {"oa.click", "oa.view", "oa.scancode", "oa.menu_photo", "oa.location_select"}
)
LOOK_BACK = 20  # versions searched for a MenuId or a key


def _target(event_type: str, props: dict[str, Any]) -> tuple[str, str] | None:
    if event_type == "oa.view":
        return ("url", str(props["url"])) if props.get("url") else None
    return ("key", str(props["key"])) if props.get("key") else None


def _has(entry: dict[str, Any], target: tuple[str, str] | None) -> bool:
    if target is None:
        return False
    field, value = target
    return any(b.get(field) == value for b in spec.flat(entry.get("buttons") or []))


def _pick(entries: list[dict[str, Any]], tags: list[str]) -> dict[str, Any]:
    """The menu a follower with ``tags`` (most recent first) saw among ``entries``."""
    by_tag = {e.get("tag"): e for e in entries if e.get("tag") is not None}
    for tag in tags:
        if tag in by_tag:
            return by_tag[tag]
    default = next((e for e in entries if e.get("tag") is None), None)
    return default if default is not None else entries[0]


def find(
    versions: list[MenuVersion],
    event_type: str,
    props: dict[str, Any],
    tags: Sequence[str] = (),
) -> tuple[int, int] | None:
    """(version id, menu id) for a menu event among ``versions`` (newest first), for a
    contact carrying ``tags`` (most recently added first)."""
    platform_id = props.get("menu_id")
    if platform_id not in (None, ""):
        for version in versions:
            for entry in version.menus:
                if entry.get("platform_menu_id") == str(platform_id):
                    return version.id or 0, entry["menu_id"]
    target = _target(event_type, props)
    for version in versions:
        having = [e for e in version.menus if _has(e, target)]
        if having:
            return version.id or 0, _pick(having, list(tags))["menu_id"]
    if versions and versions[0].menus:
        return versions[0].id or 0, versions[0].menus[0]["menu_id"]
    return None


def on_event(ctx: Context) -> None:
    """Pipeline step: stamp a menu event (once: a retried drain finds it stamped)."""
    ev = ctx.event
    if ev.type not in MENU_EVENTS or "menu_version" in ev.properties:
        return
    versions = list(
        ctx.session.execute(
            sa.select(MenuVersion)
            .where(MenuVersion.status == "published", MenuVersion.published_at <= ev.received_at)
            .order_by(MenuVersion.id.desc())
            .limit(LOOK_BACK)
        ).scalars()
    )
    tags = list(
        ctx.session.execute(
            sa.select(ContactTag.tag)
            .where(ContactTag.contact_id == ev.contact_id)
            .order_by(ContactTag.created_at.desc(), ContactTag.id.desc())
        ).scalars()
    )
    found = find(versions, ev.type, ev.properties, tags)
    if found is None:
        return
    ev.properties = {**ev.properties, "menu_version": found[0], "menu": found[1]}
    ctx.session.add(ev)
