"""/api/webhook-endpoints: register the urls journey webhooks may call. /api/webhooks: the
endpoints subscribed to event types (outbound webhooks on chosen events). Creating either
answers its signing secret, once; reads never show it again. Both are webhook_endpoint rows."""

from __future__ import annotations

from flask import current_app, g, jsonify
from flask.typing import ResponseReturnValue

from admin.common import Invalid, api_blueprint, error, validated
from admin.openapi import described
from bot.automation import webhook_endpoints
from bot.core.models import WebhookEndpoint

bp = api_blueprint("webhooks", __name__)


@bp.get("/webhook-endpoints")
@described("webhooks", "List the webhook endpoints")
def list_endpoints() -> ResponseReturnValue:
    rows = webhook_endpoints.list_endpoints(g.session)
    return jsonify(endpoints=[webhook_endpoints.endpoint_json(r) for r in rows])


@bp.get("/webhook-endpoints/<int:endpoint_id>")
@described("webhooks", "One webhook endpoint", errors=(404,))
def get_endpoint(endpoint_id: int) -> ResponseReturnValue:
    row = g.session.get(WebhookEndpoint, endpoint_id)
    if row is None:
        return error(404, f"no webhook endpoint {endpoint_id}")
    return jsonify(webhook_endpoints.endpoint_json(row))


@bp.post("/webhook-endpoints")
@described(
    "webhooks",
    "Register a webhook endpoint (answers its secret, once)",
    json=webhook_endpoints.EndpointIn,
    status=201,
)
def create_endpoint() -> ResponseReturnValue:
    data = validated(webhook_endpoints.EndpointIn, "webhook endpoint")
    try:
        row, secret = webhook_endpoints.create(current_app.config["SETTINGS"], g.session, data)
    except webhook_endpoints.Refused as exc:
        raise Invalid("invalid webhook endpoint", {"url": str(exc)}) from None
    return jsonify({**webhook_endpoints.endpoint_json(row), "secret": secret}), 201


@bp.delete("/webhook-endpoints/<int:endpoint_id>")
@described("webhooks", "Delete a webhook endpoint", status=204, errors=(404,))
def delete_endpoint(endpoint_id: int) -> ResponseReturnValue:
    if not webhook_endpoints.delete(current_app.config["SETTINGS"], g.session, endpoint_id):
        return error(404, f"no webhook endpoint {endpoint_id}")
    return "", 204


# --- subscriptions by event type ---------------------------------------------------------------


@bp.get("/webhooks")
@described("webhooks", "List the endpoints subscribed to event types")
def list_subscriptions() -> ResponseReturnValue:
    rows = webhook_endpoints.list_endpoints(g.session, subscribed=True)
    return jsonify(webhooks=[webhook_endpoints.endpoint_json(r) for r in rows])


@bp.post("/webhooks")
@described(
    "webhooks",
    "Subscribe an endpoint to event types (answers its secret, once)",
    json=webhook_endpoints.SubscriptionIn,
    status=201,
)
def create_subscription() -> ResponseReturnValue:
    """An endpoint and the event types it receives; 201 with its secret (shown once)."""
    data = validated(webhook_endpoints.SubscriptionIn, "webhook")
    try:
        row, secret = webhook_endpoints.create(current_app.config["SETTINGS"], g.session, data)
    except webhook_endpoints.Refused as exc:
        raise Invalid("invalid webhook", {"url": str(exc)}) from None
    return jsonify({**webhook_endpoints.endpoint_json(row), "secret": secret}), 201


@bp.get("/webhooks/<id:endpoint_id>")
@described("webhooks", "One subscribed endpoint", errors=(404,))
def get_subscription(endpoint_id: int) -> ResponseReturnValue:
    return get_endpoint(endpoint_id)


@bp.put("/webhooks/<id:endpoint_id>")
@described(
    "webhooks",
    "Change the event types an endpoint receives",
    json=webhook_endpoints.EventTypesIn,
    errors=(404,),
)
def set_event_types(endpoint_id: int) -> ResponseReturnValue:
    """Change which event types an endpoint (any endpoint) receives."""
    row = g.session.get(WebhookEndpoint, endpoint_id)
    if row is None:
        return error(404, f"no webhook endpoint {endpoint_id}")
    data = validated(webhook_endpoints.EventTypesIn, "webhook")
    webhook_endpoints.set_event_types(current_app.config["SETTINGS"], g.session, row, data)
    return jsonify(webhook_endpoints.endpoint_json(row))


@bp.delete("/webhooks/<id:endpoint_id>")
@described("webhooks", "Delete a subscribed endpoint", status=204, errors=(404,))
def delete_subscription(endpoint_id: int) -> ResponseReturnValue:
    return delete_endpoint(endpoint_id)
