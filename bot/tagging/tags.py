"""Contacts' tags: the background step that applies tag rules and the interest dictionary to
every stored event, the one way code adds or removes a tag (``add_tag`` / ``remove_tag``:
they write the TagSync rows that carry the change to the Official Account and WeCom), and
tags coming back from WeCom (``pull_wecom_tags``, ``refresh_corp_tags``).

Rules and the dictionary are a per-process copy reloaded when their version key in Redis
changes (bot.core.versioned, as the reply rules): an edit through the API or the import
reaches the workers within a quarter second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.contacts import identity as contacts
from bot.contacts import tag_history
from bot.core import changes, wechat
from bot.core.config import Settings
from bot.core.context import BATCH_CONTACTS, BATCH_MEMO
from bot.core.db import session_scope
from bot.core.models import (
    ContactTag,
    FollowUser,
    Identity,
    InterestWord,
    TagRule,
    TagSync,
    utcnow,
)
from bot.core.versioned import Versioned
from bot.tagging import rules as tag_rules
from bot.tagging import sync as tag_sync
from bot.tagging import sync_rows, sync_wecom
from journeys.words import add_words

if TYPE_CHECKING:
    from bot.core.context import Context

WECOM_SOURCE = "wecom"
# A rep newly has the customer: the contact's tags go to WeCom again (TagSync has no rep).
NEW_FOLLOW = {"wecom.contact_added", "wecom.contact_half_added"}
# Where an event type keeps the person's own words (others: "content" for any *.text).
FREE_TEXT = {"oa.text": "content", "oa.voice": "recognition"}
_OWED = "yuchi_tag_sync_owed"  # session.info key: platform -> first TagSync id written


# --- rules and dictionary, cached ------------------------------------------------------------


@dataclass(frozen=True)
class Active:
    rules: list[tag_rules.Rule]
    words: dict[str, str]


_active: Versioned[Active] = Versioned("tag-rules")


def invalidate() -> None:
    """This process reloads the rules on its next read (the change's own transaction)."""
    _active.drop()


def changed(settings: Settings) -> None:
    """After the commit of a change: every process reloads the rules within a moment."""
    _active.changed(settings)


def active(settings: Settings, session: Session) -> Active:
    return _active.get(settings, lambda: _load(session), settings.reply_cache_seconds)


def _load(session: Session) -> Active:
    rows = session.execute(
        sa.select(TagRule).where(TagRule.enabled.is_(True)).order_by(TagRule.id)
    ).scalars()
    rules = [
        tag_rules.Rule(
            id=r.id or 0,
            event_type=r.event_type,
            conditions=dict(r.conditions),
            add_tags=tuple(r.add_tags),
            remove_tags=tuple(r.remove_tags),
            name=r.name,
        )
        for r in rows
    ]
    words = dict(
        session.execute(
            sa.select(InterestWord.word, InterestWord.tag).order_by(InterestWord.word)
        ).all()
    )
    keywords = [k for r in rules for k in tag_rules.keywords_of(r)]
    add_words([*words, *keywords])  # jieba keeps 多少钱 whole instead of 多少 + 钱
    return Active(rules, words)


# --- the pipeline step -----------------------------------------------------------------------


def free_text(event_type: str, properties: dict[str, Any]) -> tuple[str, str]:
    """(property, text): the person's own words in this event, if any."""
    key = FREE_TEXT.get(event_type) or ("content" if event_type.endswith(".text") else "")
    value = properties.get(key) if key else None
    return (key, value) if isinstance(value, str) and value.strip() else ("", "")


def on_event(ctx: Context) -> None:
    """Apply the tag rules and the interest dictionary to the event; tag changes owe
    TagSync rows, whose job is enqueued after commit."""
    session, event = ctx.session, ctx.event
    if event.contact_id is None:  # an event about no one person
        return
    contact_id = contacts.resolve(session, event.contact_id)
    found = active(ctx.settings, session)
    key, words = free_text(event.type, event.properties)
    tokens = tag_rules.content_tokens(words) if words and found.words else None
    add, remove = tag_rules.evaluate(
        found.rules, event.type, event.properties, tokens if key == "content" else None
    )
    grants = [(tag, "tag_rule", f"tag_rule:{rule_id}") for tag, rule_id in add]
    removing = {tag: f"tag_rule:{rule_id}" for tag, rule_id in remove}
    if tokens is not None:
        grants += [
            (tag, "interest", f"interest:{word}")
            for tag, word in tag_rules.interest_matches(found.words, tokens, words)
            if tag not in removing
        ]
    for tag, source, ref in grants:
        add_tag(session, contact_id, tag, source, ref, event_id=event.id)
    for tag, ref in removing.items():
        remove_tag(session, contact_id, tag, "tag_rule", ref, event_id=event.id)
    if event.type in NEW_FOLLOW:
        _owe_unsynced(session, contact_id, force=("wecom",))
    elif event.type == "contact.merged":
        _owe_unsynced(session, contact_id)
    elif event.source != "bot" and _tagged_since(session, contact_id, event.received_at):
        _owe_unsynced(session, contact_id, since=event.received_at)
    owed = session.info.pop(_OWED, None)
    if owed:
        ctx.after_commit.append(lambda: tag_sync.kick(ctx.settings, owed))


def kick_sync(settings: Settings, session: Session) -> None:
    """After the caller's commit: enqueue the sync of the TagSync rows its add_tag /
    remove_tag calls wrote (the pipeline step does this itself)."""
    owed = session.info.pop(_OWED, None)
    if owed:
        tag_sync.kick(settings, owed)


# --- adding and removing, with the sync bookkeeping ------------------------------------------


def add_tag(
    session: Session,
    contact_id: int,
    tag: str,
    source: str,
    ref: str | None = None,
    *,
    sync: bool = True,
    event_id: int | None = None,
) -> bool:
    """Give the contact ``tag`` (kept with its first source if already there) in the
    caller's transaction; True if it was new. ``ref`` is the actor (rule, word, channel,
    journey step, rep userid), ``event_id`` the event that caused it (it earns the tag either
    way); the change goes on the timeline (bot.contacts.tag_history). A new tag owes a TagSync
    row to each platform the contact is on (the OA when it has an openid, WeCom when it has
    an active follow user); call ``kick_sync`` after commit (the pipeline step does).
    ``sync=False`` for a tag that came from a platform."""
    why = tag_history.Why(source, ref, event_id)
    if not tag_history.add(session, contact_id, tag, why):
        return False
    changes.note(session, contact_id, changes.TAG_ADDED, {"tag": tag, "source": source})
    if sync:
        _owe(session, contact_id, "add", tag)
    return True


def remove_tag(
    session: Session,
    contact_id: int,
    tag: str,
    source: str = "manual",
    ref: str | None = None,
    *,
    sync: bool = True,
    event_id: int | None = None,
) -> bool:
    """Take ``tag`` off the contact (whatever gave it) in the caller's transaction; True if
    it was there. The removal goes on the timeline with its source, actor and causing event;
    owes TagSync rows like ``add_tag``."""
    why = tag_history.Why(source, ref, event_id)
    if not tag_history.remove(session, contact_id, tag, why):
        return False
    if sync:
        _owe(session, contact_id, "remove", tag)
    return True


def _platforms(session: Session, contact_id: int) -> list[str]:
    on: list[str] = []
    if session.execute(
        sa.select(Identity.id).where(Identity.contact_id == contact_id, Identity.kind == "openid")
    ).first():
        on.append("oa")
    if session.execute(
        sa.select(FollowUser.id).where(
            FollowUser.contact_id == contact_id, FollowUser.status == "active"
        )
    ).first():
        on.append("wecom")
    return on


def _owe(
    session: Session, contact_id: int, op: str, tag: str, platforms: list[str] | None = None
) -> None:
    """A TagSync row per platform; an older pending row for the same tag is superseded."""
    t = TagSync.__table__
    now = utcnow()
    owed: dict[str, int] = session.info.setdefault(_OWED, {})
    for platform in _platforms(session, contact_id) if platforms is None else platforms:
        session.execute(
            sa.update(t)
            .where(
                t.c.contact_id == contact_id,
                t.c.platform == platform,
                t.c.tag == tag,
                t.c.status == "pending",
            )
            .values(status="done", error="superseded by a later change", done_at=now)
        )
        row_id = session.execute(
            sa.insert(t)
            .values(
                contact_id=contact_id,
                platform=platform,
                op=op,
                tag=tag,
                status="pending",
                attempts=0,
                created_at=now,
            )
            .returning(t.c.id)
        ).scalar_one()
        owed[platform] = min(owed.get(platform, row_id), row_id)


# Built once: every event a person sends asks this (see _owe_unsynced).
_CT = ContactTag.__table__.c
_TAGS = (
    sa.select(_CT.tag)
    .where(_CT.contact_id == sa.bindparam("cid"), _CT.source != WECOM_SOURCE)
    .order_by(_CT.id)
)
_TAGS_SINCE = _TAGS.where(_CT.created_at >= sa.bindparam("since"))


_NEWEST = (
    sa.select(_CT.contact_id, sa.func.max(_CT.created_at))
    .where(_CT.contact_id.in_(sa.bindparam("ids", expanding=True)), _CT.source != WECOM_SOURCE)
    .group_by(_CT.contact_id)
)


def _tagged_since(session: Session, contact_id: int, since: Any) -> bool:
    """Can the contact have a tag from ``since`` on (one its callback added)? In a drain
    batch, one statement answers this for all the batch's contacts. Tags its earlier steps
    add are not in that answer, and need not be: ``add_tag`` owes their sync itself."""
    batch = session.info.get(BATCH_MEMO)
    if since is None or batch is None or contact_id not in batch.get(BATCH_CONTACTS, ()):
        return True
    if "tags.newest" not in batch:
        ids = sorted(batch[BATCH_CONTACTS])
        batch["tags.newest"] = dict(session.connection().execute(_NEWEST, {"ids": ids}).all())
    newest = batch["tags.newest"].get(contact_id)
    return newest is not None and newest >= since


def _owe_unsynced(
    session: Session, contact_id: int, since: Any = None, force: tuple[str, ...] = ()
) -> None:
    """Owe TagSync rows for tags a platform the contact is on has not been given: tags
    added in the callback's own transaction (reply rules, via record.add_tags; ``since``),
    tags a merge brought together, and (``force``) all tags for a newly added rep."""
    if since is None:
        tags = list(session.connection().execute(_TAGS, {"cid": contact_id}).scalars())
    else:
        params = {"cid": contact_id, "since": since}
        tags = list(session.connection().execute(_TAGS_SINCE, params).scalars())
    if not tags:
        return
    t = TagSync.__table__.c
    latest: dict[tuple[str, str], str] = {}
    for platform, tag, op in session.execute(
        sa.select(t.platform, t.tag, t.op)
        .where(t.contact_id == contact_id, t.tag.in_(tags))
        .order_by(t.id)
    ).all():
        latest[(platform, tag)] = op
    platforms = _platforms(session, contact_id)
    for tag in tags:
        owed = [p for p in platforms if p in force or latest.get((p, tag)) != "add"]
        if owed:
            _owe(session, contact_id, "add", tag, owed)


# --- tags coming back from WeCom -------------------------------------------------------------


def _wecom_tags_by_rep(
    data: dict[str, Any],
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, str]]:
    """From ``externalcontact/get``: each rep's tags on the customer, and the corp tags (type
    1) among them by name -> tag id."""
    by_rep: dict[str, list[dict[str, Any]]] = {}
    corp: dict[str, str] = {}
    for follow in data.get("follow_user") or []:
        tags = [
            {k: t.get(k) for k in ("tag_id", "tag_name", "group_name", "type") if k in t}
            for t in follow.get("tags") or []
        ]
        by_rep[str(follow.get("userid"))] = tags
        for t in tags:
            if t.get("type", 1) == 1 and t.get("tag_name"):
                corp.setdefault(str(t["tag_name"])[:64], str(t.get("tag_id") or "")[:64])
    return by_rep, corp


