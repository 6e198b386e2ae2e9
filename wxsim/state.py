"""The simulated platform's state: in memory, guarded by one lock, with an adjustable clock.

This is a fake of an external platform, so everything lives in this process and is lost on
restart, as a sandbox account's would be. Every method that reads or changes state takes the
lock; nothing here does network I/O (the callers must not hold the lock while they do).
"""

from __future__ import annotations

import itertools
import random
import secrets
import string
import threading
import time
from collections import defaultdict, deque
from typing import Any, TypeVar

from wxsim.entities import (
    FAULT_FIELDS,
    ContactWay,
    CorpTag,
    CorpTagGroup,
    ExternalContact,
    Faults,
    OAUser,
    OAuthCode,
    QRCode,
    Rep,
    Token,
    Transfer,
    WelcomeCode,
)
from wxsim.errors import ApiError

WINDOW_48H = 48 * 3600
MAX_LOG = 5000
_call_keys = itertools.count(1)
_R = TypeVar("_R")


class Clock:
    """Wall-clock time plus an offset that tests move forward (``advance``)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> float:
        self.offset += seconds
        return self.offset


def _token(prefix: str, n: int = 48) -> str:
    alphabet = string.ascii_letters + string.digits + "_-"
    return prefix + "".join(secrets.choice(alphabet) for _ in range(n))


def _assign(record: _R, what: str, attrs: dict[str, Any]) -> _R:
    """Set known attributes on a record; an unknown one is a ValueError naming it."""
    for key, value in attrs.items():
        if not hasattr(record, key):
            raise ValueError(f"unknown {what} attribute {key!r}")
        setattr(record, key, value)
    return record


# --- the state -------------------------------------------------------------------------------


class SimState:
    """Everything the simulated platforms know. Thread-safe: every method takes ``lock``."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.lock = threading.RLock()
        self.clock = Clock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.generation = getattr(self, "generation", 0) + 1  # pending work checks it
            self.clock.offset = 0.0
            self.rng = random.Random(self.config.seed)
            self.faults = Faults()
            self.tokens: dict[str, Token] = {}
            self.token_fetches: dict[str, int] = defaultdict(int)
            self.stable_force_count = 0
            self.tickets: dict[str, dict[str, Any]] = {}  # ticket -> {kind, expires_at}
            self.users: dict[str, OAUser] = {}
            self.inboxes: dict[str, list[dict[str, Any]]] = defaultdict(list)
            self.oa_tags: dict[int, str] = {2: "星标组"}
            self.next_tag_id = 100
            self.qrcodes: dict[str, QRCode] = {}
            self.menu: dict[str, Any] | None = None  # {"button": [...], "menuid": N}
            # conditional menus, oldest first: {"button", "matchrule", "menuid"}
            self.conditional_menus: list[dict[str, Any]] = []
            self.next_menu_id = 400000000
            self.menu_creates: dict[int, int] = defaultdict(int)  # addconditional per day
            self.media: dict[str, dict[str, Any]] = {}  # media_id -> {type, permanent, …}
            self.mass_jobs: dict[str, dict[str, Any]] = {}  # clientmsgid -> {msg_id, at}
            self.mass_received: dict[str, list[float]] = defaultdict(list)  # openid -> times
            self.mass_calls: list[float] = []  # successful submissions (daily limit)
            self.oauth_codes: dict[str, OAuthCode] = {}
            self.browser: dict[str, str] = {}  # who "opens" OAuth links: {"openid"|"userid": …}
            self.reps: dict[str, Rep] = {}
            self.contacts: dict[str, ExternalContact] = {}
            self.tag_groups: list[CorpTagGroup] = []
            self.contact_ways: dict[str, ContactWay] = {}
            self.welcome_codes: dict[str, WelcomeCode] = {}
            self.transfers: list[Transfer] = []
            self.jssdk_context: dict[str, Any] = {
                "entry": "single_chat_tools",
                "userid": "",
                "external_userid": "",
            }
            self.chat_messages: list[dict[str, Any]] = []  # sendChatMessage, in order
            self.calls: deque[dict[str, Any]] = deque(maxlen=MAX_LOG)
            self.callbacks: deque[dict[str, Any]] = deque(maxlen=MAX_LOG)
            # API calls that arrived and have not been answered yet (key: a per-call number)
            self.in_flight: dict[int, dict[str, Any]] = {}
            self.rate_windows: dict[str, deque[float]] = defaultdict(deque)
            self.seq = 0

    def now(self) -> float:
        return self.clock.now()

    def menu_for(self, tagid_list: list[int]) -> dict[str, Any] | None:
        """The menu a follower sees: the newest conditional menu matching the tag set on them
        last (WECHAT.md: a user with several tags matches by the last tag set), else the
        default menu; None when no menu exists."""
        with self.lock:
            if self.menu is None:
                return None
            last = tagid_list[-1] if tagid_list else None
            for menu in reversed(self.conditional_menus):
                if last is not None and menu["matchrule"].get("tag_id") == str(last):
                    return menu
            return self.menu

    def next_id(self) -> int:
        with self.lock:
            self.seq += 1
            return self.seq

    # --- tokens ----------------------------------------------------------------------------

    def issue_token(self, app: str) -> Token:
        """OA ``token``: always a new token; older ones stay valid for the overlap period.
        WeCom ``gettoken``: the same token while it is valid, a new one after it expires."""
        with self.lock:
            self.token_fetches[app] += 1
            now = self.now()
            current = [t for t in self.tokens.values() if t.app == app and not t.revoked]
            if app == "wecom":
                for t in current:
                    if now < t.expires_at:
                        return t
            else:
                for t in current:
                    if t.superseded_at is None:
                        t.superseded_at = now
            token = Token(_token("sim_"), app, now, now + self.config.token_ttl)
            self.tokens[token.value] = token
            return token

    def stable_token(self, force: bool) -> Token:
        """``stable_token``: the same token on repeat calls unless forced; independent of
        the ``token`` endpoint's tokens. Force mode is limited to 20 calls a day."""
        with self.lock:
            self.token_fetches["oa"] += 1
            now = self.now()
            live = [
                t
                for t in self.tokens.values()
                if t.app == "oa_stable" and not t.revoked and t.superseded_at is None
            ]
            if force:
                self.stable_force_count += 1
                if self.stable_force_count > 20:
                    raise ApiError(45009, "force_refresh is limited to 20 calls a day")
            elif live and now < live[0].expires_at:
                return live[0]
            for t in live:
                t.superseded_at = now
            token = Token(_token("sim_s_"), "oa_stable", now, now + self.config.token_ttl)
            self.tokens[token.value] = token
            return token

    def check_token(self, platform: str, value: str | None) -> Token:
        """The token's record, or ApiError with the code the platform would answer."""
        invalid = 40001 if platform == "oa" else 40014
        if not value:
            raise ApiError(41001)
        with self.lock:
            token = self.tokens.get(value)
            apps = ("oa", "oa_stable") if platform == "oa" else (platform,)
            if token is None or token.app not in apps or token.revoked:
                raise ApiError(invalid)
            now = self.now()
            if now >= token.expires_at:
                raise ApiError(42001)
            if (
                token.superseded_at is not None
                and now >= token.superseded_at + self.config.token_overlap
            ):
                raise ApiError(invalid)
            return token

    def revoke_tokens(self, app: str) -> int:
        """Invalidate every current token of ``app`` (oa includes stable tokens)."""
        apps = {"oa": ("oa", "oa_stable"), "wecom": ("wecom",), "sns": ("sns",)}.get(app, (app,))
        with self.lock:
            n, now = 0, self.now()
            for t in self.tokens.values():
                if t.app in apps and not t.revoked:
                    t.revoked = True
                    n += now < t.expires_at  # count the ones that were still usable
            return n

    def issue_ticket(self, kind: str) -> tuple[str, int]:
        """A JS-SDK ticket (kind: oa_jsapi, wecom_jsapi, agent_config); reused while valid."""
        with self.lock:
            now = self.now()
            for value, t in self.tickets.items():
                if t["kind"] == kind and now < t["expires_at"]:
                    return value, int(t["expires_at"] - now)
            value = _token("simticket_", 64)
            self.tickets[value] = {"kind": kind, "expires_at": now + 7200}
            return value, 7200

    def valid_tickets(self, kind: str) -> list[str]:
        with self.lock:
            now = self.now()
            return [
                v for v, t in self.tickets.items() if t["kind"] == kind and now < t["expires_at"]
            ]

    # --- faults ----------------------------------------------------------------------------

    def set_faults(self, **changes: Any) -> Faults:
        unknown = set(changes) - FAULT_FIELDS
        if unknown:
            raise ValueError(f"unknown fault setting(s): {', '.join(sorted(unknown))}")
        with self.lock:
            for key, value in changes.items():
                setattr(self.faults, key, value)
            return self.faults

    def draw_fault(self, app: str, path: str) -> tuple[str | None, float]:
        """Which fault (``http500`` | ``busy`` | ``rate`` | None) this call meets, and the
        latency to add in seconds. Rates of 0 and 1 are deterministic."""
        with self.lock:
            f = self.faults
            if f.apps is not None and app not in f.apps:
                return None, 0.0
            if f.paths is not None and not any(p in path for p in f.paths):
                return None, 0.0
            latency = f.latency_ms / 1000.0
            if f.http_500_rate and self.rng.random() < f.http_500_rate:
                return "http500", latency
            if f.busy_next > 0:
                f.busy_next -= 1
                return "busy", latency
            if f.error_rate and self.rng.random() < f.error_rate:
                return "busy", latency
            if f.rate_limit:
                window = self.rate_windows[app]
                now = time.monotonic()
                while window and window[0] <= now - 1.0:
                    window.popleft()
                if len(window) >= f.rate_limit:
                    return "rate", latency
                window.append(now)
            return None, latency

    # --- logs ------------------------------------------------------------------------------

    def call_started(self, app: str, path: str) -> int:
        """An API call arrived (it is in flight until ``call_finished``); returns its key."""
        with self.lock:
            key = next(_call_keys)
            self.in_flight[key] = {"app": app, "path": path, "since": self.now()}
            return key

    def call_finished(self, key: int) -> None:
        with self.lock:
            self.in_flight.pop(key, None)  # gone already if the state was reset meanwhile

    def log_call(self, app: str, path: str, errcode: int | None, at: float | None = None) -> None:
        with self.lock:
            at = self.now() if at is None else at
            self.calls.append({"app": app, "path": path, "errcode": errcode, "at": at})

    def log_callback(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.callbacks.append({"at": self.now(), **entry})

    # --- OA users and inboxes ------------------------------------------------------------

    def user(self, openid: str) -> OAUser | None:
        with self.lock:
            return self.users.get(openid)

    def upsert_user(self, openid: str, **attrs: Any) -> OAUser:
        with self.lock:
            user = self.users.get(openid)
            if user is None:
                user = OAUser(openid=openid, subscribe_time=int(self.now()))
                self.users[openid] = user
            return _assign(user, "user", attrs)

    def touch(self, openid: str) -> None:
        """The user interacted: the 48-hour customer-service window starts again."""
        with self.lock:
            self.upsert_user(openid).last_interaction = self.now()

    def deliver(self, box: str, kind: str, payload: dict[str, Any], **extra: Any) -> dict:
        """Append a message to an inbox (``openid:X``, ``external:X`` or ``rep:X``)."""
        with self.lock:
            item = {
                "id": self.next_id(),
                "kind": kind,
                "at": self.now(),
                "text": summarize(payload),
                "payload": payload,
                **extra,
            }
            self.inboxes[box].append(item)
            return item

    def inbox(self, box: str) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(item) for item in self.inboxes.get(box, [])]

    # --- WeCom -----------------------------------------------------------------------------

    def rep(self, userid: str) -> Rep | None:
        with self.lock:
            return self.reps.get(userid)

    def upsert_rep(self, userid: str, **attrs: Any) -> Rep:
        with self.lock:
            rep = self.reps.get(userid) or Rep(userid=userid)
            self.reps[userid] = rep
            return _assign(rep, "rep", attrs)

    def corp_tag(self, tag_id: str) -> tuple[CorpTagGroup, CorpTag] | None:
        with self.lock:
            for group in self.tag_groups:
                for tag in group.tags:
                    if tag.id == tag_id:
                        return group, tag
            return None

    def new_welcome_code(self, userid: str, external_userid: str) -> WelcomeCode:
        with self.lock:
            code = WelcomeCode(_token("wc_", 32), userid, external_userid, self.now())
            self.welcome_codes[code.code] = code
            return code

    def use_welcome_code(self, value: str) -> WelcomeCode:
        """Consume a welcome code: once only, within ``welcome_code_ttl`` seconds."""
        with self.lock:
            code = self.welcome_codes.get(value)
            if code is None:
                raise ApiError(40058, "invalid welcome_code")
            if code.used:
                raise ApiError(41051)
            if self.now() - code.issued_at > self.config.welcome_code_ttl:
                raise ApiError(41051, "welcome_code expired")
            code.used = True
            return code


def summarize(payload: dict[str, Any]) -> str:
    """A one-line human summary of a sent message (for CLIs and assertions)."""
    if "Content" in payload:  # a passive reply (XML fields)
        return str(payload["Content"])
    if "Article.Title" in payload:
        return str(payload["Article.Title"])
    msgtype = payload.get("msgtype")
    if msgtype == "text":
        body = payload.get("text")
        return str(body.get("content", "")) if isinstance(body, dict) else str(body or "")
    if msgtype in ("textcard", "news", "markdown", "mpnews", "miniprogrampage"):
        body = payload.get(msgtype) or {}
        if isinstance(body, dict):
            if "articles" in body and body["articles"]:
                return str(body["articles"][0].get("title", ""))
            return str(body.get("title") or body.get("content") or "")
    if "template_id" in payload:
        data = payload.get("data") or {}
        parts = [
            str(v.get("value", "")) for v in data.values() if isinstance(v, dict) and v.get("value")
        ]
        return " / ".join(parts)
    if isinstance(payload.get("text"), dict):
        return str(payload["text"].get("content", ""))
    return ""
