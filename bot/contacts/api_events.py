"""Events from outside (a CRM, a shop, a form tool) for a contact Yuchi knows: found by any
identity (openid, unionid, external_userid, phone) or by our id, stored through
bot.contacts.record like every event, so the pipeline (tags, scores, journeys, webhooks) sees
them.

Decisions (README "Events API"):
- The type must start with ``api.`` (``api.order_paid``): outside systems cannot pass for the
  platforms (``oa.subscribe``) or for Yuchi itself (``journey.*``), and rules can tell them apart.
- An unknown contact is a 404, whatever the identity: an API event never creates a person (a
  typo must not make a phantom contact; people arrive through the platforms and forms).
- ``idempotency_key`` is the event's dedupe key (``api:<key>``): a retry answers the event
  stored the first time and changes nothing; the same key with another event is a conflict.
- API events are not the person's own action in WeChat: they open no 48-hour window.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy.orm import Session

from bot.contacts import identity
from bot.contacts.record import IncomingEvent, Recorded, record
from bot.core.config import Settings
from bot.core.models import Contact, Event, Identity

TYPE = re.compile(r"^api\.[a-z0-9_]+(\.[a-z0-9_]+)*$")
KEY = re.compile(r"^[A-Za-z0-9_.:\-]+$")
PHONE = re.compile(r"^\+?[0-9]{5,20}$")
KINDS = ("openid", "unionid", "external_userid", "phone", "id")
MAX_PROPERTIES_BYTES = 16_000
FUTURE_SKEW = timedelta(minutes=5)


class ContactRef(BaseModel):
    """Exactly one way to name the contact."""

    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)
    openid: str | None = Field(default=None, min_length=1, max_length=128)
    unionid: str | None = Field(default=None, min_length=1, max_length=128)
    external_userid: str | None = Field(default=None, min_length=1, max_length=128)
    phone: str | None = Field(default=None, min_length=5, max_length=24)
    id: int | None = Field(default=None, ge=1, le=2**31 - 1)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        digits = re.sub(r"[\s\-()]", "", value)
        if not PHONE.match(digits):
            raise ValueError("digits, optionally with a leading +")
        return digits

    @model_validator(mode="after")
    def _one(self) -> ContactRef:
        given = [k for k in KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("contact: exactly one of " + ", ".join(KINDS))
        return self

    def kind(self) -> tuple[str, str]:
        for k in KINDS:
            value = getattr(self, k)
            if value is not None:
                return k, str(value)
        raise AssertionError("validated")


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)
    type: str = Field(min_length=5, max_length=64)
    contact: ContactRef
    idempotency_key: str = Field(min_length=1, max_length=100)
    occurred_at: AwareDatetime | None = None
    properties: dict[str, Any] = Field(default_factory=dict)

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        if not TYPE.match(value):
            raise ValueError("starts with api. then lower-case words: api.order_paid")
        return value

    @field_validator("idempotency_key")
    @classmethod
    def _key(cls, value: str) -> str:
        if not KEY.match(value):
            raise ValueError("letters, digits and _ . : - only")
        return value

    @field_validator("properties")
    @classmethod
    def _properties(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(value, ensure_ascii=False).encode()) > MAX_PROPERTIES_BYTES:
            raise ValueError(f"at most {MAX_PROPERTIES_BYTES} bytes as JSON")
        return value


class UnknownContact(LookupError):
    """No contact has this identity (a 404)."""


class KeyReused(ValueError):
    """The idempotency key was used for another event (a 409)."""


class FutureTime(ValueError):
    """occurred_at is ahead of the server clock (a 422)."""


def _app_id(settings: Settings, kind: str) -> str:
    return {"openid": settings.oa_appid, "external_userid": settings.wecom_corp_id}.get(kind, "")


def _who(settings: Settings, session: Session, ref: ContactRef) -> tuple[int, str, str, str]:
    """(contact id, identity kind, app id, value) to record the event under."""
    kind, value = ref.kind()
    if kind == "id":
        if session.get(Contact, int(value)) is None:
            raise UnknownContact(f"no contact {value}")
        contact_id = identity.resolve(session, int(value))
        found = session.execute(
            sa.select(Identity.kind, Identity.app_id, Identity.value)
            .where(Identity.contact_id == contact_id)
            .order_by(Identity.id)
            .limit(1)
        ).first()
        if found is None:
            raise UnknownContact(f"contact {value} has no identity")
        return contact_id, found.kind, found.app_id, found.value
    app_id = _app_id(settings, kind)
    owner = identity.identity_owner(session, kind, value, app_id)
    if owner is None:
        raise UnknownContact(f"no contact has this {kind}")
    return owner, kind, app_id, value


def post(settings: Settings, session: Session, data: EventIn) -> Recorded:
    """Store the event (committed) or find the one this idempotency key stored. Raises
    UnknownContact, KeyReused, FutureTime. The caller kicks the outbox when it is new."""
    now = datetime.now(UTC)
    occurred = data.occurred_at.astimezone(UTC) if data.occurred_at else now
    if occurred > now + FUTURE_SKEW:
        raise FutureTime("occurred_at is in the future")
    contact_id, kind, app_id, value = _who(settings, session, data.contact)
    ev = IncomingEvent(
        type=data.type,
        source="api",
        identity_kind=kind,
        identity_value=value,
        app_id=app_id,
        occurred_at=occurred,
        dedupe_key=f"api:{data.idempotency_key}",
        properties=data.properties,
        interaction=False,
    )
    done = record(session, ev)
    if done.duplicate:
        stored = session.get(Event, done.event_id)
        same_contact = stored is not None and stored.contact_id is not None
        if same_contact:
            same_contact = identity.resolve(session, stored.contact_id) == contact_id
        if not (
            stored is not None
            and same_contact
            and stored.type == data.type
            and stored.properties == data.properties
        ):
            raise KeyReused("this idempotency_key was used for another event")
        return Recorded(done.event_id, contact_id, None, None, duplicate=True)
    return done
