"""Webhook endpoints: the urls journey webhooks may POST to, each with its signing secret
(Standard Webhooks, ``whsec_`` + 32 random bytes in base64). The secret is returned once, when
the endpoint is created; afterwards only its first characters are shown."""

from __future__ import annotations

import base64
import secrets

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from bot.core.models import WebhookEndpoint
from journeys.webhook_urls import Allow, url_refusal


class EndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)
    url: str = Field(min_length=1, max_length=2000)
    note: str = Field(default="", max_length=200)


class Refused(ValueError):
    """The url may not receive webhooks (or another endpoint has it)."""


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def create(session: Session, data: EndpointIn, allow: Allow) -> tuple[WebhookEndpoint, str]:
    """The new endpoint (committed) and its secret; Refused for a url not allowed or taken."""
    if refusal := url_refusal(data.url, allow):
        raise Refused(f"{refusal}; webhooks go to public addresses only")
    taken = session.execute(sa.select(WebhookEndpoint.id).where(WebhookEndpoint.url == data.url))
    if taken.scalar() is not None:
        raise Refused("an endpoint with this url exists")
    secret = new_secret()
    row = WebhookEndpoint(url=data.url, secret=secret, note=data.note)
    session.add(row)
    session.commit()
    return row, secret


def list_endpoints(session: Session) -> list[WebhookEndpoint]:
    return list(session.execute(sa.select(WebhookEndpoint).order_by(WebhookEndpoint.id)).scalars())


def delete(session: Session, endpoint_id: int) -> bool:
    """Delete and commit; False when there is no such endpoint."""
    row = session.get(WebhookEndpoint, endpoint_id)
    if row is None:
        return False
    session.delete(row)
    session.commit()
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
        "created_at": row.created_at.isoformat(),
    }
