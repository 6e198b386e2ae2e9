"""Conformance of the simulator's callbacks with the published algorithm: each callback is
checked twice, with wechatpy and with an independent implementation written here (sha1 over the
sorted strings; AES-256-CBC with IV = key[:16], PKCS#7 to 32-byte blocks, random16 + 4-byte
big-endian length + message + receiveid). No network: the callbacks are captured."""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from urllib.parse import parse_qsl, urlsplit

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from defusedxml.ElementTree import fromstring
from wechatpy.crypto import WeChatCrypto
from wechatpy.enterprise.crypto import WeChatCrypto as WeComCrypto

from wxsim.actors import Actors
from wxsim.app import SimConfig
from wxsim.callbacks import OAPlatform, WeComPlatform
from wxsim.jssdk import jsapi_signature
from wxsim.state import SimState

OA_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
WECOM_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"


# --- the independent implementation ---------------------------------------------------------------


def sha1_sorted(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def _key(aes_key: str) -> bytes:
    key = base64.b64decode(aes_key + "=")
    assert len(key) == 32
    return key


def independent_decrypt(aes_key: str, encrypted: str, receiveid: str) -> str:
    key = _key(aes_key)
    data = base64.b64decode(encrypted)
    assert len(data) % 32 == 0, "PKCS#7 pads to a multiple of 32 bytes"
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    plain = decryptor.update(data) + decryptor.finalize()
    pad = plain[-1]
    assert 1 <= pad <= 32 and plain[-pad:] == bytes([pad]) * pad
    plain = plain[:-pad]
    (length,) = struct.unpack(">I", plain[16:20])
    message, trailer = plain[20 : 20 + length], plain[20 + length :]
    assert trailer.decode() == receiveid
    return message.decode("utf-8")


def independent_encrypt(aes_key: str, message: str, receiveid: str) -> str:
    key = _key(aes_key)
    body = message.encode("utf-8")
    raw = os.urandom(16) + struct.pack(">I", len(body)) + body + receiveid.encode()
    pad = 32 - len(raw) % 32
    raw += bytes([pad]) * pad
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(raw) + encryptor.finalize()).decode()


def flat(xml: str) -> dict[str, str]:
    return {child.tag: child.text or "" for child in fromstring(xml)}


# --- a simulator whose callbacks are captured --------------------------------------------------------


class Response:
    def __init__(self, status: int, text: str):
        self.status_code, self.text = status, text


