"""/h5/points (积分 and the rewards catalogue, redeem), personal QR codes and posters."""

from __future__ import annotations

import secrets

from flask import Blueprint, Response, render_template, request
from flask.typing import ResponseReturnValue

from bot.campaigns import codes, pages, points, sharing
from h5.common import problem, settings, visitor_token, with_cookie

bp = Blueprint("h5_rewards", __name__, url_prefix="/h5", template_folder="templates")


def _points_page(status: int = 200, **extra: object) -> Response:
    token, new = visitor_token()
    data = pages.points_page(settings(), token)
    html = render_template(
        "h5/points.html", data=data, request_key=secrets.token_urlsafe(12), **extra
    )
    resp = Response(html, status, mimetype="text/html")
    resp.headers["Cache-Control"] = "no-store"
    return with_cookie(resp, token, new)


@bp.get("/points")
def points_view() -> ResponseReturnValue:
    return _points_page()


@bp.post("/points/redeem")
def redeem() -> ResponseReturnValue:
    raw, key = request.form.get("reward", ""), request.form.get("key", "")
    if not raw.isdigit() or len(raw) > 9 or not 8 <= len(key) <= 40:
        return _points_page(422, message="请选择要兑换的奖品")
    token, _ = visitor_token()
    try:
        done = pages.redeem(settings(), token, int(raw), key)
    except points.RedeemRefused as exc:
        return _points_page(409, message=str(exc))
    return _points_page(message=f"兑换成功：{done.reward}，兑换码 {done.code}")


def _png(data: bytes) -> Response:
    resp = Response(data, mimetype="image/png")
    resp.headers["Cache-Control"] = "public, max-age=86400"
    return resp


def _sharer(code: str) -> codes.Sharer | None:
    return codes.read_referral(settings().secret_key, code.removesuffix(".png"))


@bp.get("/qr/<code>")
def qr(code: str) -> ResponseReturnValue:
    sharer = _sharer(code)
    camp = pages.campaign_by_id(settings(), sharer.campaign_id) if sharer else None
    if camp is None:
        return problem(404, "二维码无效", "这个链接无效。")
    return _png(sharing.qr_png(sharing.page_url(settings(), camp, code.removesuffix(".png"))))


@bp.get("/poster/<code>")
def poster(code: str) -> ResponseReturnValue:
    sharer = _sharer(code)
    camp = pages.campaign_by_id(settings(), sharer.campaign_id) if sharer else None
    if camp is None:
        return problem(404, "海报无效", "这个链接无效。")
    name = pages.sharer_name(settings(), sharer)
    return _png(sharing.cached_poster(settings(), camp, code.removesuffix(".png"), name))


@bp.get("/pass/<token>")
def pass_qr(token: str) -> ResponseReturnValue:
    """The check-in pass as a QR code (the signed pass staff scan)."""
    token = token.removesuffix(".png")
    if codes.unsign(settings().secret_key, "checkin", token) is None:
        return problem(404, "签到码无效", "请回到活动页面重新获取。")
    return _png(sharing.qr_png(f"{settings().public_url}/h5/checkin/{token}"))
