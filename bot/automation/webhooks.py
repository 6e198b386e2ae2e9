"""Webhook delivery, for a journey's ``webhook`` action and for event subscriptions
(bot.automation.event_webhooks): POST JSON to a registered endpoint, signed with the Standard
Webhooks scheme, and record what came back.

The ``webhook_delivery`` row is the truth: written with the ``journey.webhook`` event (or in
the subscribed event's pipeline transaction), it stays ``pending`` until an attempt gets an
answer or gives up; its rq job only carries it, and the sweeper queues the job again when
Redis lost it. So each webhook is delivered at least once, every attempt with the same
``webhook-id``, and a receiver drops repeats by that id.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import requests
import sqlalchemy as sa
from rq import Retry
from sqlalchemy.orm import Session
from standardwebhooks import Webhook

from bot.automation import webhook_http
from bot.contacts import record as events
from bot.core import queue
from bot.core.config import Settings
from bot.core.db import session_scope
from bot.core.models import WebhookDelivery, WebhookEndpoint, utcnow

log = logging.getLogger(__name__)
JOB = "bot.background.jobs.call_webhook"
TIMEOUT = (3.05, 10)  # connect, read (seconds)
RETRY_INTERVALS = (10, 60, 300)  # seconds before the 2nd, 3rd and 4th attempt
MAX_ATTEMPTS = len(RETRY_INTERVALS) + 1


class WebhookFailed(RuntimeError):
    """No answer, or a 5xx, with attempts left: rq tries again."""


def job_id(key: str) -> str:
    return f"journey-webhook-{key}".replace(":", "-")


def webhook_id(key: str) -> str:
    """The Standard Webhooks ``webhook-id``: the same for every attempt of one delivery."""
    return "msg_" + key.replace(":", "_")


def record_pending(
    session: Session, contact_id: int, key: str, url: str, body: dict[str, Any]
) -> None:
    """Store the delivery in the caller's transaction (enqueue its job after the commit)."""
    session.add(WebhookDelivery(key=key, contact_id=contact_id, url=url, body=body))
    session.flush()


def enqueue(settings: Settings, key: str, attempts_done: int = 0) -> None:
    """Queue the delivery's job; raises queue.REDIS_ERRORS (the sweeper queues it later)."""
    retries = max(MAX_ATTEMPTS - 1 - attempts_done, 0)
    queue.get_queue(settings).enqueue(
        JOB,
        key,
        job_id=job_id(key),
        result_ttl=300,
        retry=Retry(max=retries, interval=list(RETRY_INTERVALS[-retries:])) if retries else None,
    )


def _claim(settings: Settings, key: str) -> tuple[WebhookDelivery, str | None] | None:
    """The pending delivery, its attempt counted, and its endpoint's secret (None: the url
    is no registered endpoint's, or the subscribed endpoint was deleted); None when it is not
    pending."""
    with session_scope(settings.database_url) as session:
        query = sa.select(WebhookDelivery).where(WebhookDelivery.key == key)
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update()
        row = session.execute(query).scalar()
        if row is None or row.status != "pending":
            return None
        row.attempts += 1
        session.add(row)
        which = (
            WebhookEndpoint.url == row.url
            if row.endpoint_id is None
            else WebhookEndpoint.id == row.endpoint_id
        )
        secret = session.execute(sa.select(WebhookEndpoint.secret).where(which)).scalar()
        session.flush()
        session.expunge(row)
    return row, secret


