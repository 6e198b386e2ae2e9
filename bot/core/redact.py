"""The one redaction of secrets in text that leaves the process: stored errors, API answers, logs.

Three things are masked wherever they appear, in URLs or free text:
- query or form parameters named in ``SECRET_PARAMS`` (``secret=…`` → ``secret=***``), also as
  JSON or Python-repr pairs (``"access_token": "…"``) and percent-encoded (``secret%3D…``);
- the password of a URL's user info (``redis://user:pw@host`` → ``redis://user:***@host``);
- every value ``remember``-ed: the settings' secrets, and each access token this process uses.

``install()`` makes every log record pass through ``text`` when it is created, whichever logger
or handler (gunicorn's access log, rq, urllib3, pytest's capture) deals with it afterwards.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from typing import Any

MASK = "***"
SECRET_PARAMS = (
    "msg_signature",
    "signature",
    "echostr",
    "code",
    "access_token",
    "refresh_token",
    "corpsecret",
    "secret",
    "password",
)
MIN_SECRET_LENGTH = 8  # shorter values would mask ordinary words
MAX_REMEMBERED = 512

_NAMES = "|".join(SECRET_PARAMS)
_PARAM = re.compile(
    rf"(?:(?<![\w-])|(?<=%26)|(?<=%3F))({_NAMES})(=|%3D)[^&\s\"'<>#),;]*",
    re.IGNORECASE,
)
_PAIR = re.compile(
    rf"([\"'])({_NAMES})\1(\s*:\s*)(?:([\"'])(?:\\.|(?!\4).)*\4|[^\s,}}\])]+)",
    re.IGNORECASE,
)
_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*):[^@\s/]*@")

_remembered: dict[str, None] = {}  # insertion-ordered, so the oldest are dropped first
_lock = threading.Lock()
_by_length: tuple[str, ...] = ()


def remember(*values: str | None) -> None:
    """Mask these values from now on (secrets from settings, access tokens as they arrive)."""
    global _by_length
    fresh = [v for v in values if v and len(v) >= MIN_SECRET_LENGTH and v not in _remembered]
    if not fresh:
        return
    with _lock:
        for value in fresh:
            _remembered[value] = None
        while len(_remembered) > MAX_REMEMBERED:
            del _remembered[next(iter(_remembered))]
        _by_length = tuple(sorted(_remembered, key=len, reverse=True))


def text(value: str) -> str:
    """``value`` with every secret parameter, URL password and remembered secret masked."""
    if not value:
        return value
    for secret in _by_length:
        if secret in value:
            value = value.replace(secret, MASK)
    if "=" in value or "%3" in value:
        value = _PARAM.sub(lambda m: f"{m[1]}{m[2]}{MASK}", value)
    if ":" in value:
        value = _PAIR.sub(lambda m: f"{m[1]}{m[2]}{m[1]}{m[3]}{m[1]}{MASK}{m[1]}", value)
        value = _USERINFO.sub(lambda m: f"{m[1]}:{MASK}@", value)
    return value


def error(exc: BaseException) -> str:
    """An exception as ``Type: message``, redacted, for storing or answering."""
    message = str(exc)
    return text(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)


# --- logging -----------------------------------------------------------------------------------

_installed = False


def _redacting_factory(make: Any) -> Any:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: let the handler report it as logging does
            return record
        record.msg, record.args = text(message), None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = text("".join(traceback.format_exception(*record.exc_info)).rstrip())
        if record.stack_info:
            record.stack_info = text(record.stack_info)
        return record

    return factory


def install() -> None:
    """Redact every log record this process makes from now on (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        logging.setLogRecordFactory(_redacting_factory(logging.getLogRecordFactory()))
        _installed = True
