"""Tag changes out to the platforms: TagSync rows (written by bot.tagging.tags in the same
transaction as the tag change) are taken in batches by a background job per platform.

- Official Account: rows grouped by (op, tag); the OA tag is created on first use (PlatformTag
  keeps its id), then ``tags/members/batchtagging`` / ``batchuntagging`` with at most 50
  openids a call.
- WeCom: rows grouped by contact; tag names map to corp tag ids (CorpTag; missing ones are
  created with ``add_corp_tag`` in the group 「鱼池」); one ``externalcontact/mark_tag`` per
  (rep, customer) pair with the contact's add_tag and remove_tag.

Tagging is idempotent on both platforms, so a row is synced at least once: a crash between
the call and the bookkeeping only repeats a harmless call. Transient errors keep the row
pending (attempts + 1) and schedule a retry with backoff; other errors fail the row with the
platform's code and message. Runs of one platform take a Redis lock, so two workers never
send the same rows; a flag coalesces kicks into one queued job, like the outbox drain.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis
import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.core import queue, wechat
from bot.core.config import Settings
from bot.core.db import dialect_insert, session_scope
from bot.core.models import Contact, CorpTag, FollowUser, Identity, PlatformTag, TagSync, utcnow
from bot.messaging import outbox as messaging
from bot.messaging import send_rules

log = logging.getLogger(__name__)

JOB = "bot.background.jobs.sync_tags"
PLATFORMS = ("oa", "wecom")
CORP_GROUP = "鱼池"  # the WeCom tag group Yuchi creates its corp tags in
BATCH = 500  # rows read per round
OA_CHUNK = 50  # openids per batchtagging call (the platform's limit)
MAX_ATTEMPTS = 5
OA_PER_USER_ERRORS = {40003, 45059}  # one bad openid fails a whole call: try them one by one
GONE_ERRORS = {84061, 40096}  # the rep and the customer are no longer connected


@dataclass(frozen=True)
class Row:
    id: int
    contact_id: int
    op: str
    tag: str
    attempts: int


Outcome = tuple[str, str | None]  # ("done" | "retry" | "failed", error)
DONE: Outcome = ("done", None)


def _flag(platform: str) -> str:
    return f"yuchi:tagsync:{platform}:queued"


def _last_job(platform: str) -> str:
    return f"yuchi:tagsync:{platform}:job"


def _retry_job(platform: str) -> str:
    return f"yuchi:tagsync:{platform}:retry"


# --- enqueueing ------------------------------------------------------------------------------


def kick(settings: Settings, first_rows: Mapping[str, int]) -> bool:
    """After commit: make sure a sync run will see the rows just written (``first_rows``:
    platform -> the lowest TagSync id written). While the flag is set a queued run has not
    started reading, so it will see them; otherwise enqueue one, named by that row id.
    False (logged) when Redis is unreachable: the sweeper finds the rows later."""
    try:
        conn = queue.get_redis(settings)
        for platform, first in sorted(first_rows.items()):
            if conn.set(_flag(platform), "1", nx=True, ex=60):
                _enqueue(settings, platform, f"tagsync-{platform}-{first}", retry=False)
    except queue.REDIS_ERRORS as exc:
        log.warning("tag sync not enqueued (%s); the sweeper will pick the rows up", exc)
        return False
    return True


def _enqueue(
    settings: Settings, platform: str, job_id: str, retry: bool, delay: float = 0.0
) -> None:
    q = queue.get_queue(settings)
    if delay > 0:
        q.enqueue_in(
            timedelta(seconds=delay), JOB, platform, retry, job_id=job_id, failure_ttl=7 * 86400
        )
        queue.get_redis(settings).set(_retry_job(platform), job_id, ex=int(delay) + 3600)
        return
    q.enqueue(
        JOB, platform, retry, job_id=job_id, result_ttl=60, failure_ttl=7 * 86400, job_timeout=3600
    )
    queue.get_redis(settings).set(_last_job(platform), job_id, ex=3600)


def sweep(settings: Settings) -> int:
    """Pending rows older than the grace period with no sync job alive (Redis down or
    flushed, a worker killed, a lost retry): enqueue a run that takes every pending row."""
    cutoff = utcnow() - timedelta(seconds=settings.sweep_grace_seconds)
    t = TagSync.__table__.c
    with session_scope(settings.database_url) as session:
        firsts = dict(
            session.execute(
                sa.select(t.platform, sa.func.min(t.id))
                .where(t.status == "pending", t.created_at < cutoff)
                .group_by(t.platform)
            ).all()
        )
    conn = queue.get_redis(settings)
    enqueued = 0
    for platform, first in sorted(firsts.items()):
        known = [conn.get(_last_job(platform)), conn.get(_retry_job(platform))]
        if any(j and queue.job_alive(settings, j.decode()) for j in known):
            continue
        job_id = f"tagsync-{platform}-{first}-swept"
        queue.drop_job(settings, job_id)
        _enqueue(settings, platform, job_id, retry=True)
        enqueued += 1
    if enqueued:
        log.info("sweeper: tag sync enqueued for %d platform(s)", enqueued)
    return enqueued


# --- the run ---------------------------------------------------------------------------------


def run(settings: Settings, platform: str, retry: bool = False) -> dict[str, int]:
    """Sync the pending rows of one platform. A normal run takes rows never tried; a retry
    run (scheduled after a transient error, or by the sweeper) takes every pending row."""
    if platform not in PLATFORMS:
        raise ValueError(f"unknown platform {platform!r}")
    conn = queue.get_redis(settings)
    if not retry:
        conn.delete(_flag(platform))  # rows committed from now on kick a new run
    lock = conn.lock(f"yuchi:tagsync:{platform}:lock", timeout=900, blocking_timeout=60)
    if not lock.acquire():
        log.warning("tag sync %s: another run holds the lock; leaving rows to it", platform)
        return {"busy": 1}
    counts: dict[str, int] = defaultdict(int)
    to_retry: list[Row] = []
    try:
        after = 0
        while rows := _due(settings, platform, after, retry):
            after = rows[-1].id
            sync = _sync_oa if platform == "oa" else _sync_wecom
            for status, settled in sync(settings, rows).items():
                counts[status] += len(settled)
                if status == "retry":
                    to_retry += settled
            lock.reacquire()
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:
            log.warning("tag sync %s: the lock expired during the run", platform)
    if to_retry:
        attempt = max(r.attempts for r in to_retry) + 1
        delay = send_rules.backoff(attempt, messaging.policy(settings))
        job_id = f"tagsync-{platform}-retry-{to_retry[0].id}-a{attempt}"
        try:
            _enqueue(settings, platform, job_id, retry=True, delay=delay)
        except queue.REDIS_ERRORS as exc:
            log.warning("tag sync retry not scheduled (%s); the sweeper will find the rows", exc)
        log.info("tag sync %s: %d row(s) retry in %.1fs", platform, len(to_retry), delay)
    return dict(counts)


def _due(settings: Settings, platform: str, after: int, retry: bool) -> list[Row]:
    t = TagSync.__table__.c
    query = (
        sa.select(t.id, t.contact_id, t.op, t.tag, t.attempts)
        .where(t.platform == platform, t.status == "pending", t.id > after)
        .order_by(t.id)
        .limit(BATCH)
    )
    if not retry:
        query = query.where(t.attempts == 0)
    with session_scope(settings.database_url) as session:
        return [Row(*r) for r in session.execute(query).all()]


def _latest(rows: list[Row]) -> tuple[list[Row], list[Row]]:
    """(the newest row per contact and tag, the older rows it supersedes)."""
    newest: dict[tuple[int, str], Row] = {}
    for row in rows:
        newest[(row.contact_id, row.tag)] = row
    keep = set(newest.values())
    return [r for r in rows if r in keep], [r for r in rows if r not in keep]


def _settle(settings: Settings, outcomes: Iterable[tuple[Row, Outcome]]) -> dict[str, list[Row]]:
    """Record outcomes (only on rows still pending); returns rows by final status."""
    t = TagSync.__table__
    now = utcnow()
    by_status: dict[str, list[Row]] = defaultdict(list)
    with session_scope(settings.database_url) as session:
        for row, (status, error) in outcomes:
            values: dict[str, Any] = {"attempts": row.attempts + 1, "error": error}
            if status == "retry" and row.attempts + 1 >= MAX_ATTEMPTS:
                status = "failed"
            if status == "retry":
                values["status"] = "pending"
            else:
                values.update(status=status, done_at=now)
            session.execute(
                sa.update(t).where(t.c.id == row.id, t.c.status == "pending").values(**values)
            )
            by_status[status].append(row)
    return by_status


def _merge(into: dict[str, list[Row]], more: dict[str, list[Row]]) -> None:
    for status, rows in more.items():
        into.setdefault(status, []).extend(rows)


def _error_outcome(exc: wechat.PlatformError) -> Outcome:
    return ("retry" if exc.transient else "failed", str(exc)[:2000])


def call(settings: Settings, platform: wechat.Platform, method: str, path: str, **kw: Any) -> dict:
    """One API call within the app's shared rate limit (as messaging sends are)."""
    platform.tokens.get()  # fetch a missing token before taking a rate slot
    wechat.RateLimiter(queue.get_redis(settings), platform.app, settings.send_rate).acquire()
    return platform.call(method, path, **kw)


