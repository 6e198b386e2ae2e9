"""What WeCom and Official Account events mean for the contact, in the background:
follow users (which reps have the customer), the staff directory, channel tags and welcome
messages, names and unionids from the platforms (and One ID merges when a unionid is shared).

Pipeline steps update the database inside the event's transaction; platform calls happen after
commit (``ctx.after_commit``), each in its own short transaction, so no transaction is held
open across an HTTP call.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa

from bot.contacts import identity as contacts
from bot.contacts.record import IncomingEvent, record
from bot.core import queue, wechat
from bot.core.config import Settings
from bot.core.db import session_scope
from bot.core.models import Channel, Contact, FollowUser, Identity, Rep, utcnow
from bot.scoring.recompute import recompute
from bot.tagging import tags as tagging

if TYPE_CHECKING:
    from bot.core.context import Context

log = logging.getLogger(__name__)
REP_REFRESH = timedelta(days=1)

FOLLOW_ENDED = {
    "wecom.rep_deleted_customer": "rep_deleted",
    "wecom.customer_deleted_rep": "customer_deleted",
}


def follow_merges(ctx: Context) -> None:
    """First step: an event recorded for a contact that has since been merged belongs to the
    survivor (a callback can race a merge). The common case costs nothing: the batch read
    its contacts' merge pointers before the first step (``contacts.read_alive``), and a merge
    since then forgets what it read."""
    if contacts.known_alive(ctx.session, ctx.event.contact_id):
        return
    contact = ctx.session.get(Contact, ctx.event.contact_id)
    if contact is None:
        return
    if contact.merged_into_id is None:
        contacts.seen_alive(ctx.session, contact.id)  # the later steps' resolve() asks again
        return
    ctx.event.contact_id = contacts.resolve(ctx.session, contact.merged_into_id)
    ctx.session.add(ctx.event)
    ctx.session.flush()


def on_event(ctx: Context) -> None:
    ev, props, session, settings = ctx.event, ctx.event.properties, ctx.session, ctx.settings
    if ev.type in ("wecom.contact_added", "wecom.contact_half_added"):
        userid, external = props.get("userid", ""), _external_userid(session, ev.contact_id)
        channel = _channel(session, props.get("state"))
        _upsert_follow_user(
            session, ev.contact_id, userid, external, props.get("state"), ev.occurred_at
        )
        if channel is not None:
            _apply_channel(session, ev.contact_id, channel, ev.id)
            if props.get("welcome_code") and channel.welcome_text:
                code, text = props["welcome_code"], channel.welcome_text
                ctx.after_commit.append(lambda: send_welcome(settings, code, text))
        ctx.after_commit.append(lambda: sync_rep(settings, userid))
        ctx.after_commit.append(lambda: fetch_external_contact(settings, ev.contact_id, external))
    elif ev.type == "wecom.contact_edited":
        external = _external_userid(session, ev.contact_id)
        userid, contact_id, event_id = props.get("userid", ""), ev.contact_id, ev.id
        ctx.after_commit.append(lambda: fetch_external_contact(settings, contact_id, external))
        ctx.after_commit.append(
            lambda: _pull_tags(settings, contact_id, external, userid, event_id)
        )
    elif ev.type in FOLLOW_ENDED:
        fu = FollowUser.__table__.c
        session.execute(
            sa.update(FollowUser.__table__)
            .where(fu.contact_id == ev.contact_id, fu.userid == props.get("userid", ""))
            .values(status=FOLLOW_ENDED[ev.type], ended_at=ev.occurred_at)
        )
    elif ev.type in ("oa.subscribe", "oa.scan"):
        openid = _identity(session, ev.contact_id, "openid", settings.oa_appid)
        if openid and not _identity(session, ev.contact_id, "unionid", ""):
            ctx.after_commit.append(lambda: fetch_oa_user(settings, ev.contact_id, openid))


def on_system_event(ctx: Context) -> None:
    if ctx.event.type == "wecom.corp_tag_changed":
        ctx.after_commit.append(lambda: _refresh_corp_tags(ctx.settings))


def _refresh_corp_tags(settings: Settings) -> None:
    try:
        tagging.refresh_corp_tags(settings)
    except wechat.PlatformError as exc:  # the next change event or tag sync reloads them
        log.warning("corp tag library not refreshed: %s", exc)


def _pull_tags(
    settings: Settings, contact_id: int, external: str | None, userid: str, event_id: int
) -> None:
    if not external:
        return
    try:
        tagging.pull_wecom_tags(settings, contact_id, external, userid, event_id)
    except wechat.PlatformError as exc:  # an after-commit step: the others still run
        log.warning("tags of external contact %s not pulled: %s", external, exc)


# --- inside the event's transaction ----------------------------------------------------------


def _identity(session, contact_id: int, kind: str, app_id: str | None) -> str | None:  # noqa: ANN001
    query = sa.select(Identity.value).where(
        Identity.contact_id == contact_id, Identity.kind == kind
    )
    if app_id is not None and kind != "unionid":
        query = query.where(Identity.app_id == app_id)
    return session.execute(query.limit(1)).scalar()


def _external_userid(session, contact_id: int) -> str | None:  # noqa: ANN001
    return _identity(session, contact_id, "external_userid", None)


def _channel(session, state: str | None) -> Channel | None:  # noqa: ANN001
    if not state:
        return None
    return session.execute(sa.select(Channel).where(Channel.state == state)).scalar()


def _upsert_follow_user(session, contact_id, userid, external, state, when) -> None:  # noqa: ANN001
    row = session.execute(
        sa.select(FollowUser).where(
            FollowUser.contact_id == contact_id, FollowUser.userid == userid
        )
    ).scalar()
    if row is None:
        row = FollowUser(
            contact_id=contact_id, userid=userid, external_userid=external or "", added_at=when
        )
    row.state, row.status, row.ended_at = state or row.state, "active", None
    session.add(row)
    session.flush()


def _apply_channel(session, contact_id: int, channel: Channel, event_id: int) -> None:  # noqa: ANN001
    contact = session.get(Contact, contact_id)
    if contact.source_channel_id is None:
        contact.source_channel_id = channel.id
        session.add(contact)
    for tag in channel.tags:
        ref = f"channel:{channel.id}"
        tagging.add_tag(session, contact_id, tag, "channel", ref, event_id=event_id)


# --- after commit: platform calls --------------------------------------------------------------


def send_welcome(settings: Settings, welcome_code: str, text: str) -> bool:
    """The channel's welcome message; the code is valid once, for 20 s after the add event."""
    try:
        wechat.wecom(settings).call(
            "post",
            "externalcontact/send_welcome_msg",
            data={"welcome_code": welcome_code, "text": {"content": text}},
        )
    except wechat.PlatformError as exc:
        log.warning("welcome message not sent: %s", exc)
        return False
    return True


