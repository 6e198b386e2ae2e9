"""The benchmark's baseline: the least a safe-mode Official Account webhook can do.

Check the query signature, decrypt the body (which checks msg_signature), parse it, answer
with an encrypted text reply. No storage, no queue, no rules. Served by gunicorn with
Yuchi's own config file, so the two servers differ only in what the request handler does:

    gunicorn -c python:bot.gunicorn_conf --bind 127.0.0.1:8001 bench.baseline_app:app
"""

from __future__ import annotations

import os

from flask import Flask, Response, request
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.replies import TextReply
from wechatpy.utils import check_signature

TOKEN = os.environ["WECHAT_OA_TOKEN"]
AES_KEY = os.environ["WECHAT_OA_AES_KEY"]
APPID = os.environ["WECHAT_OA_APPID"]
REPLY = "您好，价格请见菜单「产品价格」，或回复型号查询。"

crypto = WeChatCrypto(TOKEN, AES_KEY, APPID)
app = Flask(__name__)


@app.get("/healthz")
def healthz() -> Response:
    return Response("ok\n", mimetype="text/plain")


@app.post("/wechat/oa")
def callback() -> Response:
    args = request.args
    try:
        timestamp, nonce = args["timestamp"], args["nonce"]
        check_signature(TOKEN, args["signature"], timestamp, nonce)
        plaintext = crypto.decrypt_message(
            request.get_data(), args["msg_signature"], timestamp, nonce
        )
    except (KeyError, InvalidSignatureException):
        return Response("forbidden\n", status=403, mimetype="text/plain")
    message = parse_message(plaintext)
    reply = TextReply(message=message, content=REPLY).render()
    return Response(crypto.encrypt_message(reply, nonce), mimetype="application/xml")
