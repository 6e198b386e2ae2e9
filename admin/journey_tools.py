"""/api/journeys/<id>/preview and /forecast: try a journey's draft before publishing it.

Both read the journey's ``definition`` (the editable draft) and write nothing: the preview
runs one simulated contact through it in accelerated time (bot/automation/preview.py), the
forecast replays the stored history of real contacts (bot/automation/forecast.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, TypeVar

from flask import current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field

from admin.common import api_blueprint, error, validated
from admin.journeys import answer_lifecycle_errors
from admin.openapi import described
from bot.automation import forecast as journey_forecast
from bot.automation import lifecycle, preview_input
from bot.automation import preview as journey_preview
from bot.core.models import utcnow

bp = api_blueprint("journey_tools", __name__)
answer_lifecycle_errors(bp)

M = TypeVar("M", bound=BaseModel)


class PreviewBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    replies: list[preview_input.ScriptedReply] = Field(default_factory=list, max_length=100)
    contact: preview_input.PreviewContact | None = None
    start: datetime | None = None  # without a zone: the journey's
    max_days: int = Field(default=journey_preview.DEFAULT_MAX_DAYS, ge=1, le=365)


class ForecastBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days: int = Field(default=30, ge=1, le=365)
    until: datetime | None = None  # default now


def _body(model: type[M], what: str) -> M:
    """The optional JSON body: none at all means every default."""
    if not request.get_data(cache=True).strip():
        return model()
    return validated(model, what)


@bp.post("/journeys/<id:journey_id>/preview")
@described(
    "journeys", "Preview the draft with one simulated contact", json=PreviewBody, errors=(404,)
)
def preview_journey(journey_id: int) -> ResponseReturnValue:
    d = lifecycle.draft(g.session, journey_id)
    body = _body(PreviewBody, "preview request")
    try:
        transcript = journey_preview.preview(
            d,
            replies=body.replies,
            contact=body.contact,
            start=body.start,
            settings=current_app.config["SETTINGS"],
            max_days=body.max_days,
        )
    except preview_input.PreviewError as exc:
        return error(422, "cannot preview", reason=str(exc))
    return jsonify(transcript.to_json())


@bp.post("/journeys/<id:journey_id>/forecast")
@described(
    "journeys", "Forecast the draft over the stored history", json=ForecastBody, errors=(404,)
)
def forecast_journey(journey_id: int) -> ResponseReturnValue:
    d = lifecycle.draft(g.session, journey_id)
    body = _body(ForecastBody, "forecast request")
    now = utcnow()
    until = body.until or now
    if until.tzinfo is None:
        return error(422, "invalid forecast request", fields={"until": "give a time zone"})
    until = min(until, now)
    result = journey_forecast.forecast(
        g.session,
        d,
        since=until - timedelta(days=body.days),
        until=until,
        now=now,
        settings=current_app.config["SETTINGS"],
    )
    g.session.rollback()  # only reads; make sure nothing is left to commit
    payload: dict[str, Any] = {"days": body.days, **result.to_json()}
    return jsonify(payload)