def sync_rep(settings: Settings, userid: str, force: bool = False) -> Rep | None:
    """Make sure the rep is in the staff directory (``user/get`` when new or stale)."""
    if not userid:
        return None
    with session_scope(settings.database_url) as session:
        rep = session.get(Rep, userid)
        fresh = rep is not None and rep.synced_at and utcnow() - rep.synced_at < REP_REFRESH
        if fresh and not force:
            return rep
    try:
        info = wechat.wecom(settings).call("get", "user/get", params={"userid": userid})
    except wechat.PlatformError as exc:
        log.warning("rep %s not synced: %s", userid, exc)
        info = None
    with session_scope(settings.database_url) as session:
        rep = session.get(Rep, userid) or Rep(userid=userid)
        if info is not None:
            rep.name = str(info.get("name") or rep.name or userid)
            rep.active = info.get("status", 1) == 1
            if rep.team is None and info.get("main_department"):
                rep.team = str(info["main_department"])[:64]
            rep.synced_at = utcnow()
        session.add(rep)
        session.flush()
        return rep


def fetch_external_contact(settings: Settings, contact_id: int, external: str | None) -> int:
    """Name and unionid from ``externalcontact/get``; a shared unionid merges contacts.
    Returns the surviving contact id."""
    if not external:
        return contact_id
    try:
        data = wechat.wecom(settings).call(
            "get", "externalcontact/get", params={"external_userid": external}
        )
    except wechat.PlatformError as exc:
        log.warning("external contact %s not fetched: %s", external, exc)
        return contact_id
    info = data.get("external_contact") or {}
    return _learn(settings, contact_id, info.get("name"), info.get("unionid"))


