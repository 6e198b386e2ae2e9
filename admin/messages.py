"""/api/messages and /api/broadcasts: outbound sends, their preview and their progress."""

from __future__ import annotations

from flask import current_app, g, jsonify
from flask.typing import ResponseReturnValue

from admin.common import (
    Invalid,
    api_blueprint,
    end_reads,
    error,
    goal_arg,
    id_arg,
    int_arg,
    settings,
    validated,
)
from admin.openapi import described
from bot.contacts import timeline as store
from bot.messaging import broadcast_bandit, broadcast_preview, broadcasts, reports
from bot.messaging import outbox as messaging
from bot.messaging.payloads import SendRequest

bp = api_blueprint("messages", __name__)


@bp.post("/messages")
@described(
    "messages",
    "Send a message (201 new, 200 when the request key was seen)",
    json=SendRequest,
    status=201,
    errors=(404,),
)
def create_message() -> ResponseReturnValue:
    req = validated(SendRequest, "message")
    try:
        row, created = messaging.create(current_app.config["SETTINGS"], req)
    except messaging.UnknownContact:
        return error(404, f"no contact {req.contact_id}")
    return jsonify(messaging.message_json(row)), (201 if created else 200)


@bp.get("/messages/<id:message_id>")
@described("messages", "A message and its delivery", errors=(404,))
def get_message(message_id: int) -> ResponseReturnValue:
    row = messaging.get(g.session, message_id)
    if row is None:
        return error(404, f"no message {message_id}")
    return jsonify(messaging.message_json(row))


@bp.get("/contacts/<id:contact_id>/messages")
@described("messages", "A contact's messages, newest first", errors=(404,))
def contact_messages(contact_id: int) -> ResponseReturnValue:
    limit = int_arg("limit", 50, 1, 200)
    before = id_arg("before")
    if store.contact_json(g.session, contact_id, with_tags=False) is None:
        return error(404, f"no contact {contact_id}")
    rows, next_before = messaging.for_contact(g.session, contact_id, limit, before)
    return jsonify(messages=[messaging.message_json(m) for m in rows], next_before=next_before)


def _broadcast_request() -> broadcasts.BroadcastRequest:
    req = validated(broadcasts.BroadcastRequest, "broadcast")
    found = broadcasts.problems(g.session, req)
    if found:
        raise Invalid("invalid broadcast", found)
    return req


@bp.post("/broadcasts/preview")
@described(
    "messages",
    "What a broadcast would do now, by route (sends nothing)",
    json=broadcasts.BroadcastRequest,
)
def preview_broadcast() -> ResponseReturnValue:
    """What the broadcast would do now: routes, capped, quota, quiet hours. Sends nothing."""
    req = _broadcast_request()
    return jsonify(broadcast_preview.preview(g.session, current_app.config["SETTINGS"], req))


@bp.post("/broadcasts")
@described("messages", "Start a broadcast", json=broadcasts.BroadcastRequest, status=202)
def create_broadcast() -> ResponseReturnValue:
    req = _broadcast_request()
    end_reads()
    row = broadcasts.create(current_app.config["SETTINGS"], req)
    return jsonify(broadcasts.progress(g.session, row.id)), 202


@bp.get("/broadcasts/<id:broadcast_id>")
@described("messages", "A broadcast's progress", errors=(404,))
def get_broadcast(broadcast_id: int) -> ResponseReturnValue:
    body = broadcasts.progress(g.session, broadcast_id)
    if body is None:
        return error(404, f"no broadcast {broadcast_id}")
    return jsonify(body)


@bp.get("/broadcasts/<id:broadcast_id>/optimisation")
@described(
    "messages",
    "A bandit broadcast's variant weights: explore, then the decision and its counts",
    errors=(404,),
)
def broadcast_optimisation(broadcast_id: int) -> ResponseReturnValue:
    body = broadcasts.progress(g.session, broadcast_id)
    if body is None:
        return error(404, f"no broadcast {broadcast_id}")
    return jsonify(
        broadcast_id=broadcast_id,
        mode=body["mode"],
        stage=body.get("stage"),
        weights=body.get("weights"),
        log=broadcast_bandit.optimisation_log(g.session, broadcast_id),
    )


@bp.get("/messages/<id:message_id>/report")
@described(
    "messages",
    "What one message did: delivered, reach, negative feedback, conversions (?goal=)",
    errors=(404,),
)
def message_report(message_id: int) -> ResponseReturnValue:
    goal = goal_arg()
    if messaging.get(g.session, message_id) is None:
        return error(404, f"no message {message_id}")
    return jsonify(reports.message_report(g.session, settings(), message_id, goal))


@bp.get("/broadcasts/<id:broadcast_id>/report")
@described("messages", "What a broadcast did, in all and per variant (?goal=)", errors=(404,))
def broadcast_report(broadcast_id: int) -> ResponseReturnValue:
    goal = goal_arg()
    if broadcasts.progress(g.session, broadcast_id) is None:
        return error(404, f"no broadcast {broadcast_id}")
    return jsonify(reports.broadcast_report(g.session, settings(), broadcast_id, goal))
