"""Form rate limits per visitor cookie and per IP address, counted in Yuchi's Redis by the
``limits`` library (what Flask-Limiter is built on; fixed one-hour windows). Only a form
submission is checked: no other request (a page view, a callback) pays for the bookkeeping
that an app-wide limiter hooks into every request."""

from __future__ import annotations

import logging
import os

from flask import abort, request
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from bot.core import queue
from h5.common import COOKIE, settings

log = logging.getLogger(__name__)
NAMESPACE = "yuchi:h5:limit"
_limiters: dict[tuple[int, str], FixedWindowRateLimiter] = {}


def storage_uri(redis_url: str) -> str:
    """The limits library's name for a unix socket is ``redis+unix://``."""
    if redis_url.startswith("unix://"):
        return "redis+unix://" + redis_url.removeprefix("unix://")
    return redis_url


def _limiter() -> FixedWindowRateLimiter:
    uri = storage_uri(queue.redis_url(settings()))
    key = (os.getpid(), uri)
    found = _limiters.get(key)
    if found is None:
        found = _limiters[key] = FixedWindowRateLimiter(storage_from_string(uri, socket_timeout=2))
    return found


def _remote_address() -> str:
    return request.remote_addr or "127.0.0.1"


def check_form() -> None:
    """Count this submission against the visitor's and the IP address's hourly limits; a
    429 when either is used up. With Redis away the form is let through (and logged)."""
    s = settings()
    visitor = request.cookies.get(COOKIE) or _remote_address()
    counted = (
        (parse(f"{s.h5_forms_per_visitor}/hour"), "v:" + visitor),
        (parse(f"{s.h5_forms_per_ip}/hour"), "ip:" + _remote_address()),
    )
    try:
        limiter = _limiter()
        allowed = [limiter.hit(limit, NAMESPACE, key) for limit, key in counted]
    except queue.REDIS_ERRORS as exc:
        log.warning("form rate limits not checked (%s)", exc)
        return
    if not all(allowed):
        abort(429)
