"""``/_sim/…``: the simulator's own inspection and control API (JSON), not part of WeChat.

Inspect what simulated users and reps received, the platform's tags, contact ways and tokens;
set faults, users, reps and the clock; make simulated people act (``/_sim/actions/<name>``).
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, jsonify, request

from wxsim import jssdk
from wxsim.actors import ActorError
from wxsim.common import sim, state
from wxsim.entities import OAUser
from wxsim.wecom_api import contact_view, contact_way_view

bp = Blueprint("wxsim_control", __name__)
STATIC = Path(__file__).parent / "static"

ACTIONS = {
    "follow": ("follow", ("openid", "scene", "ticket")),
    "say": ("say", ("openid", "text")),
    "click": ("click", ("openid", "key")),
    "view": ("view", ("openid", "url")),
    "scan": ("scan", ("openid", "scene", "ticket")),
    "unfollow": ("unfollow", ("openid",)),
    "add_external_contact": (
        "add_external_contact",
        ("userid", "external_userid", "state", "config_id", "name", "unionid", "welcome"),
    ),
    "edit_external_contact": (
        "edit_external_contact",
        ("userid", "external_userid", "remark", "description"),
    ),
    "customer_deletes_rep": ("customer_deletes_rep", ("userid", "external_userid")),
    "verify_url": ("verify_url", ("platform",)),
    "rep_deletes_customer": ("rep_deletes_customer", ("userid", "external_userid")),
    "customer_refuses_transfer": ("customer_refuses_transfer", ("external_userid",)),
}
ACTIONS["add_contact"] = ACTIONS["add_external_contact"]


class BadRequest(Exception):
    pass


@bp.errorhandler(BadRequest)
@bp.errorhandler(ValueError)
def _bad_request(exc: Exception) -> Response:
    resp = jsonify(error=str(exc))
    resp.status_code = 400
    return resp


@bp.errorhandler(ActorError)
def _impossible(exc: ActorError) -> Response:
    resp = jsonify(error=str(exc))
    resp.status_code = 409
    return resp


def _json() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return data


@bp.get("/")
@bp.get("/health")
def index() -> Response:
    base = request.host_url.rstrip("/")
    return jsonify(
        ok=True,
        simulator="wxsim",
        env=env_for(base),
        callback_base=sim().config.callback_base,
        actions=sorted(ACTIONS),
    )


def env_for(base: str) -> dict[str, str]:
    """The environment variables that point Yuchi at a simulator served at ``base``."""
    return {
        "WECHAT_API_BASE": base,
        "WECOM_API_BASE": f"{base}/wecom",
        "WECHAT_OAUTH_BASE": base,
        "WECHAT_MP_BASE": f"{base}/mp",
        "WECOM_JSSDK_URL": f"{base}/_sim/jweixin.js",
    }


@bp.route("/config", methods=["GET", "POST"])
def config() -> Response:
    if request.method == "POST":
        sim().config.update(**_json())
    return jsonify(sim().config.public())


@bp.post("/reset")
def reset() -> Response:
    sim().reset()
    return jsonify(ok=True)


@bp.route("/faults", methods=["GET", "POST"])
def faults() -> Response:
    st = state()
    revoked = {}
    if request.method == "POST":
        data = _json()
        revoke = data.pop("revoke_tokens", None)
        if data.pop("reset", False):
            st.set_faults(**{k: v for k, v in type(st.faults)().to_dict().items()})
        st.set_faults(**data)
        for app in [revoke] if isinstance(revoke, str) else revoke or []:
            revoked[app] = st.revoke_tokens(app)
    out: dict[str, Any] = st.faults.to_dict()
    if revoked:
        out["revoked"] = revoked
    return jsonify(out)


@bp.get("/tokens")
def tokens() -> Response:
    st = state()
    with st.lock:
        now = st.now()
        live: dict[str, int] = {}
        for t in st.tokens.values():
            if not t.revoked and now < t.expires_at:
                live[t.app] = live.get(t.app, 0) + 1
        return jsonify(fetches=dict(st.token_fetches), live=live)


@bp.post("/tokens/revoke")
def revoke() -> Response:
    app = _json().get("app")
    if app not in ("oa", "wecom", "sns"):
        raise BadRequest("app must be oa, wecom or sns")
    return jsonify(revoked=state().revoke_tokens(app))


@bp.route("/clock", methods=["GET", "POST"])
def clock() -> Response:
    st = state()
    if request.method == "POST":
        data = _json()
        if "advance" in data:
            st.clock.advance(float(data["advance"]))
        if "offset" in data:
            st.clock.offset = float(data["offset"])
    return jsonify(now=st.now(), offset=st.clock.offset)


# --- Official Account users -------------------------------------------------------------------


def _user_dict(user: Any) -> dict[str, Any]:
    data = dict(user.__dict__)
    last = user.last_interaction
    data["in_window"] = last is not None and state().now() - last <= 48 * 3600
    return data


USER_FIELDS = {f.name for f in fields(OAUser)} - {"openid"}
MAX_BULK_USERS = 100_000


def _user_changes(data: Any, now: float) -> tuple[str, dict[str, Any]]:
    """(openid, attributes to set) from one ``/users`` object, validated before any change."""
    if not isinstance(data, dict):
        raise BadRequest("each user must be a JSON object")
    data = dict(data)
    openid = data.pop("openid", None)
    if not openid or not isinstance(openid, str):
        raise BadRequest("openid is required")
    if "last_interaction_ago" in data:
        ago = data.pop("last_interaction_ago")
        data["last_interaction"] = None if ago is None else now - float(ago)
    unknown = set(data) - USER_FIELDS
    if unknown:
        raise BadRequest(f"unknown user attribute(s): {', '.join(sorted(unknown))}")
    return openid, data


@bp.route("/users", methods=["GET", "POST"])
def users() -> Response:
    """``POST`` one user (an object: answers the user) or many (a list of objects, all or
    nothing: answers ``{"upserted": n}``); ``GET`` one (``?openid=``) or all."""
    st = state()
    if request.method == "POST":
        data = request.get_json(silent=True)
        if isinstance(data, list):
            if len(data) > MAX_BULK_USERS:
                raise BadRequest(f"at most {MAX_BULK_USERS} users per request")
            now = st.now()
            changes = [_user_changes(item, now) for item in data]
            with st.lock:
                for openid, attrs in changes:
                    st.upsert_user(openid, **attrs)
            return jsonify(upserted=len(changes))
        openid, attrs = _user_changes(_json(), st.now())
        return jsonify(_user_dict(st.upsert_user(openid, **attrs)))
    openid = request.args.get("openid")
    with st.lock:
        if openid:
            user = st.user(openid)
            if user is None:
                return _not_found(f"no simulated user {openid}")
            return jsonify(_user_dict(user))
        return jsonify(users=[_user_dict(u) for u in st.users.values()])


def _not_found(message: str) -> Response:
    resp = jsonify(error=message)
    resp.status_code = 404
    return resp


@bp.get("/inbox")
def inbox() -> Response:
    """What a simulated user (``openid``), customer (``external_userid``) or rep (``userid``)
    received, oldest first; ``kind`` filters (passive, custom, template, app, welcome)."""
    args = request.args
    for key, prefix in (("openid", "openid"), ("external_userid", "external"), ("userid", "rep")):
        if args.get(key):
            items = state().inbox(f"{prefix}:{args[key]}")
            if args.get("kind"):
                items = [i for i in items if i["kind"] == args["kind"]]
            return jsonify({key: args[key], "messages": items})
    raise BadRequest("pass openid, external_userid or userid")


@bp.get("/inboxes")
def inboxes() -> Response:
    """Every inbox at once, oldest first: each item with its owner (``openid``,
    ``external_userid`` or ``userid``) beside its fields; ``kind`` filters. One call instead of
    one ``/inbox`` per user, for bulk checks (bench/broadcast.py)."""
    st = state()
    kind = request.args.get("kind")
    owners = {"openid": "openid", "external": "external_userid", "rep": "userid"}
    items: list[dict[str, Any]] = []
    with st.lock:
        for box, messages in st.inboxes.items():
            prefix, _, who = box.partition(":")
            owner = owners.get(prefix, prefix)
            items.extend({owner: who, **m} for m in messages if kind is None or m["kind"] == kind)
    items.sort(key=lambda m: m["id"])
    return jsonify(messages=items)


@bp.post("/browser")
def browser() -> Response:
    """Who opens OAuth links: ``{"openid": …}`` (OA), ``{"userid": …}`` (WeCom member),
    ``{"decline": true}`` to refuse ``snsapi_userinfo``; ``{}`` clears."""
    st = state()
    data = _json()
    with st.lock:
        st.browser = {k: v for k, v in data.items() if k in ("openid", "userid", "decline") and v}
        return jsonify(st.browser)


# --- platform objects ---------------------------------------------------------------------------


@bp.get("/tags")
def tags() -> Response:
    st = state()
    from wxsim.wecom_api import group_view

    with st.lock:
        return jsonify(
            oa=[{"id": i, "name": n} for i, n in st.oa_tags.items()],
            wecom=[group_view(g) for g in st.tag_groups],
        )


@bp.get("/contact_ways")
def contact_ways() -> Response:
    st = state()
    with st.lock:
        return jsonify(contact_ways=[contact_way_view(w) for w in st.contact_ways.values()])


@bp.get("/qrcodes")
def qrcodes() -> Response:
    st = state()
    with st.lock:
        return jsonify(qrcodes=[dict(c.__dict__, scene=c.scene) for c in st.qrcodes.values()])


@bp.get("/menu")
def menu() -> Response:
    st = state()
    with st.lock:
        return jsonify(menu=st.menu, conditional_menus=list(st.conditional_menus))


@bp.route("/reps", methods=["GET", "POST"])
def reps() -> Response:
    st = state()
    if request.method == "POST":
        data = _json()
        userid = data.pop("userid", None)
        if not userid:
            raise BadRequest("userid is required")
        return jsonify(st.upsert_rep(userid, **data).info())
    with st.lock:
        return jsonify(reps=[r.info() for r in st.reps.values()])


@bp.get("/external_contacts")
def external_contacts() -> Response:
    st = state()
    wanted = request.args.get("external_userid")
    with st.lock:
        items = [
            contact_view(c)
            for c in st.contacts.values()
            if not wanted or c.external_userid == wanted
        ]
    return jsonify(external_contacts=items)


@bp.get("/calls")
def calls() -> Response:
    """The API calls the simulator answered (``app``, ``path`` substring filters)."""
    st = state()
    app, path = request.args.get("app"), request.args.get("path")
    with st.lock:
        items = [
            c for c in st.calls if (not app or c["app"] == app) and (not path or path in c["path"])
        ]
    return jsonify(calls=items)


@bp.get("/in_flight")
def in_flight() -> Response:
    """API calls that arrived and are not answered yet (``app``, ``path`` substring filters)."""
    st = state()
    app, path = request.args.get("app"), request.args.get("path")
    with st.lock:
        items = [
            c
            for c in st.in_flight.values()
            if (not app or c["app"] == app) and (not path or path in c["path"])
        ]
    return jsonify(in_flight=items)


@bp.get("/callbacks")
def callbacks() -> Response:
    st = state()
    with st.lock:
        return jsonify(callbacks=list(st.callbacks))


# --- simulated people ---------------------------------------------------------------------------


@bp.post("/actions/<name>")
def action(name: str) -> Response:
    """Make a simulated user or rep act; answers the callback's outcome and passive reply."""
    if name.replace("-", "_") not in ACTIONS:
        return _not_found(f"unknown action {name!r}; known: {', '.join(sorted(ACTIONS))}")
    method, params = ACTIONS[name.replace("-", "_")]
    data = _json()
    unknown = set(data) - set(params)
    if unknown:
        raise BadRequest(f"unknown parameter(s) for {name}: {', '.join(sorted(unknown))}")
    try:
        result = getattr(sim().actors, method)(**data)
    except TypeError as exc:
        raise BadRequest(str(exc)) from None
    return jsonify(result.to_dict())


