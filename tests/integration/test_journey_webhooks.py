"""The journey webhook action, end to end against loopback listeners only: registered
endpoints with a secret shown once, Standard Webhooks signatures, what is kept of an answer
(never a redirect's body), refusals at validation and at send time with nothing sent, retries
and the sweeper's re-queue with one stable ``webhook-id``, and TLS to the pinned address."""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from rq.job import Job
from standardwebhooks import Webhook
from support import run_worker

from bot.app import create_app
from bot.automation import webhook_http
from bot.automation import webhooks as journey_webhooks
from bot.background.worker import BurstWorker
from bot.core import db, queue
from bot.core.models import Event, Identity, WebhookDelivery
from journeys.webhook_urls import Allow

LOOPBACK = Allow.parse(["127.0.0.1"])


class Hooks:
    """A loopback HTTP server keeping each request (path, headers, raw body). ``/gone`` is a
    410, ``/redirect`` a 302 to ``/secret``, ``/binary`` bytes, ``/big`` 10,000 characters of
    JSON, ``/flaky`` a 503 while ``failures`` lasts, ``/down`` always a 503."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.failures = 0
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hooks.requests.append((self.path, dict(self.headers), raw))
                status, kind, out, extra = hooks.answer(self.path)
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(out)))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        self.base = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, path: str) -> tuple[int, str, bytes, dict[str, str]]:
        ok = "application/json"
        if path == "/gone":
            return 410, ok, b'{"error": "gone"}', {}
        if path == "/redirect":
            return 302, "text/plain", b"the redirect's body", {"Location": f"{self.base}/secret"}
        if path == "/binary":
            return 200, "application/octet-stream", b"\x00\x01binary", {}
        if path == "/big":
            return 200, ok, json.dumps({"x": "长" * 10_000}).encode(), {}
        if path == "/down" or (path == "/flaky" and self.failures > 0):
            self.failures -= 1
            return 503, "text/plain", b"busy", {}
        return 200, "application/json; charset=utf-8", b'{"ok": true}', {}

    def paths(self) -> list[str]:
        return [path for path, _, _ in self.requests]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def hooks():
    h = Hooks()
    yield h
    h.stop()


@pytest.fixture
def allowed(sim_settings, env_to_sim, monkeypatch):
    """Settings (the app's and the jobs') whose allow-list names 127.0.0.1."""
    monkeypatch.setenv("YUCHI_WEBHOOK_ALLOW", "127.0.0.1")
    return sim_settings.replace(webhook_allow=LOOPBACK)


def api(settings):
    app = create_app(settings)
    app.config["TESTING"] = True
    return app.test_client()


def register(client, auth, url: str) -> str:
    resp = client.post("/api/webhook-endpoints", json={"url": url}, headers=auth)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["secret"]


def hook_journey(client, auth, *urls: str) -> None:
    ids = [f"h{i}" for i in range(len(urls))]
    steps: list[dict] = [{"id": "start", "type": "trigger", "event": "oa.subscribe", "next": "h0"}]
    for i, url in enumerate(urls):
        nxt = ids[i + 1] if i + 1 < len(urls) else None
        steps.append({"id": ids[i], "type": "action", "do": "webhook", "url": url, "next": nxt})
    definition = {"id": "hooks", "name": "hooks", "steps": steps}
    resp = client.post(
        "/api/journeys", json={"name": "hooks", "definition": definition}, headers=auth
    )
    assert resp.status_code == 201, resp.get_json()
    resp = client.post(f"/api/journeys/{resp.get_json()['id']}/publish", headers=auth)
    assert resp.status_code == 200, resp.get_json()


def follow(sim, settings, openid: str, queues: list[str] | None = None) -> int:
    assert sim.follow(openid).status == 200
    if queues is None:
        run_worker(settings)
        run_worker(settings)
    else:  # only these lanes: the webhook job stays queued
        qs = [queue.get_queue(settings, name) for name in queues]
        BurstWorker(qs, connection=queue.get_redis(settings)).work(burst=True)
    with db.session_scope(settings.database_url) as s:
        return s.execute(
            sa.select(Identity.contact_id).where(Identity.value == openid)
        ).scalar_one()


def deliveries(settings) -> list[WebhookDelivery]:
    with db.session_scope(settings.database_url) as s:
        return list(s.execute(sa.select(WebhookDelivery).order_by(WebhookDelivery.id)).scalars())


def results(settings, cid: int) -> list[dict]:
    with db.session_scope(settings.database_url) as s:
        rows = s.execute(
            sa.select(Event.properties)
            .where(Event.contact_id == cid, Event.type == "journey.webhook_result")
            .order_by(Event.id)
        ).scalars()
        return list(rows)


# --- endpoints, signatures, what is kept -------------------------------------------------------


def test_an_endpoint_secret_is_shown_once(allowed, auth, hooks):
    client = api(allowed)
    resp = client.post("/api/webhook-endpoints", json={"url": f"{hooks.base}/hook"}, headers=auth)
    assert resp.status_code == 201
    created = resp.get_json()
    assert created["secret"].startswith("whsec_") and len(created["secret"]) > 40
    listed = client.get("/api/webhook-endpoints", headers=auth).get_json()["endpoints"]
    one = client.get(f"/api/webhook-endpoints/{created['id']}", headers=auth).get_json()
    for shown in (listed[0], one):
        assert "secret" not in shown and created["secret"] not in json.dumps(shown)
        assert shown["url"] == f"{hooks.base}/hook"
    again = client.post("/api/webhook-endpoints", json={"url": f"{hooks.base}/hook"}, headers=auth)
    assert again.status_code == 422 and "exists" in again.get_json()["fields"]["url"]
    assert client.post("/api/webhook-endpoints", json={"url": 5}, headers=auth).status_code == 422


def test_webhooks_are_signed_and_their_answers_kept_in_bounds(sim, allowed, auth, hooks):
    client = api(allowed)
    paths = ["/hook", "/gone", "/redirect", "/binary", "/big"]
    secrets = {p: register(client, auth, hooks.base + p) for p in paths}
    hook_journey(client, auth, *[hooks.base + p for p in paths])
    cid = follow(sim, allowed, "oSigned")

    assert hooks.paths() == paths  # each once: no retry of a 4xx, the redirect not followed
    ids = set()
    for path, headers, raw in hooks.requests:
        body = Webhook(secrets[path]).verify(raw, headers)  # raises unless signed right
        assert body["journey"] == "hooks" and body["contact_id"] == cid
        ids.add(headers["webhook-id"])
        with pytest.raises(Exception, match="signature"):
            Webhook(secrets["/hook" if path != "/hook" else "/gone"]).verify(raw, headers)
    assert len(ids) == len(paths)

    by_url = {r["url"]: r for r in results(allowed, cid)}
    ok, gone, moved, binary, big = (by_url[hooks.base + p] for p in paths)
    assert ok["status"] == 200 and ok["excerpt"] == '{"ok": true}' and ok["outcome"] == "answered"
    assert ok["duration_ms"] >= 0 and ok["webhook_id"] in ids
    assert gone["status"] == 410 and gone["excerpt"] == '{"error": "gone"}'
    assert moved["status"] == 302 and "excerpt" not in moved  # a 3xx: the status only
    assert binary["status"] == 200 and "excerpt" not in binary
    assert len(big["excerpt"]) == webhook_http.EXCERPT_CHARS
    timeline = client.get(f"/api/contacts/{cid}/events?limit=200", headers=auth).get_json()
    assert "the redirect's body" not in json.dumps(timeline)
    assert [d.status for d in deliveries(allowed)] == ["answered"] * len(paths)

    # the job again (a duplicate): answered already, nothing sent
    assert journey_webhooks.call(allowed, deliveries(allowed)[0].key) == 0
    assert len(hooks.requests) == len(paths)


def test_an_unregistered_url_is_not_published_nor_sent(sim, allowed, auth, hooks):
    client = api(allowed)
    definition = {
        "id": "x",
        "name": "x",
        "steps": [
            {"id": "start", "type": "trigger", "event": "oa.subscribe", "next": "h"},
            {"id": "h", "type": "action", "do": "webhook", "url": f"{hooks.base}/hook"},
        ],
    }
    jid = client.post("/api/journeys", json={"name": "x", "definition": definition}, headers=auth)
    resp = client.post(f"/api/journeys/{jid.get_json()['id']}/publish", headers=auth)
    assert resp.status_code == 422
    assert "no webhook endpoint is registered" in resp.get_json()["problems"][0]["message"]

    # an endpoint deleted after publishing: refused at send time
    register(client, auth, f"{hooks.base}/hook")
    assert (
        client.post(f"/api/journeys/{jid.get_json()['id']}/publish", headers=auth).status_code
        == 200
    )
    endpoint = client.get("/api/webhook-endpoints", headers=auth).get_json()["endpoints"][0]
    assert (
        client.delete(f"/api/webhook-endpoints/{endpoint['id']}", headers=auth).status_code == 204
    )
    cid = follow(sim, allowed, "oGone")
    assert hooks.requests == []
    [result] = results(allowed, cid)
    assert result["outcome"] == "refused" and "no webhook endpoint" in result["error"]


# --- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "10.1.2.3", "169.254.169.254", "[::1]", "224.0.0.1", "localhost"],
)
def test_validation_refuses_non_public_addresses(sim_settings, auth, hooks, host):
    client = api(sim_settings)  # no allow-list
    url = f"http://{host}:{hooks.port}/hook"
    resp = client.post("/api/webhook-endpoints", json={"url": url}, headers=auth)
    assert resp.status_code == 422 and "public addresses only" in resp.get_json()["fields"]["url"]
    step = {"id": "h", "type": "action", "do": "webhook", "url": url}
    trigger = {"id": "start", "type": "trigger", "event": "oa.subscribe", "next": "h"}
    definition = {"id": "x", "name": "x", "steps": [trigger, step]}
    resp = client.post("/api/journeys", json={"name": "x", "definition": definition}, headers=auth)
    assert resp.status_code == 422
    [problem] = resp.get_json()["problems"]
    assert problem["step"] == "h" and problem["field"] == "url"
    assert hooks.requests == []


@pytest.fixture
def connects(monkeypatch):
    """Every address a socket in this process tries to connect to."""
    seen: list[Any] = []
    original = socket.socket.connect

    def connect(self, address):
        seen.append(address)
        return original(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return seen


def test_send_time_refuses_without_sending_anything(
    sim, sim_settings, env_to_sim, auth, hooks, connects, monkeypatch
):
    hosts = [
        "127.0.0.1",  # allowed when published, no longer when sent
        "10.1.2.3",
        "169.254.169.254",
        "[::1]",
        "224.0.0.1",
        "localhost",
        "127.1",  # not an address literal: passes validation, resolves to loopback
        "2130706433",  # likewise
    ]
    urls = [f"http://{h}:{hooks.port}/hook" for h in hosts]
    wide = Allow.parse(
        ["127.0.0.1", "10.0.0.0/8", "169.254.0.0/16", "::1", "224.0.0.0/4", "localhost"]
    )
    client = api(sim_settings.replace(webhook_allow=wide))
    for url in urls:
        register(client, auth, url)
    hook_journey(client, auth, *urls)
    monkeypatch.delenv("YUCHI_WEBHOOK_ALLOW", raising=False)
    cid = follow(sim, sim_settings, "oRefused")

    assert hooks.requests == []
    assert not [a for a in connects if isinstance(a, tuple) and a[1] == hooks.port]
    outcomes = {r["url"]: r for r in results(sim_settings, cid)}
    assert len(outcomes) == len(urls)
    for url in urls:
        assert outcomes[url]["outcome"] == "refused", outcomes[url]
        assert "status" not in outcomes[url]
    assert "127.1 resolves to 127.0.0.1 is a loopback" in outcomes[urls[6]]["error"]
    assert {d.status for d in deliveries(sim_settings)} == {"refused"}


# --- at least once, one id ---------------------------------------------------------------------


def test_a_retry_carries_the_same_id_and_the_last_attempt_gives_up(sim, allowed, auth, hooks):
    client = api(allowed)
    secret = register(client, auth, f"{hooks.base}/flaky")
    down_secret = register(client, auth, f"{hooks.base}/down")
    hook_journey(client, auth, f"{hooks.base}/flaky", f"{hooks.base}/down")
    hooks.failures = 1
    follow(sim, allowed, "oFlaky")  # each first attempt: a 503, rq's retry scheduled
    flaky, down = deliveries(allowed)
    assert (flaky.status, flaky.attempts, down.attempts) == ("pending", 1, 1)
    assert flaky.due_at > datetime.now(UTC) + timedelta(seconds=5)

    assert journey_webhooks.call(allowed, flaky.key) == 200  # the retry
    first, second = [(h, raw) for p, h, raw in hooks.requests if p == "/flaky"]
    assert (
        first[0]["webhook-id"] == second[0]["webhook-id"] == journey_webhooks.webhook_id(flaky.key)
    )
    for headers, raw in (first, second):
        Webhook(secret).verify(raw, headers)

    for _ in range(journey_webhooks.MAX_ATTEMPTS - 2):
        with pytest.raises(journey_webhooks.WebhookFailed):
            journey_webhooks.call(allowed, down.key)
    assert journey_webhooks.call(allowed, down.key) == 503  # the last attempt
    assert journey_webhooks.call(allowed, down.key) == 0
    sent = [(h, raw) for p, h, raw in hooks.requests if p == "/down"]
    assert len(sent) == journey_webhooks.MAX_ATTEMPTS
    assert {h["webhook-id"] for h, _ in sent} == {journey_webhooks.webhook_id(down.key)}
    for headers, raw in sent:
        Webhook(down_secret).verify(raw, headers)
    by_key = {d.key: d for d in deliveries(allowed)}
    assert by_key[flaky.key].status == "answered" and by_key[down.key].status == "failed"
    assert by_key[down.key].result["status"] == 503


def test_the_sweeper_requeues_a_webhook_whose_job_was_lost(sim, allowed, auth, hooks):
    client = api(allowed)
    secret = register(client, auth, f"{hooks.base}/hook")
    hook_journey(client, auth, f"{hooks.base}/hook")
    follow(sim, allowed, "oLost", queues=[queue.URGENT, queue.WAKES])
    [pending] = deliveries(allowed)
    job_id = journey_webhooks.job_id(pending.key)
    assert pending.status == "pending" and queue.job_alive(allowed, job_id)
    Job.fetch(job_id, connection=queue.get_redis(allowed)).delete()  # Redis lost it
    run_worker(allowed)
    assert hooks.requests == [] and deliveries(allowed)[0].status == "pending"

    now = allowed.replace(sweep_grace_seconds=0.001)
    assert journey_webhooks.sweep(now) == 1
    assert journey_webhooks.sweep(now) == 0  # its job is queued: not twice
    run_worker(allowed)
    assert journey_webhooks.sweep(now) == 0
    run_worker(allowed)

    [(path, headers, raw)] = hooks.requests  # delivered once
    assert headers["webhook-id"] == journey_webhooks.webhook_id(pending.key)
    Webhook(secret).verify(raw, headers)
    assert deliveries(allowed)[0].status == "answered"


# --- TLS to the pinned address -----------------------------------------------------------------


def _certificate(tmp: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_https_goes_to_the_checked_address_with_the_url_host_name(tmp_path):
    cert, key = _certificate(tmp_path, "hooks.test")  # a name no resolver knows
    sni: list[str | None] = []
    hosts: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            hosts.append(self.headers["Host"])
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda _sock, name, _ctx: sni.append(name)
    server = HTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_port
    loopback = ipaddress.ip_address("127.0.0.1")
    try:
        answer = webhook_http.post(
            f"https://hooks.test:{port}/in", loopback, b"{}", {}, (3, 3), verify=str(cert)
        )
        assert answer.status == 204
        assert sni == ["hooks.test"] and hosts == [f"hooks.test:{port}"]
        with pytest.raises(requests.exceptions.SSLError):  # the certificate is for hooks.test
            webhook_http.post(
                f"https://other.test:{port}/in", loopback, b"{}", {}, (3, 3), verify=str(cert)
            )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
