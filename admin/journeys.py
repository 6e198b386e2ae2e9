"""/api/journeys and /api/contacts/<id>/journeys: create (inline or from the library), publish,
pause and resume journeys; a contact's enrollments."""

from __future__ import annotations

import sqlalchemy as sa
from flask import g, jsonify, request
from flask.typing import ResponseReturnValue

import journeys
from admin.common import api_blueprint, error
from bot.models import Contact, Enrollment, Journey, utcnow
from journeys import library

bp = api_blueprint("journeys", __name__)

TRANSITIONS = {  # action: (allowed from, to)
    "publish": (("draft", "paused", "published"), "published"),
    "pause": (("published",), "paused"),
    "resume": (("paused",), "published"),
}


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def journey_json(j: Journey) -> dict:
    return {
        "id": j.id,
        "name": j.name,
        "version": j.version,
        "status": j.status,
        "published_at": _iso(j.published_at),
        "definition": j.definition,
    }


def enrollment_json(e: Enrollment, name: str | None) -> dict:
    return {
        "id": e.id,
        "journey_id": e.journey_id,
        "journey": name,
        "version": e.version,
        "status": e.status,
        "step": e.step,
        "wake_at": _iso(e.wake_at),
        "started_at": _iso(e.started_at),
        "ended_at": _iso(e.ended_at),
        "answers": (e.state or {}).get("answers", {}),
    }


def _problems(problems: list[journeys.Problem]) -> ResponseReturnValue:
    return error(
        422,
        "the journey definition is not valid",
        problems=[
            {"step": p.step, "field": p.field, "message": p.message, "text": str(p)}
            for p in problems
        ],
    )


@bp.post("/journeys")
def create_journey() -> ResponseReturnValue:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return error(422, 'send JSON: {"name", "definition"} or {"library": "<name>"}')
    if "library" in body:
        name = str(body["library"])
        if name not in library.names():
            return error(422, f"no ready-made journey {name!r}", library=library.names())
        data = library.read_yaml((library.FOLDER / f"{name}.yaml").read_text(encoding="utf-8"))
        name = str(body.get("name") or name)
    else:
        data = body.get("definition")
        if not isinstance(data, dict):
            return error(422, "definition: a journey definition object is required")
        name = str(body.get("name") or data.get("id") or "")
    if not name or len(name) > 100:
        return error(422, "name: 1 to 100 characters")
    problems = journeys.validate(data)
    if problems:
        return _problems(problems)
    if g.session.execute(sa.select(Journey.id).where(Journey.name == name)).scalar() is not None:
        return error(409, f"a journey named {name!r} exists")
    j = Journey(name=name, version=int(data.get("version") or 1), definition=data, status="draft")
    g.session.add(j)
    g.session.commit()
    return jsonify(journey_json(j)), 201


@bp.get("/journeys/<int:journey_id>")
def get_journey(journey_id: int) -> ResponseReturnValue:
    j = g.session.get(Journey, journey_id)
    if j is None:
        return error(404, f"no journey {journey_id}")
    return jsonify(journey_json(j))


@bp.post("/journeys/<int:journey_id>/<action>")
def change_status(journey_id: int, action: str) -> ResponseReturnValue:
    if action not in TRANSITIONS:
        return error(404, f"no action {action!r}; one of {', '.join(TRANSITIONS)}")
    j = g.session.get(Journey, journey_id)
    if j is None:
        return error(404, f"no journey {journey_id}")
    allowed, to = TRANSITIONS[action]
    if j.status not in allowed:
        return error(409, f"cannot {action} a {j.status} journey")
    if action == "publish":
        problems = journeys.validate(j.definition)
        if problems:
            return _problems(problems)
        j.published_at = j.published_at or utcnow()
    j.status = to
    g.session.add(j)
    g.session.commit()
    return jsonify(journey_json(j))


@bp.get("/contacts/<int:contact_id>/journeys")
def contact_journeys(contact_id: int) -> ResponseReturnValue:
    if g.session.get(Contact, contact_id) is None:
        return error(404, f"no contact {contact_id}")
    rows = g.session.execute(
        sa.select(Enrollment, Journey.name)
        .join(Journey, Journey.id == Enrollment.journey_id)
        .where(Enrollment.contact_id == contact_id)
        .order_by(Enrollment.id)
    ).all()
    return jsonify(enrollments=[enrollment_json(e, name) for e, name in rows])
