"""Which menu version a click came from: a pipeline step that stamps menu events with
``menu_version`` (the MenuVersion id) and ``menu`` (our Menu id), before tags, scores and
journeys read them.

A conditional menu's event carries the platform's ``MenuId`` (``menu_id``), unique to one
version: the version holding it is the one clicked. Without one (the default menu) it is the
newest version published before the event arrived whose default menu has the clicked key (or
link): WeChat clients refresh their menu only every few minutes, so a click just after a
publish may come from the version before it. Neither found: the newest version before the
event. No published version (a menu made in the platform's console): nothing is stamped.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from bot.core.context import Context
from bot.core.models import MenuVersion
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


def find(
    versions: list[MenuVersion], event_type: str, props: dict[str, Any]
) -> tuple[int, int] | None:
    """(version id, menu id) for a menu event among ``versions`` (newest first)."""
    platform_id = props.get("menu_id")
    if platform_id not in (None, ""):
        for version in versions:
            for entry in version.menus:
                if entry.get("platform_menu_id") == str(platform_id):
                    return version.id or 0, entry["menu_id"]
    target = _target(event_type, props)
    for version in versions:
        if version.menus and _has(version.menus[0], target):
            return version.id or 0, version.menus[0]["menu_id"]
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
    found = find(versions, ev.type, ev.properties)
    if found is None:
        return
    ev.properties = {**ev.properties, "menu_version": found[0], "menu": found[1]}
    ctx.session.add(ev)
