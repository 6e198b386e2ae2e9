"""Web OAuth: the authorize page (``open.weixin.qq.com/connect/oauth2/authorize``) for the
Official Account and for WeCom members, and the OA ``/sns/…`` token and user-info APIs.

There is no WeChat client here, so "the user who opens the link" is the simulated user named
by ``?as=`` (a simulator extension) or the browser user set through ``POST /_sim/browser``.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import Blueprint, Response, redirect, request

from wxsim.common import api, ok, sim, state
from wxsim.entities import OAuthCode, Token
from wxsim.errors import ApiError

bp = Blueprint("wxsim_oauth", __name__)

OA_SCOPES = {"snsapi_base", "snsapi_userinfo"}
WECOM_SCOPES = {"snsapi_base", "snsapi_privateinfo"}


def _page(code: int, message: str) -> Response:
    """WeChat's error page for a bad authorize link (no redirect happens)."""
    html = (
        '<!doctype html><meta charset="utf-8"><title>微信</title>'
        f'<p id="wx-error" data-code="{code}">{message}</p>'
    )
    resp = Response(html, 200, mimetype="text/html")
    resp.headers["X-Wxsim-Error"] = str(code)
    return resp


def _with_query(url: str, **params: str) -> str:
    return url + ("&" if urlsplit(url).query else "?") + urlencode(params)


@bp.route("/connect/oauth2/authorize", methods=["GET"])
def authorize() -> Response:
    cfg, st = sim().config, state()
    args = request.args
    appid = args.get("appid", "")
    if appid == cfg.oa_appid:
        platform, scopes = "oa", OA_SCOPES
    elif appid == cfg.wecom_corp_id:
        platform, scopes = "wecom", WECOM_SCOPES
    else:
        return _page(10016, "appid参数错误")
    redirect_uri = args.get("redirect_uri", "")
    if urlsplit(redirect_uri).scheme not in ("http", "https") or not urlsplit(redirect_uri).netloc:
        return _page(10003, "redirect_uri参数错误")
    if args.get("response_type") != "code":
        return _page(10004, "response_type参数错误")
    scope = args.get("scope", "")
    if scope not in scopes:
        return _page(10005, "scope参数错误或没有scope权限")
    if platform == "wecom":
        agentid = args.get("agentid")
        if agentid and agentid != str(cfg.wecom_agent_id):
            return _page(40056, "agentid参数错误")
        if scope == "snsapi_privateinfo" and not agentid:
            return _page(41011, "缺少agentid参数")
    key = "openid" if platform == "oa" else "userid"
    who = args.get("as") or st.browser.get(key) or st.browser.get("openid")
    if not who:
        return _page(0, "请在微信客户端打开链接")
    state_param = args.get("state", "")
    if args.get("decline") == "1" or st.browser.get("decline"):
        return redirect(_with_query(redirect_uri, state=state_param), 302)
    with st.lock:
        member = platform == "wecom" and who in st.reps
        if platform == "oa" and st.user(who) is None:
            st.upsert_user(who, subscribe=False)  # anyone can authorize, follower or not
        code = OAuthCode(secrets.token_urlsafe(24), platform, who, scope, st.now(), member)
        st.oauth_codes[code.code] = code
    return redirect(_with_query(redirect_uri, code=code.code, state=state_param), 302)


# --- /sns (Official Account web OAuth) -------------------------------------------------------


def _sns_tokens(openid: str, scope: str) -> dict[str, Any]:
    st = state()
    now = st.now()
    with st.lock:
        token = Token(secrets.token_urlsafe(64), "sns", now, now + 7200, openid=openid, scope=scope)
        refresh = Token(
            secrets.token_urlsafe(64),
            "sns_refresh",
            now,
            now + 30 * 86400,
            openid=openid,
            scope=scope,
        )
        st.tokens[token.value] = token
        st.tokens[refresh.value] = refresh
        user = st.users.get(openid)
    out: dict[str, Any] = {
        "access_token": token.value,
        "expires_in": 7200,
        "refresh_token": refresh.value,
        "openid": openid,
        "scope": scope,
    }
    if user is not None and user.unionid and scope == "snsapi_userinfo":
        out["unionid"] = user.unionid
    return out


def _check_app(appid: str | None, secret: str | None) -> None:
    cfg = sim().config
    if not appid:
        raise ApiError(41002)
    if appid != cfg.oa_appid:
        raise ApiError(40013)
    if secret is not None and secret != cfg.oa_secret:
        raise ApiError(40125)


@bp.route("/sns/oauth2/access_token", methods=["GET"])
@api("oa", auth=False)
def sns_access_token() -> dict[str, Any]:
    args = request.args
    _check_app(args.get("appid"), args.get("secret") or "")
    if args.get("grant_type") != "authorization_code":
        raise ApiError(40002)
    value = args.get("code")
    if not value:
        raise ApiError(41008)
    st = state()
    with st.lock:
        code = st.oauth_codes.get(value)
        if code is None or code.platform != "oa":
            raise ApiError(40029)
        if code.used:
            raise ApiError(40163)
        if st.now() - code.issued_at > sim().config.oauth_code_ttl:
            raise ApiError(40029)
        code.used = True
    return _sns_tokens(code.subject, code.scope)


@bp.route("/sns/oauth2/refresh_token", methods=["GET"])
@api("oa", auth=False)
def sns_refresh() -> dict[str, Any]:
    args = request.args
    _check_app(args.get("appid"), None)
    if args.get("grant_type") != "refresh_token":
        raise ApiError(40002)
    st = state()
    token = st.tokens.get(args.get("refresh_token") or "")
    if token is None or token.app != "sns_refresh" or token.revoked:
        raise ApiError(40030)
    if st.now() >= token.expires_at:
        raise ApiError(42002)
    return _sns_tokens(token.openid, token.scope)


def _sns_token(openid: str | None) -> Token:
    st = state()
    value = request.args.get("access_token")
    if not value:
        raise ApiError(41001)
    token = st.tokens.get(value)
    if token is None or token.app != "sns" or token.revoked:
        raise ApiError(40001)
    if st.now() >= token.expires_at:
        raise ApiError(42001)
    if openid != token.openid:
        raise ApiError(40003)
    return token


@bp.route("/sns/userinfo", methods=["GET"])
@api("oa", auth=False)
def sns_userinfo() -> dict[str, Any]:
    openid = request.args.get("openid")
    token = _sns_token(openid)
    if token.scope != "snsapi_userinfo":
        raise ApiError(48001)
    user = state().user(token.openid)
    assert user is not None  # created when the code was issued
    out: dict[str, Any] = {
        "openid": user.openid,
        "nickname": user.nickname,
        "sex": user.sex,
        "province": user.province,
        "city": user.city,
        "country": user.country,
        "headimgurl": user.headimgurl,
        "privilege": [],
    }
    if user.unionid:
        out["unionid"] = user.unionid
    return out


@bp.route("/sns/auth", methods=["GET"])
@api("oa", auth=False)
def sns_auth() -> dict[str, Any]:
    _sns_token(request.args.get("openid"))
    return ok()
