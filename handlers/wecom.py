"""``/wechat/wecom``: the WeCom (企业微信) callback. URL check (decrypting ``echostr``) and
AES messages with receiveid = corp id; verified, decrypted and normalized, then stored through
``bot.replies.receive.receive``. The answer is an empty 200: these events get no passive reply."""

from __future__ import annotations

import logging
import time

from flask import Blueprint, Response, request
from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException

from bot.core.config import Settings
from bot.core.models import utcnow
from handlers import common, replay
from handlers.common import Rejected, install_rejections, parse
from handlers.wecom_events import normalize

log = logging.getLogger(__name__)
bp = Blueprint("wecom", __name__)
install_rejections(bp, "WeCom")


def _crypto(settings: Settings) -> WeChatCrypto:
    if not (settings.wecom_corp_id and settings.wecom_token and settings.wecom_aes_key):
        raise Rejected(404, "WeCom is not configured (WECOM_CORP_ID, WECOM_TOKEN, WECOM_AES_KEY)")
    return WeChatCrypto(settings.wecom_token, settings.wecom_aes_key, settings.wecom_corp_id)


def _signed_args() -> tuple[str, str, str]:
    args = request.args
    signature, timestamp, nonce = (
        args.get("msg_signature"),
        args.get("timestamp"),
        args.get("nonce"),
    )
    if not (signature and timestamp and nonce):
        raise Rejected(403, "missing msg_signature, timestamp or nonce")
    return signature, timestamp, nonce


@bp.get("/wechat/wecom")
def verify_url() -> Response:
    crypto = _crypto(common.settings())
    signature, timestamp, nonce = _signed_args()
    replay.check_fresh(timestamp, utcnow(), common.settings().callback_max_skew_seconds)
    echostr = request.args.get("echostr")
    if not echostr:
        raise Rejected(400, "missing echostr")
    try:
        plain = crypto.check_signature(signature, timestamp, nonce, echostr)
    except InvalidSignatureException:
        raise Rejected(403, "invalid msg_signature") from None
    except Exception as exc:  # wrong key, wrong corp id, bad padding or base64
        raise Rejected(403, f"cannot decrypt echostr ({type(exc).__name__})") from None
    return Response(plain, mimetype="text/plain")


@bp.post("/wechat/wecom")
def callback() -> Response:
    started, arrived = time.perf_counter(), utcnow()
    settings = common.settings()
    body = request.get_data(cache=False)  # over MAX_CONTENT_LENGTH: 413 before we read it
    crypto = _crypto(settings)
    signature, timestamp, nonce = _signed_args()
    stamp = replay.stamp(
        f"wecom:{settings.wecom_corp_id}",
        timestamp,
        nonce,
        body,
        arrived,
        settings.callback_max_skew_seconds,
    )
    outer = parse(body)
    encrypt = outer.get("Encrypt")
    if not isinstance(encrypt, str) or not encrypt:
        raise Rejected(400, "no <Encrypt> element")
    try:
        plaintext = crypto.decrypt_message({"Encrypt": encrypt}, signature, timestamp, nonce)
    except InvalidSignatureException:
        raise Rejected(403, "invalid msg_signature") from None
    except Exception as exc:
        raise Rejected(403, f"cannot decrypt payload ({type(exc).__name__})") from None
    fields = parse(plaintext, "decrypted payload: ")
    event = common.stamped_event(normalize, fields, settings.wecom_corp_id, stamp)
    result = common.receive_once(settings, event, None)
    elapsed_ms = (time.perf_counter() - started) * 1000
    log.debug(
        "WeCom %s event=%s duplicate=%s in %.1f ms",
        event.type,
        result.event_id,
        result.duplicate,
        elapsed_ms,
    )
    response = Response("", mimetype="text/plain")
    response.headers["Server-Timing"] = f"app;dur={elapsed_ms:.2f}"
    return response
