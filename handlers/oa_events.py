"""Official Account messages and events -> normalized events. Pure, table-driven.

``MESSAGES`` maps ``MsgType`` and ``EVENTS`` maps ``Event`` to a function that returns the
event's type and properties. Anything not in the tables becomes ``oa.unknown`` with its raw
fields, so nothing WeChat sends is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.contacts.record import IncomingEvent

Fields = dict[str, Any]
UNIX_TIME = re.compile(r"[0-9]{1,11}")  # ASCII digits only: one instant, one dedupe key


class MissingField(ValueError):
    """A field every WeChat message carries is absent or malformed (for a 400)."""


@dataclass(frozen=True)
class Normalized:
    type: str
    properties: dict[str, Any]
    interaction: bool = True  # counts toward the 48-hour customer-service window
    subscribed: bool | None = None
    # a platform report about no follower (stored without a contact): its FromUserName is
    # not a person (MASSSENDJOBFINISH comes from the account's mass-send helper)
    about_no_one: bool = False


def pick(fields: Fields, **names: str) -> dict[str, Any]:
    """Properties named in snake_case from WeChat's CamelCase fields, skipping absent ones."""
    return {key: fields[src] for key, src in names.items() if fields.get(src) not in (None, "")}


def _items(container: Any, name: str) -> list[Fields]:
    """The ``<item>`` children of ``container[name]`` as a list (parse_flat gives one item as a
    dict, several as a list, none as an empty string)."""
    holder = container.get(name) if isinstance(container, dict) else None
    items = holder.get("item") if isinstance(holder, dict) else None
    if isinstance(items, dict):
        return [items]
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def _float(fields: Fields, name: str) -> float | None:
    try:
        return float(fields[name])
    except (KeyError, TypeError, ValueError):
        return None


# --- messages (MsgType) ------------------------------------------------------------------


def text(f: Fields) -> Normalized:
    return Normalized(
        "oa.text", pick(f, content="Content", msg_id="MsgId", biz_msg_menu_id="bizmsgmenuid")
    )


def image(f: Fields) -> Normalized:
    return Normalized("oa.image", pick(f, pic_url="PicUrl", media_id="MediaId", msg_id="MsgId"))


def voice(f: Fields) -> Normalized:
    return Normalized(
        "oa.voice",
        pick(f, media_id="MediaId", format="Format", recognition="Recognition", msg_id="MsgId"),
    )


def video(f: Fields) -> Normalized:
    kind = "oa.shortvideo" if f.get("MsgType") == "shortvideo" else "oa.video"
    return Normalized(
        kind, pick(f, media_id="MediaId", thumb_media_id="ThumbMediaId", msg_id="MsgId")
    )


def location(f: Fields) -> Normalized:
    props = pick(f, label="Label", msg_id="MsgId")
    props.update(
        latitude=_float(f, "Location_X"),
        longitude=_float(f, "Location_Y"),
        scale=_float(f, "Scale"),
    )
    return Normalized("oa.location", props)


def link(f: Fields) -> Normalized:
    return Normalized(
        "oa.link", pick(f, title="Title", description="Description", url="Url", msg_id="MsgId")
    )


def miniprogram_page(f: Fields) -> Normalized:
    """A mini-program card the person sent to the account."""
    return Normalized(
        "oa.miniprogrampage",
        pick(
            f,
            title="Title",
            app_id="AppId",
            page_path="PagePath",
            thumb_url="ThumbUrl",
            thumb_media_id="ThumbMediaId",
            msg_id="MsgId",
        ),
    )


MESSAGES: dict[str, Callable[[Fields], Normalized]] = {
    "text": text,
    "image": image,
    "voice": voice,
    "video": video,
    "shortvideo": video,
    "location": location,
    "link": link,
    "miniprogrampage": miniprogram_page,
}

# --- events (MsgType=event, Event) ------------------------------------------------------


def subscribe(f: Fields) -> Normalized:
    # EventKey is kept whatever it holds: qrscene_<scene> after a parametric QR, but also
    # last_trade_no_<no> after a payment or scanbarcode|… / scanimage|… after a product scan.
    key = str(f.get("EventKey") or "")
    props: dict[str, Any] = pick(f, event_key="EventKey", ticket="Ticket")
    if key.startswith("qrscene_"):
        props["scene"] = key[len("qrscene_") :]
    return Normalized("oa.subscribe", props, subscribed=True)


def unsubscribe(f: Fields) -> Normalized:
    return Normalized("oa.unsubscribe", {}, interaction=False, subscribed=False)


def scan(f: Fields) -> Normalized:
    props = pick(f, ticket="Ticket")
    props["scene"] = str(f.get("EventKey") or "")
    return Normalized("oa.scan", props, subscribed=True)


def location_report(f: Fields) -> Normalized:
    props = {
        "latitude": _float(f, "Latitude"),
        "longitude": _float(f, "Longitude"),
        "precision": _float(f, "Precision"),
        "reported": True,
    }
    return Normalized("oa.location", props, interaction=False)


def click(f: Fields) -> Normalized:
    # MenuId is documented for VIEW only; kept should a CLICK ever carry it
    return Normalized("oa.click", pick(f, key="EventKey", menu_id="MenuId"))


def view(f: Fields) -> Normalized:
    return Normalized("oa.view", pick(f, url="EventKey", menu_id="MenuId"), interaction=False)


def template_send_finished(f: Fields) -> Normalized:
    return Normalized(
        "oa.template_send_finished", pick(f, msg_id="MsgID", status="Status"), interaction=False
    )


