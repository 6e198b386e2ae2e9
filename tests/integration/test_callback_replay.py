"""Forged, replayed and stale callbacks (OA and WeCom): the message mode, the freshness window,
the nonce check, the arrival time as the event's time, and the XML depth limit."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from support import event, post, text

from bot.core import db
from bot.core.models import Contact, Event, Outbox
from wxsim.callbacks import WeComPlatform, xml_fields

DAY = 24 * 3600
DEEP = 1_200  # the depth that raised RecursionError (a 500)


def counts(settings) -> tuple[int, int, int]:
    with db.get_engine(settings.database_url).connect() as conn:
        return tuple(
            conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar()
            for t in ("event", "contact", "outbox")
        )


def rows(settings, model):
    with db.session_scope(settings.database_url) as s:
        return list(s.execute(sa.select(model).order_by(model.id)).scalars())


def send(client, path: str, query: dict, body: bytes):
    return client.post(f"{path}?{urlencode(query)}", data=body, content_type="text/xml")


def refused(resp, status: int, reason: str) -> None:
    body = resp.get_data(as_text=True)
    assert resp.status_code == status, body
    assert reason in body
    assert "Traceback" not in body and len(body) < 200  # a short plain reason


def app_client(settings, **changes):
    from bot.app import create_app

    app = create_app(settings.replace(**changes))
    app.config["TESTING"] = True
    return app.test_client()


@pytest.fixture
def plaintext_client(clean):
    return app_client(clean, oa_message_mode="plaintext")


@pytest.fixture
def wecom(settings) -> WeComPlatform:
    return WeComPlatform(
        settings.wecom_token,
        settings.wecom_aes_key,
        settings.wecom_corp_id,
        settings.wecom_agent_id,
    )


def nested(depth: int) -> str:
    return "<a>" * depth + "x" + "</a>" * depth


def add_rule(client, auth, **body) -> None:
    assert client.post("/api/replies", json=body, headers=auth).status_code == 201


# --- OA: the message mode ----------------------------------------------------------------


def test_safe_mode_is_the_default(settings):
    assert settings.oa_message_mode == "safe"


def test_plaintext_request_while_in_safe_mode_is_refused(client, oa, clean):
    req = oa.sign(xml_fields(text(oa, "oPlain", "你好", 1)), "plain")
    refused(send(client, "/wechat/oa", req.query, req.body), 403, "safe mode")
    # A plaintext body with encrypt_type=aes but no msg_signature is refused too.
    q = {**req.query, "encrypt_type": "aes"}
    refused(send(client, "/wechat/oa", q, req.body), 403, "missing msg_signature")
    assert counts(clean) == (0, 0, 0)


def test_compatible_mode_accepts_both_and_plaintext_mode_only_plain(
    oa, clean, plaintext_client, compatible_client
):
    assert post(compatible_client, oa, text(oa, "oC", "a", 1), "plain").status == 200
    assert post(compatible_client, oa, text(oa, "oC", "b", 2), "compat").status == 200
    assert post(compatible_client, oa, text(oa, "oC", "c", 3), "safe").status == 200
    assert post(plaintext_client, oa, text(oa, "oP", "d", 4), "plain").status == 200
    req = oa.sign(xml_fields(text(oa, "oP", "e", 5)), "safe")
    refused(send(plaintext_client, "/wechat/oa", req.query, req.body), 403, "plaintext mode")
    assert counts(clean)[0] == 4


# --- OA: freshness and replays ------------------------------------------------------------


def test_a_30_day_old_triple_cannot_carry_a_forged_unsubscribe_or_text(
    plaintext_client, oa, clean, auth
):
    add_rule(plaintext_client, auth, name="价格", keywords=["价格"], reply="价格表请看菜单")
    assert post(plaintext_client, oa, event(oa, "oVictim", "subscribe"), "plain").status == 200
    old = str(int(time.time()) - 30 * DAY)
    logged = oa.sign("", "plain", timestamp=old)  # (timestamp, nonce, signature) from a log
    forged = xml_fields(event(oa, "oVictim", "unsubscribe"))
    refused(send(plaintext_client, "/wechat/oa", logged.query, forged.encode()), 403, "timestamp")
    forged = xml_fields(text(oa, "oVictim", "价格", 42))
    refused(send(plaintext_client, "/wechat/oa", logged.query, forged.encode()), 403, "timestamp")
    [contact] = rows(clean, Contact)
    assert contact.subscribed is True
    assert [e.type for e in rows(clean, Event)] == ["oa.subscribe"]


@pytest.mark.parametrize("mode", ["safe", "plain"])
def test_timestamps_outside_the_window_are_refused(compatible_client, oa, clean, mode):
    now = int(time.time())
    # 30 s past the 300 s window each way: the test itself may take seconds on a busy machine
    for offset in (-30 * DAY, -330, 330, 10 * 365 * DAY):
        req = oa.sign(xml_fields(text(oa, "oSkew", "x", 1)), mode, timestamp=str(now + offset))
        refused(send(compatible_client, "/wechat/oa", req.query, req.body), 403, "timestamp")
    assert counts(clean) == (0, 0, 0)
    req = oa.sign(xml_fields(text(oa, "oSkew", "x", 1)), mode, timestamp=str(now - 240))
    assert send(compatible_client, "/wechat/oa", req.query, req.body).status_code == 200


def test_the_window_is_a_setting(oa, clean):
    strict = app_client(clean, callback_max_skew_seconds=60.0)
    req = oa.sign(xml_fields(text(oa, "oS", "x", 1)), timestamp=str(int(time.time()) - 120))
    refused(send(strict, "/wechat/oa", req.query, req.body), 403, "at most 60")


def test_malformed_timestamp_or_nonce(client, oa, clean):
    req = oa.sign(xml_fields(text(oa, "oM", "x", 1)), timestamp="17e8")
    refused(send(client, "/wechat/oa", req.query, req.body), 403, "malformed timestamp")
    req = oa.sign(xml_fields(text(oa, "oM", "x", 1)), nonce="n" * 65)
    refused(send(client, "/wechat/oa", req.query, req.body), 403, "malformed nonce")
    assert counts(clean) == (0, 0, 0)


def test_url_check_with_a_stale_timestamp_is_refused(client, oa):
    q = oa.url_check("echo")
    assert client.get("/wechat/oa", query_string=q).status_code == 200
    old = str(int(time.time()) - 30 * DAY)
    from wxsim.callbacks import signature

    stale = {**q, "timestamp": old, "signature": signature(oa.token, old, q["nonce"])}
    refused(client.get("/wechat/oa", query_string=stale), 403, "timestamp")


def test_same_nonce_with_another_body_is_refused(plaintext_client, client, oa, clean):
    # Plaintext: the signature does not cover the body, so a fresh triple is reused.
    first = oa.sign(xml_fields(text(oa, "oN", "hello", 1)), "plain")
    assert send(plaintext_client, "/wechat/oa", first.query, first.body).status_code == 200
    forged = xml_fields(event(oa, "oN", "unsubscribe")).encode()
    refused(send(plaintext_client, "/wechat/oa", first.query, forged), 403, "nonce")
    # Safe: two validly signed bodies with the same (timestamp, nonce).
    ts, nonce = first.query["timestamp"], "777000111"
    a = oa.sign(xml_fields(text(oa, "oS", "one", 2)), timestamp=ts, nonce=nonce)
    b = oa.sign(xml_fields(text(oa, "oS", "two", 3)), timestamp=ts, nonce=nonce)
    assert send(client, "/wechat/oa", a.query, a.body).status_code == 200
    refused(send(client, "/wechat/oa", b.query, b.body), 403, "nonce already used")
    assert [e.properties["content"] for e in rows(clean, Event)] == ["hello", "one"]
    assert all(c.unsubscribed_at is None for c in rows(clean, Contact))


@pytest.mark.parametrize("mode", ["safe", "plain"])
def test_same_nonce_same_body_is_a_retry_with_the_stored_reply(
    compatible_client, oa, clean, auth, mode
):
    add_rule(compatible_client, auth, name="价格", keywords=["价格"], reply="价格表请看菜单")
    req = oa.sign(xml_fields(text(oa, "oRetry", "价格多少", 77)), mode)
    first = send(compatible_client, "/wechat/oa", req.query, req.body)
    again = send(compatible_client, "/wechat/oa", req.query, req.body)
    assert first.status_code == again.status_code == 200
    opened = [
        oa.decrypt_reply(r.get_data(as_text=True), req.query["timestamp"], req.query["nonce"])
        for r in (first, again)
    ]
    assert "价格表请看菜单" in opened[0] and opened[0] == opened[1]
    assert counts(clean) == (1, 1, 1)


def test_a_retry_with_a_fresh_nonce_still_gets_the_stored_reply(client, oa, clean, auth):
    add_rule(client, auth, name="价格", keywords=["价格"], reply="价格表请看菜单")
    fields = text(oa, "oRetry2", "价格多少", 78)
    assert post(client, oa, fields).fields["Content"] == "价格表请看菜单"
    assert post(client, oa, fields).fields["Content"] == "价格表请看菜单"
    assert counts(clean) == (1, 1, 1)


# --- OA: the arrival time, not CreateTime ---------------------------------------------------


def test_create_time_in_2036_does_not_hold_the_window_open(client, oa, clean):
    future = int(datetime(2036, 1, 1, tzinfo=UTC).timestamp())
    before = datetime.now(UTC)
    assert post(client, oa, text(oa, "oFuture", "hi", 5, create_time=future)).status == 200
    after = datetime.now(UTC)
    [contact] = rows(clean, Contact)
    assert before <= contact.last_interaction_at <= after
    [ev] = rows(clean, Event)
    assert before <= ev.occurred_at <= after
    assert ev.properties["create_time"] == future


def test_an_old_create_time_dates_the_event_but_not_the_window(client, oa, clean):
    old = int(time.time()) - 3 * DAY
    before = datetime.now(UTC)
    assert post(client, oa, text(oa, "oOld", "hi", 6, create_time=old)).status == 200
    [contact] = rows(clean, Contact)
    assert before <= contact.last_interaction_at <= datetime.now(UTC)
    [ev] = rows(clean, Event)
    assert ev.occurred_at == datetime.fromtimestamp(old, UTC)
    assert ev.properties["create_time"] == old


# --- OA: XML depth --------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [DEEP, 40, 9])
def test_deep_xml_is_a_400_outside_and_inside_the_payload(
    plaintext_client, client, oa, clean, depth
):
    body = f"<xml><FromUserName>o</FromUserName>{nested(depth)}</xml>"
    req = oa.sign(body, "plain")
    refused(send(plaintext_client, "/wechat/oa", req.query, body.encode()), 400, "nested")
    req = oa.sign(body, "safe")
    refused(send(client, "/wechat/oa", req.query, req.body), 400, "nested")
    assert counts(clean) == (0, 0, 0)


def test_the_deepest_platform_event_is_accepted(client, oa, clean):
    pics = {"Count": 1, "PicList": {"item": {"PicMd5Sum": "1b5f7c23b5bf75682a53e7b6d163e185"}}}
    fields = event(oa, "oPic", "pic_weixin", EventKey="photo", SendPicsInfo=pics)
    assert post(client, oa, fields).status == 200
    assert counts(clean)[0] == 1


# --- WeCom ----------------------------------------------------------------------------------


def added(wecom: WeComPlatform, external: str, **kw) -> str:
    fields = wecom.event_fields(
        "change_external_contact",
        ChangeType="add_external_contact",
        UserID="zhangsan",
        ExternalUserID=external,
        **kw,
    )
    return xml_fields(fields)


def test_wecom_replayed_old_request_is_refused(client, wecom, clean):
    req = wecom.sign(added(wecom, "wmOld"), timestamp=str(int(time.time()) - 30 * DAY))
    refused(send(client, "/wechat/wecom", req.query, req.body), 403, "timestamp")
    req = wecom.sign(added(wecom, "wmOld"), timestamp=str(int(time.time()) + 301))
    refused(send(client, "/wechat/wecom", req.query, req.body), 403, "timestamp")
    assert counts(clean) == (0, 0, 0)


def test_wecom_url_check_with_a_stale_timestamp_is_refused(client, wecom):
    from wxsim.callbacks import _get_signature

    q = wecom.url_check("echo")
    assert client.get(f"/wechat/wecom?{urlencode(q)}").status_code == 200
    old = str(int(time.time()) - 30 * DAY)
    sig = _get_signature(wecom.token, old, q["nonce"], q["echostr"])
    stale = {**q, "timestamp": old, "msg_signature": sig}
    refused(client.get(f"/wechat/wecom?{urlencode(stale)}"), 403, "timestamp")


def test_wecom_nonce_reuse_and_retry(client, wecom, clean):
    ts, nonce = str(int(time.time())), "5550001"
    a = wecom.sign(added(wecom, "wmA"), timestamp=ts, nonce=nonce)
    b = wecom.sign(added(wecom, "wmB"), timestamp=ts, nonce=nonce)
    assert send(client, "/wechat/wecom", a.query, a.body).status_code == 200
    assert send(client, "/wechat/wecom", a.query, a.body).status_code == 200  # retry
    refused(send(client, "/wechat/wecom", b.query, b.body), 403, "nonce already used")
    assert counts(clean) == (1, 1, 1)


def test_wecom_create_time_in_2036_is_only_a_property(client, wecom, clean):
    future = int(datetime(2036, 1, 1, tzinfo=UTC).timestamp())
    before = datetime.now(UTC)
    req = wecom.sign(added(wecom, "wmFuture", create_time=future))
    assert send(client, "/wechat/wecom", req.query, req.body).status_code == 200
    [contact] = rows(clean, Contact)
    assert before <= contact.last_interaction_at <= datetime.now(UTC)
    [ev] = rows(clean, Event)
    assert ev.occurred_at - before < timedelta(minutes=1)
    assert ev.properties["create_time"] == future


@pytest.mark.parametrize("depth", [DEEP, 40])
def test_wecom_deep_xml_is_a_400(client, wecom, clean, depth):
    inner = f"<xml><MsgType>event</MsgType>{nested(depth)}</xml>"
    req = wecom.sign(inner)
    refused(send(client, "/wechat/wecom", req.query, req.body), 400, "nested")
    outer = f"<xml><Encrypt>x</Encrypt>{nested(depth)}</xml>".encode()
    refused(send(client, "/wechat/wecom", req.query, outer), 400, "nested")
    assert counts(clean) == (0, 0, 0)
    assert rows(clean, Outbox) == []
