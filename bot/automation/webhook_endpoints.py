"""Webhook endpoints: the urls journey webhooks may POST to, each with its signing secret
(Standard Webhooks, ``whsec_`` + 32 random bytes in base64). The secret is returned once, when
the endpoint is created; afterwards only its first characters are shown.

An endpoint may also subscribe to event types (``event_types``: ``oa.click``, ``api.*``, or
``*`` for every event): bot.automation.event_webhooks sends it each matching event."""

from __future__ import annotations

import base64
import re
import secrets

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.orm import Session

from bot.core.config import Settings
from bot.core.models import WebhookEndpoint
from bot.core.versioned import Versioned
from journeys.webhook_urls import url_refusal


class EndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)
    url: str = Field(min_length=1, max_length=2000)
    note: str = Field(default="", max_length=200)


EVENT_TYPE = re.compile(r"^(\*|[a-z][a-z0-9_]*(\.[a-z0-9_]+)*(\.\*)?)$")
MAX_EVENT_TYPES = 50


def _event_types(value: list[str]) -> list[str]:
    for i, item in enumerate(value):
        if len(item) > 64 or not EVENT_TYPE.match(item):
            raise ValueError(
                f"event_types.{i}: {item[:70]!r} is not an event type (oa.click), a prefix "
                "(oa.*) or * for every event"
            )
    return sorted(set(value))


class SubscriptionIn(BaseModel):
    """/api/webhooks: an endpoint subscribed to event types."""

    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)
    url: str = Field(min_length=1, max_length=2000)
    event_types: list[str] = Field(min_length=1, max_length=MAX_EVENT_TYPES)
    note: str = Field(default="", max_length=200)

    _types = field_validator("event_types")(_event_types)


class EventTypesIn(BaseModel):
    """New event types for an endpoint; an empty list ends its subscription (a journey
    endpoint stays one)."""

    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)
    event_types: list[str] = Field(max_length=MAX_EVENT_TYPES)

    _types = field_validator("event_types")(_event_types)


def matches(patterns: list[str], event_type: str) -> bool:
    """Does ``event_type`` match one of an endpoint's ``event_types``?"""
    for pattern in patterns:
        if pattern == "*" or pattern == event_type:
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


# (endpoint id, url, event types) of every subscribed endpoint: the pipeline's per-process copy
Subscription = tuple[int, str, list[str]]
SUBSCRIPTIONS: Versioned[list[Subscription]] = Versioned("webhook_subscriptions")
FALLBACK_AGE = 5.0  # seconds the copy is kept while Redis is away


def subscriptions(settings: Settings, session: Session) -> list[Subscription]:
    """Every subscribed endpoint, from this process's copy (reloaded after a change)."""

    def load() -> list[Subscription]:
        rows = session.execute(
            sa.select(WebhookEndpoint.id, WebhookEndpoint.url, WebhookEndpoint.event_types)
        ).all()
        return [(i, url, list(types)) for i, url, types in rows if types]

    return SUBSCRIPTIONS.get(settings, load, FALLBACK_AGE)


class Refused(ValueError):
    """The url may not receive webhooks (or another endpoint has it)."""


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def create(
    settings: Settings, session: Session, data: EndpointIn | SubscriptionIn
) -> tuple[WebhookEndpoint, str]:
    """The new endpoint (committed) and its secret; Refused for a url not allowed (by
    ``settings.webhook_allow``) or taken."""
    if refusal := url_refusal(data.url, settings.webhook_allow):
        raise Refused(f"{refusal}; webhooks go to public addresses only")
    taken = session.execute(sa.select(WebhookEndpoint.id).where(WebhookEndpoint.url == data.url))
    if taken.scalar() is not None:
        raise Refused("an endpoint with this url exists")
    secret = new_secret()
    row = WebhookEndpoint(
        url=data.url,
        secret=secret,
        note=data.note,
        event_types=data.event_types if isinstance(data, SubscriptionIn) else None,
    )
    session.add(row)
    session.commit()
    SUBSCRIPTIONS.changed(settings)
    return row, secret


def list_endpoints(session: Session, subscribed: bool = False) -> list[WebhookEndpoint]:
    """Every endpoint, or (``subscribed``) those subscribed to event types."""
    query = sa.select(WebhookEndpoint).order_by(WebhookEndpoint.id)
    if subscribed:
        query = query.where(WebhookEndpoint.event_types.is_not(None))
    return [r for r in session.execute(query).scalars() if not subscribed or r.event_types]


def set_event_types(
    settings: Settings, session: Session, row: WebhookEndpoint, data: EventTypesIn
) -> None:
    row.event_types = data.event_types or None
    session.add(row)
    session.commit()
    SUBSCRIPTIONS.changed(settings)


def delete(settings: Settings, session: Session, endpoint_id: int) -> bool:
    """Delete and commit; False when there is no such endpoint."""
    row = session.get(WebhookEndpoint, endpoint_id)
    if row is None:
        return False
    session.delete(row)
    session.commit()
    SUBSCRIPTIONS.changed(settings)
    return True


def urls(session: Session) -> set[str]:
    return set(session.execute(sa.select(WebhookEndpoint.url)).scalars())


def endpoint_json(row: WebhookEndpoint) -> dict:
    """Never the secret: its prefix only, to tell two apart."""
    return {
        "id": row.id,
        "url": row.url,
        "note": row.note,
        "secret_hint": row.secret[:10] + "…",
        "event_types": row.event_types or [],
        "created_at": row.created_at.isoformat(),
    }
