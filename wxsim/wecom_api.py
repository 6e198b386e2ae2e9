"""The WeCom server API (``https://qyapi.weixin.qq.com/cgi-bin/…``), mounted at
``/wecom/cgi-bin/…`` so WECOM_API_BASE is ``http://host:port/wecom``."""

from __future__ import annotations

import secrets
import string
from typing import Any

from flask import Blueprint, request

from wxsim.common import api, body, ok, sim, state
from wxsim.entities import ContactWay, CorpTag, CorpTagGroup, ExternalContact
from wxsim.errors import ApiError

bp = Blueprint("wxsim_wecom", __name__)

APP_MSG_TYPES = {
    "text",
    "image",
    "voice",
    "video",
    "file",
    "textcard",
    "news",
    "mpnews",
    "markdown",
    "miniprogram_notice",
    "template_card",
}


def _corp_id(prefix: str = "et") -> str:
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(32))


# --- access token --------------------------------------------------------------------------


@bp.route("/cgi-bin/gettoken", methods=["GET"])
@api("wecom", auth=False)
def gettoken() -> dict[str, Any]:
    cfg = sim().config
    corpid, secret = request.args.get("corpid"), request.args.get("corpsecret")
    if not corpid:
        raise ApiError(41002)
    if corpid != cfg.wecom_corp_id:
        raise ApiError(40013)
    if not secret:
        raise ApiError(41004)
    if secret != cfg.wecom_secret:
        raise ApiError(40001)
    st = state()
    t = st.issue_token("wecom")
    return ok(access_token=t.value, expires_in=max(0, round(t.expires_at - st.now())))


# --- staff -----------------------------------------------------------------------------------


@bp.route("/cgi-bin/user/get", methods=["GET"])
@api("wecom")
def user_get() -> dict[str, Any]:
    userid = request.args.get("userid", "")
    rep = state().rep(userid) if userid else None
    if rep is None:
        raise ApiError(60111)
    return ok(**rep.info())


def _active_rep(userid: object) -> str:
    rep = state().rep(userid) if isinstance(userid, str) and userid else None
    if rep is None or rep.status != 1:
        raise ApiError(40003, str(userid))
    return rep.userid


# --- application messages ----------------------------------------------------------------------


def _check_agent(agentid: object) -> None:
    if agentid is None or agentid == "":
        raise ApiError(41011)
    try:
        value = int(agentid)  # WeCom accepts "1000002" as well as 1000002
    except (TypeError, ValueError):
        raise ApiError(40056) from None
    if value != sim().config.wecom_agent_id:
        raise ApiError(40056)


@bp.route("/cgi-bin/message/send", methods=["POST"])
@api("wecom")
def message_send() -> dict[str, Any]:
    data = body()
    _check_agent(data.get("agentid"))
    msgtype = data.get("msgtype")
    if msgtype not in APP_MSG_TYPES:
        raise ApiError(40008)
    content = data.get(msgtype)
    if not isinstance(content, dict):
        raise ApiError(40058, f"missing {msgtype}")
    if msgtype in ("text", "markdown") and not str(content.get("content") or "").strip():
        raise ApiError(44004)
    if msgtype == "textcard":
        missing = [k for k in ("title", "description", "url") if not content.get(k)]
        if missing:
            raise ApiError(40058, f"textcard needs {', '.join(missing)}")
    st = state()
    touser = str(data.get("touser") or "")
    with st.lock:
        if touser == "@all":
            wanted = [r.userid for r in st.reps.values()]
        else:
            wanted = [u for u in touser.split("|") if u]
        valid = [u for u in wanted if u in st.reps and st.reps[u].status == 1]
        invalid = [u for u in wanted if u not in valid]
        if not valid:
            raise ApiError(81013)
        msgid = secrets.token_urlsafe(24)
        for userid in valid:
            st.deliver(f"rep:{userid}", "app", data, msgid=msgid)
    out = ok()
    if invalid:
        out["invaliduser"] = "|".join(invalid)
    for key in ("toparty", "totag"):
        if data.get(key):  # the simulator knows no departments or staff tags
            out["invalid" + key[2:]] = str(data[key])
    out["msgid"] = msgid
    return out


# --- external contacts -------------------------------------------------------------------------


