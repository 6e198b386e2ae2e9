"""/api/leads and /api/reps: leads handed to sales, and the staff directory."""

from __future__ import annotations

from typing import Literal

from flask import current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field

from admin.common import api_blueprint, end_reads, error, int_arg, validated
from bot.core.models import LeadAssignment, Rep
from bot.sales import handoff

bp = api_blueprint("leads", __name__)
STATUSES = {"assigned", "accepted", "returned", "escalated", "reassigned"}


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    userid: str = Field(min_length=1, max_length=64)
    note: str = Field(default="", max_length=500)


class RepChange(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    capacity: int | None = Field(default=None, ge=0, le=100_000)
    active: bool | None = None
    role: Literal["rep", "manager"] | None = None
    team: str | None = Field(default=None, min_length=1, max_length=64)


class Leave(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    to: str | None = Field(default=None, min_length=1, max_length=64)


@bp.get("/leads")
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


def _answer(lead_id: int, accept: bool) -> ResponseReturnValue:
    data = validated(Answer, "answer")
    if g.session.get(LeadAssignment, lead_id) is None:
        return error(404, f"no lead {lead_id}")
    end_reads()
    try:
        row = handoff.respond(
            current_app.config["SETTINGS"], lead_id, data.userid, accept, data.note
        )
    except handoff.LeadError as exc:
        return error(409, str(exc))
    return jsonify(handoff.lead_json(row, None))


@bp.post("/leads/<id:lead_id>/accept")
def accept(lead_id: int) -> ResponseReturnValue:
    return _answer(lead_id, True)


@bp.post("/leads/<id:lead_id>/return")
def give_back(lead_id: int) -> ResponseReturnValue:
    return _answer(lead_id, False)


@bp.get("/reps")
def list_reps() -> ResponseReturnValue:
    return jsonify(reps=[handoff.rep_json(r) for r in handoff.list_reps(g.session)])


@bp.put("/reps/<userid>")
def change_rep(userid: str) -> ResponseReturnValue:
    """Set a rep's capacity (open leads they can take), pause them (active false), their role
    (rep | manager: a manager sees the team's customers in the sidebar) or team."""
    data = validated(RepChange, "rep")
    rep = handoff.change_rep(g.session, userid, data.model_dump())
    if rep is None:
        return error(404, f"no rep {userid}")
    return jsonify(handoff.rep_json(rep))


@bp.post("/reps/<userid>/leave")
def rep_leaves(userid: str) -> ResponseReturnValue:
    data = validated(Leave, "handover")
    if g.session.get(Rep, userid) is None:
        return error(404, f"no rep {userid}")
    end_reads()
    try:
        return jsonify(handoff.rep_leaves(current_app.config["SETTINGS"], userid, data.to))
    except handoff.LeadError as exc:
        return error(409, str(exc))