class Capture:
    """Stands in for requests.Session: records each POST, answers with ``reply(query, body)``."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, str], bytes]] = []
        self.reply = lambda query, body: "success"

    def post(self, url: str, data: bytes, headers: dict, timeout: float) -> Response:
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        self.posts.append((parts.path, query, data))
        return Response(200, self.reply(query, data))


@pytest.fixture
def sim():
    config = SimConfig(
        oa_appid="wxconformance0001",
        oa_token="conformtoken",
        oa_aes_key=OA_KEY,
        wecom_corp_id="wwconformance001",
        wecom_token="wecomconform",
        wecom_aes_key=WECOM_KEY,
        wecom_agent_id=1000009,
        callback_base="http://yuchi.test",
    )
    actors = Actors(config, SimState(config))
    actors.http = Capture()
    return config, actors


# --- Official Account ----------------------------------------------------------------------------------


def test_safe_mode_callback_decrypts_both_ways(sim):
    config, actors = sim
    actors.follow("oConform", scene="活动_42")
    [(path, query, body)] = actors.http.posts
    assert path == "/wechat/oa" and query["encrypt_type"] == "aes"
    ts, nonce = query["timestamp"], query["nonce"]
    assert query["signature"] == sha1_sorted(config.oa_token, ts, nonce)
    outer = flat(body.decode())
    assert set(outer) == {"ToUserName", "Encrypt"} and outer["ToUserName"] == config.oa_account
    assert query["msg_signature"] == sha1_sorted(config.oa_token, ts, nonce, outer["Encrypt"])

    ours = independent_decrypt(config.oa_aes_key, outer["Encrypt"], config.oa_appid)
    theirs = WeChatCrypto(config.oa_token, config.oa_aes_key, config.oa_appid).decrypt_message(
        body.decode(), query["msg_signature"], ts, nonce
    )
    assert ours == theirs
    fields = flat(ours)
    assert fields["MsgType"] == "event" and fields["Event"] == "subscribe"
    assert fields["EventKey"] == "qrscene_活动_42" and fields["Ticket"]
    assert fields["FromUserName"] == "oConform" and fields["ToUserName"] == config.oa_account
    assert fields["CreateTime"].isdigit()


def test_compat_and_plain_modes(sim):
    config, actors = sim
    config.callback_mode = "compat"
    actors.follow("oCompat")
    actors.say("oCompat", "价格多少")
    _, query, body = actors.http.posts[-1]
    doc = flat(body.decode())
    assert doc["Content"] == "价格多少" and doc["MsgId"].isdigit()
    decrypted = independent_decrypt(config.oa_aes_key, doc["Encrypt"], config.oa_appid)
    assert flat(decrypted) == {k: v for k, v in doc.items() if k != "Encrypt"}
    assert query["msg_signature"] == sha1_sorted(
        config.oa_token, query["timestamp"], query["nonce"], doc["Encrypt"]
    )
    config.callback_mode = "plain"
    actors.click("oCompat", "MENU_PRICE")
    _, query, body = actors.http.posts[-1]
    assert "encrypt_type" not in query and "msg_signature" not in query
    assert query["signature"] == sha1_sorted(config.oa_token, query["timestamp"], query["nonce"])
    assert flat(body.decode())["EventKey"] == "MENU_PRICE"


def test_url_check_signatures():
    oa = OAPlatform("tok", OA_KEY, "wxapp")
    q = oa.url_check("echo-me")
    assert q["signature"] == sha1_sorted("tok", q["timestamp"], q["nonce"])
    wecom = WeComPlatform("wtok", WECOM_KEY, "wwcorp")
    q = wecom.url_check("echo-wecom")
    assert q["msg_signature"] == sha1_sorted("wtok", q["timestamp"], q["nonce"], q["echostr"])
    assert independent_decrypt(WECOM_KEY, q["echostr"], "wwcorp") == "echo-wecom"
    crypto = WeComCrypto("wtok", WECOM_KEY, "wwcorp")
    assert crypto.check_signature(q["msg_signature"], q["timestamp"], q["nonce"], q["echostr"]) in (
        "echo-wecom",
        b"echo-wecom",
    )


def _encrypted_reply(config, query, xml: str, signature: str | None = None) -> str:
    encrypt = independent_encrypt(config.oa_aes_key, xml, config.oa_appid)
    ts = "1700000000"
    sig = signature or sha1_sorted(config.oa_token, ts, query["nonce"], encrypt)
    return (
        f"<xml><Encrypt><![CDATA[{encrypt}]]></Encrypt><MsgSignature><![CDATA[{sig}]]></MsgSignature>"
        f"<TimeStamp>{ts}</TimeStamp><Nonce><![CDATA[{query['nonce']}]]></Nonce></xml>"
    )


def _text_reply(config, to: str, content: str) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{to}]]></ToUserName><FromUserName><![CDATA[{config.oa_account}]]>"
        f"</FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content></xml>"
    )


def test_passive_reply_encrypted_independently_is_opened_and_recorded(sim):
    config, actors = sim
    actors.http.reply = lambda q, b: _encrypted_reply(
        config, q, _text_reply(config, "oR", "欢迎！")
    )
    result = actors.follow("oR")
    assert result.error is None and result.reply["Content"] == "欢迎！"
    assert [m["text"] for m in actors.state.inbox("openid:oR")] == ["欢迎！"]


@pytest.mark.parametrize("defect", ["signature", "addressee", "plaintext_in_safe_mode", "garbage"])
def test_unusable_passive_replies_are_what_the_user_sees_as_an_error(sim, defect):
    config, actors = sim
    good = _text_reply(config, "oBad", "hi")

    def reply(query, body):
        if defect == "signature":
            return _encrypted_reply(config, query, good, signature="0" * 40)
        if defect == "addressee":
            return _encrypted_reply(config, query, _text_reply(config, "oSomeoneElse", "hi"))
        if defect == "plaintext_in_safe_mode":
            return good
        return "<xml><Encrypt>not base64!</Encrypt><MsgSignature>x</MsgSignature></xml>"

    actors.http.reply = reply
    result = actors.follow("oBad")
    assert result.reply is None and "unusable passive reply" in result.error
    [item] = actors.state.inbox("openid:oBad")
    assert item["kind"] == "error" and item["text"] == "该公众号暂时无法提供服务，请稍后再试"


# --- WeCom ----------------------------------------------------------------------------------------------


def test_wecom_callback_decrypts_both_ways(sim):
    config, actors = sim
    result = actors.add_external_contact("zhangsan", "wmConform", state="fair_2024")
    [(path, query, body)] = actors.http.posts
    assert path == "/wechat/wecom" and set(query) == {"msg_signature", "timestamp", "nonce"}
    outer = flat(body.decode())
    assert outer["ToUserName"] == config.wecom_corp_id
    assert outer["AgentID"] == str(config.wecom_agent_id)
    ts, nonce = query["timestamp"], query["nonce"]
    assert query["msg_signature"] == sha1_sorted(config.wecom_token, ts, nonce, outer["Encrypt"])
    ours = independent_decrypt(config.wecom_aes_key, outer["Encrypt"], config.wecom_corp_id)
    theirs = WeComCrypto(
        config.wecom_token, config.wecom_aes_key, config.wecom_corp_id
    ).decrypt_message(body.decode(), query["msg_signature"], ts, nonce)
    assert ours == theirs
    fields = flat(ours)
    assert fields["FromUserName"] == "sys" and fields["Event"] == "change_external_contact"
    assert fields["ChangeType"] == "add_external_contact" and fields["UserID"] == "zhangsan"
    assert fields["ExternalUserID"] == "wmConform" and fields["State"] == "fair_2024"
    assert fields["WelcomeCode"] == result.extra["welcome_code"]


def test_wecom_delete_events_follow_the_platform_naming(sim):
    config, actors = sim
    actors.add_external_contact("zhangsan", "wmX")
    actors.customer_deletes_rep("zhangsan", "wmX")
    actors.rep_deletes_customer("zhangsan", "wmX")
    changes = [
        flat(
            independent_decrypt(
                config.wecom_aes_key, flat(b.decode())["Encrypt"], config.wecom_corp_id
            )
        )["ChangeType"]
        for _, _, b in actors.http.posts
    ]
    assert changes == ["add_external_contact", "del_follow_user", "del_external_contact"]


# --- JS-SDK ---------------------------------------------------------------------------------------------


def test_jssdk_signature_test_vector():
    ticket = (
        "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg"
    )
    args = ("Wm3WZYTPz0wzccnW", "1414587457", "http://mp.weixin.qq.com?params=value")
    expected = "0f9de62fce790f9a083d5c99e95740ceb90c27ed"
    raw = f"jsapi_ticket={ticket}&noncestr={args[0]}&timestamp={args[1]}&url={args[2]}"
    assert hashlib.sha1(raw.encode()).hexdigest() == expected
    assert jsapi_signature(ticket, *args) == expected
