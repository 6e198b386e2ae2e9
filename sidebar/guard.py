"""What every sidebar route shares: the rep session cookie, the login redirect, the
cross-site refusal of the JSON endpoints (CSRF token header + Origin check), Chinese errors."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from flask import current_app, g, jsonify, redirect, render_template, request
from flask.typing import ResponseReturnValue

from bot.core.config import Settings
from bot.desk.sentences import KINDS
from bot.sales import rep_session

COOKIE = "yuchi_rep"
CSRF_HEADER = "X-CSRF-Token"


def settings() -> Settings:
    return current_app.config["SETTINGS"]


def page_error(status: int, message: str) -> ResponseReturnValue:
    return render_template("sidebar/error.html", status=status, message=message), status


def json_error(status: int, message: str) -> ResponseReturnValue:
    return jsonify(error=message), status


def _session() -> rep_session.RepSession | None:
    return rep_session.current(settings(), request.cookies.get(COOKIE))


def set_cookie(response: Any, token: str) -> Any:
    response.set_cookie(
        COOKIE,
        token,
        max_age=rep_session.SESSION_SECONDS,
        path="/sidebar",
        httponly=True,
        samesite="Lax",
        secure=settings().public_url.startswith("https://"),
    )
    return response


def rep_page(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
    """A page: without a rep session, off to WeCom's OAuth and back to this very page."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> ResponseReturnValue:
        found = _session()
        if found is None:
            back = request.full_path.rstrip("?")
            return redirect(rep_session.authorize_url(settings(), back), 302)
        g.rep = found
        return view(*args, **kwargs)

    return wrapped


def _same_site() -> bool:
    origin = request.headers.get("Origin")
    if origin is None:  # same-origin GETs (and old WebViews) send none; the token still holds
        return True
    allowed = {_origin(settings().public_url), _origin(request.host_url)}
    return origin in allowed


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def rep_json(view: Callable[..., ResponseReturnValue]) -> Callable[..., ResponseReturnValue]:
    """A JSON endpoint: a rep session, this session's CSRF token in the X-CSRF-Token header,
    and no Origin other than ours (a cross-site page can send neither)."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> ResponseReturnValue:
        found = _session()
        if found is None:
            return json_error(401, "请先登录：从企业微信重新打开侧边栏")
        given = request.headers.get(CSRF_HEADER, "")
        if not (found.csrf and hmac.compare_digest(given.encode(), found.csrf.encode())):
            return json_error(403, "请求来源无法确认（缺少或错误的 CSRF 令牌）")
        if not _same_site():
            return json_error(403, "不接受跨站请求")
        g.rep = found
        return view(*args, **kwargs)

    return wrapped


def kind_arg() -> str | None:
    """``?kind=``: one of the timeline's kinds, else none (every event)."""
    kind = request.args.get("kind") or None
    return kind if kind in KINDS else None


def before_arg() -> int | None:
    """``?before=``: the last event id already shown (a positive whole number), else none."""
    raw = request.args.get("before", "")
    return int(raw) if raw.isascii() and raw.isdigit() and 0 < len(raw) < 19 else None
