"""/api/webhook-endpoints: register the urls journey webhooks may call. Creating one answers
its signing secret, once; reads never show it again."""

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
    allow = current_app.config["SETTINGS"].webhook_allow
    try:
        row, secret = webhook_endpoints.create(g.session, data, allow)
    except webhook_endpoints.Refused as exc:
        raise Invalid("invalid webhook endpoint", {"url": str(exc)}) from None
    return jsonify({**webhook_endpoints.endpoint_json(row), "secret": secret}), 201


@bp.delete("/webhook-endpoints/<int:endpoint_id>")
@described("webhooks", "Delete a webhook endpoint", status=204, errors=(404,))
def delete_endpoint(endpoint_id: int) -> ResponseReturnValue:
    if not webhook_endpoints.delete(g.session, endpoint_id):
        return error(404, f"no webhook endpoint {endpoint_id}")
    return "", 204
