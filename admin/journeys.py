"""/api/journeys and /api/contacts/<id>/journeys: create and edit drafts (JSON or YAML, or from
the library), publish versions, pause, resume and stop, take one contact out, per-step stats;
a contact's enrollments. The lifecycle itself is bot.automation.lifecycle."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import yaml
from flask import Blueprint, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue

import journeys
from admin.common import api_blueprint, end_reads, error, goal_arg, int_arg, settings
from admin.openapi import described
from bot.automation import bandits, lifecycle, reports
from bot.core import input_guard
from bot.core.models import Journey
from journeys import library

bp = api_blueprint("journeys", __name__)
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


class BadBody(ValueError):
    pass


def problems_response(problems: list[journeys.Problem]) -> ResponseReturnValue:
    return error(
        422,
        "the journey definition is not valid",
        problems=[
            {"step": p.step, "field": p.field, "message": p.message, "text": str(p)}
            for p in problems
        ],
    )


def answer_lifecycle_errors(blueprint: Blueprint) -> None:
    """The lifecycle's refusals as answers: 404, 409, 422 with the definition's problems."""
    blueprint.register_error_handler(lifecycle.NotFound, lambda exc: error(404, str(exc)))
    blueprint.register_error_handler(lifecycle.Refused, lambda exc: error(409, str(exc)))
    blueprint.register_error_handler(
        lifecycle.InvalidDefinition, lambda exc: problems_response(exc.problems)
    )


answer_lifecycle_errors(bp)
bp.register_error_handler(BadBody, lambda exc: error(422, str(exc)))


def _iso_text(value: Any) -> str:
    """json.dumps' default: YAML's unquoted dates and times (``date: 2026-12-01``) as ISO text,
    which the definition reads the same; anything else (sets, bytes) is refused."""
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    raise TypeError(f"YAML values of type {type(value).__name__} are not accepted")


def _yaml(text: str) -> Any:
    """YAML without aliases (a few bytes of anchors can expand into gigabytes), as the JSON
    the draft is stored as."""
    try:
        depth = 0
        for ev in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(ev, yaml.AliasEvent):
                raise BadBody("YAML anchors and aliases (*name) are not accepted")
            if isinstance(ev, yaml.CollectionStartEvent):
                depth += 1
                if depth > input_guard.MAX_DEPTH:
                    raise BadBody(f"YAML nested deeper than {input_guard.MAX_DEPTH} levels")
            elif isinstance(ev, yaml.CollectionEndEvent):
                depth -= 1
        data = library.read_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise BadBody(f"{problem}{where}") from None
    try:
        return input_guard.load_json(json.dumps(data, default=_iso_text, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise BadBody(str(exc)) from None


def _body() -> tuple[dict[str, Any], str | None]:
    """(definition data, name or None) from a YAML body, ``{"name", "definition"}``,
    ``{"library": name}`` or a bare definition object."""
    if request.mimetype in YAML_TYPES:
        data = _yaml(request.get_data(as_text=True))
        if not isinstance(data, dict):
            raise BadBody("the YAML must be a journey definition (a mapping with id, steps)")
        return data, request.args.get("name")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadBody(
            'send a YAML definition (Content-Type: application/yaml) or JSON: {"name", '
            '"definition"} or {"library": "<name>"}'
        )
    if "library" in body:
        name = str(body["library"])
        if name not in library.names():
            raise BadBody(f"no ready-made journey {name!r}; there are {', '.join(library.names())}")
        data = library.read_yaml((library.FOLDER / f"{name}.yaml").read_text(encoding="utf-8"))
        return data, str(body.get("name") or name)
    if "definition" in body:
        data = body["definition"]
        if not isinstance(data, dict):
            raise BadBody("definition: a journey definition object is required")
        return data, body.get("name")
    if "steps" in body:
        return body, None
    raise BadBody('definition: a journey definition object is required ({"definition": {...}})')


def _journey_or_404(journey_id: int) -> Journey:
    j = g.session.get(Journey, journey_id)
    if j is None:
        raise lifecycle.NotFound(f"no journey {journey_id}")
    return j


@bp.get("/journeys")
@described("journeys", "List the journeys")
def list_journeys() -> ResponseReturnValue:
    return jsonify(reports.list_journeys(g.session))


@bp.post("/journeys")
@described("journeys", "Create a journey draft (JSON, YAML or from the library)", status=201)
def create_journey() -> ResponseReturnValue:
    data, name = _body()
    name = str(name or data.get("name") or data.get("id") or "")
    if not name or len(name) > 100:
        return error(422, "name: 1 to 100 characters")
    allow = current_app.config["SETTINGS"].webhook_allow
    return jsonify(lifecycle.create(g.session, data, name, allow)), 201


@bp.get("/journeys/<id:journey_id>")
@described("journeys", "A journey with its versions", errors=(404,))
def get_journey(journey_id: int) -> ResponseReturnValue:
    found = reports.journey_with_versions(g.session, journey_id)
    return jsonify(found) if found else error(404, f"no journey {journey_id}")


@bp.put("/journeys/<id:journey_id>")
@described("journeys", "Replace a journey's draft", errors=(404, 409))
def edit_draft(journey_id: int) -> ResponseReturnValue:
    j = _journey_or_404(journey_id)
    data, _ = _body()
    allow = current_app.config["SETTINGS"].webhook_allow
    return jsonify(lifecycle.edit_draft(g.session, j, data, allow))


@bp.post("/journeys/<id:journey_id>/<action>")
@described(
    "journeys",
    "Publish, pause, resume or stop a journey",
    errors=(404, 409),
    path={"action": "publish | pause | resume | stop"},
)
def change_status(journey_id: int, action: str) -> ResponseReturnValue:
    settings = current_app.config["SETTINGS"]
    return jsonify(lifecycle.change_status(settings, g.session, journey_id, action))


@bp.delete("/journeys/<id:journey_id>/contacts/<id:contact_id>")
@described("journeys", "Take one contact out of a journey", errors=(404, 409))
def remove_contact(journey_id: int, contact_id: int) -> ResponseReturnValue:
    settings = current_app.config["SETTINGS"]
    return jsonify(removed=lifecycle.remove_contact(settings, g.session, journey_id, contact_id))


@bp.get("/journeys/<id:journey_id>/stats")
@described("journeys", "Per-step stats of a published version (?version=)", errors=(404, 409))
def journey_stats(journey_id: int) -> ResponseReturnValue:
    j = _journey_or_404(journey_id)
    versions = [v.version for v in reports.versions(g.session, j.id)]
    if not versions:
        return error(409, "the journey has not been published: no one has entered it")
    version = int_arg("version", j.version, 1, input_guard.MAX_ID)
    if version not in versions:
        return error(404, f"no version {version}; there are {versions}")
    goal = goal_arg()
    counted = reports.step_stats(g.session, j.id, version, settings(), goal)
    end_reads()
    return jsonify(journey_id=j.id, version=version, versions=versions, **counted)


@bp.get("/journeys/<id:journey_id>/optimisation")
@described(
    "journeys", "A journey's bandit splits: the weights in force and every change", errors=(404,)
)
def journey_optimisation(journey_id: int) -> ResponseReturnValue:
    """Every change of the journey's bandit split weights, newest first."""
    j = _journey_or_404(journey_id)
    limit = int_arg("limit", 200, 1, 1000)
    return jsonify(
        journey_id=j.id,
        weights=bandits.current_weights(g.session, j.id),
        changes=bandits.optimisation_log(g.session, j.id, limit),
    )


@bp.get("/contacts/<id:contact_id>/journeys")
@described("journeys", "A contact's enrollments", errors=(404,))
def contact_journeys(contact_id: int) -> ResponseReturnValue:
    found = reports.contact_enrollments(g.session, contact_id)
    if found is None:
        return error(404, f"no contact {contact_id}")
    return jsonify(enrollments=found)
