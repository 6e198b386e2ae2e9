"""Secrets never leave the process. Every platform call the product makes (OA and WeCom tokens,
custom and template sends, user info, tags, welcome messages, the staff directory, external
contacts, contact ways, app messages) meets a misbehaving platform: refused connections, time-outs,
dropped connections, HTTP 500s, error codes and non-JSON answers that quote the request URL back.
Then no secret and no access token may appear in any table, in any API answer or in any log line.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa
from support import event, post, run_worker, text
from testenv import free_port

from bot.app import create_app
from bot.core import db, queue, wechat
from bot.core.config import load_settings
from bot.core.models import Channel, Identity, Message
from wxsim.callbacks import WeComPlatform, xml_fields

HANG_SECONDS = 1.0  # longer than the clients' time-outs below
CLIENT_TIMEOUT = 0.3
TOKEN_PATHS = ("/cgi-bin/token", "/cgi-bin/gettoken")
OA_PATHS = {  # every OA call the flow below makes once it holds a token
    "message/custom/send",
    "message/template/send",
    "user/info",
    "tags/create",
}
WECOM_PATHS = {
    "message/send",
    "externalcontact/add_contact_way",
    "externalcontact/send_welcome_msg",
    "externalcontact/get",
    "user/get",
    "externalcontact/get_corp_tag_list",
}


@dataclass
class Platform:
    """A loopback stand-in for the platform that misbehaves in one way (``mode``)."""

    mode: str
    fresh_token: str
    seen: list[str] = field(default_factory=list)


def _handler(platform: Platform) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # the test reads Yuchi's logs only
            pass

        def _answer(self, status: int, body: str, kind: str = "application/json") -> None:
            raw = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            path = self.path.split("?")[0]
            platform.seen.append(path)
            mode = platform.mode
            if path in TOKEN_PATHS and mode == "revoked":  # tokens work; every call says 40001
                token = {"access_token": platform.fresh_token, "expires_in": 7200}
                return self._answer(200, json.dumps(token))
            echo = self.path  # the full request URL, its secret or token included
            if mode == "timeout":
                time.sleep(HANG_SECONDS)
                return None
            if mode == "drop":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return None
            if mode == "http500":
                return self._answer(500, f"<h1>Internal error</h1><p>{echo}</p>", "text/html")
            if mode == "garbage":
                return self._answer(200, f"<html>you asked for {echo}</html>", "text/html")
            code = {"errcode": 40013, "busy": -1, "revoked": 40001}[mode]
            return self._answer(200, json.dumps({"errcode": code, "errmsg": f"hint: [{echo}]"}))

        do_GET = do_POST = _handle

    return Handler


@pytest.fixture
def hostile(request: pytest.FixtureRequest) -> Iterator[tuple[Platform, str]]:
    """(the misbehaving platform, its base URL); ``refused`` is a port nobody listens on."""
    platform = Platform(request.param, f"FRESH-TOKEN-{uuid.uuid4().hex}")
    if platform.mode == "refused":
        yield platform, f"http://127.0.0.1:{free_port()}"
        return
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(platform))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield platform, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _all_rows(settings) -> str:
    """Every value of every table, as text."""
    engine = db.get_engine(settings.database_url)
    meta = sa.MetaData()
    meta.reflect(engine)
    out = []
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(sa.select(table)):
                out.append(f"{table.name}: {json.dumps([str(v) for v in row], ensure_ascii=False)}")
    return "\n".join(out)


def _wecom_callback(client, settings, fields: dict) -> None:
    wecom = WeComPlatform(
        settings.wecom_token,
        settings.wecom_aes_key,
        settings.wecom_corp_id,
        settings.wecom_agent_id,
    )
    req = wecom.sign(xml_fields(fields))
    resp = client.post(f"/wechat/wecom?{req.query_string}", data=req.body, content_type="text/xml")
    assert resp.status_code == 200


@pytest.mark.parametrize("seeded", ["oa", "wecom"])
@pytest.mark.parametrize(
    "hostile",
    ["refused", "timeout", "drop", "http500", "garbage", "errcode", "busy", "revoked"],
    indirect=True,
)
def test_no_secret_or_token_leaves_through_a_failing_platform(
    hostile, seeded, clean, oa, monkeypatch, caplog
):
    platform, base = hostile
    secrets = {
        "WECHAT_OA_SECRET": f"oa-app-secret-{uuid.uuid4().hex}",
        "WECOM_SECRET": f"wecom-corp-secret-{uuid.uuid4().hex}",
    }
    for name, value in {**secrets, "WECHAT_API_BASE": base, "WECOM_API_BASE": base}.items():
        monkeypatch.setenv(name, value)  # jobs read their settings from the environment
    monkeypatch.setattr(wechat, "CALL_TIMEOUT", CLIENT_TIMEOUT)
    monkeypatch.setattr(wechat, "TOKEN_TIMEOUT", CLIENT_TIMEOUT)
    wechat.reset_clients()
    settings = load_settings()
    # One app already holds a token (so its calls carry ``access_token=``); the other has to
    # fetch one (its token request carries ``secret=`` / ``corpsecret=``).
    seeded_token = f"SEEDED-TOKEN-{uuid.uuid4().hex}"
    app_ = wechat.oa_app(settings) if seeded == "oa" else wechat.wecom_app(settings)
    queue.get_redis(settings).set(f"yuchi:token:{app_.name}:{app_.app_id}", seeded_token)
    caplog.set_level(logging.DEBUG)  # urllib3 logs every request URL at DEBUG

    client = create_app(settings).test_client()
    auth = {"Authorization": f"Bearer {settings.api_token}"}
    answers: list[str] = []

    def api(method: str, url: str, **kw) -> dict:
        resp = client.open(url, method=method, headers=auth, **kw)
        answers.append(resp.get_data(as_text=True))
        assert resp.status_code < 500 or resp.status_code == 502, answers[-1]  # 502: upstream
        return resp.get_json()

    with db.session_scope(settings.database_url) as s:
        s.add(
            Channel(name="展会", state="chLeak", reps=["lisi"], tags=["展会"], welcome_text="您好")
        )

    # Callbacks: an OA follower who writes, a WeCom customer added through the channel, edited.
    assert post(client, oa, event(oa, "oLeak", "subscribe")).status == 200
    assert post(client, oa, text(oa, "oLeak", "你好", 1)).status == 200
    added = {"ChangeType": "add_external_contact", "UserID": "lisi", "ExternalUserID": "wmLeak"}
    _wecom_callback(
        client,
        settings,
        {
            **_wecom_fields(settings, "change_external_contact", added),
            "State": "chLeak",
            "WelcomeCode": "WELCOME-1",
        },
    )
    edited = {**added, "ChangeType": "edit_external_contact"}
    _wecom_callback(client, settings, _wecom_fields(settings, "change_external_contact", edited))
    run_worker(settings)  # user/info, user/get, externalcontact/get, welcome, corp tags

    with db.session_scope(settings.database_url) as s:
        oa_contact = s.execute(
            sa.select(Identity.contact_id).where(Identity.value == "oLeak")
        ).scalar_one()
        wecom_contact = s.execute(
            sa.select(Identity.contact_id).where(Identity.value == "wmLeak")
        ).scalar_one()

    # The API: sends on both platforms, a tag (OA tag sync), a channel (WeCom contact way).
    ids = [
        api("POST", "/api/messages", json=body)["id"]
        for body in (
            {"contact_id": oa_contact, "kind": "text", "payload": {"content": "hi"}},
            {
                "contact_id": oa_contact,
                "kind": "template",
                "payload": {"template_id": "TPL", "data": {"first": "x"}},
            },
            {"to_user": ["lisi"], "kind": "wecom_text", "payload": {"content": "hi"}},
        )
    ]
    api("POST", f"/api/contacts/{oa_contact}/tags", json={"tag": "贵宾"})
    channel = api("POST", "/api/channels", json={"name": "新码", "reps": ["lisi"]})
    assert "error" in channel  # the platform failed: an answer with a reason, not a 500
    run_worker(settings)

    for mid in ids:
        m = api("GET", f"/api/messages/{mid}")
        assert m["status"] != "sent"
        assert m["error_message"], m  # the failure is still explained
    for cid in (oa_contact, wecom_contact):
        api("GET", f"/api/contacts/{cid}")
        api("GET", f"/api/contacts/{cid}/events")
        api("GET", f"/api/contacts/{cid}/messages")
    api("GET", "/api/tags")
    api("GET", "/api/channels")

    # Every platform call of the app holding a token was made (and failed).
    if platform.mode != "refused":
        called = {p.removeprefix("/cgi-bin/") for p in platform.seen}
        assert called >= (OA_PATHS if seeded == "oa" else WECOM_PATHS), sorted(called)
    with db.session_scope(settings.database_url) as s:
        assert not s.execute(sa.select(Message).where(Message.status == "sent")).first()

    values = [*secrets.values(), seeded_token, platform.fresh_token]
    values += [settings.oa_aes_key, settings.wecom_aes_key, settings.secret_key, settings.api_token]
    places = {"database": _all_rows(settings), "API": "\n".join(answers), "logs": caplog.text}
    for where, found in places.items():
        for value in values:
            assert value not in found, f"{value} in the {where}"
    if platform.mode not in ("timeout", "drop"):  # those errors never quote the URL
        assert "***" in caplog.text  # the redaction, not silence, kept them out


def _wecom_fields(settings, name: str, extra: dict) -> dict:
    return {
        "ToUserName": settings.wecom_corp_id,
        "FromUserName": "sys",
        "CreateTime": int(time.time()),
        "MsgType": "event",
        "Event": name,
        **extra,
    }