def _tag_view(tag_id: str) -> dict[str, Any] | None:
    found = state().corp_tag(tag_id)
    if found is None:
        return None
    group, tag = found
    return {"group_name": group.group_name, "tag_name": tag.name, "tag_id": tag.id, "type": 1}


def contact_view(contact: ExternalContact) -> dict[str, Any]:
    external = {
        "external_userid": contact.external_userid,
        "name": contact.name,
        "avatar": contact.avatar,
        "type": contact.type,
        "gender": contact.gender,
    }
    if contact.unionid:
        external["unionid"] = contact.unionid
    follow = []
    for f in contact.follow.values():
        entry: dict[str, Any] = {
            "userid": f.userid,
            "remark": f.remark,
            "description": f.description,
            "createtime": f.createtime,
            "tags": [v for v in (_tag_view(t) for t in f.tag_ids) if v],
            "remark_mobiles": [],
            "add_way": f.add_way,
            "oper_userid": f.userid,
        }
        if f.state:
            entry["state"] = f.state
        follow.append(entry)
    return {"external_contact": external, "follow_user": follow}


def _contact(external_userid: object) -> ExternalContact:
    contact = state().contacts.get(external_userid) if isinstance(external_userid, str) else None
    if contact is None:
        raise ApiError(40096)
    return contact


@bp.route("/cgi-bin/externalcontact/get", methods=["GET"])
@api("wecom")
def externalcontact_get() -> dict[str, Any]:
    st = state()
    with st.lock:
        contact = _contact(request.args.get("external_userid"))
        if not contact.follow:
            raise ApiError(84061)
        return ok(**contact_view(contact))


@bp.route("/cgi-bin/externalcontact/list", methods=["GET"])
@api("wecom")
def externalcontact_list() -> dict[str, Any]:
    st = state()
    with st.lock:
        userid = _active_rep(request.args.get("userid"))
        ids = [c.external_userid for c in st.contacts.values() if userid in c.follow]
    return ok(external_userid=ids)


@bp.route("/cgi-bin/externalcontact/remark", methods=["POST"])
@api("wecom")
def externalcontact_remark() -> dict[str, Any]:
    data = body()
    st = state()
    with st.lock:
        userid = _active_rep(data.get("userid"))
        contact = _contact(data.get("external_userid"))
        follow = contact.follow.get(userid)
        if follow is None:
            raise ApiError(84061)
        if "remark" in data:
            follow.remark = str(data["remark"])
        if "description" in data:
            follow.description = str(data["description"])
    return ok()


@bp.route("/cgi-bin/externalcontact/mark_tag", methods=["POST"])
@api("wecom")
def mark_tag() -> dict[str, Any]:
    data = body()
    add, remove = data.get("add_tag") or [], data.get("remove_tag") or []
    if not isinstance(add, list) or not isinstance(remove, list):
        raise ApiError(40058, "add_tag and remove_tag must be lists")
    if not add and not remove:
        raise ApiError(40058, "add_tag and remove_tag are both empty")
    st = state()
    with st.lock:
        userid = _active_rep(data.get("userid"))
        contact = _contact(data.get("external_userid"))
        follow = contact.follow.get(userid)
        if follow is None:
            raise ApiError(84061)
        for tag_id in [*add, *remove]:
            if not isinstance(tag_id, str) or st.corp_tag(tag_id) is None:
                raise ApiError(40068, str(tag_id))
        for tag_id in add:
            if tag_id not in follow.tag_ids:
                follow.tag_ids.append(tag_id)
        follow.tag_ids = [t for t in follow.tag_ids if t not in remove]
    return ok()


def group_view(group: CorpTagGroup, tags: list[CorpTag] | None = None) -> dict[str, Any]:
    return {
        "group_id": group.group_id,
        "group_name": group.group_name,
        "create_time": group.create_time,
        "order": group.order,
        "tag": [
            {"id": t.id, "name": t.name, "create_time": t.create_time, "order": t.order}
            for t in (group.tags if tags is None else tags)
        ],
    }