def call(settings: Settings, key: str) -> int:
    """Deliver the webhook stored under ``key``; returns the HTTP status (0 if it was not
    pending, or was refused). A 4xx is recorded and not retried: the receiver said no."""
    claimed = _claim(settings, key)
    if claimed is None:
        return 0
    row, secret = claimed
    if row.attempts > MAX_ATTEMPTS:  # its last attempt was cut short (a worker killed)
        _finish(settings, row, "failed", {"error": f"gave up after {MAX_ATTEMPTS} attempts"})
        return 0
    if secret is None:
        why = "no webhook endpoint has this url" if row.endpoint_id is None else "endpoint deleted"
        _finish(settings, row, "refused", {"error": why})
        return 0
    data = json.dumps(row.body, ensure_ascii=False, separators=(",", ":"))
    msg_id, now = webhook_id(key), utcnow()
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": "Yuchi-webhooks/1",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, data),
    }
    try:
        ip = webhook_http.resolve(row.url, settings.webhook_allow)
        answer = webhook_http.post(row.url, ip, data.encode(), headers, TIMEOUT)
    except webhook_http.Refused as exc:
        _finish(settings, row, "refused", {"error": str(exc)})
        return 0
    except (requests.RequestException, OSError) as exc:
        # the class only: requests' messages carry the url, which may hold a token
        _failed(settings, row, {"error": type(exc).__name__})
        return 0
    result: dict[str, Any] = {"status": answer.status, "duration_ms": answer.duration_ms}
    if answer.excerpt is not None:
        result["excerpt"] = answer.excerpt
    if answer.status >= 500:
        _failed(settings, row, result)
        return answer.status
    _finish(settings, row, "answered", result)
    return answer.status


def _failed(settings: Settings, row: WebhookDelivery, result: dict[str, Any]) -> None:
    """Give up after the last attempt; otherwise note when the next is due and raise."""
    if row.attempts >= MAX_ATTEMPTS:
        _finish(settings, row, "failed", result)
        return
    due = utcnow() + timedelta(seconds=RETRY_INTERVALS[row.attempts - 1])
    with session_scope(settings.database_url) as session:
        session.execute(
            sa.update(WebhookDelivery)
            .where(WebhookDelivery.id == row.id, WebhookDelivery.status == "pending")
            .values(due_at=due, result=result)
        )
    raise WebhookFailed(f"webhook {row.key}: attempt {row.attempts} failed ({result})")


def _finish(settings: Settings, row: WebhookDelivery, status: str, result: dict[str, Any]) -> None:
    """Close the delivery and put a journey webhook's result on the contact's timeline (once;
    an event subscription's result stays on its row: it would feed a ``*`` subscription)."""
    if status == "refused":
        log.warning("webhook %s refused: %s", row.key, result.get("error"))
    with session_scope(settings.database_url) as session:
        done = session.execute(
            sa.update(WebhookDelivery)
            .where(WebhookDelivery.id == row.id, WebhookDelivery.status == "pending")
            .values(status=status, finished_at=utcnow(), result=result)
        ).rowcount
        if not done or row.endpoint_id is not None:
            return
        props = {"url": row.url, "webhook_id": webhook_id(row.key), "outcome": status, **result}
        outbox_id = events.append(
            session, row.contact_id, "journey.webhook_result", props, f"{row.key}:result"
        )
    if outbox_id is not None:
        queue.kick_outbox(settings)


def sweep(settings: Settings, limit: int = 500) -> int:
    """Queue again every pending delivery overdue by the grace period whose job Redis no
    longer holds (flushed, restarted, never enqueued); returns how many. Raises
    queue.REDIS_ERRORS while Redis is down."""
    cutoff = utcnow() - timedelta(seconds=settings.sweep_grace_seconds)
    with session_scope(settings.database_url) as session:
        due = session.execute(
            sa.select(WebhookDelivery.key, WebhookDelivery.attempts)
            .where(WebhookDelivery.status == "pending", WebhookDelivery.due_at <= cutoff)
            .order_by(WebhookDelivery.due_at)
            .limit(limit)
        ).all()
    queued = 0
    for key, attempts in due:
        if queue.job_alive(settings, job_id(key)):
            continue
        queue.drop_job(settings, job_id(key))
        enqueue(settings, key, attempts)
        queued += 1
    if queued:
        log.info("journey webhooks: %d pending without a job queued again", queued)
    return queued
