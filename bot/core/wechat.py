"""wechatpy clients for the Official Account and WeCom, with access tokens shared through Redis.

Every web and worker process reads the same cached token. A refresh happens under a Redis lock,
before expiry, or at once when the platform answers 40001/40014/42001 (then the call is retried
once); processes that waited on the lock reuse the token the first one fetched, so a crowd of
workers makes exactly one refresh. API base URLs come from settings (the simulator in tests).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
import requests
from wechatpy import WeChatClient
from wechatpy.enterprise import WeChatClient as WeComClient
from wechatpy.exceptions import WeChatClientException

from bot.core import queue, redact
from bot.core.config import Settings

log = logging.getLogger(__name__)

TOKEN_ERRORS = {40001, 40014, 42001}
TRANSIENT_ERRORS = {-1, 45009}
REFRESH_MARGIN = 300  # refresh when less than this many seconds remain
TOKEN_TIMEOUT = 5.0  # seconds for a token fetch
CALL_TIMEOUT = 10.0  # seconds for an API call


class PlatformError(Exception):
    """The platform refused a call: ``errcode``/``errmsg`` as WeChat gave them
    (``errcode`` None for transport failures: timeouts, refused connections, HTTP 5xx).

    Always raised ``from None``: the underlying errors quote URLs with ``secret=`` or
    ``access_token=``, and a traceback (logged, or kept by rq in Redis) must not carry them."""

    def __init__(
        self, errcode: int | None, errmsg: str, transient: bool, answer: dict | None = None
    ):
        # Transport errors quote the URL (with ``secret=`` or ``access_token=``): this message is
        # stored, answered and logged, so it is redacted once, here.
        self.errcode, self.errmsg, self.transient = errcode, redact.text(errmsg), transient
        # the platform's whole answer, for errors that carry more (45065 carries the msg_id)
        self.answer: dict = answer or {}
        super().__init__(f"{errcode}: {self.errmsg}")


@dataclass(frozen=True)
class App:
    """One platform application whose calls share a token and a rate limit."""

    name: str  # "oa" | "wecom"
    app_id: str
    secret: str
    token_url: str
    token_params: dict[str, str]


def oa_app(settings: Settings) -> App:
    return App(
        "oa",
        settings.oa_appid,
        settings.oa_secret,
        f"{settings.wechat_api_base}/cgi-bin/token",
        {
            "grant_type": "client_credential",
            "appid": settings.oa_appid,
            "secret": settings.oa_secret,
        },
    )


def wecom_app(settings: Settings) -> App:
    return App(
        "wecom",
        settings.wecom_corp_id,
        settings.wecom_secret,
        f"{settings.wecom_api_base}/cgi-bin/gettoken",
        {"corpid": settings.wecom_corp_id, "corpsecret": settings.wecom_secret},
    )


class TokenStore:
    """An access token in Redis, shared by every process, refreshed under a lock. Each process
    also keeps it for a few seconds, so a burst of sends asks Redis once, not per call."""

    LOCAL_SECONDS = 5.0

    def __init__(
        self, conn: redis.Redis, app: App, http: requests.Session, timeout: float | None = None
    ):
        self.conn, self.app, self.http = conn, app, http
        self.timeout = TOKEN_TIMEOUT if timeout is None else timeout
        self.key = f"yuchi:token:{app.name}:{app.app_id}"
        self._local: tuple[str, float] | None = None

    def get(self) -> str:
        if self._local is not None and time.monotonic() < self._local[1]:
            return self._local[0]
        token = self.conn.get(self.key)
        if token is None:
            return self.refresh(stale=None)
        self._local = (token.decode(), time.monotonic() + self.LOCAL_SECONDS)
        redact.remember(self._local[0])
        return self._local[0]

    def refresh(self, stale: str | None) -> str:
        """Fetch a new token unless another process already replaced ``stale``."""
        self._local = None
        with self.conn.lock(f"{self.key}:lock", timeout=15, blocking_timeout=15):
            current = self.conn.get(self.key)
            if current is not None and current.decode() != stale:
                redact.remember(current.decode())
                return current.decode()
            token, expires_in = self._fetch()
            redact.remember(token)
            ttl = max(30, int(expires_in) - REFRESH_MARGIN)
            self.conn.set(self.key, token, ex=ttl)
            self.conn.incr(f"{self.key}:fetches")
            log.info(
                "access token for %s %s refreshed (valid %ss)",
                self.app.name,
                self.app.app_id,
                expires_in,
            )
            return token

    def _fetch(self) -> tuple[str, int]:
        try:
            resp = self.http.get(
                self.app.token_url, params=self.app.token_params, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise PlatformError(None, f"token request failed: {exc}", transient=True) from None
        if resp.status_code >= 500:
            raise PlatformError(None, f"token endpoint HTTP {resp.status_code}", transient=True)
        try:
            data = resp.json()
            code = int(data.get("errcode", 0) or 0)
        except (ValueError, TypeError, AttributeError):
            raise PlatformError(
                None, f"token endpoint HTTP {resp.status_code}: the answer is not JSON", True
            ) from None
        if code or not isinstance(data.get("access_token"), str):
            raise PlatformError(
                code, str(data.get("errmsg", "no access_token")), code in TRANSIENT_ERRORS
            )
        try:
            return data["access_token"], int(data.get("expires_in", 7200))
        except (ValueError, TypeError):
            raise PlatformError(None, "token endpoint: expires_in is not a number", True) from None


class _TokenSession:
    """wechatpy's session interface, answering the access token from the shared TokenStore."""

    def __init__(self, store: TokenStore):
        self.store = store

    def get(self, key: str, default: Any = None) -> Any:
        return self.store.get() if key.endswith("_access_token") else default

    def set(self, key: str, value: Any, ttl: int | None = None) -> None:  # wechatpy never fetches
        pass

    def delete(self, key: str) -> None:
        pass