@bp.route("/cgi-bin/externalcontact/get_corp_tag_list", methods=["POST"])
@api("wecom")
def get_corp_tag_list() -> dict[str, Any]:
    data = body() if request.get_data().strip() else {}
    tag_ids = set(data.get("tag_id") or [])
    group_ids = set(data.get("group_id") or [])
    st = state()
    with st.lock:
        groups = []
        for group in st.tag_groups:
            if group_ids:
                if group.group_id in group_ids:
                    groups.append(group_view(group))
            elif tag_ids:
                tags = [t for t in group.tags if t.id in tag_ids]
                if tags:
                    groups.append(group_view(group, tags))
            else:
                groups.append(group_view(group))
    return ok(tag_group=groups)


@bp.route("/cgi-bin/externalcontact/add_corp_tag", methods=["POST"])
@api("wecom")
def add_corp_tag() -> dict[str, Any]:
    data = body()
    tags = data.get("tag")
    if not isinstance(tags, list) or not tags:
        raise ApiError(40058, "tag list is empty")
    names = []
    for tag in tags:
        name = tag.get("name") if isinstance(tag, dict) else None
        if not isinstance(name, str) or not name.strip() or len(name) > 30:
            raise ApiError(40058, "tag name must be 1-30 characters")
        names.append(name)
    if len(set(names)) != len(names):
        raise ApiError(40071)
    st = state()
    now = int(st.now())
    with st.lock:
        group_id, group_name = data.get("group_id"), data.get("group_name")
        group = None
        if group_id:
            group = next((g for g in st.tag_groups if g.group_id == group_id), None)
            if group is None:
                raise ApiError(40068, "invalid group_id")
        elif isinstance(group_name, str) and group_name.strip():
            group = next((g for g in st.tag_groups if g.group_name == group_name), None)
            if group is None:
                group = CorpTagGroup(_corp_id(), group_name, now, int(data.get("order") or 0))
                st.tag_groups.append(group)
        else:
            raise ApiError(40058, "group_id or group_name is required")
        if any(t.name in names for t in group.tags):
            raise ApiError(40071)
        added = [
            CorpTag(_corp_id(), name, now, int(tag.get("order") or 0))
            for name, tag in zip(names, tags, strict=True)
        ]
        group.tags.extend(added)
        return ok(tag_group=group_view(group, added))


@bp.route("/cgi-bin/externalcontact/del_corp_tag", methods=["POST"])
@api("wecom")
def del_corp_tag() -> dict[str, Any]:
    data = body()
    tag_ids, group_ids = set(data.get("tag_id") or []), set(data.get("group_id") or [])
    if not tag_ids and not group_ids:
        raise ApiError(40058, "tag_id and group_id are both empty")
    st = state()
    with st.lock:
        for tag_id in tag_ids:
            if st.corp_tag(tag_id) is None:
                raise ApiError(40068, tag_id)
        st.tag_groups = [g for g in st.tag_groups if g.group_id not in group_ids]
        for group in st.tag_groups:
            group.tags = [t for t in group.tags if t.id not in tag_ids]
        st.tag_groups = [g for g in st.tag_groups if g.tags]  # an empty group disappears
    return ok()


# --- contact ways ("联系我") and welcome messages ---------------------------------------------


@bp.route("/cgi-bin/externalcontact/add_contact_way", methods=["POST"])
@api("wecom")
def add_contact_way() -> dict[str, Any]:
    data = body()
    kind, scene = data.get("type"), data.get("scene")
    if kind not in (1, 2):
        raise ApiError(40058, "type must be 1 or 2")
    if scene not in (1, 2):
        raise ApiError(40058, "scene must be 1 or 2")
    state_value = data.get("state") or ""
    if not isinstance(state_value, str) or len(state_value) > 30:
        raise ApiError(40058, "state is at most 30 characters")
    users, party = data.get("user") or [], data.get("party") or []
    if not isinstance(users, list) or not isinstance(party, list) or not (users or party):
        raise ApiError(40058, "user or party is required")
    if kind == 1 and (len(users) != 1 or party):
        raise ApiError(40058, "type 1 takes exactly one user")
    for userid in users:
        _active_rep(userid)
    st = state()
    way = ContactWay(
        config_id=secrets.token_hex(16),
        type=kind,
        scene=scene,
        state=state_value,
        user=list(users),
        party=list(party),
        remark=str(data.get("remark") or ""),
        skip_verify=bool(data.get("skip_verify", True)),
        style=int(data.get("style") or 1),
        qr_code=f"https://wework.qpic.cn/wwpic/{secrets.token_hex(12)}/0" if scene == 2 else "",
    )
    with st.lock:
        st.contact_ways[way.config_id] = way
    out = ok(config_id=way.config_id)
    if way.qr_code:
        out["qr_code"] = way.qr_code
    return out


