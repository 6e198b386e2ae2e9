"""Tags out to WeCom, and the local copy of its corp tag library: rows grouped by contact; tag
names map to corp tag ids (CorpTag; missing ones are created with ``add_corp_tag`` in the group
「鱼池」); one ``externalcontact/mark_tag`` per (rep, customer) pair with the contact's add_tag
and remove_tag."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.core import wechat
from bot.core.config import Settings
from bot.core.db import dialect_insert, session_scope
from bot.core.models import CorpTag, FollowUser, utcnow
from bot.tagging.sync_rows import DONE, Outcome, Row, call, error_outcome, latest, merge, settle

CORP_GROUP = "鱼池"  # the WeCom tag group Yuchi creates its corp tags in
GONE_ERRORS = {84061, 40096}  # the rep and the customer are no longer connected


def sync_wecom(settings: Settings, rows: list[Row]) -> dict[str, list[Row]]:
    rows, older = latest(rows)
    result = settle(settings, [(r, ("done", "superseded by a later change")) for r in older])
    with session_scope(settings.database_url) as session:
        pairs: dict[int, list[tuple[str, str]]] = defaultdict(list)
        for cid, userid, external in session.execute(
            sa.select(FollowUser.contact_id, FollowUser.userid, FollowUser.external_userid)
            .where(
                FollowUser.contact_id.in_({r.contact_id for r in rows}),
                FollowUser.status == "active",
            )
            .order_by(FollowUser.id)
        ).all():
            pairs[cid].append((userid, external))
    alone = [
        (r, ("failed", "no active WeCom follow user")) for r in rows if not pairs[r.contact_id]
    ]
    merge(result, settle(settings, alone))
    rows = [r for r in rows if pairs[r.contact_id]]
    wecom = wechat.wecom(settings)
    wanted = {r.tag for r in rows if r.op == "add"}
    ids, errors = _corp_tag_ids(settings, wecom, wanted, {r.tag for r in rows} - wanted)
    by_contact: dict[int, list[Row]] = defaultdict(list)
    for row in rows:
        by_contact[row.contact_id].append(row)
    for cid, mine in sorted(by_contact.items()):
        outcomes: list[tuple[Row, Outcome]] = []
        add = [r for r in mine if r.op == "add" and r.tag in ids]
        remove = [r for r in mine if r.op == "remove" and r.tag in ids]
        for r in mine:
            if r.tag in errors:
                outcomes.append((r, error_outcome(errors[r.tag])))
            elif r.tag not in ids:  # removing a tag WeCom never had
                outcomes.append((r, DONE))
        if add or remove:
            outcome = _mark(settings, wecom, pairs[cid], add, remove, ids)
            outcomes += [(r, outcome) for r in (*add, *remove)]
        merge(result, settle(settings, outcomes))
    return result


def _mark(
    settings: Settings,
    wecom: wechat.Platform,
    pairs: list[tuple[str, str]],
    add: list[Row],
    remove: list[Row],
    ids: dict[str, str],
) -> Outcome:
    """mark_tag for every (rep, customer) pair; the worst outcome stands for all."""
    body = {"add_tag": [ids[r.tag] for r in add], "remove_tag": [ids[r.tag] for r in remove]}
    errors: list[wechat.PlatformError] = []
    gone = 0
    for userid, external in pairs:
        try:
            call(
                settings,
                wecom,
                "post",
                "externalcontact/mark_tag",
                data={"userid": userid, "external_userid": external, **body},
            )
        except wechat.PlatformError as exc:
            if exc.errcode in GONE_ERRORS:
                gone += 1
                errors.append(exc)
                continue
            if exc.errcode == 40068:  # a corp tag was deleted in WeCom: reload and try later
                refresh_corp_tags(settings)
                return ("retry", str(exc))
            errors.append(exc)
    real = [e for e in errors if e.errcode not in GONE_ERRORS]
    if any(e.transient for e in real):
        return error_outcome(next(e for e in real if e.transient))
    if real:
        return error_outcome(real[0])
    if gone == len(pairs):
        return ("failed", str(errors[0])[:2000])
    return DONE


def _corp_tag_ids(
    settings: Settings, wecom: wechat.Platform, add: set[str], other: set[str]
) -> tuple[dict[str, str], dict[str, wechat.PlatformError]]:
    """Corp tag ids for tag names (our group's first, then any group); names in ``add`` the
    library lacks (after one reload) are created in the group 「鱼池」. Returns
    (name -> id, name -> the error that kept it from being created)."""
    ids = _known_corp_tags(settings, add | other)
    errors: dict[str, wechat.PlatformError] = {}
    if add - set(ids):  # reps may have made it in WeCom meanwhile: reload the library once
        try:
            refresh_corp_tags(settings)
        except wechat.PlatformError as exc:
            return ids, {name: exc for name in add - set(ids)}
        ids = _known_corp_tags(settings, add | other)
    for name in sorted(add - set(ids)):
        try:
            data = call(
                settings,
                wecom,
                "post",
                "externalcontact/add_corp_tag",
                data={"group_name": CORP_GROUP, "tag": [{"name": name}]},
            )
            with session_scope(settings.database_url) as session:
                store_corp_groups(session, [data.get("tag_group") or {}])
        except wechat.PlatformError as exc:
            if exc.errcode != 40071:  # 40071: the name exists already; reload the library
                errors[name] = exc
                continue
            try:
                refresh_corp_tags(settings)
            except wechat.PlatformError as again:
                errors[name] = again
                continue
        found = _known_corp_tags(settings, {name})
        if name in found:
            ids[name] = found[name]
        elif name not in errors:
            errors[name] = wechat.PlatformError(40071, f"corp tag {name} not found", False)
    return ids, errors


def _known_corp_tags(settings: Settings, names: set[str]) -> dict[str, str]:
    if not names:
        return {}
    with session_scope(settings.database_url) as session:
        rows = session.execute(
            sa.select(CorpTag.name, CorpTag.tag_id, CorpTag.group_name)
            .where(CorpTag.name.in_(names), CorpTag.deleted.is_(False))
            .order_by(CorpTag.synced_at)
        ).all()
    ids: dict[str, str] = {}
    for name, tag_id, group in rows:
        if name not in ids or group == CORP_GROUP:
            ids[name] = tag_id
    return ids


def store_corp_groups(session: Session, groups: list[dict[str, Any]]) -> set[str]:
    """Upsert the corp tags of ``tag_group`` objects as WeCom answers them; returns the ids
    seen (a tag WeCom reports ``deleted`` is stored deleted)."""
    seen: set[str] = set()
    now = utcnow()
    table = CorpTag.__table__
    for group in groups:
        for tag in group.get("tag") or []:
            if not tag.get("id"):
                continue
            values = {
                "tag_id": str(tag["id"]),
                "name": str(tag.get("name") or "")[:64],
                "group_id": str(group.get("group_id") or "")[:64],
                "group_name": str(group.get("group_name") or "")[:64],
                "deleted": bool(tag.get("deleted")),
                "synced_at": now,
            }
            stmt = dialect_insert(session, table).values(**values)
            session.execute(
                stmt.on_conflict_do_update(
                    index_elements=["tag_id"],
                    set_={k: v for k, v in values.items() if k != "tag_id"},
                )
            )
            seen.add(values["tag_id"])
    return seen


def refresh_corp_tags(settings: Settings) -> dict[str, int]:
    """Reload the corp tag library (``get_corp_tag_list``) into CorpTag; tags no longer
    listed are marked deleted. Returns {"tags": listed, "deleted": newly marked deleted}."""
    data = call(
        settings, wechat.wecom(settings), "post", "externalcontact/get_corp_tag_list", data={}
    )
    with session_scope(settings.database_url) as session:
        seen = store_corp_groups(session, data.get("tag_group") or [])
        t = CorpTag.__table__.c
        vanished = session.execute(
            sa.update(CorpTag.__table__)
            .where(t.tag_id.not_in(seen) if seen else sa.true(), t.deleted.is_(False))
            .values(deleted=True, synced_at=utcnow())
        ).rowcount
    return {"tags": len(seen), "deleted": vanished or 0}
