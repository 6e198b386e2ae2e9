"""Callbacks as WeChat sends them: signed query strings and, in compatible or safe mode,
AES-encrypted bodies (the published algorithm, through wechatpy's implementation of it)."""

from __future__ import annotations

import secrets
import string
import time
from dataclasses import dataclass
from urllib.parse import urlencode

from wechatpy.crypto import PrpCrypto, WeChatCrypto, _get_signature
from wechatpy.utils import WeChatSigner


def signature(*parts: str) -> str:
    signer = WeChatSigner()
    signer.add_data(*parts)
    return signer.signature


def _nonce() -> str:
    return "".join(secrets.choice(string.digits) for _ in range(10))


def _cdata(value: str) -> str:
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def xml_fields(fields: dict[str, object]) -> str:
    """A flat WeChat XML document; numbers bare, text in CDATA, nested dicts as elements."""

    def render(value: object) -> str:
        if isinstance(value, dict):
            return "".join(f"<{k}>{render(v)}</{k}>" for k, v in value.items())
        if isinstance(value, int):
            return str(value)
        return _cdata(str(value))

    return "<xml>" + render(fields) + "</xml>"


@dataclass
class SignedRequest:
    query: dict[str, str]
    body: bytes

    @property
    def query_string(self) -> str:
        return urlencode(self.query)


@dataclass
class OAPlatform:
    """Signs and encrypts Official Account callbacks for one account."""

    token: str
    aes_key: str
    appid: str
    account: str = "gh_0123456789ab"  # the account's original id (ToUserName)

    def url_check(self, echostr: str = "echo-123") -> dict[str, str]:
        ts, nonce = str(int(time.time())), _nonce()
        return {
            "signature": signature(self.token, ts, nonce),
            "timestamp": ts,
            "nonce": nonce,
            "echostr": echostr,
        }

    def message_fields(
        self, openid: str, msg_type: str, create_time: int | None = None, **extra: object
    ) -> dict:
        return {
            "ToUserName": self.account,
            "FromUserName": openid,
            "CreateTime": create_time if create_time is not None else int(time.time()),
            "MsgType": msg_type,
            **extra,
        }

    def sign(
        self,
        plaintext_xml: str,
        mode: str = "safe",
        timestamp: str | None = None,
        nonce: str | None = None,
    ) -> SignedRequest:
        """mode: plain (no encryption), compat (fields + Encrypt) or safe (Encrypt only)."""
        ts, nonce = timestamp or str(int(time.time())), nonce or _nonce()
        query = {"signature": signature(self.token, ts, nonce), "timestamp": ts, "nonce": nonce}
        if mode == "plain":
            return SignedRequest(query, plaintext_xml.encode())
        encrypt = PrpCrypto(WeChatCrypto(self.token, self.aes_key, self.appid).key).encrypt(
            plaintext_xml, self.appid
        )
        encrypt = encrypt.decode() if isinstance(encrypt, bytes) else encrypt
        query.update(
            encrypt_type="aes", msg_signature=_get_signature(self.token, ts, nonce, encrypt)
        )
        if mode == "safe":
            body = f"<xml><ToUserName>{_cdata(self.account)}</ToUserName><Encrypt>{_cdata(encrypt)}</Encrypt></xml>"
        elif mode == "compat":
            body = plaintext_xml.replace("</xml>", f"<Encrypt>{_cdata(encrypt)}</Encrypt></xml>")
        else:
            raise ValueError(f"unknown mode {mode!r}")
        return SignedRequest(query, body.encode())

    def decrypt_reply(self, body: str, timestamp: str, nonce: str) -> str:
        """Open an encrypted passive reply the way WeChat does (checks its MsgSignature)."""
        import xmltodict

        doc = xmltodict.parse(body)["xml"]
        return (
            WeChatCrypto(self.token, self.aes_key, self.appid).decrypt_message(
                doc, doc["MsgSignature"], doc["TimeStamp"], doc["Nonce"]
            )
            if doc.get("MsgSignature")
            else body
        )


@dataclass
class WeComPlatform:
    """Signs and encrypts WeCom callbacks for one corp (receiveid = the corp id). WeCom has no
    plaintext mode: every callback, and the URL check's echostr, is encrypted."""

    token: str
    aes_key: str
    corp_id: str
    agent_id: int | str = ""

    def _encrypt(self, plaintext: str) -> str:
        from wechatpy.enterprise.crypto import PrpCrypto as WeComPrpCrypto
        from wechatpy.enterprise.crypto import WeChatCrypto as WeComCrypto

        key = WeComCrypto(self.token, self.aes_key, self.corp_id).key
        encrypted = WeComPrpCrypto(key).encrypt(plaintext, self.corp_id)
        return encrypted.decode() if isinstance(encrypted, bytes) else encrypted

    def url_check(self, echo: str = "echo-123") -> dict[str, str]:
        """GET query for the URL check: ``echostr`` is encrypted; the server must answer the
        decrypted plaintext."""
        ts, nonce = str(int(time.time())), _nonce()
        echostr = self._encrypt(echo)
        return {
            "msg_signature": _get_signature(self.token, ts, nonce, echostr),
            "timestamp": ts,
            "nonce": nonce,
            "echostr": echostr,
        }

    def event_fields(self, event: str, create_time: int | None = None, **extra: object) -> dict:
        return {
            "ToUserName": self.corp_id,
            "FromUserName": "sys",
            "CreateTime": create_time if create_time is not None else int(time.time()),
            "MsgType": "event",
            "Event": event,
            **extra,
        }

    def sign(
        self, plaintext_xml: str, timestamp: str | None = None, nonce: str | None = None
    ) -> SignedRequest:
        ts, nonce = timestamp or str(int(time.time())), nonce or _nonce()
        encrypt = self._encrypt(plaintext_xml)
        query = {
            "msg_signature": _get_signature(self.token, ts, nonce, encrypt),
            "timestamp": ts,
            "nonce": nonce,
        }
        body = (
            f"<xml><ToUserName>{_cdata(self.corp_id)}</ToUserName>"
            f"<AgentID>{_cdata(str(self.agent_id))}</AgentID>"
            f"<Encrypt>{_cdata(encrypt)}</Encrypt></xml>"
        )
        return SignedRequest(query, body.encode())

    def decrypt_reply(self, body: str) -> str:
        """Open an encrypted passive reply the way WeCom does (checks its MsgSignature)."""
        import xmltodict
        from wechatpy.enterprise.crypto import WeChatCrypto as WeComCrypto

        doc = xmltodict.parse(body)["xml"]
        return WeComCrypto(self.token, self.aes_key, self.corp_id).decrypt_message(
            doc, doc["MsgSignature"], doc["TimeStamp"], doc["Nonce"]
        )
