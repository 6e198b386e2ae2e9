"""Signed tokens (HMAC-SHA256 with YUCHI_SECRET_KEY, one derived key per purpose): referral
codes, the visitor cookie, OAuth states, download links, check-in passes, QR scenes.

A token is ``base64url(payload).signature``; a token that does not verify is None, never an
exception, and the caller logs it. Expiring payloads carry their deadline as ``exp`` (unix
seconds)."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)
SIG_BYTES = 12  # 96 bits: short enough for a QR scene, far beyond guessing


@functools.lru_cache(maxsize=64)
def _key(secret: str, purpose: str) -> bytes:
    return hmac.new(secret.encode(), f"yuchi-h5:{purpose}".encode(), hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, purpose: str, body: str) -> str:
    return _b64(hmac.new(_key(secret, purpose), body.encode(), hashlib.sha256).digest()[:SIG_BYTES])


def sign(secret: str, purpose: str, payload: dict[str, Any]) -> str:
    body = _b64(json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode())
    return f"{body}.{_mac(secret, purpose, body)}"


def unsign(
    secret: str, purpose: str, token: str | None, now: float | None = None
) -> dict[str, Any] | None:
    """The payload of a token made by ``sign`` for this purpose, unexpired; else None."""
    if not token or len(token) > 600 or token.count(".") != 1:
        return None
    body, mac = token.split(".")
    if not hmac.compare_digest(mac, _mac(secret, purpose, body)):
        return None
    try:
        payload = json.loads(_unb64(body))
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    exp = payload.get("exp")
    if exp is not None and (not isinstance(exp, int) or (now or time.time()) > exp):
        return None
    return payload


# --- referral codes ----------------------------------------------------------------------


@dataclass(frozen=True)
class Sharer:
    """Who shared a link: an employee (``userid``), a customer (``contact_id``), or a visitor
    known so far by their browser only (``visitor``: the public ref of their cookie, see
    ``visitor_ref``; bot.campaigns.arrivals finds their contact)."""

    campaign_id: int
    userid: str | None = None
    contact_id: int | None = None
    own: bool = False  # a QR scene on the visitor's own page: whoever follows *is* this contact
    visitor: str | None = None

    @property
    def holder(self) -> str:
        """The points ledger's name for this person."""
        return f"u:{self.userid}" if self.userid else f"c:{self.contact_id}"


def visitor_ref(secret: str, token: str) -> str:
    """A browser's public name: derived from its cookie (which stays secret: whoever holds
    the cookie is that visitor), so a share link can name its sharer before Yuchi has made
    them a contact."""
    return _mac(secret, "visitor", token)


def referral_code(secret: str, sharer: Sharer) -> str:
    if sharer.userid:
        who: dict[str, Any] = {"u": sharer.userid}
    elif sharer.visitor:
        who = {"v": sharer.visitor}
    else:
        who = {"p": sharer.contact_id}
    return sign(secret, "ref", {"c": sharer.campaign_id, **who})


def read_referral(secret: str, code: str | None) -> Sharer | None:
    payload = unsign(secret, "ref", code)
    if payload is None:
        return None
    campaign, userid, contact = payload.get("c"), payload.get("u"), payload.get("p")
    if not isinstance(campaign, int):
        return None
    if isinstance(userid, str) and userid:
        return Sharer(campaign, userid=userid)
    ref = payload.get("v")
    if isinstance(ref, str) and 0 < len(ref) <= 32:
        return Sharer(campaign, visitor=ref)
    if isinstance(contact, int) and not isinstance(contact, bool):
        return Sharer(campaign, contact_id=contact)
    return None


# --- OA parametric QR scenes: "h5:<signed sharer>" fits 64 characters --------------------


def scene(secret: str, sharer: Sharer) -> str:
    who = (
        f"u{sharer.userid}" if sharer.userid else f"{'m' if sharer.own else 'c'}{sharer.contact_id}"
    )
    body = f"{sharer.campaign_id}.{who}"
    return f"h5.{body}.{_mac(secret, 'scene', body)}"


def read_scene(secret: str, text: str) -> Sharer | None:
    head = text.split(".", 2)
    if len(head) != 3 or head[0] != "h5" or not head[1].isdigit() or "." not in head[2]:
        return None
    who, mac = head[2].rsplit(".", 1)  # a userid may hold dots itself
    if len(who) < 2 or not hmac.compare_digest(mac, _mac(secret, "scene", f"{head[1]}.{who}")):
        return None
    kind, value = who[0], who[1:]
    if kind == "u":
        return Sharer(int(head[1]), userid=value)
    if kind in "cm" and value.isdigit():
        return Sharer(int(head[1]), contact_id=int(value), own=kind == "m")
    return None
