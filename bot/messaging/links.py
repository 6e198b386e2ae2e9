"""Tracked links: at send time every link of an Official Account message (URLs in a text,
a news/link article's url, a template's url) is replaced by ``<public url>/r/<code>``, a
signed code naming the message and the link's place among its links. The stored row keeps
the original payload, so the redirect finds the target there and nothing else is stored.

A code is itsdangerous' HMAC-SHA256 signature (key derived from YUCHI_SECRET_KEY with its own
salt) over ``<message id in hex>-<link index>``; one that is not exactly what this server
signs, or names no message or link, is None: the page answers 404 and nothing is recorded."""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

import sqlalchemy as sa
from itsdangerous import Signer
from sqlalchemy.orm import Session

from bot.contacts import record as events
from bot.core import queue
from bot.core.config import Settings
from bot.core.db import session_scope
from bot.core.models import Enrollment, Message, MessageClick, utcnow

PATH = "/r/"
CLICKED = "msg.clicked"
# A URL inside free text: stops at whitespace, quotes, brackets and any non-ASCII (Chinese
# punctuation right after a link is common).
URL = re.compile(r"https?://[A-Za-z0-9\-._~:/?#@!$&'*+,;=%\[\]]+")
_TRAILING = ".,;:!?)'"  # punctuation that ends a sentence, not the URL
MAX_TEXT = 2048  # bot.messaging.payloads.Text


def _signer(settings: Settings) -> Signer:
    return Signer(
        settings.secret_key,
        salt="yuchi-tracked-link",
        key_derivation="hmac",
        digest_method=hashlib.sha256,
    )


def code_for(settings: Settings, message_id: int, index: int) -> str:
    return _signer(settings).sign(f"{message_id:x}-{index}").decode()


def read_code(settings: Settings, code: str) -> tuple[int, int] | None:
    """(message id, link index) of a code this server signed; else None. The code must be
    exactly the one this server signs for what it names: itsdangerous' own ``unsign`` would
    also take a signature whose last base64 character differs in the bits the decoder
    ignores, and this one check (one HMAC) replaces it."""
    if not code or len(code) > 120 or not code.isascii():
        return None
    raw, _, _ = code.rpartition(".")
    head, _, tail = raw.partition("-")
    try:
        found = int(head, 16), int(tail)
    except ValueError:
        return None
    return found if hmac.compare_digest(code, code_for(settings, *found)) else None


def _text_urls(text: str) -> list[str]:
    return [m.group(0).rstrip(_TRAILING) for m in URL.finditer(text)]


def links_in(kind: str, payload: dict[str, Any] | None) -> list[str]:
    """The links of a message in a fixed order (the index a code names)."""
    if not payload:
        return []
    if kind == "text":
        return _text_urls(str(payload.get("content") or ""))
    if kind in ("news", "link", "template") and payload.get("url"):
        return [str(payload["url"])]
    return []


def all_links(m: Message) -> list[str]:
    """The row's links, then its fallback template's."""
    return links_in(m.kind, m.payload) + links_in("template", m.fallback)


def _mine(settings: Settings, url: str) -> bool:
    return url.startswith(settings.public_url.rstrip("/") + PATH)


def rewrite(
    settings: Settings, message_id: int, kind: str, payload: dict[str, Any], offset: int = 0
) -> dict[str, Any]:
    """The payload to send, its links replaced by tracked ones (``offset``: the index of its
    first link among the row's; a fallback template comes after the row's own links)."""
    base = settings.public_url.rstrip("/") + PATH

    def tracked(index: int, url: str) -> str:
        return url if _mine(settings, url) else base + code_for(settings, message_id, index)

    if kind == "text":
        text, out, pos = str(payload.get("content") or ""), [], 0
        for index, m in enumerate(URL.finditer(text)):
            url = m.group(0).rstrip(_TRAILING)
            out.append(text[pos : m.start()] + tracked(offset + index, url))
            pos = m.start() + len(url)
        content = "".join(out) + text[pos:]
        # longer than a text may be: sent as written (untracked) rather than refused
        return {**payload, "content": content} if out and len(content) <= MAX_TEXT else payload
    if kind in ("news", "link", "template") and payload.get("url"):
        return {**payload, "url": tracked(offset, str(payload["url"]))}
    return payload


def click(settings: Settings, code: str, record: bool = True) -> str | None:
    """Record a click on a tracked link and return where it goes; None (nothing recorded)
    for a code that does not verify or names no link. ``record=False``: only where it goes
    (a HEAD request: link previews and checkers are not clicks)."""
    found = read_code(settings, code)
    if found is None:
        return None
    message_id, index = found
    with session_scope(settings.database_url) as session:
        m = session.get(Message, message_id)
        links = all_links(m) if m is not None else []
        if not 0 <= index < len(links):
            return None
        url = links[index]
        if not record:
            return url
        outbox_id = _record(session, m, index, url)
    if outbox_id is not None:
        queue.kick_outbox(settings)
    return url


def _record(session: Session, m: Message, index: int, url: str) -> int | None:
    now = utcnow()
    click_id = session.execute(
        sa.insert(MessageClick.__table__)
        .values(message_id=m.id, contact_id=m.contact_id, link=index, url=url, clicked_at=now)
        .returning(MessageClick.__table__.c.id)
    ).scalar_one()
    if m.contact_id is None:
        return None
    props: dict[str, Any] = {"message_id": m.id, "url": url, "link": index}
    if m.broadcast_id is not None:
        props["broadcast_id"] = m.broadcast_id
    if m.enrollment_id is not None:
        journey_id = session.execute(
            sa.select(Enrollment.__table__.c.journey_id).where(
                Enrollment.__table__.c.id == m.enrollment_id
            )
        ).scalar()
        props.update(journey_id=journey_id, enrollment_id=m.enrollment_id, step=m.step)
    return events.append(session, m.contact_id, CLICKED, props, f"click:{click_id}")
