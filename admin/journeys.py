"""/api/journeys and /api/contacts/<id>/journeys: create and edit drafts (JSON or YAML, or from
the library), publish versions, pause, resume and stop, take one contact out, per-step stats;
a contact's enrollments."""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from flask import current_app, g, jsonify, request
from flask.typing import ResponseReturnValue

import journeys
from admin.common import api_blueprint, end_reads, error, int_arg
from bot.automation import definitions as journey_definitions
from bot.automation import enroll as journey_enroll
from bot.automation import wake_jobs as journey_wake_jobs
from bot.automation import webhook_endpoints
from bot.contacts import identity as contacts
from bot.core import input_guard, queue
from bot.core.models import (
    Contact,
    ContactTag,
    CorpTag,
    Enrollment,
    InterestWord,
    Journey,
    JourneyVersion,
    Message,
    ReplyRule,
    TagRule,
    utcnow,
)
from journeys import library, stats
from journeys.webhook_urls import Allow

bp = api_blueprint("journeys", __name__)

TRANSITIONS = {  # action: (allowed from, to)
    "publish": (("draft", "paused", "published", "stopped"), "published"),
    "pause": (("published",), "paused"),
    "resume": (("paused",), "published"),
    "stop": (("published", "paused"), "stopped"),
}
DEFAULT_WORDS = Path(__file__).resolve().parent.parent / "bot" / "defaults" / "interest_words.yaml"
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")


class BadBody(ValueError):
    pass


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


def journey_json(j: Journey, versions: list[JourneyVersion] | None = None) -> dict:
    out = {
        "id": j.id,
        "name": j.name,
        "version": j.version,
        "status": j.status,
        "published_at": _iso(j.published_at),
        "definition": j.definition,
    }
    if versions is not None:
        out["versions"] = [
            {"version": v.version, "published_at": _iso(v.published_at)} for v in versions
        ]
    return out


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
        "reason": e.reason,
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


def _webhook_allow() -> Allow:
    return current_app.config["SETTINGS"].webhook_allow


def known_tags() -> set[str]:
    """Every tag something can give a contact: tags in use, tag rules, reply rules, the interest
    dictionary (and the default one), WeCom's corp tags, and every journey's own add_tag."""
    session = g.session
    found = set(session.execute(sa.select(ContactTag.tag).distinct()).scalars())
    found |= set(session.execute(sa.select(InterestWord.tag).distinct()).scalars())
    found |= set(session.execute(sa.select(CorpTag.name).distinct()).scalars())
    for (tags,) in session.execute(sa.select(TagRule.add_tags)):
        found |= set(tags or [])
    for (tags,) in session.execute(sa.select(ReplyRule.tags)):
        found |= set(tags or [])
    for (data,) in session.execute(sa.select(Journey.definition)):
        found |= journeys.added_tags(data)
    return found | _default_interest_tags()


@functools.cache
def _default_interest_tags() -> frozenset[str]:
    data = yaml.safe_load(DEFAULT_WORDS.read_text(encoding="utf-8")) or {}
    return frozenset(str(t) for t in (data.get("interest_words") or {}).values())


def _journey(journey_id: int) -> Journey | None:
    return g.session.get(Journey, journey_id)


@bp.get("/journeys")
def list_journeys() -> ResponseReturnValue:
    en = Enrollment.__table__.c
    counts = dict(
        g.session.execute(
            sa.select(en.journey_id, sa.func.count())
            .where(en.status.in_(journey_enroll.OPEN))
            .group_by(en.journey_id)
        ).all()
    )
    rows = g.session.execute(sa.select(Journey).order_by(Journey.id)).scalars()
    return jsonify(
        journeys=[
            {
                **{k: v for k, v in journey_json(j).items() if k != "definition"},
                "open": counts.get(j.id, 0),
            }
            for j in rows
        ],
        library=library.names(),
    )


@bp.post("/journeys")
def create_journey() -> ResponseReturnValue:
    try:
        data, name = _body()
    except BadBody as exc:
        return error(422, str(exc))
    name = str(name or data.get("name") or data.get("id") or "")
    if not name or len(name) > 100:
        return error(422, "name: 1 to 100 characters")
    problems = journeys.validate(data, webhook_allow=_webhook_allow())
    if problems:
        return _problems(problems)
    if g.session.execute(sa.select(Journey.id).where(Journey.name == name)).scalar() is not None:
        return error(409, f"a journey named {name!r} exists")
    j = Journey(name=name, version=0, definition=data, status="draft")
    g.session.add(j)
    g.session.commit()
    return jsonify(journey_json(j, [])), 201


def _versions(journey_id: int) -> list[JourneyVersion]:
    return list(
        g.session.execute(
            sa.select(JourneyVersion)
            .where(JourneyVersion.journey_id == journey_id)
            .order_by(JourneyVersion.version)
        ).scalars()
    )


