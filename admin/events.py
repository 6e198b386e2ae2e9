"""/api/events: events from outside systems (a CRM, a shop, a form tool) for a known
contact, through the same pipeline as every event. See bot.contacts.api_events for the rules
(``api.`` types, 404 for an unknown contact, idempotency keys)."""

from __future__ import annotations

from flask import g, jsonify
from flask.typing import ResponseReturnValue

from admin.common import Invalid, api_blueprint, error, settings, validated
from admin.openapi import described
from bot.contacts import api_events
from bot.core import queue

bp = api_blueprint("events", __name__)


@bp.post("/events")
@described(
    "events",
    "Post an event for a contact (by any identity), idempotently",
    json=api_events.EventIn,
    status=201,
    errors=(404, 409),
)
def post_event() -> ResponseReturnValue:
    """201 with the new event's id; 200 with the same id for a retry (same idempotency_key,
    same event); 404 unknown contact; 409 the key was used for another event; 422 names the
    bad field."""
    data = validated(api_events.EventIn, "event")
    try:
        done = api_events.post(settings(), g.session, data)
    except api_events.FutureTime as exc:
        raise Invalid("invalid event", {"occurred_at": str(exc)}) from None
    except api_events.UnknownContact as exc:
        return error(404, str(exc), fields={"contact": str(exc)})
    except api_events.KeyReused as exc:
        return error(409, str(exc), fields={"idempotency_key": str(exc)})
    if not done.duplicate:
        queue.kick_outbox(settings(), contact_id=done.contact_id)
    answer = {"event_id": done.event_id, "contact_id": done.contact_id, "duplicate": done.duplicate}
    return jsonify(answer), 200 if done.duplicate else 201
