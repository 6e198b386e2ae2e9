"""WeCom JS-SDK signatures for the sidebar: the corp ``jsapi_ticket`` (``wx.config``) and the
agent ticket (``wx.agentConfig``, ``ticket/get?type=agent_config``).

Each ticket lives in Redis and is refreshed exactly like the access token (``TokenStore``: a
Redis lock, early refresh, waiters reuse what the first one fetched); the agent ticket's key
names the agent, which wechatpy's cache forgets."""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

from bot.core import queue, wechat
from bot.core.config import Settings

# kind: (path under /cgi-bin/, query)
TICKETS = {
    "corp": ("get_jsapi_ticket", {}),
    "agent": ("ticket/get", {"type": "agent_config"}),
}


def signature(ticket: str, noncestr: str, timestamp: int | str, url: str) -> str:
    """sha1 of ``jsapi_ticket=…&noncestr=…&timestamp=…&url=…`` (the URL without ``#…``)."""
    url = url.split("#", 1)[0]
    raw = f"jsapi_ticket={ticket}&noncestr={noncestr}&timestamp={timestamp}&url={url}"
    return hashlib.sha1(raw.encode("utf-8")).hexdigest()


class TicketStore(wechat.TokenStore):
    """A JS-SDK ticket with the access token's lock discipline; fetched with the access token."""

    def __init__(self, settings: Settings, kind: str):
        platform = wechat.wecom(settings)
        super().__init__(queue.get_redis(settings), platform.app, platform.http)
        self.platform, self.kind = platform, kind
        self.key = f"yuchi:ticket:{kind}:{settings.wecom_corp_id}:{settings.wecom_agent_id}"

    def _fetch(self) -> tuple[str, int]:
        path, params = TICKETS[self.kind]
        data = self.platform.call("get", path, params=params)
        ticket = data.get("ticket")
        if not isinstance(ticket, str) or not ticket:
            raise wechat.PlatformError(None, f"{path}: no ticket in the answer", transient=True)
        try:
            return ticket, int(data.get("expires_in", 7200))
        except (TypeError, ValueError):
            raise wechat.PlatformError(None, f"{path}: expires_in is not a number", True) from None


@dataclass(frozen=True)
class Signed:
    """What one ``wx.config`` or ``wx.agentConfig`` call needs."""

    timestamp: int
    nonce: str
    signature: str


def sign(settings: Settings, kind: str, url: str) -> Signed:
    """Sign ``url`` (the page's address) with the ``kind`` ticket ("corp" | "agent")."""
    ticket = TicketStore(settings, kind).get()
    timestamp, nonce = int(time.time()), secrets.token_hex(8)
    return Signed(timestamp, nonce, signature(ticket, nonce, timestamp, url))


def page_config(settings: Settings, url: str) -> dict[str, Any]:
    """Both signatures for a sidebar page: ``config`` (corp) and ``agent``; PlatformError."""
    corp, agent = sign(settings, "corp", url), sign(settings, "agent", url)
    return {
        "corpid": settings.wecom_corp_id,
        "agentid": str(settings.wecom_agent_id),
        "config": {
            "timestamp": corp.timestamp,
            "nonceStr": corp.nonce,
            "signature": corp.signature,
        },
        "agent": {
            "timestamp": agent.timestamp,
            "nonceStr": agent.nonce,
            "signature": agent.signature,
        },
    }
