"""Form rate limits (Flask-Limiter on Yuchi's Redis): per visitor cookie and per IP address."""

from __future__ import annotations

from flask import Flask, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from bot.core import queue
from h5.common import COOKIE, settings

limiter = Limiter(
    key_func=get_remote_address,
    key_prefix="yuchi:h5:limit",
    strategy="fixed-window",
    headers_enabled=True,
)


@limiter.request_filter
def _not_a_page() -> bool:
    """Only the campaign pages' forms (a POST) are limited: every other request (a callback, a
    page view) skips the limiter's bookkeeping."""
    return request.method != "POST" or not request.path.startswith("/h5/")


def storage_uri(redis_url: str) -> str:
    """The limits library's name for a unix socket is ``redis+unix://``."""
    if redis_url.startswith("unix://"):
        return "redis+unix://" + redis_url.removeprefix("unix://")
    return redis_url


def install(app: Flask) -> None:
    app.config.setdefault(
        "RATELIMIT_STORAGE_URI", storage_uri(queue.redis_url(app.config["SETTINGS"]))
    )
    app.config.setdefault("RATELIMIT_STORAGE_OPTIONS", {"socket_timeout": 2})
    limiter.init_app(app)


def per_visitor() -> str:
    return f"{settings().h5_forms_per_visitor}/hour"


def per_ip() -> str:
    return f"{settings().h5_forms_per_ip}/hour"


def visitor_key() -> str:
    return "v:" + (request.cookies.get(COOKIE) or get_remote_address())


def ip_key() -> str:
    return "ip:" + get_remote_address()


form_limits = [
    limiter.limit(per_visitor, key_func=visitor_key, methods=["POST"]),
    limiter.limit(per_ip, key_func=ip_key, methods=["POST"]),
]
