"""Tags out to the Official Account: rows grouped by (op, tag); the OA tag is created on first
use (PlatformTag keeps its id), then ``tags/members/batchtagging`` / ``batchuntagging`` with at
most 50 openids a call."""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa

from bot.core import wechat
from bot.core.config import Settings
from bot.core.db import dialect_insert, session_scope
from bot.core.models import Contact, Identity, PlatformTag
from bot.tagging.sync_rows import DONE, Outcome, Row, call, error_outcome, latest, merge, settle

OA_CHUNK = 50  # openids per batchtagging call (the platform's limit)
OA_PER_USER_ERRORS = {40003, 45059}  # one bad openid fails a whole call: try them one by one


def sync_oa(settings: Settings, rows: list[Row]) -> dict[str, list[Row]]:
    rows, older = latest(rows)
    result = settle(settings, [(r, ("done", "superseded by a later change")) for r in older])
    contact_ids = {r.contact_id for r in rows}
    with session_scope(settings.database_url) as session:
        openids = dict(
            session.execute(
                sa.select(Identity.contact_id, Identity.value).where(
                    Identity.contact_id.in_(contact_ids),
                    Identity.kind == "openid",
                    Identity.app_id == settings.oa_appid,
                )
            ).all()
        )
        following = set(
            session.execute(
                sa.select(Contact.id).where(
                    Contact.id.in_(contact_ids), Contact.subscribed.is_(True)
                )
            ).scalars()
        )
    groups: dict[tuple[str, str], list[tuple[Row, str]]] = defaultdict(list)
    unreachable: list[tuple[Row, Outcome]] = []
    for row in rows:
        openid = openids.get(row.contact_id)
        if openid is None:
            unreachable.append((row, ("failed", "no openid for this Official Account")))
        elif row.contact_id not in following:
            unreachable.append((row, ("failed", "the contact does not follow the account")))
        else:
            groups[(row.op, row.tag)].append((row, openid))
    merge(result, settle(settings, unreachable))
    oa = wechat.oa(settings)
    for (op, tag), members in sorted(groups.items()):
        try:
            tag_id = _oa_tag_id(settings, oa, tag, create=op == "add")
        except wechat.PlatformError as exc:
            merge(result, settle(settings, [(r, error_outcome(exc)) for r, _ in members]))
            continue
        if tag_id is None:  # never created on the platform: nothing to remove
            merge(result, settle(settings, [(r, DONE) for r, _ in members]))
            continue
        path = "tags/members/batchtagging" if op == "add" else "tags/members/batchuntagging"
        for n in range(0, len(members), OA_CHUNK):
            chunk = members[n : n + OA_CHUNK]
            merge(result, settle(settings, _oa_tagging(settings, oa, path, tag, tag_id, chunk)))
    return result


def _oa_tagging(
    settings: Settings,
    oa: wechat.Platform,
    path: str,
    tag: str,
    tag_id: int,
    members: list[tuple[Row, str]],
) -> list[tuple[Row, Outcome]]:
    try:
        call(
            settings,
            oa,
            "post",
            path,
            data={"openid_list": [o for _, o in members], "tagid": tag_id},
        )
    except wechat.PlatformError as exc:
        if exc.errcode == 45159:  # the tag was deleted on the platform: create it again
            _forget_oa_tag(settings, tag)
            return [(r, ("retry", str(exc))) for r, _ in members]
        if exc.errcode in OA_PER_USER_ERRORS and len(members) > 1:
            return [o for m in members for o in _oa_tagging(settings, oa, path, tag, tag_id, [m])]
        return [(r, error_outcome(exc)) for r, _ in members]
    return [(r, DONE) for r, _ in members]


def oa_tag_id(settings: Settings, name: str) -> int:
    """The OA user tag id kept for the Yuchi tag ``name``, created on the platform when it
    has none yet (conditional menus match followers through it). Raises PlatformError."""
    found = _oa_tag_id(settings, wechat.oa(settings), name, create=True)
    assert found is not None
    return found


def _oa_tag_id(settings: Settings, oa: wechat.Platform, name: str, create: bool) -> int | None:
    with session_scope(settings.database_url) as session:
        known = session.get(PlatformTag, name)
        if known is not None and known.oa_tag_id is not None:
            return known.oa_tag_id
    if not create:
        return None
    try:
        tag_id = int(
            call(settings, oa, "post", "tags/create", data={"tag": {"name": name}})["tag"]["id"]
        )
    except wechat.PlatformError as exc:
        if exc.errcode != 45157:
            raise
        tags = call(settings, oa, "get", "tags/get").get("tags") or []
        found = next((t["id"] for t in tags if t.get("name") == name), None)
        if found is None:
            raise
        tag_id = int(found)
    with session_scope(settings.database_url) as session:
        stmt = dialect_insert(session, PlatformTag.__table__).values(name=name, oa_tag_id=tag_id)
        session.execute(
            stmt.on_conflict_do_update(index_elements=["name"], set_={"oa_tag_id": tag_id})
        )
    return tag_id


def _forget_oa_tag(settings: Settings, name: str) -> None:
    with session_scope(settings.database_url) as session:
        session.execute(sa.delete(PlatformTag.__table__).where(PlatformTag.name == name))
