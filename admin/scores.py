"""/api/contacts/<id>/score, /api/contacts/<id>/stage and /api/scoring/*: lead scores, line by
line, manual stages, and the versioned scoring rules."""

from __future__ import annotations

from typing import Literal

from flask import current_app, g, jsonify
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from admin.common import Invalid, api_blueprint, error, int_arg, json_object, validated
from admin.openapi import described
from bot.core.models import utcnow
from bot.scoring import edits as score_edits
from bot.scoring import ledger as scoring
from bot.scoring import recompute, versions
from bot.scoring import rules as score_rules
from bot.scoring.explain import explain

bp = api_blueprint("scores", __name__)


class StageIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    # "auto" hands the stage back to the thresholds.
    stage: Literal["subscriber", "lead", "mql", "sql", "customer", "disqualified", "auto"]
    by: str = Field(default="api", min_length=1, max_length=64)
    note: str | None = Field(default=None, max_length=200)


@bp.get("/contacts/<id:contact_id>/score")
@described(
    "scoring",
    "A contact's score: per rule, and the newest lines (?lines=, default 50)",
    errors=(404,),
)
def contact_score(contact_id: int) -> ResponseReturnValue:
    newest = int_arg("lines", 50, 0, 1000)
    explained = explain(g.session, contact_id, utcnow(), newest)
    if explained is None:
        return error(404, f"no contact {contact_id}")
    g.session.commit()  # the default rules are installed on first use
    return jsonify(explained)


@bp.put("/contacts/<id:contact_id>/stage")
@described(
    "scoring", "Set a contact's stage by hand (or hand it back: auto)", json=StageIn, errors=(404,)
)
def put_stage(contact_id: int) -> ResponseReturnValue:
    data = validated(StageIn, "stage")
    settings = current_app.config["SETTINGS"]
    try:
        change = score_edits.set_stage(
            settings, g.session, contact_id, data.stage, data.by, data.note
        )
    except scoring.UnknownContact:
        return error(404, f"no contact {contact_id}")
    return jsonify(
        contact_id=contact_id, stage=change.new, previous=change.old, stage_manual=change.manual
    )


@bp.get("/scoring/ruleset")
@described("scoring", "The active scoring rule set")
def get_ruleset() -> ResponseReturnValue:
    act = versions.active(g.session)
    g.session.commit()
    return jsonify(versions.ruleset_json(act))


@bp.get("/scoring/recompute")
@described("scoring", "The active version's recompute progress")
def recompute_progress() -> ResponseReturnValue:
    """How far the active version's recompute (its parallel parts) has come."""
    act = versions.active(g.session)
    body = recompute.progress(g.session, act.version)
    g.session.commit()
    return jsonify(body)


@bp.post("/scoring/rulesets")
@described("scoring", "Publish a new scoring rule set", json=score_rules.RuleSet, status=201)
def publish_ruleset() -> ResponseReturnValue:
    raw = json_object()
    try:
        rules = score_rules.RuleSet.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        raise Invalid("invalid scoring rule set", score_rules.field_errors(exc)) from None
    body = score_edits.publish_ruleset(current_app.config["SETTINGS"], g.session, rules)
    return jsonify(body), 201
