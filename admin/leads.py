"""/api/leads and /api/reps: leads handed to sales, and the staff directory."""

from __future__ import annotations

from typing import Annotated, Literal

from flask import abort, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field

from admin.common import Invalid, api_blueprint, end_reads, error, int_arg, validated
from admin.openapi import described
from bot.core.models import LeadAssignment, Rep
from bot.sales import handoff, returns, transfers

bp = api_blueprint("leads", __name__)
STATUSES = {"assigned", "accepted", "returned", "escalated", "reassigned"}


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    userid: str = Field(min_length=1, max_length=64)
    note: str = Field(default="", max_length=500)


class GiveBack(Answer):
    """A return says why: a reason's id or its label (see /api/lead-return-reasons)."""

    reason_id: int | None = Field(default=None, ge=1, le=2**31 - 1)
    reason: str | None = Field(default=None, min_length=1, max_length=32)


class RepChange(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    capacity: int | None = Field(default=None, ge=0, le=100_000)
    active: bool | None = None
    role: Literal["rep", "manager"] | None = None
    team: str | None = Field(default=None, min_length=1, max_length=64)


class Transfer(BaseModel):
    """在职转接: the rep's WeCom customers (``contact_ids``, else all) to ``to``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    to: str = Field(min_length=1, max_length=64)
    contact_ids: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] | None = Field(
        default=None, min_length=1, max_length=1000
    )
    message: str | None = Field(default=None, min_length=1, max_length=200)


class Leave(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    to: str | None = Field(default=None, min_length=1, max_length=64)


@bp.get("/leads")
@described("leads", "List leads (?owner=, ?status=)")
def list_leads() -> ResponseReturnValue:
    status = request.args.get("status") or None
    if status and status not in STATUSES:
        return error(
            422, "invalid filter", fields={"status": f"one of {', '.join(sorted(STATUSES))}"}
        )
    limit = int_arg("limit", 100, 1, 500)
    return jsonify(
        leads=handoff.list_leads(g.session, request.args.get("owner") or None, status, limit)
    )


def _lead_or_404(lead_id: int) -> None:
    if g.session.get(LeadAssignment, lead_id) is None:
        abort(404, description=f"no lead {lead_id}")
    end_reads()


@bp.post("/leads/<id:lead_id>/accept")
@described("leads", "A rep accepts a lead", json=Answer, errors=(404, 409))
def accept(lead_id: int) -> ResponseReturnValue:
    data = validated(Answer, "answer")
    _lead_or_404(lead_id)
    try:
        row = handoff.accept(current_app.config["SETTINGS"], lead_id, data.userid, data.note)
    except handoff.LeadError as exc:
        return error(409, str(exc))
    return jsonify(handoff.lead_json(row, None))


@bp.post("/leads/<id:lead_id>/return")
@described("leads", "A rep returns a lead with a reason", json=GiveBack, errors=(404, 409))
def give_back(lead_id: int) -> ResponseReturnValue:
    data = validated(GiveBack, "return")
    reason = data.reason_id if data.reason_id is not None else data.reason
    if reason is None:
        raise Invalid("invalid return", {"reason_id": "give reason_id or reason (a label)"})
    _lead_or_404(lead_id)
    try:
        row = returns.return_lead(
            current_app.config["SETTINGS"], lead_id, data.userid, reason, data.note
        )
    except (returns.UnknownReason, returns.NoteRequired) as exc:
        field = "note" if isinstance(exc, returns.NoteRequired) else "reason_id"
        raise Invalid("invalid return", {field: str(exc)}) from None
    except handoff.LeadError as exc:
        return error(409, str(exc))
    return jsonify(handoff.lead_json(row, None))


@bp.get("/reps")
@described("reps", "The staff directory")
def list_reps() -> ResponseReturnValue:
    return jsonify(reps=[handoff.rep_json(r) for r in handoff.list_reps(g.session)])


@bp.put("/reps/<userid>")
@described("reps", "Change a rep's capacity, activity, role or team", json=RepChange, errors=(404,))
def change_rep(userid: str) -> ResponseReturnValue:
    """Set a rep's capacity (open leads they can take), pause them (active false), their role
    (rep | manager: a manager sees the team's customers in the sidebar) or team."""
    data = validated(RepChange, "rep")
    rep = handoff.change_rep(g.session, userid, data.model_dump())
    if rep is None:
        return error(404, f"no rep {userid}")
    return jsonify(handoff.rep_json(rep))


@bp.post("/reps/<userid>/leave")
@described("reps", "A rep leaves: hand over their leads", json=Leave, errors=(404, 409))
def rep_leaves(userid: str) -> ResponseReturnValue:
    data = validated(Leave, "handover")
    if g.session.get(Rep, userid) is None:
        return error(404, f"no rep {userid}")
    end_reads()
    try:
        return jsonify(handoff.rep_leaves(current_app.config["SETTINGS"], userid, data.to))
    except handoff.LeadError as exc:
        return error(409, str(exc))


@bp.post("/reps/<userid>/transfer")
@described(
    "reps", "Transfer a rep's WeCom customers (在职转接)", json=Transfer, errors=(404, 409, 503)
)
def transfer_customers(userid: str) -> ResponseReturnValue:
    """在职转接 through WeCom; the answer lists each customer's outcome."""
    data = validated(Transfer, "transfer")
    if g.session.get(Rep, userid) is None:
        return error(404, f"no rep {userid}")
    end_reads()
    try:
        summary = transfers.transfer_customers(
            current_app.config["SETTINGS"], userid, data.to, data.contact_ids, data.message
        )
    except transfers.TransferError as exc:
        return error(409, str(exc))
    except transfers.TransferUnavailable as exc:
        return error(503, f"WeCom unreachable: {exc}")
    return jsonify(summary)


@bp.get("/reps/<userid>/transfers")
@described("reps", "A rep's customer transfers", errors=(404,))
def list_transfers(userid: str) -> ResponseReturnValue:
    if g.session.get(Rep, userid) is None:
        return error(404, f"no rep {userid}")
    limit = int_arg("limit", 200, 1, 1000)
    rows = transfers.list_transfers(g.session, userid, limit)
    return jsonify(transfers=[transfers.transfer_json(t) for t in rows])
