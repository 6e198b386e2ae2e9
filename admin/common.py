"""What every /api/ blueprint shares: bearer-token auth, a DB session per request, errors."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Any, TypeVar

from flask import Blueprint, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ValidationError
from sqlmodel import Session

from bot.core import input_guard, redact
from bot.core.config import Settings
from bot.core.db import get_engine
from bot.messaging import reports as send_reports

M = TypeVar("M", bound=BaseModel)


class Invalid(Exception):
    """A 422: ``fields`` maps each bad field to what is wrong with it."""

    def __init__(self, reason: str, fields: dict[str, str]):
        self.reason, self.fields = reason, fields
        super().__init__(reason)


def api_blueprint(name: str, import_name: str) -> Blueprint:
    bp = Blueprint(name, import_name, url_prefix="/api")
    bp.before_request(_authenticate)
    bp.teardown_request(_close_session)
    bp.register_error_handler(Invalid, _invalid)
    return bp


def error(status: int, reason: str, **extra: Any) -> ResponseReturnValue:
    """A JSON error answer; its text goes through the redaction, as every error out does."""
    extra = {k: redact.text(v) if isinstance(v, str) else v for k, v in extra.items()}
    return jsonify(error=redact.text(reason), **extra), status


def _invalid(exc: Invalid) -> ResponseReturnValue:
    return error(422, exc.reason, fields=exc.fields)


def _authenticate() -> ResponseReturnValue | None:
    token = current_app.config["SETTINGS"].api_token
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
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


def _close_session(exc: BaseException | None) -> None:
    session = g.pop("session", None)
    if session is not None:
        if exc is not None:
            session.rollback()
        session.close()


def end_reads() -> None:
    """End the request session's transaction before calling code that opens its own: on
    SQLite a transaction holds the writer lock, and a second one in the same thread would
    wait for it."""
    g.session.commit()


def json_object() -> bytes:
    """The raw body, once it is known to be a JSON object; Invalid (422) otherwise."""
    if not isinstance(request.get_json(silent=True), dict):
        raise Invalid("body must be a JSON object", {})
    return request.get_data(cache=True)


def field_errors(exc: ValidationError) -> dict[str, str]:
    fields: dict[str, str] = {}
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if not loc:  # a whole-object check names its field first: "keywords: ..."
            loc, _, msg = msg.partition(": ")
        fields[loc or "body"] = msg
    return fields


def validated(model: type[M], what: str) -> M:
    """The JSON body as ``model``, or Invalid (422) naming every bad field. Strict: a number
    is never taken from text or true/false, nor text from a number."""
    raw = json_object()
    try:
        return model.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        raise Invalid(f"invalid {what}", field_errors(exc)) from None


def int_arg(name: str, default: int | None, low: int, high: int) -> int | None:
    """A whole-number query parameter (plain ASCII digits) from ``low`` to ``high``."""
    raw = request.args.get(name)
    if raw in (None, ""):
        return default
    value = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 19 else None
    if value is None or not low <= value <= high:
        raise Invalid("invalid query string", {name: f"a whole number from {low} to {high}"})
    return value


def id_arg(name: str) -> int | None:
    """An id query parameter such as ``?before=``: 1 to MAX_ID, or None when absent."""
    return int_arg(name, None, 1, input_guard.MAX_ID)


def time_arg(name: str) -> datetime | None:
    """An ISO 8601 time with its zone (``2026-12-01T00:00:00+08:00``, or ``...Z``) as a query
    parameter; None when absent. A "+" sent unescaped arrives as a space and is read as "+"."""
    raw = request.args.get(name)
    if raw in (None, ""):
        return None
    try:
        value = datetime.fromisoformat(raw.strip().replace(" ", "+"))
        if value.tzinfo is None:
            raise ValueError("no zone")
        return value.astimezone(UTC)  # OverflowError at the ends of the calendar
    except (ValueError, OverflowError):
        raise Invalid(
            "invalid query string",
            {name: "an ISO 8601 time with a zone, e.g. 2026-12-01T08:00+08:00"},
        ) from None


def text_arg(name: str, most: int) -> str | None:
    """A plain text query parameter of at most ``most`` characters; None when absent."""
    raw = request.args.get(name)
    if raw in (None, ""):
        return None
    value = raw.strip()
    if not value or len(value) > most or not value.isprintable():
        raise Invalid("invalid query string", {name: f"1 to {most} printable characters"})
    return value


def goal_arg() -> str | None:
    """``?goal=``: the event type a report counts as a conversion (e.g. h5.form_submitted)."""
    goal = text_arg("goal", 64)
    if not send_reports.valid_goal(goal):
        raise Invalid("invalid query string", {"goal": "an event type such as h5.form_submitted"})
    return goal


def settings() -> Settings:
    """This app's settings."""
    return current_app.config["SETTINGS"]
