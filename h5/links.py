"""/r/<code>: a tracked link of a message. A click is recorded (bot.messaging.links) and the
browser sent on (302); a code that does not verify, or names no link, is a 404 page and
records nothing. A HEAD request (a link preview, a checker) is answered the same way without
being recorded."""

from __future__ import annotations

from flask import Blueprint, redirect, request
from flask.typing import ResponseReturnValue

from bot.messaging import links
from h5.common import problem, settings

bp = Blueprint("tracked_links", __name__, url_prefix="/r", template_folder="templates")


@bp.get("/<code>")
def follow(code: str) -> ResponseReturnValue:
    url = links.click(settings(), code, record=request.method != "HEAD")
    if url is None:
        return problem(404, "链接无效", "这个链接不存在或已失效。")
    resp = redirect(url, code=302)
    resp.headers["Cache-Control"] = "no-store"  # every click reaches us
    return resp
