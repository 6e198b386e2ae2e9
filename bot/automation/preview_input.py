"""What a journey preview takes: the checked definition, the scripted replies of the simulated
contact and the contact itself (bot.automation.preview)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

import journeys
from journeys import engine
from journeys.model import STAGES, Definition, Duration
from journeys.timing import valid_zone

REPLY_DELAY = timedelta(minutes=1)
PREVIEW_CONTACT_ID = "preview"


class PreviewError(ValueError):
    """The preview cannot run as asked (a bad reply script or contact, an unknown journey)."""


class ScriptedReply(BaseModel):
    """What the contact does next when the journey asks or waits: write ``text``, click the
    menu key ``click``, or cause ``event`` (with ``properties``); ``after`` the question or
    wait began (default one minute). A bare string is a text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str | None = Field(default=None, min_length=1, max_length=2048)
    click: str | None = Field(default=None, min_length=1, max_length=128)
    event: str | None = Field(default=None, min_length=1, max_length=64)
    properties: dict[str, Any] = Field(default_factory=dict)
    after: Duration = REPLY_DELAY

    @model_validator(mode="before")
    @classmethod
    def _bare_text(cls, value: Any) -> Any:
        return {"text": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one(self) -> ScriptedReply:
        given = [k for k in ("text", "click", "event") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                f"a reply has exactly one of text, click, event (got {', '.join(given) or 'none'})"
            )
        if self.properties and self.event is None:
            raise ValueError("properties: only with event")
        if self.after < timedelta(0):
            raise ValueError("after: must not be negative")
        return self

    def to_event(self) -> journeys.Event:
        if self.text is not None:
            return journeys.Event("oa.text", {"content": self.text})
        if self.click is not None:
            return journeys.Event("oa.click", {"key": self.click})
        assert self.event is not None
        return journeys.Event(self.event, dict(self.properties))

    def describe(self) -> str:
        if self.text is not None:
            return self.text
        if self.click is not None:
            return f"点击菜单 {self.click}"
        return f"事件 {self.event}"


class PreviewContact(BaseModel):
    """The simulated contact: what conditions and goals see. ``silent_days``: days since they
    were last seen (for "silent for 30 days" segments)."""

    model_config = ConfigDict(extra="forbid")

    id: int | str = PREVIEW_CONTACT_ID  # A/B splits are decided by the contact id
    name: str = Field(default="", max_length=128)
    tags: list[str] = Field(default_factory=list, max_length=500)
    score: float = Field(default=0.0, allow_inf_nan=False)
    stage: Literal[STAGES] = "subscriber"  # type: ignore[valid-type]
    fields: dict[str, Any] = Field(default_factory=dict)
    timezone: str | None = None
    silent_days: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None and not valid_zone(value):
            raise ValueError(f"unknown time zone {value!r}; an IANA name such as Asia/Shanghai")
        return value

    def to_contact(self, now: datetime) -> journeys.Contact:
        last_seen = now - timedelta(days=self.silent_days) if self.silent_days is not None else None
        return journeys.Contact(
            id=self.id,
            name=self.name,
            tags=frozenset(self.tags),
            fields=dict(self.fields),
            score=self.score,
            stage=self.stage,
            timezone=self.timezone,
            last_seen_at=last_seen,
        )


_REPLIES = TypeAdapter(list[ScriptedReply])


def problems(exc: ValidationError, prefix: str) -> str:
    """A pydantic error as one line: ``where: what; where: what``."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        parts.append(f"{loc}: {str(err['msg']).removeprefix('Value error, ')}")
    return "; ".join(parts)


def parse_replies(replies: Iterable[Any]) -> list[ScriptedReply]:
    """Texts, ``{"after": "2h", "text": …}``, ``{"click": KEY}`` or ``{"event": type}``."""
    items = [r.model_dump() if isinstance(r, ScriptedReply) else r for r in replies]
    try:
        return _REPLIES.validate_python(items)
    except ValidationError as exc:
        raise PreviewError(problems(exc, "replies")) from None


def contact_from(value: Any, now: datetime) -> journeys.Contact:
    """The engine's contact from a journeys.Contact, a PreviewContact or its JSON."""
    if isinstance(value, journeys.Contact):
        return value
    if isinstance(value, PreviewContact):
        return value.to_contact(now)
    try:
        return PreviewContact.model_validate(value).to_contact(now)
    except ValidationError as exc:
        raise PreviewError(problems(exc, "contact")) from None


def load_definition(definition: Definition | Mapping[str, Any]) -> Definition:
    """A checked definition (journeys.DefinitionError lists the problems)."""
    d = definition if isinstance(definition, Definition) else journeys.check(definition)
    engine.teach_words([d])
    return d