# --- Official Account ------------------------------------------------------------------------


def _sync_oa(settings: Settings, rows: list[Row]) -> dict[str, list[Row]]:
    rows, older = _latest(rows)
    result = _settle(settings, [(r, ("done", "superseded by a later change")) for r in older])
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
    _merge(result, _settle(settings, unreachable))
    oa = wechat.oa(settings)
    for (op, tag), members in sorted(groups.items()):
        try:
            tag_id = _oa_tag_id(settings, oa, tag, create=op == "add")
        except wechat.PlatformError as exc:
            _merge(result, _settle(settings, [(r, _error_outcome(exc)) for r, _ in members]))
            continue
        if tag_id is None:  # never created on the platform: nothing to remove
            _merge(result, _settle(settings, [(r, DONE) for r, _ in members]))
            continue
        path = "tags/members/batchtagging" if op == "add" else "tags/members/batchuntagging"
        for n in range(0, len(members), OA_CHUNK):
            chunk = members[n : n + OA_CHUNK]
            _merge(result, _settle(settings, _oa_tagging(settings, oa, path, tag, tag_id, chunk)))
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
        return [(r, _error_outcome(exc)) for r, _ in members]
    return [(r, DONE) for r, _ in members]


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


# --- WeCom -----------------------------------------------------------------------------------


def _sync_wecom(settings: Settings, rows: list[Row]) -> dict[str, list[Row]]:
    rows, older = _latest(rows)
    result = _settle(settings, [(r, ("done", "superseded by a later change")) for r in older])
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
    _merge(result, _settle(settings, alone))
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
                outcomes.append((r, _error_outcome(errors[r.tag])))
            elif r.tag not in ids:  # removing a tag WeCom never had
                outcomes.append((r, DONE))
        if add or remove:
            outcome = _mark(settings, wecom, pairs[cid], add, remove, ids)
            outcomes += [(r, outcome) for r in (*add, *remove)]
        _merge(result, _settle(settings, outcomes))
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
        return _error_outcome(next(e for e in real if e.transient))
    if real:
        return _error_outcome(real[0])
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