class Platform:
    """Calls one app's API through wechatpy with the shared token, a Redis rate limit and one
    retry after a token error. Raises PlatformError for everything else."""

    def __init__(self, settings: Settings, app: App, client_factory: Callable[..., Any], base: str):
        self.settings, self.app = settings, app
        self.http = requests.Session()
        self.tokens = TokenStore(queue.get_redis(settings), app, self.http)
        self.client = client_factory(
            app.app_id,
            app.secret,
            session=_TokenSession(self.tokens),
            timeout=CALL_TIMEOUT,
            auto_retry=False,
        )
        self.client.API_BASE_URL = f"{base}/cgi-bin/"
        self.client._http = self.http

    def call(
        self,
        method: str,
        path: str,
        data: dict | None = None,
        params: dict | None = None,
        files: dict | None = None,
    ) -> dict:
        """``path`` relative to /cgi-bin/ (e.g. "message/custom/send"); ``files``: a
        multipart upload (requests' ``files``)."""
        for attempt in (1, 2):
            token = self.tokens.get()
            try:
                kwargs: dict[str, Any] = {"params": {**(params or {}), "access_token": token}}
                if data is not None:
                    kwargs["data"] = data
                if files is not None:
                    kwargs["files"] = files
                result = self.client._request(method, path, **kwargs)
            except WeChatClientException as exc:
                code = int(exc.errcode) if exc.errcode is not None else None
                if code in TOKEN_ERRORS and attempt == 1:
                    log.info(
                        "%s token rejected (%s); refreshing and retrying once", self.app.name, code
                    )
                    self.tokens.refresh(stale=token)
                    continue
                if code is None:  # HTTP error status from requests
                    status = exc.response.status_code if exc.response is not None else "?"
                    raise PlatformError(None, f"HTTP {status}", transient=True) from None
                raise PlatformError(
                    code, str(exc.errmsg), code in TRANSIENT_ERRORS, _answer(exc)
                ) from None
            except requests.RequestException as exc:
                raise PlatformError(None, f"{type(exc).__name__}: {exc}", transient=True) from None
            except (ValueError, TypeError) as exc:  # an errcode that is not a number
                raise PlatformError(None, f"unreadable answer: {exc}", transient=True) from None
            if not isinstance(result, dict):  # wechatpy hands back what it could not decode
                raise PlatformError(None, "the answer is not JSON", transient=True)
            return result
        raise PlatformError(42001, "access token rejected twice", transient=True)


