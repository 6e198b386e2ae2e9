"""What every callback adapter shares: a rejection that becomes a 4xx with its reason, the
safe parse of an XML body, the settings, and storing a normalized callback once."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from flask import Blueprint, Response, current_app

from bot.contacts.record import IncomingEvent, NonceReused
from bot.core.config import Settings
from bot.replies.decide import Trigger
from bot.replies.receive import Received, receive
from handlers.oa_events import MissingField
from handlers.xml import BadXML, parse_flat

if TYPE_CHECKING:  # replay raises Rejected from here
    from handlers.replay import Stamp

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


Normalize = Callable[[dict, str, datetime], IncomingEvent]


def stamped_event(normalize: Normalize, fields: dict, app_id: str, stamp: Stamp) -> IncomingEvent:
    """The callback's fields through its adapter's table, carrying this delivery's stamp."""
    try:
        event = normalize(fields, app_id, stamp.received_at)
    except MissingField as exc:
        raise Rejected(400, str(exc)) from None
    return dataclasses.replace(event, callback_nonce=stamp.nonce_key, body_digest=stamp.body_digest)


def receive_once(settings: Settings, event: IncomingEvent, trigger: Trigger | None) -> Received:
    """Store the event (a retry of the same body is a duplicate; a reused nonce is refused)."""
    try:
        return receive(settings, event, trigger)
    except NonceReused:
        raise Rejected(403, "nonce already used with another body") from None
