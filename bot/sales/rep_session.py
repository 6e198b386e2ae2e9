"""A rep's identity in the sidebar: WeCom member OAuth (``connect/oauth2/authorize`` →
``auth/getuserinfo``), a signed and expiring ``state`` that works once, and a signed session
(userid + a CSRF token) that the web layer keeps in an HttpOnly, SameSite cookie."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import urlencode

import redis
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from bot.core import queue, wechat
from bot.core.config import Settings
from bot.core.db import session_scope
from bot.sales.access import staff

STATE_SECONDS = 600  # a login link is good for ten minutes ...
SESSION_SECONDS = 12 * 3600  # ... a session for a working day
CALLBACK_PATH = "/sidebar/oauth/callback"
HOME = "/sidebar/"


class LoginRefused(Exception):
    """The login cannot go on; ``status`` (4xx) and a sentence for the rep, in Chinese."""

    def __init__(self, status: int, message: str):
        self.status, self.message = status, message
        super().__init__(message)


@dataclass(frozen=True)
class RepSession:
    userid: str
    csrf: str


def _signer(settings: Settings, salt: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.secret_key, salt=salt)


def safe_next(path: str | None) -> str:
    """Where to go after login: a sidebar path on this site, else the sidebar's home."""
    if not path or not path.startswith("/sidebar/") or "//" in path or "\\" in path:
        return HOME
    return path


def authorize_url(settings: Settings, next_path: str) -> str:
    """WeCom's member OAuth link; its ``state`` carries a one-time nonce and where to return."""
    state = _signer(settings, "sidebar-state").dumps(
        {"n": secrets.token_urlsafe(12), "next": safe_next(next_path)}
    )
    query = urlencode(
        {
            "appid": settings.wecom_corp_id,
            "redirect_uri": f"{settings.public_url}{CALLBACK_PATH}",
            "response_type": "code",
            "scope": "snsapi_base",
            "state": state,
            "agentid": str(settings.wecom_agent_id),
        }
    )
    return f"{settings.wechat_oauth_base}/connect/oauth2/authorize?{query}#wechat_redirect"


def _spend_state(settings: Settings, state: str) -> str:
    """The path the state returns to; LoginRefused when forged, expired or used before."""
    try:
        data = _signer(settings, "sidebar-state").loads(state, max_age=STATE_SECONDS)
    except SignatureExpired:
        raise LoginRefused(400, "登录链接已过期，请重新打开侧边栏。") from None
    except BadSignature:
        raise LoginRefused(400, "登录请求无效（state 校验失败），请重新打开侧边栏。") from None
    if not isinstance(data, dict) or not isinstance(data.get("n"), str):
        raise LoginRefused(400, "登录请求无效（state 校验失败），请重新打开侧边栏。")
    try:
        fresh = queue.get_redis(settings).set(
            f"yuchi:sidebar:state:{data['n']}", 1, nx=True, ex=STATE_SECONDS + 60
        )
    except redis.RedisError:
        raise LoginRefused(503, "暂时无法登录，请稍后再试。") from None
    if not fresh:
        raise LoginRefused(400, "这个登录链接已经用过了，请重新打开侧边栏。")
    return safe_next(data.get("next"))


def _member(settings: Settings, code: str) -> str:
    try:
        data = wechat.wecom(settings).call("get", "auth/getuserinfo", params={"code": code})
    except wechat.PlatformError as exc:
        if exc.transient:
            raise LoginRefused(503, "企业微信暂时无法确认你的身份，请稍后再试。") from None
        raise LoginRefused(400, "登录码无效或已过期，请重新打开侧边栏。") from None
    userid = data.get("userid") or data.get("UserId")
    if not isinstance(userid, str) or not userid:
        raise LoginRefused(403, "只有企业成员可以使用客户侧边栏。")
    return userid


def login(settings: Settings, code: str | None, state: str | None) -> tuple[str, str]:
    """(session token, path to return to) for the member behind ``code``; LoginRefused."""
    if not state:
        raise LoginRefused(400, "登录请求无效（缺少 state），请重新打开侧边栏。")
    next_path = _spend_state(settings, state)
    if not code:
        raise LoginRefused(403, "你没有同意授权，无法使用客户侧边栏。")
    userid = _member(settings, code)
    with session_scope(settings.database_url) as session:
        if staff(session, userid) is None:
            raise LoginRefused(403, "你不在销售人员名单中，无法使用客户侧边栏。请联系管理员。")
    return session_token(settings, userid), next_path


def session_token(settings: Settings, userid: str) -> str:
    return _signer(settings, "sidebar-session").dumps({"u": userid, "c": secrets.token_urlsafe(18)})


def current(settings: Settings, token: str | None) -> RepSession | None:
    """The session in ``token`` if its signature holds, it has not expired and the rep is still
    on the staff (a rep who left loses the sidebar at once)."""
    if not token:
        return None
    try:
        data = _signer(settings, "sidebar-session").loads(token, max_age=SESSION_SECONDS)
    except BadSignature:  # SignatureExpired is one
        return None
    if not isinstance(data, dict) or not isinstance(data.get("u"), str):
        return None
    with session_scope(settings.database_url) as session:
        if staff(session, data["u"]) is None:
            return None
    return RepSession(data["u"], str(data.get("c") or ""))