def mass_send_finished(f: Fields) -> Normalized:
    props = pick(
        f,
        msg_id="MsgID",
        status="Status",
        total="TotalCount",
        filtered="FilterCount",
        sent="SentCount",
        errors="ErrorCount",
    )
    copyright_check = f.get("CopyrightCheckResult")
    if isinstance(copyright_check, dict):
        props["copyright_check"] = pick(
            copyright_check, count="Count", check_state="CheckState"
        ) | {
            "results": [
                pick(
                    item,
                    article_idx="ArticleIdx",
                    user_declare_state="UserDeclareState",
                    audit_state="AuditState",
                    original_article_url="OriginalArticleUrl",
                    original_article_type="OriginalArticleType",
                    can_reprint="CanReprint",
                    need_replace_content="NeedReplaceContent",
                    need_show_reprint_source="NeedShowReprintSource",
                )
                for item in _items(copyright_check, "ResultList")
            ]
        }
    article_urls = f.get("ArticleUrlResult")
    if isinstance(article_urls, dict):
        props["article_urls"] = [
            pick(item, article_idx="ArticleIdx", url="ArticleUrl")
            for item in _items(article_urls, "ResultList")
        ]
    return Normalized("oa.mass_send_finished", props, interaction=False, about_no_one=True)


def scancode(f: Fields) -> Normalized:
    info = f.get("ScanCodeInfo") if isinstance(f.get("ScanCodeInfo"), dict) else {}
    props = pick(f, key="EventKey") | pick(info, scan_type="ScanType", result="ScanResult")
    return Normalized("oa.scancode", props)


def menu_photo(f: Fields) -> Normalized:
    info = f.get("SendPicsInfo") if isinstance(f.get("SendPicsInfo"), dict) else {}
    props = pick(f, key="EventKey") | {"kind": f.get("Event")} | pick(info, count="Count")
    props["pic_md5_sums"] = [
        str(item["PicMd5Sum"]) for item in _items(info, "PicList") if item.get("PicMd5Sum")
    ]
    return Normalized("oa.menu_photo", props, interaction=False)


def location_select(f: Fields) -> Normalized:
    info = f.get("SendLocationInfo") if isinstance(f.get("SendLocationInfo"), dict) else {}
    props = pick(f, key="EventKey") | pick(info, label="Label", poi="Poiname")
    props.update(
        latitude=_float(info, "Location_X"),
        longitude=_float(info, "Location_Y"),
        scale=_float(info, "Scale"),
    )
    return Normalized("oa.location_select", props, interaction=False)


def view_miniprogram(f: Fields) -> Normalized:
    return Normalized(
        "oa.view_miniprogram", pick(f, path="EventKey", menu_id="MenuId"), interaction=False
    )


EVENTS: dict[str, Callable[[Fields], Normalized]] = {
    "subscribe": subscribe,
    "unsubscribe": unsubscribe,
    "scan": scan,
    "location": location_report,
    "click": click,
    "view": view,
    "templatesendjobfinish": template_send_finished,
    "masssendjobfinish": mass_send_finished,
    "scancode_push": scancode,
    "scancode_waitmsg": scancode,
    "pic_sysphoto": menu_photo,
    "pic_photo_or_album": menu_photo,
    "pic_weixin": menu_photo,
    "location_select": location_select,
    "view_miniprogram": view_miniprogram,
}


def unknown(f: Fields) -> Normalized:
    # A message of a type we do not know yet is still the person's own action; an unknown
    # event may be anything the platform reports, so it opens no messaging window.
    return Normalized(
        "oa.unknown", {"raw": f}, interaction=str(f.get("MsgType")).lower() != "event"
    )


def _required(fields: Fields, name: str) -> str:
    value = fields.get(name)
    if not isinstance(value, str) or not value:
        raise MissingField(f"missing field {name}")
    return value


def create_time(fields: Fields) -> str:
    """The sender's ``CreateTime`` (digits): kept for dedupe keys and as a property."""
    raw_time = _required(fields, "CreateTime")
    if not UNIX_TIME.fullmatch(raw_time):
        raise MissingField(f"CreateTime {raw_time[:20]!r} is not a Unix time")
    return raw_time


def event_time(raw_time: str, received_at: datetime) -> datetime:
    """The event's time: the sender's ``CreateTime``, but never later than its arrival (a
    CreateTime ahead of the server clock would sit at the top of every timeline). The
    48-hour window never uses it: the contact's last interaction is the arrival."""
    return min(datetime.fromtimestamp(int(raw_time), UTC), received_at)


def normalize(fields: Fields, app_id: str, received_at: datetime) -> IncomingEvent:
    """One callback's fields, arrived at ``received_at`` -> the event to store. Raises
    MissingField on a broken message."""
    openid = _required(fields, "FromUserName")
    msg_type = _required(fields, "MsgType").lower()
    raw_time = create_time(fields)
    if len(openid) > 128:
        raise MissingField("FromUserName is too long")

    if msg_type == "event":
        event = str(fields.get("Event") or "")
        handler = EVENTS.get(event.lower(), unknown)
        dedupe_key = f"oa:{app_id}:evt:{openid}:{raw_time}:{event}"
    else:
        handler = MESSAGES.get(msg_type, unknown)
        msg_id = fields.get("MsgId")
        dedupe_key = (
            f"oa:{app_id}:msg:{msg_id}"
            if msg_id
            else f"oa:{app_id}:evt:{openid}:{raw_time}:{msg_type}"
        )
    result = handler(fields)
    return IncomingEvent(
        type=result.type,
        source="oa",
        identity_kind="openid",
        identity_value="" if result.about_no_one else openid,
        app_id=app_id,
        occurred_at=event_time(raw_time, received_at),
        received_at=received_at,
        dedupe_key=dedupe_key[:200],
        properties={**result.properties, "create_time": int(raw_time)},
        interaction=result.interaction,
        subscribed=result.subscribed,
    )
