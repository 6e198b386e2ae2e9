"""What every callback adapter shares: a rejection that becomes a 4xx with its reason, the
safe parse of an XML body, and the settings."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app

from bot.core.config import Settings
from handlers.xml import BadXML, parse_flat

log = logging.getLogger(__name__)


class Rejected(Exception):
    """A callback we refuse: ``status`` (4xx) and a reason for the sender's logs."""

    def __init__(self, status: int, reason: str):
        self.status, self.reason = status, reason
        super().__init__(reason)


def plain(status: int, text: str) -> Response:
    return Response(text + "\n", status=status, mimetype="text/plain")


def install_rejections(bp: Blueprint, name: str) -> None:
    @bp.errorhandler(Rejected)
    def _rejected(exc: Rejected) -> Response:
        log.info("%s callback rejected (%s): %s", name, exc.status, exc.reason)
        return plain(exc.status, exc.reason)


def settings() -> Settings:
    return current_app.config["SETTINGS"]


def parse(body: bytes | str, what: str = "") -> dict:
    try:
        return parse_flat(body)
    except BadXML as exc:
        raise Rejected(400, f"{what}{exc}") from None
