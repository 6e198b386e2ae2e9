"""What a campaign is made of, validated: a 422 names the bad field (``form.fields.2.options``)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

import nh3
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

KINDS = ("landing", "resource", "event")
STANDARD_FIELDS = {
    "name": "姓名",
    "phone": "手机号",
    "company": "公司",
    "title": "职位",
    "city": "城市",
}
H5_EVENTS = (
    "h5.visit",
    "h5.share",
    "h5.form_submitted",
    "h5.download",
    "h5.signup",
    "h5.checkin",
    "h5.follow",
)
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,63}$")
QUESTION = re.compile(r"^q_[a-z0-9_]{1,30}$")
ALLOWED_TAGS = {
    "p",
    "br",
    "strong",
    "b",
    "em",
    "i",
    "u",
    "ul",
    "ol",
    "li",
    "h2",
    "h3",
    "blockquote",
    "a",
    "img",
    "span",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "width", "height"}}


def sanitize(html: str) -> str:
    """The body as stored and served: nh3's allow-list, no scripts, styles or handlers."""
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes={"http", "https"},
        link_rel="noopener noreferrer nofollow",
    )


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class FormField(Strict):
    name: str = Field(min_length=1, max_length=32)
    label: str = Field(default="", max_length=60)
    required: bool = False
    type: Literal["text", "single", "multiple"] = "text"
    options: list[str] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _known(self) -> FormField:
        if self.name in STANDARD_FIELDS:
            if self.type != "text" or self.options:
                raise ValueError(f"type: {self.name} is a standard field, not a question")
            self.label = self.label or STANDARD_FIELDS[self.name]
            return self
        if not QUESTION.match(self.name):
            raise ValueError(
                "name: one of name, phone, company, title, city, or q_<letters/digits> for a question"
            )
        if self.type == "text" or len(self.options) < 2:
            raise ValueError("options: a question is single or multiple with at least 2 options")
        if not self.label:
            raise ValueError("label: a question needs its text")
        if any(not o.strip() or len(o) > 60 for o in self.options) or len(set(self.options)) != len(
            self.options
        ):
            raise ValueError("options: each 1-60 characters, no repeats")
        return self


class Form(Strict):
    fields: list[FormField] = Field(default_factory=list, max_length=12)

    @field_validator("fields")
    @classmethod
    def _unique(cls, fields: list[FormField]) -> list[FormField]:
        names = [f.name for f in fields]
        if len(set(names)) != len(names):
            raise ValueError("each field name once")
        return fields


class RewardRule(Strict):
    points_per_form: int = Field(default=0, ge=0, le=10_000)
    depth: int = Field(default=3, ge=1, le=10)


class Resource(Strict):
    url: str = Field(min_length=8, max_length=500, pattern=r"^(https?://|/h5/static/)")
    filename: str = Field(default="", max_length=100)


class EventInfo(Strict):
    starts_at: datetime
    place: str = Field(default="", max_length=200)
    live_url: str = Field(default="", max_length=500, pattern=r"^(https?://.*)?$")


class CampaignSpec(Strict):
    slug: str = Field(min_length=2, max_length=64)
    name: str = Field(min_length=1, max_length=100)
    title: str = Field(min_length=1, max_length=100)
    kind: Literal["landing", "resource", "event"]
    body: str = Field(default="", max_length=20_000)
    cover_url: str = Field(default="", max_length=500, pattern=r"^(https?://|/h5/static/|$)")
    cta: str = Field(default="立即提交", min_length=1, max_length=40)
    form: Form = Field(default_factory=Form)
    tags: list[str] = Field(default_factory=list, max_length=20)
    score_events: dict[str, int] = Field(default_factory=dict)
    reward: RewardRule = Field(default_factory=RewardRule)
    follow: bool = False
    needs_userinfo: bool = False
    resource: Resource | None = None
    event: EventInfo | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None

    @field_validator("slug")
    @classmethod
    def _slug(cls, slug: str) -> str:
        if not SLUG.match(slug):
            raise ValueError("lowercase letters, digits and -, 2-64 characters")
        return slug

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: list[str]) -> list[str]:
        if any(not t.strip() or len(t) > 64 for t in tags):
            raise ValueError("each tag 1-64 characters")
        return tags

    @field_validator("score_events")
    @classmethod
    def _score_events(cls, events: dict[str, int]) -> dict[str, int]:
        for name, points in events.items():
            if name not in H5_EVENTS or not -1000 <= points <= 1000:
                raise ValueError(f"{name}: one of {', '.join(H5_EVENTS)}, points -1000 to 1000")
        return events

    @model_validator(mode="after")
    def _kind_needs(self) -> CampaignSpec:
        if self.kind == "resource" and self.resource is None:
            raise ValueError("resource: a resource campaign needs the file's url")
        if self.kind == "event" and self.event is None:
            raise ValueError("event: an event campaign needs starts_at")
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at: must be after starts_at")
        if self.starts_at and self.starts_at.tzinfo is None:
            raise ValueError("starts_at: give a time zone (…+08:00)")
        if self.ends_at and self.ends_at.tzinfo is None:
            raise ValueError("ends_at: give a time zone (…+08:00)")
        return self
