"""The JSON API under /api/, guarded by ``Authorization: Bearer $YUCHI_API_TOKEN``."""

from __future__ import annotations

import hmac
from typing import Any

from flask import Blueprint, abort, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import ValidationError
from sqlmodel import Session

from bot import autoreply, store
from bot.db import get_engine
from bot.models import ReplyRule

bp = Blueprint("api", __name__, url_prefix="/api")


def _error(status: int, reason: str, **extra: Any) -> ResponseReturnValue:
    return jsonify(error=reason, **extra), status


@bp.before_request
def _authenticate() -> ResponseReturnValue | None:
    token = current_app.config["SETTINGS"].api_token
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        response = jsonify(
            error="unauthorized", reason="send Authorization: Bearer <YUCHI_API_TOKEN>"
        )
        response.status_code = 401
        response.headers["WWW-Authenticate"] = 'Bearer realm="yuchi"'
        return response
    g.session = Session(
        get_engine(current_app.config["SETTINGS"].database_url), expire_on_commit=False
    )
    return None


@bp.teardown_request
def _close_session(exc: BaseException | None) -> None:
    session = g.pop("session", None)
    if session is not None:
        if exc is not None:
            session.rollback()
        session.close()


def _int_arg(name: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.args.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        abort(422, description=f"{name} must be an integer")
    if not low <= value <= high:
        abort(422, description=f"{name} must be between {low} and {high}")
    return value


# --- contacts and timelines ---------------------------------------------------------------


@bp.get("/contacts")
def list_contacts() -> ResponseReturnValue:
    limit = _int_arg("limit", 50, 1, 200)
    before = _int_arg("before", None, 1, 2**63)
    identity = next(
        ((k, request.args[k]) for k in store.IDENTITY_KINDS if request.args.get(k)), None
    )
    contacts, next_before = store.find_contacts(g.session, identity, limit, before)
    return jsonify(contacts=contacts, next_before=next_before)


@bp.get("/contacts/<int:contact_id>")
def get_contact(contact_id: int) -> ResponseReturnValue:
    contact = store.contact_json(g.session, contact_id)
    if contact is None:
        return _error(404, f"no contact {contact_id}")
    return jsonify(contact)


@bp.get("/contacts/<int:contact_id>/events")
def contact_events(contact_id: int) -> ResponseReturnValue:
    limit = _int_arg("limit", 50, 1, 200)
    before = _int_arg("before", None, 1, 2**63)
    if store.contact_json(g.session, contact_id, with_tags=False) is None:
        return _error(404, f"no contact {contact_id}")
    events, next_before = store.timeline(g.session, contact_id, limit, before)
    return jsonify(events=events, next_before=next_before)


# --- reply rules ---------------------------------------------------------------------------


def _validated() -> autoreply.ReplyRuleIn | ResponseReturnValue:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return _error(422, "body must be a JSON object", fields={})
    try:
        return autoreply.ReplyRuleIn.model_validate(body)
    except ValidationError as exc:
        fields: dict[str, str] = {}
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            if not loc:  # a whole-rule check names its field first: "keywords: ..."
                loc, _, msg = err["msg"].removeprefix("Value error, ").partition(": ")
                fields[loc] = msg
            else:
                fields[loc] = err["msg"]
        return _error(422, "invalid reply rule", fields=fields)


def _rule_or_404(rule_id: int) -> ReplyRule:
    row = g.session.get(ReplyRule, rule_id)
    if row is None:
        abort(404, description=f"no reply rule {rule_id}")
    return row


@bp.get("/replies")
def list_replies() -> ResponseReturnValue:
    return jsonify(replies=[autoreply.rule_to_json(r) for r in autoreply.list_rules(g.session)])


@bp.get("/replies/<int:rule_id>")
def get_reply(rule_id: int) -> ResponseReturnValue:
    return jsonify(autoreply.rule_to_json(_rule_or_404(rule_id)))


@bp.post("/replies")
def create_reply() -> ResponseReturnValue:
    data = _validated()
    if not isinstance(data, autoreply.ReplyRuleIn):
        return data
    try:
        row = autoreply.create_rule(g.session, data)
    except autoreply.DuplicateName:
        return _error(422, "invalid reply rule", fields={"name": "a rule with this name exists"})
    g.session.commit()
    autoreply.invalidate()
    return jsonify(autoreply.rule_to_json(row)), 201


@bp.put("/replies/<int:rule_id>")
def update_reply(rule_id: int) -> ResponseReturnValue:
    row = _rule_or_404(rule_id)
    data = _validated()
    if not isinstance(data, autoreply.ReplyRuleIn):
        return data
    try:
        autoreply.update_rule(g.session, row, data)
    except autoreply.DuplicateName:
        return _error(422, "invalid reply rule", fields={"name": "a rule with this name exists"})
    g.session.commit()
    autoreply.invalidate()
    return jsonify(autoreply.rule_to_json(row))


@bp.delete("/replies/<int:rule_id>")
def delete_reply(rule_id: int) -> ResponseReturnValue:
    autoreply.delete_rule(g.session, _rule_or_404(rule_id))
    g.session.commit()
    autoreply.invalidate()
    return "", 204
