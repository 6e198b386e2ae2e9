"""Broken and hostile callbacks: a clear 4xx with a reason, never a 500, nothing stored."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from support import text

from bot.core import db
from wxsim.callbacks import OAPlatform, xml_fields

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<xml><ToUserName>gh</ToUserName><FromUserName>oEvil</FromUserName><CreateTime>1</CreateTime>
<MsgType>text</MsgType><Content>&lol4;</Content><MsgId>1</MsgId></xml>"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<xml><ToUserName>gh</ToUserName><FromUserName>oEvil</FromUserName><CreateTime>1</CreateTime>
<MsgType>text</MsgType><Content>&xxe;</Content><MsgId>2</MsgId></xml>"""


def counts(settings) -> tuple[int, int, int]:
    with db.get_engine(settings.database_url).connect() as conn:
        return tuple(
            conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar()
            for t in ("event", "contact", "outbox")
        )


def send(client, query: dict, body: bytes):
    from urllib.parse import urlencode

    return client.post(f"/wechat/oa?{urlencode(query)}", data=body, content_type="text/xml")


def good_text(oa: OAPlatform) -> str:
    return xml_fields(text(oa, "oEvil", "你好", 99))


def check(resp, status: int, reason: str, settings) -> None:
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert reason in resp.get_data(as_text=True)
    assert counts(settings) == (0, 0, 0)


@pytest.mark.parametrize("mode", ["plain", "safe"])
def test_wrong_or_missing_signature(compatible_client, oa, clean, mode):
    client = compatible_client  # the signature is checked before the message mode
    req = oa.sign(good_text(oa), mode)
    check(
        send(client, {**req.query, "signature": "f" * 40}, req.body),
        403,
        "invalid signature",
        clean,
    )
    q = dict(req.query)
    del q["signature"]
    check(send(client, q, req.body), 403, "missing signature", clean)
    stale = {**req.query, "timestamp": str(int(req.query["timestamp"]) + 1)}
    check(send(client, stale, req.body), 403, "invalid signature", clean)


def test_bad_msg_signature(client, oa, clean):
    req = oa.sign(good_text(oa), "safe")
    check(
        send(client, {**req.query, "msg_signature": "0" * 40}, req.body),
        403,
        "invalid msg_signature",
        clean,
    )
    q = dict(req.query)
    del q["msg_signature"]
    check(send(client, q, req.body), 403, "missing msg_signature", clean)


def test_undecryptable_payloads(client, oa, clean):
    # Encrypted with another account's key: signature right (same token), payload garbage.
    other_key = OAPlatform(oa.token, "A" * 42 + "E", oa.appid)
    req = other_key.sign(good_text(oa), "safe")
    check(send(client, req.query, req.body), 403, "cannot decrypt", clean)
    # Right key, another account's appid inside.
    other_app = OAPlatform(oa.token, oa.aes_key, "wxsomeoneelse0001")
    req = other_app.sign(good_text(oa), "safe")
    check(send(client, req.query, req.body), 403, "cannot decrypt", clean)
    # Not base64 at all, correctly signed.
    from wxsim.callbacks import signature

    ts, nonce, junk = str(int(time.time())), "123", "!!!not-base64!!!"
    q = {
        "signature": signature(oa.token, ts, nonce),
        "timestamp": ts,
        "nonce": nonce,
        "encrypt_type": "aes",
        "msg_signature": signature(oa.token, ts, nonce, junk),
    }
    check(
        send(client, q, f"<xml><Encrypt>{junk}</Encrypt></xml>".encode()),
        403,
        "cannot decrypt",
        clean,
    )
    # encrypt_type=aes without an Encrypt element.
    check(send(client, q, b"<xml><ToUserName>gh</ToUserName></xml>"), 400, "no <Encrypt>", clean)


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"<xml><FromUserName>oEvil</FromUserName>", "malformed XML"),
        (b"not xml at all", "malformed XML"),
        (b"", "empty body"),
        (b"<html><body/></html>", "root element must be <xml>"),
        (BILLION_LAUGHS.encode(), "DOCTYPE"),
        (EXTERNAL_ENTITY.encode(), "DOCTYPE"),
        (
            b"<xml><FromUserName>o</FromUserName><MsgType>text</MsgType></xml>",
            "missing field CreateTime",
        ),
        (
            b"<xml><MsgType>text</MsgType><CreateTime>1</CreateTime></xml>",
            "missing field FromUserName",
        ),
        (
            b"<xml><FromUserName>o</FromUserName><MsgType>text</MsgType><CreateTime>soon</CreateTime></xml>",
            "not a Unix time",
        ),
    ],
)
def test_malformed_and_hostile_xml_plaintext(compatible_client, oa, clean, body, reason):
    req = oa.sign("", "plain")
    check(send(compatible_client, req.query, body), 400, reason, clean)


@pytest.mark.parametrize("payload", [BILLION_LAUGHS, EXTERNAL_ENTITY, "<xml><Content>broken</xml>"])
def test_hostile_xml_inside_the_encrypted_payload(client, oa, clean, payload):
    req = oa.sign(payload, "safe")
    check(send(client, req.query, req.body), 400, "decrypted payload", clean)


def test_hostile_outer_envelope_in_safe_mode(client, oa, clean):
    req = oa.sign(BILLION_LAUGHS, "safe")
    check(send(client, req.query, BILLION_LAUGHS.encode()), 400, "DOCTYPE", clean)


def test_oversize_body(client, oa, clean):
    big = xml_fields(text(oa, "oBig", "长" * 30_000, 5))  # 90 KB of UTF-8
    req = oa.sign(big, "plain")
    check(send(client, req.query, req.body), 413, "larger than 65536 bytes", clean)
    req = oa.sign(big, "safe")
    check(send(client, req.query, req.body), 413, "larger than", clean)


def test_methods_and_paths(client, clean):
    assert client.put("/wechat/oa").status_code == 405
    assert client.get("/wechat/nope").status_code == 404
    assert counts(clean) == (0, 0, 0)
