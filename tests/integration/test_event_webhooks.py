"""Outbound webhooks on chosen event types (/api/webhooks), against a loopback receiver
named by the allow-list only: signatures checked with standardwebhooks' own Webhook.verify,
one webhook-id per (event, endpoint) kept across retries with backoff, and addresses refused
at validation and again after DNS resolution, with nothing sent."""

from __future__ import annotations

import socket
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
import sqlalchemy as sa
from rq.job import Job
from standardwebhooks import Webhook
from support import run_worker

from bot.app import create_app
from bot.automation import event_webhooks
from bot.automation import webhooks as delivery
from bot.background.worker import BurstWorker
from bot.core import db, queue
from bot.core.models import Event, Identity, WebhookDelivery
from journeys.webhook_urls import Allow

LOOPBACK = Allow.parse(["127.0.0.1"])


class Receiver:
    """A loopback server keeping each request; ``/flaky`` answers 503 while ``failures``
    lasts."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.failures = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests.append((self.path, dict(self.headers), raw))
                status = 200
                if self.path == "/flaky" and outer.failures > 0:
                    outer.failures -= 1
                    status = 503
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        self.base = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture
def allowed(sim_settings, env_to_sim, monkeypatch):
    """Settings (the app's and the jobs') whose allow-list names 127.0.0.1."""
    monkeypatch.setenv("YUCHI_WEBHOOK_ALLOW", "127.0.0.1")
    return sim_settings.replace(webhook_allow=LOOPBACK)


def api(settings):
    app = create_app(settings)
    app.config["TESTING"] = True
    return app.test_client()


def subscribe(client, auth, url: str, *types: str) -> dict:
    resp = client.post("/api/webhooks", json={"url": url, "event_types": list(types)}, headers=auth)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def deliveries(settings) -> list[WebhookDelivery]:
    with db.session_scope(settings.database_url) as s:
        rows = list(s.execute(sa.select(WebhookDelivery).order_by(WebhookDelivery.id)).scalars())
        s.expunge_all()
        return rows


def contact_of(settings, openid: str) -> int:
    with db.session_scope(settings.database_url) as s:
        return s.execute(
            sa.select(Identity.contact_id).where(Identity.value == openid)
        ).scalar_one()


def test_subscriptions_are_validated_and_listed_apart_from_journey_endpoints(
    allowed, auth, receiver
):
    client = api(allowed)
    created = subscribe(client, auth, f"{receiver.base}/a", "oa.subscribe", "api.*", "oa.subscribe")
    assert created["secret"].startswith("whsec_")
    assert created["event_types"] == ["api.*", "oa.subscribe"]
    journey_only = client.post(
        "/api/webhook-endpoints", json={"url": f"{receiver.base}/j"}, headers=auth
    ).get_json()
    listed = client.get("/api/webhooks", headers=auth).get_json()["webhooks"]
    assert [w["id"] for w in listed] == [created["id"]]
    assert "secret" not in listed[0]

    for types in ([], ["OA.Click"], ["oa."], ["oa.*.x"], [""], ["x"] * 51, "oa.click"):
        resp = client.post(
            "/api/webhooks", json={"url": f"{receiver.base}/b", "event_types": types}, headers=auth
        )
        assert resp.status_code == 422 and "event_types" in resp.get_json()["fields"], types
    resp = client.post("/api/webhooks", json={"url": f"{receiver.base}/b"}, headers=auth)
    assert resp.status_code == 422 and "event_types" in resp.get_json()["fields"]

    # a journey endpoint subscribes later; then it is listed
    resp = client.put(
        f"/api/webhooks/{journey_only['id']}", json={"event_types": ["*"]}, headers=auth
    )
    assert resp.status_code == 200 and resp.get_json()["event_types"] == ["*"]
    listed = client.get("/api/webhooks", headers=auth).get_json()["webhooks"]
    assert len(listed) == 2
    assert (
        client.put("/api/webhooks/999999", json={"event_types": ["*"]}, headers=auth).status_code
        == 404
    )
    assert client.delete(f"/api/webhooks/{created['id']}", headers=auth).status_code == 204
    assert len(client.get("/api/webhooks", headers=auth).get_json()["webhooks"]) == 1
    # an empty list ends the subscription; the journey endpoint stays
    resp = client.put(f"/api/webhooks/{journey_only['id']}", json={"event_types": []}, headers=auth)
    assert resp.status_code == 200 and resp.get_json()["event_types"] == []
    assert client.get("/api/webhooks", headers=auth).get_json()["webhooks"] == []
    endpoints = client.get("/api/webhook-endpoints", headers=auth).get_json()["endpoints"]
    assert [e["id"] for e in endpoints] == [journey_only["id"]]


def test_chosen_events_are_delivered_signed_once_each(sim, allowed, auth, receiver):
    client = api(allowed)
    hook = subscribe(client, auth, f"{receiver.base}/hook", "oa.subscribe", "api.*")
    other = subscribe(client, auth, f"{receiver.base}/all", "*")
    assert sim.follow("oHook").status == 200
    run_worker(allowed)
    cid = contact_of(allowed, "oHook")
    resp = client.post(
        "/api/events",
        json={
            "type": "api.order_paid",
            "contact": {"openid": "oHook"},
            "idempotency_key": "o-1",
            "properties": {"amount": 5},
        },
        headers=auth,
    )
    assert resp.status_code == 201
    event_id = resp.get_json()["event_id"]
    sim.advance(1)
    sim.say("oHook", "你好")  # only the * subscription gets it
    run_worker(allowed)
    run_worker(allowed)

    by_path: dict[str, list[dict]] = {}
    ids = set()
    for path, headers, raw in receiver.requests:
        secret = hook["secret"] if path == "/hook" else other["secret"]
        body = Webhook(secret).verify(raw, headers)  # raises unless signed right
        with pytest.raises(Exception, match="signature"):
            Webhook(other["secret"] if path == "/hook" else hook["secret"]).verify(raw, headers)
        by_path.setdefault(path, []).append(body)
        ids.add(headers["webhook-id"])
    assert [b["type"] for b in by_path["/hook"]] == ["oa.subscribe", "api.order_paid"]
    assert {b["type"] for b in by_path["/all"]} >= {"oa.subscribe", "api.order_paid", "oa.text"}
    paid = by_path["/hook"][1]["data"]
    assert paid == {**paid, "event_id": event_id, "contact_id": cid, "source": "api"}
    assert paid["properties"] == {"amount": 5}
    assert len(ids) == len(receiver.requests)  # one id per (event, endpoint)
    assert delivery.webhook_id(event_webhooks.delivery_key(event_id, hook["id"])) in ids
    assert {d.status for d in deliveries(allowed)} == {"answered"}
    with db.session_scope(allowed.database_url) as s:  # nothing fed back to the timeline
        assert not s.execute(
            sa.select(Event.id).where(Event.type == "journey.webhook_result")
        ).first()

    # a drain run again, or the job again: nothing sent twice
    sent = len(receiver.requests)
    for row in deliveries(allowed):
        assert delivery.call(allowed, row.key) == 0
    assert len(receiver.requests) == sent


def test_a_failed_attempt_is_retried_with_backoff_under_the_same_id(sim, allowed, auth, receiver):
    client = api(allowed)
    hook = subscribe(client, auth, f"{receiver.base}/flaky", "oa.subscribe")
    receiver.failures = 1
    sim.follow("oFlaky")
    run_worker(allowed)  # the first attempt: a 503; rq's retry is scheduled for later
    [row] = deliveries(allowed)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.due_at > datetime.now(UTC) + timedelta(seconds=5)
    job = Job.fetch(delivery.job_id(row.key), connection=queue.get_redis(allowed))
    assert job.retries_left == delivery.MAX_ATTEMPTS - 2
    assert list(job.retry_intervals) == list(delivery.RETRY_INTERVALS)  # 10 s, 60 s, 300 s
    scheduled = queue.get_queue(allowed).scheduled_job_registry.get_job_ids()
    assert job.id in scheduled  # waiting for its backoff, not run again at once

    assert delivery.call(allowed, row.key) == 200  # the retry, when due
    (p1, h1, raw1), (p2, h2, raw2) = receiver.requests
    assert h1["webhook-id"] == h2["webhook-id"] == delivery.webhook_id(row.key)
    for headers, raw in ((h1, raw1), (h2, raw2)):
        Webhook(hook["secret"]).verify(raw, headers)
    [row] = deliveries(allowed)
    assert (row.status, row.attempts) == ("answered", 2)


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "10.1.2.3", "169.254.169.254", "[::1]", "192.168.1.1", "localhost"]
)
def test_validation_refuses_non_public_addresses(sim_settings, auth, receiver, host):
    client = api(sim_settings)  # no allow-list
    url = f"http://{host}:{receiver.port}/hook"
    resp = client.post("/api/webhooks", json={"url": url, "event_types": ["*"]}, headers=auth)
    assert resp.status_code == 422
    assert "public addresses only" in resp.get_json()["fields"]["url"]
    assert receiver.requests == []


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


def test_send_time_refuses_after_resolution_without_sending(
    sim, sim_settings, env_to_sim, auth, receiver, connects, monkeypatch
):
    # names that pass validation (no address literal) but resolve to loopback, and a
    # loopback address allowed when subscribed but no longer when sent
    client = api(sim_settings.replace(webhook_allow=LOOPBACK))
    urls = [f"http://{h}:{receiver.port}/hook" for h in ("127.1", "2130706433", "127.0.0.1")]
    for url in urls:
        subscribe(client, auth, url, "oa.subscribe")
    monkeypatch.delenv("YUCHI_WEBHOOK_ALLOW", raising=False)
    sim.follow("oRefused")
    run_worker(sim_settings)
    run_worker(sim_settings)

    assert receiver.requests == []
    assert not [a for a in connects if isinstance(a, tuple) and a[1] == receiver.port]
    rows = {d.url: d for d in deliveries(sim_settings)}
    assert {d.status for d in rows.values()} == {"refused"}
    assert "127.1 resolves to 127.0.0.1 is a loopback" in rows[urls[0]].result["error"]
    assert "loopback" in rows[urls[2]].result["error"]


def test_a_deleted_endpoint_gets_nothing(sim, allowed, auth, receiver):
    client = api(allowed)
    hook = subscribe(client, auth, f"{receiver.base}/hook", "oa.subscribe")
    sim.follow("oGone")
    # the event drained (its delivery row written), the webhook's job still queued
    lanes = [queue.get_queue(allowed, name) for name in (queue.URGENT, queue.WAKES)]
    BurstWorker(lanes, connection=queue.get_redis(allowed)).work(burst=True)
    [row] = deliveries(allowed)
    assert row.status == "pending"
    assert client.delete(f"/api/webhooks/{hook['id']}", headers=auth).status_code == 204
    run_worker(allowed)
    assert receiver.requests == []
    [row] = deliveries(allowed)
    assert row.status == "refused" and row.result["error"] == "endpoint deleted"


def test_the_sweeper_requeues_a_subscription_whose_job_was_lost(sim, allowed, auth, receiver):
    client = api(allowed)
    hook = subscribe(client, auth, f"{receiver.base}/hook", "oa.subscribe")
    sim.follow("oLost")
    lanes = [queue.get_queue(allowed, name) for name in (queue.URGENT, queue.WAKES)]
    BurstWorker(lanes, connection=queue.get_redis(allowed)).work(burst=True)
    [row] = deliveries(allowed)
    Job.fetch(delivery.job_id(row.key), connection=queue.get_redis(allowed)).delete()  # lost
    run_worker(allowed)
    assert receiver.requests == [] and deliveries(allowed)[0].status == "pending"

    now = allowed.replace(sweep_grace_seconds=0.001)
    assert delivery.sweep(now) == 1
    assert delivery.sweep(now) == 0  # queued: not twice
    run_worker(allowed)
    [(path, headers, raw)] = receiver.requests
    assert headers["webhook-id"] == delivery.webhook_id(row.key)
    assert Webhook(hook["secret"]).verify(raw, headers)["type"] == "oa.subscribe"
    assert deliveries(allowed)[0].status == "answered"