def contact_way_view(way: ContactWay) -> dict[str, Any]:
    return {
        "config_id": way.config_id,
        "type": way.type,
        "scene": way.scene,
        "style": way.style,
        "remark": way.remark,
        "skip_verify": way.skip_verify,
        "state": way.state,
        "qr_code": way.qr_code,
        "user": list(way.user),
        "party": list(way.party),
    }


@bp.route("/cgi-bin/externalcontact/get_contact_way", methods=["POST"])
@api("wecom")
def get_contact_way() -> dict[str, Any]:
    way = state().contact_ways.get(body().get("config_id"))
    if way is None:
        raise ApiError(40058, "invalid config_id")
    return ok(contact_way=contact_way_view(way))


@bp.route("/cgi-bin/externalcontact/del_contact_way", methods=["POST"])
@api("wecom")
def del_contact_way() -> dict[str, Any]:
    st = state()
    with st.lock:
        if st.contact_ways.pop(body().get("config_id"), None) is None:
            raise ApiError(40058, "invalid config_id")
    return ok()


@bp.route("/cgi-bin/externalcontact/send_welcome_msg", methods=["POST"])
@api("wecom")
def send_welcome_msg() -> dict[str, Any]:
    data = body()
    value = data.get("welcome_code")
    if not isinstance(value, str) or not value:
        raise ApiError(40058, "welcome_code is required")
    text = data.get("text")
    attachments = data.get("attachments") or []
    if not isinstance(attachments, list) or len(attachments) > 9:
        raise ApiError(40058, "at most 9 attachments")
    has_text = isinstance(text, dict) and str(text.get("content") or "").strip()
    if not has_text and not attachments:
        raise ApiError(44004)
    st = state()
    code = st.use_welcome_code(value)
    st.deliver(
        f"external:{code.external_userid}", "welcome", data, userid=code.userid, msgtype="welcome"
    )
    return ok()


# --- member OAuth and JS-SDK -------------------------------------------------------------------


def _use_code() -> Any:
    st = state()
    value = request.args.get("code")
    if not value:
        raise ApiError(41008)
    with st.lock:
        code = st.oauth_codes.get(value)
        if (
            code is None
            or code.platform != "wecom"
            or code.used
            or st.now() - code.issued_at > sim().config.oauth_code_ttl
        ):
            raise ApiError(40029)
        code.used = True
        return code


@bp.route("/cgi-bin/auth/getuserinfo", methods=["GET"])
@api("wecom")
def auth_getuserinfo() -> dict[str, Any]:
    code = _use_code()
    if code.member:
        return ok(userid=code.subject)
    out = ok(openid=code.subject)
    contact = next(
        (c for c in state().contacts.values() if c.unionid and c.unionid == code.subject), None
    )
    if contact is not None:
        out["external_userid"] = contact.external_userid
    return out


@bp.route("/cgi-bin/user/getuserinfo", methods=["GET"])
@api("wecom")
def legacy_getuserinfo() -> dict[str, Any]:
    """The legacy endpoint (what wechatpy 1.8 calls): CamelCase ``UserId``/``OpenId``."""
    code = _use_code()
    if code.member:
        return ok(UserId=code.subject, DeviceId="")
    return ok(OpenId=code.subject, DeviceId="")


@bp.route("/cgi-bin/get_jsapi_ticket", methods=["GET"])
@api("wecom")
def get_jsapi_ticket() -> dict[str, Any]:
    ticket, expires_in = state().issue_ticket("wecom_jsapi")
    return ok(ticket=ticket, expires_in=expires_in)


@bp.route("/cgi-bin/ticket/get", methods=["GET"])
@api("wecom")
def agent_ticket() -> dict[str, Any]:
    if request.args.get("type") != "agent_config":
        raise ApiError(40058, "type must be agent_config")
    ticket, expires_in = state().issue_ticket("agent_config")
    return ok(ticket=ticket, expires_in=expires_in)
