"""The Official Account server API (``https://api.weixin.qq.com/cgi-bin/…``) and QR images
(``https://mp.weixin.qq.com/cgi-bin/showqrcode``), with WeChat's paths, shapes and rules."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, abort, request

from wxsim.common import api, body, ok, sim, state, utf8_len
from wxsim.entities import QRCode
from wxsim.errors import ApiError
from wxsim.png import qr_png
from wxsim.state import WINDOW_48H

bp = Blueprint("wxsim_oa", __name__)

CUSTOM_TYPES = {
    "text",
    "image",
    "voice",
    "video",
    "music",
    "news",
    "mpnews",
    "mpnewsarticle",
    "msgmenu",
    "wxcard",
    "miniprogrampage",
}
QR_ACTIONS = {"QR_SCENE", "QR_STR_SCENE", "QR_LIMIT_SCENE", "QR_LIMIT_STR_SCENE"}
QR_MAX_EXPIRE = 2592000
MENU_KEY_TYPES = {
    "click",
    "scancode_push",
    "scancode_waitmsg",
    "pic_sysphoto",
    "pic_photo_or_album",
    "pic_weixin",
    "location_select",
}
MENU_TYPES = MENU_KEY_TYPES | {
    "view",
    "media_id",
    "view_limited",
    "article_id",
    "article_view_limited",
    "miniprogram",
}
MAX_TAGS = 100
MENU_CREATES_A_DAY = 2000  # addconditional calls (WECHAT.md)
MAX_TAGS_PER_USER = 20


def _appid_secret(appid: str | None, secret: str | None) -> None:
    cfg = sim().config
    if not appid:
        raise ApiError(41002)
    if appid != cfg.oa_appid:
        raise ApiError(40013)
    if not secret:
        raise ApiError(41004)
    if secret != cfg.oa_secret:
        raise ApiError(40125)


# --- access tokens -----------------------------------------------------------------------------


@bp.route("/cgi-bin/token", methods=["GET"])
@api("oa", auth=False)
def token() -> dict[str, Any]:
    if request.args.get("grant_type") != "client_credential":
        raise ApiError(40002)
    _appid_secret(request.args.get("appid"), request.args.get("secret"))
    t = state().issue_token("oa")
    return {"access_token": t.value, "expires_in": int(t.expires_at - t.issued_at)}


@bp.route("/cgi-bin/stable_token", methods=["GET", "POST"])
@api("oa", auth=False, post=True)
def stable_token() -> dict[str, Any]:
    data = body()
    if data.get("grant_type") != "client_credential":
        raise ApiError(40002)
    _appid_secret(data.get("appid"), data.get("secret"))
    t = state().stable_token(bool(data.get("force_refresh")))
    return {"access_token": t.value, "expires_in": max(0, round(t.expires_at - state().now()))}


# --- messages ----------------------------------------------------------------------------------


def _recipient(openid: object, window: bool) -> str:
    """The openid, checked as WeChat checks it: known (40003), following (43004) and, for
    customer-service messages, inside the 48-hour window (45015)."""
    if not isinstance(openid, str) or not openid:
        raise ApiError(40003)
    st = state()
    user = st.user(openid)
    if user is None:
        raise ApiError(40003)
    if not user.subscribe:
        raise ApiError(43004)
    if window:
        last = user.last_interaction
        if last is None or st.now() - last > WINDOW_48H:
            raise ApiError(45015)
    return openid


@bp.route("/cgi-bin/message/custom/send", methods=["GET", "POST"])
@api("oa", post=True)
def custom_send() -> dict[str, Any]:
    data = body()
    msgtype = data.get("msgtype")
    if msgtype not in CUSTOM_TYPES:
        raise ApiError(40008)
    content = data.get(msgtype)
    if not isinstance(content, dict):
        raise ApiError(47001, f"missing {msgtype} object")
    if msgtype == "text" and not str(content.get("content") or "").strip():
        raise ApiError(44004)
    if msgtype == "news":
        articles = content.get("articles")
        if not isinstance(articles, list) or not articles:
            raise ApiError(47001, "missing articles")
        if len(articles) > 1:
            raise ApiError(45008)
    if msgtype in ("image", "voice"):
        from wxsim.mass_api import check_media

        check_media(content.get("media_id"))
    openid = _recipient(data.get("touser"), window=True)
    state().deliver(f"openid:{openid}", "custom", data)
    return ok()


@bp.route("/cgi-bin/message/template/send", methods=["GET", "POST"])
@api("oa", post=True)
def template_send() -> dict[str, Any]:
    data = body()
    template_id = data.get("template_id")
    if not isinstance(template_id, str) or not template_id:
        raise ApiError(40037)
    if "data" in data and not isinstance(data["data"], dict):
        raise ApiError(47001, "data must be an object")
    openid = _recipient(data.get("touser"), window=False)
    st = state()
    client_msg_id = data.get("client_msg_id")
    with st.lock:
        if client_msg_id:  # WeChat sends one message per openid + client_msg_id
            for item in st.inboxes.get(f"openid:{openid}", []):
                if item["kind"] == "template" and item.get("client_msg_id") == client_msg_id:
                    return ok(msgid=item["msgid"])
        msgid = 2_000_000_000 + st.next_id()
        st.deliver(f"openid:{openid}", "template", data, msgid=msgid, client_msg_id=client_msg_id)
        blocked = st.users[openid].blocks_templates
    sim().actors.template_finished_later(
        openid, msgid, "failed:user block" if blocked else "success"
    )
    return ok(msgid=msgid)


# --- users and tags ------------------------------------------------------------------------------


@bp.route("/cgi-bin/user/info", methods=["GET"])
@api("oa")
def user_info() -> dict[str, Any]:
    openid = request.args.get("openid")
    user = state().user(openid) if openid else None
    if user is None:
        raise ApiError(40003)
    return user.info()


def _tag_id(data: dict[str, Any], key: str = "tagid") -> int:
    value = data.get(key)
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or value not in state().oa_tags:
        raise ApiError(45159)
    return value


def _body_tag() -> dict[str, Any]:
    tag = body().get("tag")
    if not isinstance(tag, dict):
        raise ApiError(47001, "missing tag")
    return tag


def _editable_tag_id(tag: dict[str, Any]) -> int:
    """An existing tag's id that may be changed (ids under 100 are the platform's own)."""
    tag_id = _tag_id(tag, "id")
    if tag_id < 100:
        raise ApiError(45058)
    return tag_id


@bp.route("/cgi-bin/tags/create", methods=["GET", "POST"])
@api("oa", post=True)
def tags_create() -> dict[str, Any]:
    tag = body().get("tag")
    name = tag.get("name") if isinstance(tag, dict) else None
    if not isinstance(name, str) or not name.strip():
        raise ApiError(45157, "empty tag name")
    if len(name) > 30:
        raise ApiError(45158)
    st = state()
    with st.lock:
        if name in st.oa_tags.values():
            raise ApiError(45157)
        if len(st.oa_tags) - 1 >= MAX_TAGS:  # the system tag 星标组 does not count
            raise ApiError(45056)
        tag_id = st.next_tag_id
        st.next_tag_id += 1
        st.oa_tags[tag_id] = name
    return {"tag": {"id": tag_id, "name": name}}


@bp.route("/cgi-bin/tags/get", methods=["GET"])
@api("oa")
def tags_get() -> dict[str, Any]:
    st = state()
    with st.lock:
        counts = {tid: 0 for tid in st.oa_tags}
        for user in st.users.values():
            for tid in user.tagid_list:
                counts[tid] = counts.get(tid, 0) + 1
        return {
            "tags": [
                {"id": tid, "name": name, "count": counts[tid]} for tid, name in st.oa_tags.items()
            ]
        }


@bp.route("/cgi-bin/tags/update", methods=["GET", "POST"])
@api("oa", post=True)
def tags_update() -> dict[str, Any]:
    tag = _body_tag()
    tag_id = _editable_tag_id(tag)
    name = tag.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ApiError(45157, "empty tag name")
    if len(name) > 30:
        raise ApiError(45158)
    st = state()
    with st.lock:
        if any(n == name and i != tag_id for i, n in st.oa_tags.items()):
            raise ApiError(45157)
        st.oa_tags[tag_id] = name
    return ok()


@bp.route("/cgi-bin/tags/delete", methods=["GET", "POST"])
@api("oa", post=True)
def tags_delete() -> dict[str, Any]:
    tag = _body_tag()
    tag_id = _editable_tag_id(tag)
    st = state()
    with st.lock:
        del st.oa_tags[tag_id]
        for user in st.users.values():
            if tag_id in user.tagid_list:
                user.tagid_list.remove(tag_id)
    return ok()


def _openid_list(data: dict[str, Any]) -> list[str]:
    openids = data.get("openid_list")
    if not isinstance(openids, list) or not 1 <= len(openids) <= 50:
        raise ApiError(40032)
    st = state()
    for openid in openids:
        if not isinstance(openid, str) or st.user(openid) is None:
            raise ApiError(40003, str(openid))
    return openids


@bp.route("/cgi-bin/tags/members/batchtagging", methods=["GET", "POST"])
@api("oa", post=True)
def batch_tagging() -> dict[str, Any]:
    data = body()
    openids = _openid_list(data)
    tag_id = _tag_id(data)
    st = state()
    with st.lock:
        users = [st.users[o] for o in openids]
        if any(
            tag_id not in u.tagid_list and len(u.tagid_list) >= MAX_TAGS_PER_USER for u in users
        ):
            raise ApiError(45059)
        for user in users:
            if tag_id not in user.tagid_list:
                user.tagid_list.append(tag_id)
    return ok()


@bp.route("/cgi-bin/tags/members/batchuntagging", methods=["GET", "POST"])
@api("oa", post=True)
def batch_untagging() -> dict[str, Any]:
    data = body()
    openids = _openid_list(data)
    tag_id = _tag_id(data)
    st = state()
    with st.lock:
        for openid in openids:
            user = st.users[openid]
            if tag_id in user.tagid_list:
                user.tagid_list.remove(tag_id)
    return ok()


@bp.route("/cgi-bin/tags/getidlist", methods=["GET", "POST"])
@api("oa", post=True)
def tags_of_user() -> dict[str, Any]:
    openid = body().get("openid")
    user = state().user(openid) if isinstance(openid, str) else None
    if user is None:
        raise ApiError(40003)
    return {"tagid_list": list(user.tagid_list)}


@bp.route("/cgi-bin/user/tag/get", methods=["GET", "POST"])
@api("oa", post=True)
def users_of_tag() -> dict[str, Any]:
    data = body()
    tag_id = _tag_id(data)
    st = state()
    with st.lock:
        openids = sorted(o for o, u in st.users.items() if tag_id in u.tagid_list)
    after = data.get("next_openid") or ""
    if after:
        openids = [o for o in openids if o > after]
    page = openids[:10000]
    return {
        "count": len(page),
        "data": {"openid": page},
        "next_openid": page[-1] if page else "",
    }


# --- QR codes ------------------------------------------------------------------------------------


@bp.route("/cgi-bin/qrcode/create", methods=["GET", "POST"])
@api("oa", post=True)
def qrcode_create() -> dict[str, Any]:
    data = body()
    action = data.get("action_name")
    if action not in QR_ACTIONS:
        raise ApiError(40035, "invalid action_name")
    info = data.get("action_info")
    scene = info.get("scene") if isinstance(info, dict) else None
    if not isinstance(scene, dict):
        raise ApiError(40035, "missing action_info.scene")
    scene_id, scene_str = None, None
    if action.endswith("STR_SCENE"):
        scene_str = scene.get("scene_str")
        if not isinstance(scene_str, str) or not 1 <= len(scene_str) <= 64:
            raise ApiError(40035, "scene_str must be 1-64 characters")
    else:
        scene_id = scene.get("scene_id")
        limit = 100000 if action == "QR_LIMIT_SCENE" else 2**32 - 1
        if (
            isinstance(scene_id, bool)
            or not isinstance(scene_id, int)
            or not 1 <= scene_id <= limit
        ):
            raise ApiError(40035, f"scene_id must be an integer 1-{limit}")
    temporary = not action.startswith("QR_LIMIT")
    expire: int | None = None
    if temporary:
        expire = data.get("expire_seconds", 60)
        if (
            isinstance(expire, bool)
            or not isinstance(expire, int)
            or not 1 <= expire <= QR_MAX_EXPIRE
        ):
            raise ApiError(40035, f"expire_seconds must be 1-{QR_MAX_EXPIRE}")
    ticket = "gQ" + secrets.token_urlsafe(60)
    st = state()
    code = QRCode(
        ticket=ticket,
        action_name=action,
        scene_id=scene_id,
        scene_str=scene_str,
        expire_seconds=expire,
        created_at=st.now(),
        url="http://weixin.qq.com/q/02" + secrets.token_urlsafe(16),
    )
    with st.lock:
        st.qrcodes[ticket] = code
    out: dict[str, Any] = {"ticket": ticket}
    if temporary:
        out["expire_seconds"] = expire
    out["url"] = code.url
    return out


@bp.route("/mp/cgi-bin/showqrcode", methods=["GET"])
def show_qrcode() -> Response:
    st = state()
    code = st.qrcodes.get(request.args.get("ticket", ""))
    if code is None:
        abort(404)
    if code.expire_seconds is not None and st.now() > code.created_at + code.expire_seconds:
        abort(404)
    return Response(qr_png(code.url), mimetype="image/png")


# --- menu ----------------------------------------------------------------------------------------


def _check_button(button: object, sub: bool) -> None:
    if not isinstance(button, dict):
        raise ApiError(40024 if sub else 40017)
    name = button.get("name")
    if not isinstance(name, str) or not name or utf8_len(name) > (60 if sub else 16):
        raise ApiError(40025 if sub else 40018)
    kind = button.get("type")
    if kind not in MENU_TYPES:
        raise ApiError(40024 if sub else 40017)
    if kind in MENU_KEY_TYPES:
        key = button.get("key")
        if not isinstance(key, str) or not key or utf8_len(key) > 128:
            raise ApiError(40026 if sub else 40019)
    if kind in ("view", "miniprogram"):
        url = button.get("url")
        if not isinstance(url, str) or not url or utf8_len(url) > 1024:
            raise ApiError(40027 if sub else 40020)
    if kind == "miniprogram" and not (button.get("appid") and button.get("pagepath")):
        raise ApiError(40035, "miniprogram button needs appid and pagepath")
    if kind in ("media_id", "view_limited") and not button.get("media_id"):
        raise ApiError(40035, "missing media_id")
    if kind in ("article_id", "article_view_limited") and not button.get("article_id"):
        raise ApiError(40035, "missing article_id")


def _check_menu(buttons: object) -> list[dict[str, Any]]:
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        raise ApiError(40016)
    for button in buttons:
        subs = button.get("sub_button") if isinstance(button, dict) else None
        if subs:
            if not isinstance(subs, list) or len(subs) > 5:
                raise ApiError(40023)
            name = button.get("name")
            if not isinstance(name, str) or not name or utf8_len(name) > 16:
                raise ApiError(40018)
            for sub in subs:
                _check_button(sub, sub=True)
        else:
            _check_button(button, sub=False)
    return buttons


def _domains(buttons: list[dict[str, Any]]) -> set[str]:
    out = set()
    for button in buttons:
        for b in button.get("sub_button") or [button]:
            if b.get("type") in ("view", "miniprogram") and isinstance(b.get("url"), str):
                out.add((urlsplit(b["url"]).hostname or "").lower())
    return out


@bp.route("/cgi-bin/menu/create", methods=["GET", "POST"])
@api("oa", post=True)
def menu_create() -> dict[str, Any]:
    buttons = _check_menu(body().get("button"))
    st = state()
    with st.lock:
        st.next_menu_id += 1
        st.menu = {"button": buttons, "menuid": st.next_menu_id}
    return ok()


@bp.route("/cgi-bin/menu/addconditional", methods=["GET", "POST"])
@api("oa", post=True)
def menu_add_conditional() -> dict[str, Any]:
    data = body()
    buttons = _check_menu(data.get("button"))
    rule = data.get("matchrule")
    if not isinstance(rule, dict) or not any(v not in (None, "") for v in rule.values()):
        raise ApiError(65304)
    if {k for k, v in rule.items() if v not in (None, "")} - {"tag_id", "client_platform_type"}:
        raise ApiError(65320)  # sex, country, province, city, language: no longer taken
    st = state()
    with st.lock:
        if st.menu is None:
            raise ApiError(65303)
        tag_id = rule.get("tag_id")
        if tag_id not in (None, "") and (
            not str(tag_id).isdigit() or int(str(tag_id)) not in st.oa_tags
        ):
            raise ApiError(40050)
        kept = list(st.conditional_menus)
        links = set().union(_domains(buttons), *(_domains(m["button"]) for m in kept))
        if len(links) > 3:
            raise ApiError(65316)
        if len(kept) >= 100:  # [unverified] the platform's count limit
            raise ApiError(65305)
        day = int(st.now() // 86400)
        if st.menu_creates[day] >= MENU_CREATES_A_DAY:
            raise ApiError(45009)
        st.menu_creates[day] += 1
        st.next_menu_id += 1
        menuid = st.next_menu_id
        matchrule = {k: str(v) for k, v in rule.items() if v not in (None, "")}
        st.conditional_menus.append({"button": buttons, "matchrule": matchrule, "menuid": menuid})
    return {"menuid": str(menuid)}


@bp.route("/cgi-bin/menu/delconditional", methods=["GET", "POST"])
@api("oa", post=True)
def menu_del_conditional() -> dict[str, Any]:
    menuid = str(body().get("menuid") or "")
    st = state()
    with st.lock:
        kept = [m for m in st.conditional_menus if str(m["menuid"]) != menuid]
        if len(kept) == len(st.conditional_menus):
            raise ApiError(65301)
        st.conditional_menus = kept
    return ok()


@bp.route("/cgi-bin/menu/trymatch", methods=["GET", "POST"])
@api("oa", post=True)
def menu_try_match() -> dict[str, Any]:
    st = state()
    user = st.user(str(body().get("user_id") or ""))
    if user is None:
        raise ApiError(65302)
    menu = st.menu_for(user.tagid_list)
    if menu is None:
        raise ApiError(46003)
    return {"button": menu["button"]}


@bp.route("/cgi-bin/menu/get", methods=["GET"])
@api("oa")
def menu_get() -> dict[str, Any]:
    st = state()
    if st.menu is None:
        raise ApiError(46003)
    answer: dict[str, Any] = {"menu": st.menu}
    if st.conditional_menus:
        answer["conditionalmenu"] = list(st.conditional_menus)
    return answer


@bp.route("/cgi-bin/menu/delete", methods=["GET"])
@api("oa")
def menu_delete() -> dict[str, Any]:
    """Deletes the default menu and every conditional menu with it."""
    st = state()
    with st.lock:
        st.menu = None
        st.conditional_menus = []
    return ok()


# --- JS-SDK ------------------------------------------------------------------------------------


@bp.route("/cgi-bin/ticket/getticket", methods=["GET"])
@api("oa")
def getticket() -> dict[str, Any]:
    kind = {"jsapi": "oa_jsapi", "wx_card": "oa_wx_card"}.get(request.args.get("type", ""))
    if kind is None:
        raise ApiError(40035, "type must be jsapi or wx_card")
    ticket, expires_in = state().issue_ticket(kind)
    return ok(ticket=ticket, expires_in=expires_in)