def pull_wecom_tags(
    settings: Settings,
    contact_id: int,
    external_userid: str,
    userid: str,
    event_id: int | None = None,
) -> dict[str, list[str]]:
    """A rep changed the customer in WeCom (``edit_external_contact``): read the customer
    (``externalcontact/get``) and make the contact's "wecom" tags match the corp tags
    (type 1) the reps have on them now: new ones are added, "wecom" tags that are gone are
    removed (tags from other sources are left alone; a tag with a pending sync from Yuchi is
    not overwritten). Updates FollowUser.wecom_tags for every rep of the customer. Writes no
    TagSync rows (the change came from WeCom). Each change names the rep ``userid`` and the
    edit event ``event_id`` that caused it (a second pull for that edit changes nothing). Raises wechat.PlatformError on an API error
    (the caller's job retries). Returns {"added": [...], "removed": [...]}."""
    data = sync_rows.call(
        settings,
        wechat.wecom(settings),
        "get",
        "externalcontact/get",
        params={"external_userid": external_userid},
    )
    by_rep, corp = _wecom_tags_by_rep(data)
    with session_scope(settings.database_url) as session:
        cid = contacts.resolve(session, contact_id)
        for row in session.execute(
            sa.select(FollowUser).where(
                FollowUser.contact_id == cid, FollowUser.userid.in_(list(by_rep) or [userid])
            )
        ).scalars():
            row.wecom_tags = by_rep.get(row.userid, [])
            session.add(row)
        have = dict(
            session.execute(
                sa.select(ContactTag.tag, ContactTag.source).where(ContactTag.contact_id == cid)
            ).all()
        )
        t = TagSync.__table__.c
        pending = dict(
            session.execute(
                sa.select(t.tag, t.op)
                .where(t.contact_id == cid, t.platform == "wecom", t.status == "pending")
                .order_by(t.id)
            ).all()
        )
        added = [n for n in corp if n not in have and pending.get(n) != "remove"]
        removed = [
            tag
            for tag, source in have.items()
            if source == WECOM_SOURCE and tag not in corp and pending.get(tag) != "add"
        ]
        for name in added:
            add_tag(session, cid, name, WECOM_SOURCE, userid, sync=False, event_id=event_id)
        for tag in removed:
            remove_tag(session, cid, tag, WECOM_SOURCE, userid, sync=False, event_id=event_id)
    return {"added": added, "removed": removed}


def refresh_corp_tags(settings: Settings) -> dict[str, int]:
    """The corp tag library changed (``change_external_tag``): reload it
    (``externalcontact/get_corp_tag_list``) into CorpTag, marking vanished tags deleted.
    Raises wechat.PlatformError on an API error. Returns {"tags": n, "deleted": n}."""
    return sync_wecom.refresh_corp_tags(settings)
