"""Publishing the menus: one call puts the default menu and every conditional menu on the
Official Account and stores what went up as a new MenuVersion.

The platform has no edit (WECHAT.md): ``menu/create`` replaces the default menu, the
conditional menus found by ``menu/get`` are deleted (``menu/delconditional``) and ours are
added again (``menu/addconditional`` with ``matchrule.tag_id``, the OA tag that tag sync keeps
for the Yuchi tag, created on the platform when it has none yet). Conditional menus are added
from the last position to the first, so the first is the newest: the platform matches newest
first. Followers carrying a conditional menu's tag see the default menu for the moment between
the delete and the add.

A publish that fails part way is stored as a ``failed`` version with the platform's error;
the live version stays the newest ``published`` one (publishing again repairs the platform).
One publish runs at a time (a Redis lock): two interleaved would leave conditional menus of
both on the platform.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.core import queue, wechat
from bot.core.config import Settings
from bot.core.models import Menu, MenuVersion
from bot.menus import spec
from bot.menus.store import MenuInvalid, list_menus
from bot.tagging.sync_oa import oa_tag_id

log = logging.getLogger(__name__)


LOCK = "yuchi:menus:publish"
LOCK_SECONDS = 120


class PublishBusy(RuntimeError):
    """Another publish is under way (a 409)."""


class PublishFailed(RuntimeError):
    """The platform refused a call; the version is stored as failed."""

    def __init__(self, version_id: int, error: wechat.PlatformError):
        self.version_id, self.errcode, self.errmsg = version_id, error.errcode, error.errmsg
        super().__init__(f"{error.errcode}: {error.errmsg}")


def _checked(menus: list[Menu]) -> None:
    """What the platform would refuse for the set as a whole (each menu was checked when it
    was saved; the rules are checked again in case they changed since)."""
    problems: dict[str, str] = {}
    if not menus or menus[0].tag is not None:
        problems["menus"] = "a default menu (one without a tag) is needed first"
    for row in menus:
        for path, why in spec.check_buttons(row.buttons).items():
            problems[f"menus.{row.id}.{path}"] = why
    links = set().union(*(spec.domains(m.buttons) for m in menus if m.tag is not None))
    if len(links) > spec.CONDITIONAL_DOMAINS:
        problems["menus"] = (
            f"conditional menus link to {len(links)} domains ({', '.join(sorted(links))}); "
            f"the platform takes at most {spec.CONDITIONAL_DOMAINS}"
        )
    if problems:
        raise MenuInvalid(problems)


def _entry(row: Menu, tag_id: int | None, platform_id: Any) -> dict[str, Any]:
    return {
        "menu_id": row.id,
        "name": row.name,
        "tag": row.tag,
        "tag_id": tag_id,
        "platform_menu_id": None if platform_id is None else str(platform_id),
        "buttons": row.buttons,
    }


def _push(settings: Settings, menus: list[Menu]) -> list[dict[str, Any]]:
    """The platform calls; the version's menus. Raises PlatformError."""
    oa = wechat.oa(settings)
    default, conditional = menus[0], menus[1:]
    oa.call("post", "menu/create", data={"button": spec.platform_buttons(default.buttons)})
    current = oa.call("get", "menu/get")
    for old in current.get("conditionalmenu") or []:
        oa.call("post", "menu/delconditional", data={"menuid": str(old["menuid"])})
    entries = [_entry(default, None, (current.get("menu") or {}).get("menuid"))]
    for row in reversed(conditional):  # the first position is added last: the newest
        assert row.tag is not None
        tag_id = oa_tag_id(settings, row.tag)
        answer = oa.call(
            "post",
            "menu/addconditional",
            data={"button": spec.platform_buttons(row.buttons), "matchrule": {"tag_id": tag_id}},
        )
        entries.append(_entry(row, tag_id, answer.get("menuid")))
    return [entries[0], *reversed(entries[1:])]


def publish(settings: Settings, session: Session) -> MenuVersion:
    """Put every menu on the platform and store the new version (committed). MenuInvalid
    before any call; PublishFailed (the failed version stored) when the platform refuses."""
    menus = list_menus(session)
    _checked(menus)
    session.commit()  # end the read: the calls below open their own sessions (tag ids)
    lock = queue.get_redis(settings).lock(LOCK, timeout=LOCK_SECONDS, blocking_timeout=0)
    try:
        held = lock.acquire()
    except queue.REDIS_ERRORS as exc:  # no Redis: publish anyway (a rare race, logged)
        log.warning("menu publish without its lock (%s)", exc)
        held, lock = True, None
    if not held:
        raise PublishBusy("another menu publish is under way")
    try:
        return _publish(settings, session, menus)
    finally:
        if lock is not None:
            try:
                lock.release()
            except (redis.exceptions.LockError, *queue.REDIS_ERRORS) as exc:  # expired, or gone
                log.warning("menu publish lock not released (%s)", exc)


def _publish(settings: Settings, session: Session, menus: list[Menu]) -> MenuVersion:
    try:
        entries = _push(settings, menus)
    except wechat.PlatformError as exc:
        row = MenuVersion(status="failed", menus=[], error=f"{exc.errcode}: {exc.errmsg}"[:500])
        session.add(row)
        session.commit()
        log.warning("menu publish failed: %s %s", exc.errcode, exc.errmsg)
        raise PublishFailed(row.id or 0, exc) from None
    row = MenuVersion(status="published", menus=entries)
    session.add(row)
    session.commit()
    return row


def versions(session: Session, limit: int = 50) -> list[MenuVersion]:
    return list(
        session.execute(
            sa.select(MenuVersion).order_by(MenuVersion.id.desc()).limit(limit)
        ).scalars()
    )


def version_json(row: MenuVersion) -> dict[str, Any]:
    return {
        "version": row.id,
        "status": row.status,
        "error": row.error,
        "published_at": row.published_at.isoformat(),
        "menus": row.menus,
    }
