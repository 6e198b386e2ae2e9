"""JS-SDK signatures as WeChat checks them in ``wx.config`` / ``wx.agentConfig``."""

from __future__ import annotations

import hashlib
from typing import Any

from wxsim.state import SimState


def jsapi_signature(ticket: str, noncestr: str, timestamp: str | int, url: str) -> str:
    """sha1 of ``jsapi_ticket=…&noncestr=…&timestamp=…&url=…`` (URL without ``#…``)."""
    url = url.split("#", 1)[0]
    raw = f"jsapi_ticket={ticket}&noncestr={noncestr}&timestamp={timestamp}&url={url}"
    return hashlib.sha1(raw.encode("utf-8")).hexdigest()


def verify(state: SimState, config: Any, request: dict[str, Any]) -> dict[str, Any]:
    """Check a page's ``config``/``agentConfig`` call against the tickets this simulator
    issued. Answers like the SDK: ``{"ok": bool, "errMsg": "config:ok" | "config:invalid …"}``."""
    kind = request.get("kind") or "config"
    prefix = "agentConfig" if kind == "agentConfig" else "config"
    app_id = str(request.get("appId") or request.get("corpid") or "")
    if kind == "agentConfig":
        if app_id != config.wecom_corp_id:
            return {"ok": False, "errMsg": f"{prefix}:invalid corpid"}
        if str(request.get("agentid") or "") != str(config.wecom_agent_id):
            return {"ok": False, "errMsg": f"{prefix}:invalid agentid"}
        tickets = state.valid_tickets("agent_config")
    elif app_id == config.oa_appid:
        tickets = state.valid_tickets("oa_jsapi")
    elif app_id == config.wecom_corp_id:
        tickets = state.valid_tickets("wecom_jsapi")
    else:
        return {"ok": False, "errMsg": f"{prefix}:invalid appid"}
    nonce = str(request.get("nonceStr") or "")
    timestamp = str(request.get("timestamp") or "")
    url = str(request.get("url") or "")
    signature = str(request.get("signature") or "").lower()
    if not (nonce and timestamp and url and signature):
        return {"ok": False, "errMsg": f"{prefix}:invalid signature"}
    if any(jsapi_signature(t, nonce, timestamp, url) == signature for t in tickets):
        return {"ok": True, "errMsg": f"{prefix}:ok"}
    return {"ok": False, "errMsg": f"{prefix}:invalid signature"}