def fetch_oa_user(settings: Settings, contact_id: int, openid: str) -> int:
    """The unionid from the Official Account's ``user/info`` (only when the account is bound to
    an Open Platform account); a shared unionid merges contacts."""
    try:
        data = wechat.oa(settings).call(
            "get", "user/info", params={"openid": openid, "lang": "zh_CN"}
        )
    except wechat.PlatformError as exc:
        log.warning("user/info for %s failed: %s", openid, exc)
        return contact_id
    return _learn(settings, contact_id, None, data.get("unionid"))


def _learn(settings: Settings, contact_id: int, name: str | None, unionid: str | None) -> int:
    outbox = None
    with session_scope(settings.database_url) as session:
        survivor = contacts.resolve(session, contact_id)
        if name:
            contact = session.get(Contact, survivor)
            if contact.name != name:
                contact.name = name
                session.add(contact)
        if unionid:
            survivor, outbox = contacts.attach(session, survivor, "unionid", unionid)
    if outbox is not None:
        queue.kick_outbox(settings)
        _after_merge(settings, survivor)
    return survivor


def _after_merge(settings: Settings, survivor: int) -> None:
    """Scores are the ledger's sum: recompute the survivor's from its (merged) ledger."""
    recompute(settings, [survivor])


# --- the sidebar: a customer opened before any callback told us about them --------------------


def customer_for(settings: Settings, external_userid: str, userid: str) -> int:
    """The contact behind a WeCom ``external_userid``. One never seen is fetched with
    ``externalcontact/get`` and created on the spot (a shared unionid merges, as always);
    PlatformError when WeCom does not know them."""
    corp = settings.wecom_corp_id
    with session_scope(settings.database_url) as session:
        known = contacts.identity_owner(session, "external_userid", external_userid, corp)
    if known is not None:
        return known
    data = wechat.wecom(settings).call(
        "get", "externalcontact/get", params={"external_userid": external_userid}
    )
    info = data.get("external_contact") or {}
    event = IncomingEvent(
        type="wecom.contact_found",
        source="wecom",
        identity_kind="external_userid",
        identity_value=external_userid,
        app_id=corp,
        occurred_at=utcnow(),
        dedupe_key=f"wecom:{corp}:found:{external_userid}"[:200],
        properties={"userid": userid, "via": "sidebar"},
        interaction=False,
    )
    with session_scope(settings.database_url) as session:
        cid = record(session, event).contact_id
    with session_scope(settings.database_url) as session:
        contact = session.get(Contact, cid)
        contact.name = contact.name or str(info.get("name") or "")[:128] or None
        extra = {k: info[k] for k in ("avatar", "corp_name") if info.get(k)}
        contact.fields = {**extra, **(contact.fields or {})}
        session.add(contact)
        for follow in data.get("follow_user") or []:
            if isinstance(follow, dict) and follow.get("userid"):
                _upsert_follow_user(
                    session, cid, follow["userid"], external_userid, follow.get("state"), utcnow()
                )
    queue.kick_outbox(settings)
    return _learn(settings, cid, None, info.get("unionid"))
