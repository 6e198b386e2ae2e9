"""The Official Account's menu rules, checked before anything is stored or sent. Pure.

The platform's limits (WECHAT.md; the simulator enforces the same): 1 to 3 top buttons, at
most 5 sub-buttons under one, a name of at most 16 bytes (UTF-8) at the top and 60 below, a
``key`` of at most 128 bytes for the key types, a ``url`` of at most 1024 bytes for ``view``
and ``miniprogram``, ``appid`` + ``pagepath`` for a mini-program, ``media_id`` or
``article_id`` for the material types. Every problem is reported under its path
(``buttons.1.sub_button.0.name``), so a 422 says which button is wrong.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from journeys.tag_names import checked_tag

TOP_BUTTONS = 3
SUB_BUTTONS = 5
TOP_NAME_BYTES = 16
SUB_NAME_BYTES = 60
KEY_BYTES = 128
URL_BYTES = 1024
CONDITIONAL_DOMAINS = 3  # all conditional menus together link to at most 3 domains

KEY_TYPES = frozenset(
    {
        "click",
        "scancode_push",
        "scancode_waitmsg",
        "pic_sysphoto",
        "pic_photo_or_album",
        "pic_weixin",
        "location_select",
    }
)
URL_TYPES = frozenset({"view", "miniprogram"})
TYPES = KEY_TYPES | URL_TYPES | {"media_id", "view_limited", "article_id", "article_view_limited"}
FIELDS = frozenset(
    {"type", "name", "key", "url", "media_id", "appid", "pagepath", "article_id", "sub_button"}
)


class MenuIn(BaseModel):
    """A menu as the API takes it: ``tag`` None for the default menu, else the Yuchi tag whose
    followers see it; ``position`` orders conditional menus (lowest first wins)."""

    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)
    name: str = Field(min_length=1, max_length=100)
    tag: Annotated[str, AfterValidator(checked_tag)] | None = None
    position: int = Field(default=0, ge=0, le=10_000)
    buttons: list[Any]


def _bytes(text: str) -> int:
    return len(text.encode("utf-8"))


def _text(button: dict, name: str, most: int, where: str, problems: dict[str, str]) -> None:
    value = button.get(name)
    if not isinstance(value, str) or not value.strip():
        problems[f"{where}.{name}"] = f"required for a {button.get('type')} button"
    elif _bytes(value) > most:
        problems[f"{where}.{name}"] = f"at most {most} bytes (UTF-8), this is {_bytes(value)}"


def _url(button: dict, where: str, problems: dict[str, str]) -> None:
    _text(button, "url", URL_BYTES, where, problems)
    url = button.get("url")
    if f"{where}.url" not in problems and urlsplit(str(url)).scheme not in ("http", "https"):
        problems[f"{where}.url"] = "an http:// or https:// address"


def _name(button: dict, most: int, where: str, problems: dict[str, str]) -> None:
    name = button.get("name")
    if not isinstance(name, str) or not name.strip():
        problems[f"{where}.name"] = "required"
    elif _bytes(name) > most:
        problems[f"{where}.name"] = (
            f"at most {most} bytes (UTF-8; a Chinese character is 3), this is {_bytes(name)}"
        )


def _action(button: dict, where: str, problems: dict[str, str]) -> None:
    """A button that does something: its type and the keys that type needs."""
    kind = button.get("type")
    if kind not in TYPES:
        problems[f"{where}.type"] = "one of " + ", ".join(sorted(TYPES))
        return
    if kind in KEY_TYPES:
        _text(button, "key", KEY_BYTES, where, problems)
    if kind in URL_TYPES:
        _url(button, where, problems)
    if kind == "miniprogram":
        _text(button, "appid", 64, where, problems)
        _text(button, "pagepath", 500, where, problems)
    if kind in ("media_id", "view_limited"):
        _text(button, "media_id", 128, where, problems)
    if kind in ("article_id", "article_view_limited"):
        _text(button, "article_id", 128, where, problems)


def _unknown_fields(button: dict, where: str, problems: dict[str, str]) -> None:
    for name in sorted(set(button) - FIELDS):
        problems[f"{where}.{name}"] = "not a menu button field"


def check_buttons(buttons: Any) -> dict[str, str]:
    """Every problem of a menu's ``buttons`` by its path; empty when the platform takes it."""
    problems: dict[str, str] = {}
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= TOP_BUTTONS:
        return {"buttons": f"1 to {TOP_BUTTONS} top buttons"}
    for i, button in enumerate(buttons):
        where = f"buttons.{i}"
        if not isinstance(button, dict):
            problems[where] = "a button is an object"
            continue
        _unknown_fields(button, where, problems)
        _name(button, TOP_NAME_BYTES, where, problems)
        subs = button.get("sub_button")
        if subs in (None, []):
            _action(button, where, problems)
            continue
        if not isinstance(subs, list) or len(subs) > SUB_BUTTONS:
            problems[f"{where}.sub_button"] = f"at most {SUB_BUTTONS} sub-buttons"
            continue
        for j, sub in enumerate(subs):
            at = f"{where}.sub_button.{j}"
            if not isinstance(sub, dict):
                problems[at] = "a button is an object"
                continue
            _unknown_fields(sub, at, problems)
            if sub.get("sub_button"):
                problems[f"{at}.sub_button"] = "menus have two levels only"
            _name(sub, SUB_NAME_BYTES, at, problems)
            _action(sub, at, problems)
    return problems


def flat(buttons: list[dict]) -> list[dict]:
    """Every button that does something (the tops without subs and every sub)."""
    out: list[dict] = []
    for button in buttons:
        out.extend(button.get("sub_button") or [button])
    return out


def keys(buttons: list[dict]) -> set[str]:
    return {b["key"] for b in flat(buttons) if b.get("key")}


def domains(buttons: list[dict]) -> set[str]:
    """The host names a menu's view and mini-program buttons link to."""
    return {
        (urlsplit(b["url"]).hostname or "").lower()
        for b in flat(buttons)
        if b.get("type") in URL_TYPES and isinstance(b.get("url"), str)
    }


def platform_buttons(buttons: list[dict]) -> list[dict[str, Any]]:
    """The buttons as the platform takes them (empty ``sub_button`` lists left out)."""
    out = []
    for button in buttons:
        b = {k: v for k, v in button.items() if k != "sub_button"}
        if button.get("sub_button"):
            b = {"name": button["name"], "sub_button": list(button["sub_button"])}
        out.append(b)
    return out
