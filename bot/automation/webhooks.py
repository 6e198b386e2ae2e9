"""A journey's ``webhook`` action: POST JSON to the marketer's URL, record what came back."""

from __future__ import annotations

import logging

import requests
import sqlalchemy as sa

from bot.contacts import record as events
from bot.core import queue
from bot.core.config import Settings
from bot.core.db import session_scope
from bot.core.models import Event

log = logging.getLogger(__name__)
TIMEOUT = (3.05, 10)  # connect, read (seconds)


class WebhookFailed(RuntimeError):
    """A network error or a 5xx: rq retries the job."""


def call(settings: Settings, key: str) -> int:
    """POST the body recorded under ``key``; returns the HTTP status (0 if it was already
    answered). A 4xx is recorded and not retried: the receiver said no."""
    with session_scope(settings.database_url) as session:
        ev = session.execute(sa.select(Event).where(Event.dedupe_key == key)).scalar()
        if ev is None:
            return 0
        done = session.execute(
            sa.select(Event.id).where(Event.dedupe_key == f"{key}:result")
        ).scalar()
        if done is not None:
            return 0
        contact_id, url, body = ev.contact_id, ev.properties["url"], ev.properties["body"]
    try:
        resp = requests.post(
            url,
            json=body,
            timeout=TIMEOUT,
            headers={"User-Agent": "Yuchi-journeys/1", "Idempotency-Key": key},
        )
    except requests.RequestException as exc:
        raise WebhookFailed(f"{url}: {exc}") from exc
    if resp.status_code >= 500:
        raise WebhookFailed(f"{url}: HTTP {resp.status_code}")
    with session_scope(settings.database_url) as session:
        props = {"url": url, "status": resp.status_code, "body": resp.text[:500]}
        outbox_id = events.append(
            session, contact_id, "journey.webhook_result", props, f"{key}:result"
        )
    if outbox_id is not None:
        queue.kick_outbox(settings)
    return resp.status_code
