"""Outbound webhooks on chosen event types: a pipeline step (the last) that, for each
endpoint subscribed to the event's type (read from a per-process copy reloaded when the
subscriptions change: no query for an event nobody subscribed to), writes a ``webhook_delivery`` row in the event's
transaction and queues its job after the commit. Delivery is bot.automation.webhooks': the
same Standard Webhooks signature (the endpoint's secret), the same address rules checked again
after DNS resolution, the same retries with backoff, at least once with one ``webhook-id``
per (event, endpoint) that a receiver dedupes on.

The body follows the Standard Webhooks payload shape: ``{type, timestamp, data}`` with the
event in ``data``. A subscription delivery puts no result on the contact's timeline (a
subscription to ``*`` would otherwise feed itself); its row keeps the outcome.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from bot.automation import webhooks
from bot.automation.webhook_endpoints import matches, subscriptions
from bot.core import queue
from bot.core.config import Settings
from bot.core.context import Context
from bot.core.db import dialect_insert
from bot.core.models import Event, WebhookDelivery, utcnow

log = logging.getLogger(__name__)


def delivery_key(event_id: int, endpoint_id: int) -> str:
    return f"evt:{event_id}:{endpoint_id}"


def payload(ev: Event) -> dict[str, Any]:
    return {
        "type": ev.type,
        "timestamp": ev.occurred_at.isoformat(),
        "data": {
            "event_id": ev.id,
            "contact_id": ev.contact_id,
            "source": ev.source,
            "occurred_at": ev.occurred_at.isoformat(),
            "properties": ev.properties,
        },
    }


def on_event(ctx: Context) -> None:
    """Pipeline step: queue the event for every endpoint subscribed to its type."""
    ev = ctx.event
    if ev.contact_id is None or ev.id is None:
        return
    subscribed = [
        (i, url)
        for i, url, types in subscriptions(ctx.settings, ctx.session)
        if matches(types, ev.type)
    ]
    if not subscribed:
        return
    body = payload(ev)
    for endpoint_id, url in subscribed:
        key = delivery_key(ev.id, endpoint_id)
        inserted = ctx.session.execute(
            dialect_insert(ctx.session, WebhookDelivery.__table__)
            .values(
                key=key,
                contact_id=ev.contact_id,
                endpoint_id=endpoint_id,
                url=url,
                body=body,
                status="pending",
                attempts=0,
                due_at=utcnow(),
                created_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(WebhookDelivery.__table__.c.id)
        ).scalar()
        if inserted is not None:
            ctx.after_commit.append(functools.partial(_enqueue, ctx.settings, key))


def _enqueue(settings: Settings, key: str) -> None:
    try:
        webhooks.enqueue(settings, key)
    except queue.REDIS_ERRORS as exc:
        log.warning("event webhook %s not enqueued (%s); the sweeper will", key, exc)
