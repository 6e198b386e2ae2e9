"""WeCom callbacks -> normalized events. Pure, table-driven like handlers/oa_events.py.

wechatpy 1.8 parses ``change_external_contact`` as an unknown message, so the fields are read
from the (safely parsed) XML here. Note the platform's meaning of the two delete events:
``del_external_contact`` — the rep deleted the customer; ``del_follow_user`` — the customer
deleted the rep.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from bot.contacts.record import IncomingEvent
from handlers.oa_events import UNIX_TIME, MissingField, Normalized, event_time, pick

Fields = dict[str, Any]


def added(f: Fields) -> Normalized:
    props = pick(f, userid="UserID", state="State", welcome_code="WelcomeCode")
    return Normalized("wecom.contact_added", props)


def half_added(f: Fields) -> Normalized:
    props = pick(f, userid="UserID", state="State", welcome_code="WelcomeCode")
    return Normalized("wecom.contact_half_added", props)


def edited(f: Fields) -> Normalized:
    return Normalized("wecom.contact_edited", pick(f, userid="UserID"), interaction=False)


def rep_deleted_customer(f: Fields) -> Normalized:
    props = pick(f, userid="UserID", source="Source")
    return Normalized("wecom.rep_deleted_customer", props, interaction=False)


def customer_deleted_rep(f: Fields) -> Normalized:
    return Normalized("wecom.customer_deleted_rep", pick(f, userid="UserID"), interaction=False)


def transfer_failed(f: Fields) -> Normalized:
    props = pick(f, userid="UserID", fail_reason="FailReason")
    return Normalized("wecom.transfer_failed", props, interaction=False)


# change_external_contact: ChangeType -> normalizer (each about one external contact)
CONTACT_CHANGES: dict[str, Callable[[Fields], Normalized]] = {
    "add_external_contact": added,
    "add_half_external_contact": half_added,
    "edit_external_contact": edited,
    "del_external_contact": rep_deleted_customer,
    "del_follow_user": customer_deleted_rep,
    "transfer_fail": transfer_failed,
}

# Events about no one person: stored without a contact, handled by pipeline.SYSTEM_STEPS.
SYSTEM_EVENTS: dict[str, str] = {
    "change_external_tag": "wecom.corp_tag_changed",
    "change_external_chat": "wecom.chat_changed",
}


def normalize(fields: Fields, corp_id: str, received_at: datetime) -> IncomingEvent:
    """One WeCom callback's fields, arrived at ``received_at`` -> the event to store (see
    oa_events.event_time; ``CreateTime`` is kept as a property). Raises MissingField."""
    raw_time = str(fields.get("CreateTime") or "")
    if not UNIX_TIME.fullmatch(raw_time):
        raise MissingField("missing or malformed CreateTime")
    msg_type = str(fields.get("MsgType") or "").lower()
    event = str(fields.get("Event") or "")
    change = str(fields.get("ChangeType") or "")
    sender = str(fields.get("FromUserName") or "")
    if not msg_type:
        raise MissingField("missing field MsgType")

    external = str(fields.get("ExternalUserID") or "")
    if event == "change_external_contact" and change in CONTACT_CHANGES:
        if not external:
            raise MissingField("missing field ExternalUserID")
        if len(external) > 128:
            raise MissingField("ExternalUserID is too long")
        result = CONTACT_CHANGES[change](fields)
        key = f"wecom:{corp_id}:{change}:{fields.get('UserID', '')}:{external}:{raw_time}"
        return IncomingEvent(
            type=result.type,
            source="wecom",
            identity_kind="external_userid",
            identity_value=external,
            app_id=corp_id,
            occurred_at=event_time(raw_time, received_at),
            received_at=received_at,
            dedupe_key=key[:200],
            properties={**result.properties, "create_time": int(raw_time)},
            interaction=result.interaction,
        )

    if event in SYSTEM_EVENTS:
        type_ = SYSTEM_EVENTS[event]
        props = pick(fields, change="ChangeType", id="Id", tag_type="TagType", chat_id="ChatId")
    else:
        type_, props = "wecom.unknown", {"raw": fields}
    msg_id = fields.get("MsgId")
    key = (
        f"wecom:{corp_id}:msg:{msg_id}"
        if msg_id
        else f"wecom:{corp_id}:evt:{sender}:{raw_time}:{event}:{change}:{fields.get('Id', '')}"
    )
    return IncomingEvent(
        type=type_,
        source="wecom",
        identity_kind="",
        identity_value="",
        app_id=corp_id,
        occurred_at=event_time(raw_time, received_at),
        received_at=received_at,
        dedupe_key=key[:200],
        properties={**props, "create_time": int(raw_time)},
        interaction=False,
    )
