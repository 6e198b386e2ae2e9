"""What a send request may contain, per kind, and the JSON each platform API expects. Pure."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

from bot.core.input_guard import Id
from bot.messaging.send_rules import ALL_KINDS, CUSTOMER_SERVICE_KINDS, WECOM_APP_KINDS


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Text(Strict):
    content: str = Field(min_length=1, max_length=2048)


class News(Strict):
    title: str = Field(min_length=1, max_length=64)
    description: str = Field(default="", max_length=512)
    url: HttpUrl
    picurl: HttpUrl | None = None
    media: Id | None = None  # our permanent image (/api/media): its URL is the picture

    @model_validator(mode="after")
    def _one_picture(self) -> News:
        if self.picurl is not None and self.media is not None:
            raise ValueError("media: give picurl or media, not both")
        return self


class Image(Strict):
    media_id: str | None = Field(default=None, min_length=1, max_length=128)
    media: Id | None = None  # our id (/api/media): uploaded again when the platform's expires

    @model_validator(mode="after")
    def _one(self) -> Image:
        if (self.media_id is None) == (self.media is None):
            raise ValueError("media: give media (our id) or media_id (the platform's)")
        return self


def media_refs(kind: str, payload: dict[str, Any]) -> list[int]:
    """Our media ids a payload references."""
    ref = payload.get("media") if kind in ("image", "news", "link") else None
    return [int(ref)] if ref is not None else []


class MiniProgram(Strict):
    title: str = Field(min_length=1, max_length=64)
    appid: str = Field(min_length=1, max_length=64)
    pagepath: str = Field(min_length=1, max_length=256)
    thumb_media_id: str = Field(min_length=1, max_length=128)


class MiniProgramLink(Strict):
    appid: str = Field(min_length=1, max_length=64)
    pagepath: str = Field(default="", max_length=256)


class Template(Strict):
    template_id: str = Field(min_length=1, max_length=128)
    data: dict[str, str | dict[str, str]] = Field(min_length=1)
    url: HttpUrl | None = None
    miniprogram: MiniProgramLink | None = None


class TextCard(Strict):
    title: str = Field(min_length=1, max_length=128)
    description: str = Field(min_length=1, max_length=512)
    url: HttpUrl
    btntxt: str = Field(default="详情", max_length=4)


PAYLOADS: dict[str, type[Strict]] = {
    "text": Text,
    "news": News,
    "link": News,
    "image": Image,
    "miniprogram": MiniProgram,
    "template": Template,
    "wecom_text": Text,
    "wecom_textcard": TextCard,
    "wecom_markdown": Text,
}
assert set(PAYLOADS) == ALL_KINDS


class SendRequest(Strict):
    """A send, as the API and journeys ask for it."""

    kind: Literal[
        "text",
        "news",
        "link",
        "image",
        "miniprogram",
        "template",
        "wecom_text",
        "wecom_textcard",
        "wecom_markdown",
    ]
    payload: dict[str, Any]
    contact_id: Id | None = None
    to_user: list[str] | None = Field(default=None, min_length=1, max_length=1000)
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200)
    marketing: bool = False
    outside_window: Literal["hold", "fallback", "fail"] = "hold"
    fallback: Template | None = None
    reply_to_event_id: Id | None = None

    @model_validator(mode="after")
    def _consistent(self) -> SendRequest:
        self.payload = (
            PAYLOADS[self.kind]
            .model_validate(self.payload)
            .model_dump(mode="json", exclude_none=True)
        )
        if self.kind in WECOM_APP_KINDS:
            if not self.to_user:
                raise ValueError("to_user: a WeCom app message needs the reps' userids")
        elif self.contact_id is None:
            raise ValueError("contact_id: required for messages to a follower")
        if self.outside_window == "fallback" and self.fallback is None:
            raise ValueError("fallback: outside_window=fallback needs a template to fall back to")
        if self.fallback is not None and self.kind not in CUSTOMER_SERVICE_KINDS:
            raise ValueError("fallback: only customer-service messages have a 48-hour window")
        return self

    @property
    def channel(self) -> str:
        return "wecom" if self.kind in WECOM_APP_KINDS else "oa"


def _template_data(data: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {k: (v if isinstance(v, dict) else {"value": v}) for k, v in data.items()}


def oa_request(
    kind: str, payload: dict[str, Any], openid: str, client_msg_id: str
) -> tuple[str, dict]:
    """(API path under /cgi-bin/, JSON body) for an Official Account send."""
    if kind == "template":
        body: dict[str, Any] = {
            "touser": openid,
            "template_id": payload["template_id"],
            "data": _template_data(payload["data"]),
            "client_msg_id": client_msg_id,
        }
        if payload.get("url"):
            body["url"] = payload["url"]
        if payload.get("miniprogram"):
            body["miniprogram"] = payload["miniprogram"]
        return "message/template/send", body
    if kind in ("news", "link"):
        msg = {"msgtype": "news", "news": {"articles": [payload]}}
    elif kind == "miniprogram":
        msg = {"msgtype": "miniprogrampage", "miniprogrampage": payload}
    else:
        msg = {"msgtype": kind, kind: payload}
    return "message/custom/send", {"touser": openid, **msg}


def wecom_request(
    kind: str, payload: dict[str, Any], to_user: str, agent_id: int
) -> tuple[str, dict]:
    msgtype = kind.removeprefix("wecom_")
    return "message/send", {
        "touser": to_user,
        "msgtype": msgtype,
        "agentid": agent_id,
        msgtype: payload,
    }
