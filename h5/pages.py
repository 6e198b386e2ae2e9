"""/h5/c/<slug>: the campaign page, its form, sharing, the OAuth callback, the pages after the
form (download, check-in pass, live link) and "你邀请的朋友"."""

from __future__ import annotations

import logging
import secrets

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
)
from flask.typing import ResponseReturnValue
from markupsafe import escape

from bot.campaigns import actions, downloads, forms, oauth, pages, sharing, signups
from bot.core import wechat
from bot.core.models import Campaign
from h5 import limits
from h5.common import in_wechat, problem, settings, visitor_token, with_cookie

log = logging.getLogger(__name__)
bp = Blueprint(
    "h5", __name__, url_prefix="/h5", template_folder="templates", static_folder="static"
)
SKIP_OAUTH = "yuchi_oa_skip"
SHARE_CHANNELS = {"appMessage", "timeline", "link"}


@bp.errorhandler(429)
def _too_many(exc: Exception) -> Response:
    return problem(429, "提交太频繁", "请稍后再试。")


def _campaign(slug: str) -> Campaign:
    camp = actions.campaign(settings(), slug) if len(slug) <= 64 else None
    if camp is None:
        abort(problem(404, "活动不存在", "这个活动不存在或已下线。"))
    return camp


def _wants_oauth() -> bool:
    """Inside WeChat a visitor without an openid signs in first (unless they declined)."""
    return in_wechat() and not request.cookies.get(SKIP_OAUTH)


def _render(camp: Campaign, view: actions.View, status: int = 200, **extra: object) -> Response:
    code = request.args.get("r", "")
    if extra:  # the form again with its errors, or the page after the form
        html = _page_html(camp, view.share_code, code, **extra)
    else:
        html = _plain_page(camp).replace(_SHARE_MARK, escape(view.share_code))
        html = html.replace(_CODE_MARK, escape(code))
    resp = Response(html, status, mimetype="text/html")
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _page_html(camp: Campaign, share_code: str, code: str, **extra: object) -> str:
    s = settings()
    return render_template(
        "h5/campaign.html",
        camp=camp,
        spec=camp.spec,
        share_url=f"{s.public_url}/h5/c/{camp.slug}?r={share_code}",
        code=code,
        wechat=in_wechat(),
        jssdk_url=s.h5_jssdk_url,
        status=actions.status(camp),
        errors=extra.pop("errors", {}),
        values=extra.pop("values", {}),
        **extra,
    )


# The plain page is the same for every visitor but for their share code and the code they
# came with: rendered once per campaign object (the campaign cache makes a new one every few
# seconds and on every change), status and browser, with marks the request replaces.
_SHARE_MARK = f"yuchishare{secrets.token_hex(8)}"
_CODE_MARK = f"yuchicode{secrets.token_hex(8)}"


def _plain_page(camp: Campaign) -> str:
    cache = current_app.extensions.setdefault("yuchi_h5_pages", {})
    key = (camp.id, actions.status(camp), in_wechat())
    hit = cache.get(key)
    if hit is None or hit[0] is not camp:
        hit = cache[key] = (camp, _page_html(camp, _SHARE_MARK, _CODE_MARK))
    return hit[1]


@bp.get("/c/<slug>")
def page(slug: str) -> ResponseReturnValue:
    camp = _campaign(slug)
    token, new = visitor_token()
    view = actions.view(settings(), camp, token, request.args.get("r"), _wants_oauth(), new)
    if view is None:
        userinfo = camp.spec.get("needs_userinfo", False)
        url = oauth.authorize_url(settings(), token, request.full_path, userinfo)
        return with_cookie(redirect(url, 302), token, new)
    return with_cookie(_render(camp, view), token, new)


@bp.post("/c/<slug>/form")
def submit(slug: str) -> ResponseReturnValue:
    limits.check_form()
    camp = _campaign(slug)
    if actions.status(camp) != "open":
        return problem(410, "活动未开放", "活动尚未开始或已经结束。")
    token, new = visitor_token()
    values, errors = forms.check(
        camp.spec.get("form", {}).get("fields", []), request.form.to_dict(flat=False)
    )
    code = request.form.get("r") or None
    if errors:
        view = actions.view(settings(), camp, token, code)
        given = {k: request.form.getlist(k) for k in request.form}
        return with_cookie(_render(camp, view, 422, errors=errors, values=given), token, new)
    actions.submit(settings(), camp, token, code, values)
    return with_cookie(redirect(f"/h5/c/{camp.slug}/done", 303), token, new)


