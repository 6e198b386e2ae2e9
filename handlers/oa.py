"""``/wechat/oa``: the Official Account callback (URL check, plaintext, compatible and safe
mode). Verifies, decrypts and normalizes, hands the event to ``bot.replies.receive.receive``
and renders the neutral reply it answers as the passive-reply XML, after its transaction."""

from __future__ import annotations

import logging
import time

from flask import Blueprint, Response, request
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.replies import ArticlesReply, ImageReply, TextReply
from wechatpy.utils import check_signature

from bot.core.config import Settings
from bot.core.models import utcnow
from bot.replies.decide import LEGACY, Reply, Trigger
from handlers import common, replay
from handlers.common import Rejected, install_rejections, parse
from handlers.oa_events import normalize

log = logging.getLogger(__name__)
bp = Blueprint("oa", __name__)

# Which normalized events ask the reply rules for an instant answer, and how.
REPLY_TRIGGERS = {
    "oa.text": lambda p: Trigger("keyword", text=str(p.get("content", ""))),
    "oa.subscribe": lambda p: Trigger("subscribe"),
    "oa.click": lambda p: Trigger("click", click_key=str(p.get("key", ""))),
}


install_rejections(bp, "OA")


def _verify_signature(settings: Settings) -> tuple[str, str]:
    """Check ``signature`` over (token, timestamp, nonce); the timestamp and nonce."""
    args = request.args
    signature, timestamp, nonce = args.get("signature"), args.get("timestamp"), args.get("nonce")
    if not (signature and timestamp and nonce):
        raise Rejected(403, "missing signature, timestamp or nonce")
    try:
        check_signature(settings.oa_token, signature, timestamp, nonce)
    except InvalidSignatureException:
        raise Rejected(403, "invalid signature") from None
    return timestamp, nonce


def _check_mode(settings: Settings, encrypted: bool) -> None:
    """Accept only the request shapes the account's message mode sends: safe, encrypted ones
    (a plaintext request's signature does not cover its body); plaintext, plain ones;
    compatible, either (for the switch between the two)."""
    mode = settings.oa_message_mode
    if mode == "safe" and not encrypted:
        raise Rejected(403, "safe mode: encrypt_type=aes and msg_signature are required")
    if mode == "plaintext" and encrypted:
        raise Rejected(403, "plaintext mode: encrypted callbacks are not accepted")


@bp.get("/wechat/oa")
def verify_url() -> Response:
    settings = common.settings()
    timestamp, _ = _verify_signature(settings)
    replay.check_fresh(timestamp, utcnow(), settings.callback_max_skew_seconds)
    echostr = request.args.get("echostr")
    if not echostr:
        raise Rejected(400, "missing echostr")
    return Response(echostr, mimetype="text/plain")


def _crypto(settings: Settings) -> WeChatCrypto:
    return WeChatCrypto(settings.oa_token, settings.oa_aes_key, settings.oa_appid)


def _decrypt(settings: Settings, outer: dict) -> dict:
    msg_signature = request.args.get("msg_signature")
    if not msg_signature:
        raise Rejected(403, "missing msg_signature")
    if not isinstance(outer.get("Encrypt"), str) or not outer["Encrypt"]:
        raise Rejected(400, "encrypt_type=aes but no <Encrypt> element")
    try:
        plaintext = _crypto(settings).decrypt_message(
            {"Encrypt": outer["Encrypt"]},
            msg_signature,
            request.args["timestamp"],
            request.args["nonce"],
        )
    except InvalidSignatureException:
        raise Rejected(403, "invalid msg_signature") from None
    except Exception as exc:  # wrong key, wrong appid, bad padding or base64: all undecryptable
        raise Rejected(403, f"cannot decrypt payload ({type(exc).__name__})") from None
    return parse(plaintext, "decrypted payload: ")


def _render(fields: dict, reply: Reply) -> str:
    """The passive-reply XML for ``reply``, addressed back to the sender."""
    if reply.kind == LEGACY:
        return reply.payload["xml"]
    source, target = str(fields.get("ToUserName", "")), str(fields["FromUserName"])
    addressed = {"source": source, "target": target, "time": reply.at}
    if reply.kind == "news":
        articles = ArticlesReply(**addressed)
        articles.add_article(dict(reply.payload))
        return articles.render()
    if reply.kind == "image":
        return ImageReply(**addressed, media_id=reply.payload["media_id"]).render()
    return TextReply(**addressed, content=reply.payload.get("content", "")).render()


@bp.post("/wechat/oa")
def callback() -> Response:
    started, arrived = time.perf_counter(), utcnow()
    settings = common.settings()
    body = request.get_data(cache=False)  # over MAX_CONTENT_LENGTH: 413 before we read it
    timestamp, nonce = _verify_signature(settings)
    stamp = replay.stamp(
        f"oa:{settings.oa_appid}",
        timestamp,
        nonce,
        body,
        arrived,
        settings.callback_max_skew_seconds,
    )
    encrypted = request.args.get("encrypt_type", "raw").lower() == "aes"
    _check_mode(settings, encrypted)
    outer = parse(body)
    fields = _decrypt(settings, outer) if encrypted else outer
    event = common.stamped_event(normalize, fields, settings.oa_appid, stamp)
    make_trigger = REPLY_TRIGGERS.get(event.type)
    trigger = make_trigger(event.properties) if make_trigger else None
    result = common.receive_once(settings, event, trigger)

    if result.reply is None:
        response = Response("success", mimetype="text/plain")
    else:  # rendered now, after the transaction
        document = _render(fields, result.reply)
        if encrypted:
            document = _crypto(settings).encrypt_message(document, request.args["nonce"])
        response = Response(document, mimetype="application/xml")
    elapsed_ms = (time.perf_counter() - started) * 1000
    response.headers["Server-Timing"] = f"app;dur={elapsed_ms:.2f}"
    (log.warning if elapsed_ms > 2000 else log.debug)(
        "OA %s %s event=%s duplicate=%s in %.1f ms",
        event.type,
        event.identity_value,
        result.event_id,
        result.duplicate,
        elapsed_ms,
    )
    return response
