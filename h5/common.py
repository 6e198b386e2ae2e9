"""What every campaign page shares: settings, the visitor cookie, the Chinese error page."""

from __future__ import annotations

from flask import Response, current_app, make_response, render_template, request

from bot.campaigns import visitors
from bot.core.config import Settings

COOKIE = "yuchi_v"
COOKIE_SECONDS = 2 * 365 * 86400
WECHAT_UA = "MicroMessenger"


def settings() -> Settings:
    return current_app.config["SETTINGS"]


def visitor_token() -> tuple[str, bool]:
    """(the visitor's token, whether it is new and the response must set the cookie)."""
    token = request.cookies.get(COOKIE)
    if visitors.valid_token(token):
        return token, False
    return visitors.new_token(), True


def with_cookie(resp: Response, token: str, new: bool) -> Response:
    if new:
        resp.set_cookie(
            COOKIE,
            token,
            max_age=COOKIE_SECONDS,
            httponly=True,
            samesite="Lax",
            secure=settings().public_url.startswith("https://"),
        )
    return resp


def in_wechat() -> bool:
    return WECHAT_UA in request.headers.get("User-Agent", "")


def problem(status: int, title: str, detail: str) -> Response:
    resp = make_response(render_template("h5/problem.html", title=title, detail=detail), status)
    resp.headers["Cache-Control"] = "no-store"
    return resp