@bp.get("/c/<slug>/done")
def done(slug: str) -> ResponseReturnValue:
    camp = _campaign(slug)
    token, _ = visitor_token()
    contact_id, _ = actions.visitor(settings(), token)
    state = pages.done_state(settings(), camp, contact_id)
    if not state.submitted:
        return redirect(f"/h5/c/{camp.slug}", 303)
    view = actions.View(camp, contact_id, False, actions.own_code(settings(), camp.id, contact_id))
    return _render(camp, view, done=state)


@bp.post("/c/<slug>/share")
def share(slug: str) -> ResponseReturnValue:
    camp = _campaign(slug)
    token, new = visitor_token()
    data = request.get_json(silent=True) or {}
    channel = data.get("channel") if isinstance(data, dict) else None
    if channel not in SHARE_CHANNELS:
        return jsonify(error="channel: appMessage, timeline or link"), 422
    actions.share(settings(), camp, token, channel)
    return with_cookie(Response(status=204), token, new)


@bp.get("/jssdk")
def jssdk() -> ResponseReturnValue:
    url = request.args.get("url", "")
    if not url.startswith(f"{settings().public_url}/h5/") or len(url) > 1000:
        return jsonify(error="url: a campaign page of this site"), 422
    try:
        return jsonify(sharing.share_config(settings(), url))
    except wechat.PlatformError as exc:
        log.warning("JS-SDK ticket unavailable: %s", exc)
        return jsonify(error="the JS-SDK ticket is unavailable"), 503


@bp.get("/oauth/callback")
def oauth_callback() -> ResponseReturnValue:
    token = request.cookies.get("yuchi_v")
    try:
        if not request.args.get("code"):
            next_path = oauth.take_state(settings(), token, request.args.get("state", ""))
            resp = redirect(next_path, 302)
            resp.set_cookie(SKIP_OAUTH, "1", max_age=86400, httponly=True, samesite="Lax")
            return resp
        next_path = pages.signed_in(
            settings(), token or "", request.args["code"], request.args.get("state", "")
        )
    except oauth.StateRefused as exc:
        return problem(400, "链接已失效", f"{exc}，请重新打开活动页面。")
    except oauth.CodeRefused as exc:
        log.info("OAuth code refused: %s", exc)
        return problem(400, "微信授权失败", "请重新打开活动页面。")
    return redirect(next_path if next_path.startswith("/h5/") else "/h5/points", 302)


@bp.get("/d/<token>")
def download(token: str) -> ResponseReturnValue:
    found = downloads.read_link(settings(), token)
    if found is None:
        return problem(410, "下载链接已失效", "链接已过期或无效，请回到活动页面重新获取。")
    camp = pages.campaign_by_id(settings(), found[0])
    if camp is None or camp.kind != "resource":
        return problem(404, "资料不存在", "这个资料已下线。")
    return redirect(downloads.download(settings(), camp, found[1]), 302)


@bp.get("/c/<slug>/live")
def live(slug: str) -> ResponseReturnValue:
    camp = _campaign(slug)
    token, _ = visitor_token()
    contact_id, _ = actions.visitor(settings(), token)
    if camp.kind != "event" or signups.live_check_in(settings(), camp, contact_id) is None:
        return problem(403, "请先报名", "报名后即可进入直播。")
    live_url = (camp.spec.get("event") or {}).get("live_url") or f"/h5/c/{camp.slug}/done"
    return redirect(live_url, 302)


@bp.get("/c/<slug>/friends")
def friends(slug: str) -> ResponseReturnValue:
    camp = _campaign(slug)
    token, new = visitor_token()
    tree = pages.friends(settings(), camp, token)
    return with_cookie(
        Response(render_template("h5/friends.html", camp=camp, tree=tree)), token, new
    )


@bp.get("/checkin/<token>")
def checkin_pass(token: str) -> ResponseReturnValue:
    """What a phone that scans a pass shows: staff confirm it through the API / sidebar."""
    return problem(200, "签到凭证", "请出示给现场工作人员扫码核销。")
