"""Freshness and replay checks shared by the callbacks.

A callback's signature binds its ``timestamp`` and ``nonce``, so a captured request can only
be replayed with the same pair: one whose timestamp is further than the allowed skew from the
server clock is refused here, and one inside the window carries a nonce already stored with
the event it delivered (``event.callback_nonce``, see ``bot.contacts.record.record``), so a second use
with another body is refused there and a byte-identical retry gets the stored reply.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from handlers.common import Rejected

TIMESTAMP = re.compile(r"[0-9]{1,11}")
NONCE = re.compile(r"[0-9A-Za-z_-]{1,64}")


@dataclass(frozen=True)
class Stamp:
    """What identifies one delivery of a callback: the signed (timestamp, nonce) pair as a
    key unique per channel, a digest of the exact body, and when it arrived."""

    nonce_key: str
    body_digest: str
    received_at: datetime


def check_fresh(timestamp: str, now: datetime, max_skew_seconds: float) -> None:
    """Refuse (403) a malformed timestamp or one too far from the server clock."""
    if not TIMESTAMP.fullmatch(timestamp):
        raise Rejected(403, "malformed timestamp")
    skew = abs(now.timestamp() - int(timestamp))
    if skew > max_skew_seconds:
        raise Rejected(
            403, f"timestamp is {skew:.0f} s from the server clock (at most {max_skew_seconds:g})"
        )


def stamp(
    channel: str,
    timestamp: str,
    nonce: str,
    body: bytes,
    now: datetime,
    max_skew_seconds: float,
) -> Stamp:
    """Check freshness and the nonce's shape; the stamp to store with the event."""
    check_fresh(timestamp, now, max_skew_seconds)
    if not NONCE.fullmatch(nonce):
        raise Rejected(403, "malformed nonce")
    return Stamp(
        nonce_key=f"{channel}:{timestamp}:{nonce}",
        body_digest=hashlib.sha256(body).hexdigest(),
        received_at=now.astimezone(UTC),
    )