# --- JS-SDK stub support --------------------------------------------------------------------------


@bp.get("/jweixin.js")
def jweixin() -> Response:
    resp = Response((STATIC / "jweixin-stub.js").read_text(encoding="utf-8"))
    resp.mimetype = "application/javascript"
    resp.headers["Access-Control-Allow-Origin"] = "*"
    return resp


def _cors(resp: Response) -> Response:
    resp.headers["Access-Control-Allow-Origin"] = "*"
    resp.headers["Access-Control-Allow-Headers"] = "Content-Type"
    return resp


@bp.route("/jssdk/verify", methods=["POST", "OPTIONS"])
def jssdk_verify() -> Response:
    if request.method == "OPTIONS":
        return _cors(Response(status=204))
    return _cors(jsonify(jssdk.verify(state(), sim().config, _json())))


@bp.route("/jssdk/context", methods=["GET", "POST", "OPTIONS"])
def jssdk_context() -> Response:
    """What ``getContext``/``getCurExternalContact`` answer: ``entry``, the rep's ``userid``
    and the customer's ``external_userid``."""
    if request.method == "OPTIONS":
        return _cors(Response(status=204))
    st = state()
    with st.lock:
        if request.method == "POST":
            st.jssdk_context.update(
                {k: v for k, v in _json().items() if k in ("entry", "userid", "external_userid")}
            )
        return _cors(jsonify(st.jssdk_context))


CHAT_MSG_TYPES = ("text", "image", "video", "file", "news", "miniprogram")


@bp.route("/jssdk/sent", methods=["GET", "POST", "OPTIONS"])
def jssdk_sent() -> Response:
    """``sendChatMessage`` as the WeCom client takes it: into the chat open in the context
    (recorded here, with the rep and the customer), or refused when no customer chat is open."""
    if request.method == "OPTIONS":
        return _cors(Response(status=204))
    st = state()
    with st.lock:
        if request.method == "GET":
            return _cors(jsonify(sent=list(st.chat_messages)))
        data, ctx = _json(), dict(st.jssdk_context)
        msgtype = data.get("msgtype") or "text"
        if msgtype not in CHAT_MSG_TYPES:
            return _cors(jsonify(ok=False, error=f"invalid msgtype {msgtype}"))
        if not ctx.get("external_userid"):
            return _cors(jsonify(ok=False, error="not in a customer chat"))
        st.chat_messages.append(
            {
                "userid": ctx.get("userid", ""),
                "external_userid": ctx["external_userid"],
                "msgtype": msgtype,
                "content": data.get(msgtype),
                "at": st.now(),
            }
        )
        return _cors(jsonify(ok=True))