@bp.get("/journeys/<id:journey_id>")
def get_journey(journey_id: int) -> ResponseReturnValue:
    j = _journey(journey_id)
    if j is None:
        return error(404, f"no journey {journey_id}")
    return jsonify(journey_json(j, _versions(j.id)))


@bp.put("/journeys/<id:journey_id>")
def edit_draft(journey_id: int) -> ResponseReturnValue:
    """Replace the draft; contacts see it once it is published (as a new version)."""
    j = _journey(journey_id)
    if j is None:
        return error(404, f"no journey {journey_id}")
    try:
        data, _ = _body()
    except BadBody as exc:
        return error(422, str(exc))
    problems = journeys.validate(data, webhook_allow=_webhook_allow())
    if problems:
        return _problems(problems)
    j.definition = data
    g.session.add(j)
    g.session.commit()
    return jsonify(journey_json(j, _versions(j.id)))


@bp.post("/journeys/<id:journey_id>/<action>")
def change_status(journey_id: int, action: str) -> ResponseReturnValue:
    if action not in TRANSITIONS:
        return error(404, f"no action {action!r}; one of {', '.join(TRANSITIONS)}")
    j = _journey(journey_id)
    if j is None:
        return error(404, f"no journey {journey_id}")
    allowed, to = TRANSITIONS[action]
    was = j.status
    if was not in allowed:
        return error(409, f"cannot {action} a {was} journey")
    extra: dict[str, Any] = {}
    if action == "publish":
        problems = journeys.validate(
            j.definition,
            known_tags=known_tags(),
            webhook_allow=_webhook_allow(),
            known_webhooks=webhook_endpoints.urls(g.session),
        )
        if problems:
            return _problems(problems)
        made = journey_definitions.publish(g.session, j)
        extra["new_version"] = made is not None
    elif action == "stop":
        extra["ended"] = journey_enroll.stop_journey(g.session, j.id, utcnow(), "journey stopped")
    j.status = to
    g.session.add(j)
    g.session.commit()
    settings = current_app.config["SETTINGS"]
    if was == "paused" and to == "published":  # resumed (or published while paused)
        extra["wakes"] = journey_wake_jobs.resume_due(settings, j.id)
    if extra.get("ended"):
        queue.kick_outbox(settings)  # their journey.exited events
    return jsonify({**journey_json(j, _versions(j.id)), **extra})


@bp.delete("/journeys/<id:journey_id>/contacts/<id:contact_id>")
def remove_contact(journey_id: int, contact_id: int) -> ResponseReturnValue:
    if _journey(journey_id) is None:
        return error(404, f"no journey {journey_id}")
    if g.session.get(Contact, contact_id) is None:
        return error(404, f"no contact {contact_id}")
    ended = journey_enroll.exit_all(
        g.session,
        contacts.resolve(g.session, contact_id),  # a merged contact's old id works too
        utcnow(),
        "removed by a marketer",
        journey_id=journey_id,
    )
    g.session.commit()
    if not ended:
        return error(409, f"contact {contact_id} is not in journey {journey_id}")
    queue.kick_outbox(current_app.config["SETTINGS"])  # the journey.exited event
    return jsonify(removed=ended)


_KEY = re.compile(r"^j(\d+):(.+):(\d+):(\d+)$")


def _failed_sends(journey_id: int, version: int) -> dict[str, int]:
    en, m = Enrollment.__table__.c, Message.__table__.c
    ids = {
        r
        for r in g.session.execute(
            sa.select(en.id).where(en.journey_id == journey_id, en.version == version)
        ).scalars()
    }
    failed: dict[str, int] = {}
    keys = g.session.execute(
        sa.select(m.idempotency_key).where(
            m.idempotency_key.like("j%"), m.status.in_(("failed", "unknown"))
        )
    ).scalars()
    for key in keys:
        match = _KEY.match(key or "")
        if match and int(match.group(1)) in ids:
            failed[match.group(2)] = failed.get(match.group(2), 0) + 1
    return failed


@bp.get("/journeys/<id:journey_id>/stats")
def journey_stats(journey_id: int) -> ResponseReturnValue:
    j = _journey(journey_id)
    if j is None:
        return error(404, f"no journey {journey_id}")
    versions = [v.version for v in _versions(j.id)]
    if not versions:
        return error(409, "the journey has not been published: no one has entered it")
    version = int_arg("version", j.version, 1, input_guard.MAX_ID)
    if version not in versions:
        return error(404, f"no version {version}; there are {versions}")
    d = journey_definitions.definition_for(g.session, j.id, version)
    en = Enrollment.__table__.c
    rows = g.session.execute(
        sa.select(en.status, en.step, en.state, en.reason).where(
            en.journey_id == j.id, en.version == version
        )
    )
    paths = (
        stats.Path(r.status, r.step, tuple((r.state or {}).get("history") or ()), r.reason)
        for r in rows
    )
    counted = stats.count(d, paths, _failed_sends(j.id, version))
    end_reads()
    return jsonify(journey_id=j.id, version=version, versions=versions, **counted)


@bp.get("/contacts/<id:contact_id>/journeys")
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
