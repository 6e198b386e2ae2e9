"""Official Account web OAuth for campaign pages. ``snsapi_base`` silently; ``snsapi_userinfo``
only when the campaign needs the nickname and avatar. The ``state`` is signed, expires in
five minutes, is bound to the visitor's cookie, and is used once (its nonce is taken from
Redis on the callback): a forged, expired, foreign or replayed state is refused."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from wechatpy.exceptions import WeChatClientException, WeChatOAuthException
from wechatpy.oauth import WeChatOAuth

from bot.campaigns import codes
from bot.core import queue
from bot.core.config import Settings

STATE_SECONDS = 300


class StateRefused(Exception):
    """The callback's state is forged, expired, for another browser, or used already."""


def _bound(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def _client(settings: Settings, scope: str, state: str = "") -> WeChatOAuth:
    client = WeChatOAuth(
        settings.oa_appid,
        settings.oa_secret,
        f"{settings.public_url}/h5/oauth/callback",
        scope=scope,
        state=state,
    )
    client.API_BASE_URL = f"{settings.wechat_api_base}/"
    client.OAUTH_BASE_URL = f"{settings.wechat_oauth_base}/connect/"
    return client


def authorize_url(settings: Settings, token: str, next_path: str, userinfo: bool) -> str:
    """Where to send the browser; the state's nonce remembers ``next_path`` in Redis."""
    nonce = secrets.token_urlsafe(9)
    state = codes.sign(
        settings.secret_key,
        "oauth",
        {"v": _bound(token), "n": nonce, "exp": int(time.time()) + STATE_SECONDS},
    )
    queue.get_redis(settings).set(f"yuchi:h5:oauth:{nonce}", next_path, ex=STATE_SECONDS)
    scope = "snsapi_userinfo" if userinfo else "snsapi_base"
    return _client(settings, scope, state).authorize_url


def take_state(settings: Settings, token: str | None, state: str) -> str:
    """The page to return to, once; raises StateRefused."""
    payload = codes.unsign(settings.secret_key, "oauth", state)
    if payload is None:
        raise StateRefused("登录状态无效或已过期")
    if not token or payload.get("v") != _bound(token):
        raise StateRefused("登录状态不属于这个浏览器")
    next_path = queue.get_redis(settings).getdel(f"yuchi:h5:oauth:{payload.get('n')}")
    if next_path is None:
        raise StateRefused("登录链接已使用过")
    return next_path.decode()


@dataclass(frozen=True)
class WeChatUser:
    openid: str
    nickname: str | None
    avatar: str | None


class CodeRefused(Exception):
    """The platform refused the code (40029 invalid, 40163 used …)."""


def exchange(settings: Settings, code: str) -> WeChatUser:
    """The openid (and with ``snsapi_userinfo`` the nickname and avatar) for an OAuth code."""
    client = _client(settings, "snsapi_base")
    try:
        token = client.fetch_access_token(code)
        openid = token["openid"]
        if token.get("scope") != "snsapi_userinfo":
            return WeChatUser(openid, None, None)
        info = client.get_user_info(openid, token["access_token"])
    except (WeChatOAuthException, WeChatClientException) as exc:
        raise CodeRefused(f"{exc.errcode}: {exc.errmsg}") from None
    return WeChatUser(openid, info.get("nickname"), info.get("headimgurl"))
