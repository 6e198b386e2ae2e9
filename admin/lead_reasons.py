"""/api/lead-return-reasons: why a rep may return a lead, and what then happens."""

from __future__ import annotations

from flask import abort, g, jsonify
from flask.typing import ResponseReturnValue

from admin.common import Invalid, api_blueprint, validated
from admin.openapi import described
from bot.core.models import LeadReturnReason
from bot.sales import returns

bp = api_blueprint("lead_reasons", __name__)


def _reason_or_404(reason_id: int) -> LeadReturnReason:
    row = g.session.get(LeadReturnReason, reason_id)
    if row is None:
        abort(404, description=f"no return reason {reason_id}")
    return row


def _save(row: LeadReturnReason | None) -> LeadReturnReason:
    data = validated(returns.ReasonIn, "return reason")
    try:
        return returns.save_reason(g.session, data, row)
    except returns.DuplicateLabel:
        raise Invalid(
            "invalid return reason", {"label": "a reason with this label exists"}
        ) from None


@bp.get("/lead-return-reasons")
@described("leads", "List the return reasons")
def list_reasons() -> ResponseReturnValue:
    return jsonify(reasons=[returns.reason_json(r) for r in returns.list_reasons(g.session)])


@bp.get("/lead-return-reasons/<id:reason_id>")
@described("leads", "One return reason", errors=(404,))
def get_reason(reason_id: int) -> ResponseReturnValue:
    return jsonify(returns.reason_json(_reason_or_404(reason_id)))


@bp.post("/lead-return-reasons")
@described("leads", "Create a return reason", json=returns.ReasonIn, status=201)
def create_reason() -> ResponseReturnValue:
    return jsonify(returns.reason_json(_save(None))), 201


@bp.put("/lead-return-reasons/<id:reason_id>")
@described("leads", "Replace a return reason", json=returns.ReasonIn, errors=(404,))
def replace_reason(reason_id: int) -> ResponseReturnValue:
    return jsonify(returns.reason_json(_save(_reason_or_404(reason_id))))


@bp.delete("/lead-return-reasons/<id:reason_id>")
@described("leads", "Delete a return reason", status=204, errors=(404,))
def delete_reason(reason_id: int) -> ResponseReturnValue:
    returns.delete_reason(g.session, _reason_or_404(reason_id))
    return "", 204
