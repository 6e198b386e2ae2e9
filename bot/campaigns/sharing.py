"""Sharing a campaign: the JS-SDK config the page signs with (so "share to a friend /
Moments" carries the sharer's own link), personal links, QR codes and posters, and the OA
parametric QR code whose scene names the campaign and the sharer."""

from __future__ import annotations

import hashlib
import io
import secrets
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import segno
from PIL import Image, ImageDraw, ImageFont, ImageOps

from bot.campaigns import codes
from bot.core import queue, wechat
from bot.core.config import Settings
from bot.core.models import Campaign
from bot.messaging import outbox
from bot.messaging.payloads import SendRequest

FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
STATIC = Path(__file__).resolve().parent.parent.parent / "h5" / "static"
QR_SECONDS = 30 * 86400  # the longest a temporary OA QR code lives


def share_config(settings: Settings, url: str) -> dict[str, Any]:
    """``wx.config`` for the page at ``url`` (without ``#…``), signed with the OA ticket."""
    url = url.split("#", 1)[0]
    ticket = wechat.jsapi_ticket(settings)
    nonce, timestamp = secrets.token_hex(8), int(time.time())
    client = wechat.oa(settings).client
    signature = client.jsapi.get_jsapi_signature(nonce, ticket, timestamp, url)
    return {
        "appId": settings.oa_appid,
        "timestamp": timestamp,
        "nonceStr": nonce,
        "signature": signature,
    }


def page_url(settings: Settings, camp: Campaign, code: str) -> str:
    return f"{settings.public_url}/h5/c/{camp.slug}?r={code}"


def qr_png(text: str, scale: int = 6) -> bytes:
    out = io.BytesIO()
    segno.make(text, error="m").save(out, kind="png", scale=scale, border=2)
    return out.getvalue()


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.truetype(str(FONT), size) if FONT.exists() else ImageFont.load_default()


def _cover(camp: Campaign, width: int, height: int) -> Image.Image:
    """The cover when it is one of ours (``/h5/static/…``); else a plain band."""
    path = (
        STATIC / camp.cover_url.removeprefix("/h5/static/")
        if camp.cover_url.startswith("/h5/static/")
        else None
    )
    if path is not None and path.is_file() and STATIC in path.resolve().parents:
        return ImageOps.fit(Image.open(path).convert("RGB"), (width, height))
    return Image.new("RGB", (width, height), (28, 110, 90))


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> list[str]:
    lines, line = [], ""
    for ch in text:
        if draw.textlength(line + ch, font=font) > width:
            lines.append(line)
            line = ch
        else:
            line += ch
    return [*lines, line] if line else lines


def poster(camp: Campaign, url: str, sharer_name: str) -> bytes:
    """A 750×1200 PNG: the cover, the title, "<name> 邀请你" and the QR code of ``url``."""
    image = Image.new("RGB", (750, 1200), (255, 255, 255))
    image.paste(_cover(camp, 750, 560), (0, 0))
    draw = ImageDraw.Draw(image)
    y = 600
    for line in _wrap(draw, camp.title, _font(44), 670)[:3]:
        draw.text((40, y), line, fill=(20, 20, 20), font=_font(44))
        y += 60
    draw.text((40, y + 20), f"{sharer_name} 邀请你参加", fill=(90, 90, 90), font=_font(30))
    qr = Image.open(io.BytesIO(qr_png(url, scale=8))).convert("RGB").resize((300, 300))
    image.paste(qr, (410, 860))
    draw.text((40, 1000), "长按识别二维码", fill=(120, 120, 120), font=_font(28))
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def cached_poster(settings: Settings, camp: Campaign, code: str, sharer_name: str) -> bytes:
    """The poster for a referral code, drawn once a day per campaign version (Redis)."""
    digest = hashlib.sha256(
        f"{code}|{camp.updated_at.isoformat()}|{sharer_name}".encode()
    ).hexdigest()
    conn, key = queue.get_redis(settings), f"yuchi:h5:poster:{digest[:32]}"
    found = conn.get(key)
    if found is not None:
        return found
    png = poster(camp, page_url(settings, camp, code), sharer_name)
    conn.set(key, png, ex=86400)
    return png


def follow_qr(settings: Settings, sharer: codes.Sharer) -> dict[str, Any]:
    """An OA parametric QR code (``qrcode/create``, QR_STR_SCENE, 30 days) whose scene names
    the campaign and the sharer; the ticket is reused while it lives."""
    scene = codes.scene(settings.secret_key, sharer)
    if len(scene) > 64:
        raise ValueError("the sharer's id is too long for a QR scene (64 characters)")
    conn = queue.get_redis(settings)
    key = f"yuchi:h5:qr:{scene}"
    cached = conn.get(key)
    if cached is not None:
        ticket = cached.decode()
    else:
        data = wechat.oa(settings).call(
            "POST",
            "qrcode/create",
            data={
                "expire_seconds": QR_SECONDS,
                "action_name": "QR_STR_SCENE",
                "action_info": {"scene": {"scene_str": scene}},
            },
        )
        ticket = data["ticket"]
        conn.set(key, ticket, ex=QR_SECONDS - 3600)
    return {
        "scene": scene,
        "ticket": ticket,
        "image": f"{settings.wechat_mp_base}/cgi-bin/showqrcode?ticket={ticket}",
    }


def send_link(settings: Settings, camp: Campaign, userid: str, request_key: str) -> int:
    """The employee's personal link and poster by WeCom app message (a text card); the same
    ``request_key`` sends once. Returns the message id."""
    code = codes.referral_code(settings.secret_key, codes.Sharer(camp.id, userid=userid))
    poster_url = f"{settings.public_url}/h5/poster/{code}.png"
    req = SendRequest.model_validate(
        {
            "kind": "wecom_textcard",
            "to_user": [userid],
            "payload": {
                "title": f"你的专属活动链接：{camp.title}"[:128],
                "description": (
                    '<div class="normal">转发给客户或朋友圈，通过你的链接参与都会记在你名下。</div>'
                    f'<div class="gray">海报：{poster_url}</div>'
                )[:512],
                "url": page_url(settings, camp, code),
                "btntxt": "打开",
            },
            "idempotency_key": f"campaign-link-{camp.id}-{userid}-{request_key}"[:200],
        }
    )
    row, _ = outbox.create(settings, req)
    return row.id


def employee_link(settings: Settings, camp: Campaign, userid: str) -> dict[str, Any]:
    """An employee's personal link to a campaign, with its QR code and poster addresses."""
    code = codes.referral_code(settings.secret_key, codes.Sharer(camp.id, userid=userid))
    return {
        "userid": userid,
        "code": code,
        "url": page_url(settings, camp, code),
        "qr": f"{settings.public_url}/h5/qr/{code}.png",
        "poster": f"{settings.public_url}/h5/poster/{code}.png",
    }