def _answer(exc: WeChatClientException) -> dict:
    try:
        found = exc.response.json() if exc.response is not None else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def oa(settings: Settings) -> Platform:
    return _cached(
        settings,
        "oa",
        lambda: Platform(settings, oa_app(settings), WeChatClient, settings.wechat_api_base),
    )


def wecom(settings: Settings) -> Platform:
    return _cached(
        settings,
        "wecom",
        lambda: Platform(settings, wecom_app(settings), WeComClient, settings.wecom_api_base),
    )


_platforms: dict[tuple, Platform] = {}


def _cached(settings: Settings, name: str, make: Callable[[], Platform]) -> Platform:
    import os

    key = (
        os.getpid(),
        name,
        settings.wechat_api_base,
        settings.wecom_api_base,
        queue.redis_url(settings),
    )
    platform = _platforms.get(key)
    if platform is None:
        platform = _platforms[key] = make()
    return platform


def reset_clients() -> None:
    _platforms.clear()


# GCRA: each call reserves the next free slot, one every 1/rate seconds, on Redis's own clock
# (so every process and machine agrees). Returns how long the caller must wait for its slot.
_RESERVE_SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local interval = tonumber(ARGV[1])
local slot = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
redis.call('SET', KEYS[1], string.format('%.6f', slot + interval), 'PX', math.ceil((slot + interval - now) * 1000) + 1000)
return string.format('%.6f', slot - now)
"""
# Slots 10 % wider than 1/rate, so that arrival jitter (threads, a busy CPU) cannot bunch calls
# into one second: with 5 %, 50 ms of jitter was enough, and a loaded CI machine had it.
SPACING_MARGIN = 1.10


class RateLimiter:
    """At most ``per_second`` calls per app, spaced evenly, across every process."""

    def __init__(self, conn: redis.Redis, app: App, per_second: float):
        self.conn, self.app = conn, app
        self.interval = SPACING_MARGIN / per_second
        self.key = f"yuchi:rate:{app.name}:{app.app_id}"
        self._reserve = conn.register_script(_RESERVE_SLOT)

    def acquire(self) -> float:
        """Reserve the next slot and sleep until it; returns the seconds waited."""
        wait = float(self._reserve(keys=[self.key], args=[f"{self.interval:.6f}"]))
        if wait > 0:
            time.sleep(wait)
        return wait


class TicketStore:
    """The OA JS-SDK ``jsapi_ticket`` in Redis, under the token discipline: every process reads
    the one cached ticket; a refresh happens under a Redis lock, before expiry, and processes
    that waited reuse the ticket the first one fetched."""

    def __init__(self, platform: Platform):
        self.platform = platform
        self.conn = platform.tokens.conn
        self.key = f"yuchi:ticket:jsapi:{platform.app.app_id}"

    def get(self) -> str:
        ticket = self.conn.get(self.key)
        if ticket is not None:
            return ticket.decode()
        with self.conn.lock(f"{self.key}:lock", timeout=15, blocking_timeout=15):
            ticket = self.conn.get(self.key)
            if ticket is not None:
                return ticket.decode()
            data = self.platform.call("GET", "ticket/getticket", params={"type": "jsapi"})
            value, expires_in = data.get("ticket"), data.get("expires_in", 7200)
            if not isinstance(value, str) or not value:
                raise PlatformError(None, "getticket: no ticket in the answer", transient=True)
            self.conn.set(self.key, value, ex=max(30, int(expires_in) - REFRESH_MARGIN))
            self.conn.incr(f"{self.key}:fetches")
            return value


def jsapi_ticket(settings: Settings) -> str:
    return TicketStore(oa(settings)).get()
