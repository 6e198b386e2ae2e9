"""``/wechat/oa``: the Official Account callback (URL check, plaintext, compatible and safe
mode). Verifies, decrypts and normalizes, then hands the event to ``bot.inbound.receive``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from flask import Blueprint, Response, current_app, request
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.replies import ArticlesReply, TextReply
from wechatpy.utils import check_signature

from bot.config import Settings
from bot.inbound import Trigger, receive
from bot.keywords import Rule
from handlers.oa_events import MissingField, normalize
from handlers.xml import BadXML, parse_flat

log = logging.getLogger(__name__)
bp = Blueprint("oa", __name__)

# Which normalized events ask the reply rules for an instant answer, and how.
REPLY_TRIGGERS = {
    "oa.text": lambda p: Trigger("keyword", text=str(p.get("content", ""))),
    "oa.subscribe": lambda p: Trigger("subscribe"),
    "oa.click": lambda p: Trigger("click", click_key=str(p.get("key", ""))),
}


class Rejected(Exception):
    def __init__(self, status: int, reason: str):
        self.status, self.reason = status, reason
        super().__init__(reason)


def _plain(status: int, reason: str) -> Response:
    return Response(reason + "\n", status=status, mimetype="text/plain")


@bp.errorhandler(Rejected)
def _rejected(exc: Rejected) -> Response:
    log.info("OA callback rejected (%s): %s", exc.status, exc.reason)
    return _plain(exc.status, exc.reason)


def _settings() -> Settings:
    return current_app.config["SETTINGS"]


def _verify_signature(settings: Settings) -> None:
    args = request.args
    signature, timestamp, nonce = args.get("signature"), args.get("timestamp"), args.get("nonce")
    if not (signature and timestamp and nonce):
        raise Rejected(403, "missing signature, timestamp or nonce")
    try:
        check_signature(settings.oa_token, signature, timestamp, nonce)
    except InvalidSignatureException:
        raise Rejected(403, "invalid signature") from None


@bp.get("/wechat/oa")
def verify_url() -> Response:
    _verify_signature(_settings())
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
    try:
        return parse_flat(plaintext)
    except BadXML as exc:
        raise Rejected(400, f"decrypted payload: {exc}") from None


def _render(fields: dict) -> Callable[[Rule], str]:
    source, target = str(fields.get("ToUserName", "")), str(fields["FromUserName"])

    def render(rule: Rule) -> str:
        if rule.reply_type == "news":
            reply = ArticlesReply(source=source, target=target)
            reply.add_article(
                {
                    "title": rule.reply.get("title", ""),
                    "description": rule.reply.get("description", ""),
                    "image": rule.reply.get("image") or "",
                    "url": rule.reply.get("url", ""),
                }
            )
            return reply.render()
        return TextReply(
            source=source, target=target, content=rule.reply.get("content", "")
        ).render()

    return render


@bp.post("/wechat/oa")
def callback() -> Response:
    started = time.perf_counter()
    settings = _settings()
    body = request.get_data(cache=False)  # over MAX_CONTENT_LENGTH: 413 before we read it
    _verify_signature(settings)
    try:
        outer = parse_flat(body)
    except BadXML as exc:
        raise Rejected(400, str(exc)) from None
    encrypted = request.args.get("encrypt_type", "raw").lower() == "aes"
    fields = _decrypt(settings, outer) if encrypted else outer
    try:
        event = normalize(fields, settings.oa_appid)
    except MissingField as exc:
        raise Rejected(400, str(exc)) from None

    make_trigger = REPLY_TRIGGERS.get(event.type)
    trigger = make_trigger(event.properties) if make_trigger else None
    result = receive(settings, event, trigger, _render(fields))

    if result.reply is None:
        response = Response("success", mimetype="text/plain")
    elif encrypted:
        nonce = request.args["nonce"]
        response = Response(
            _crypto(settings).encrypt_message(result.reply, nonce), mimetype="application/xml"
        )
    else:
        response = Response(result.reply, mimetype="application/xml")
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
