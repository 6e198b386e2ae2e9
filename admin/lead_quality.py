"""/api/reports/lead-quality: which channels, campaigns, reps and journeys bring leads that
sales accept (JSON, or CSV with ?format=csv)."""

from __future__ import annotations

from flask import Response, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue

from admin.common import Invalid, api_blueprint
from admin.openapi import described
from bot.core.models import utcnow
from bot.sales import lead_quality, returns

bp = api_blueprint("lead_quality", __name__)


@bp.get("/reports/lead-quality")
@described("reports", "Lead quality by channel, campaign, rep or journey (JSON or ?format=csv)")
def report() -> ResponseReturnValue:
    by = request.args.get("by") or "channel"
    if by not in lead_quality.GROUPINGS:
        raise Invalid("invalid query string", {"by": f"one of {', '.join(lead_quality.GROUPINGS)}"})
    fmt = request.args.get("format") or "json"
    if fmt not in ("json", "csv"):
        raise Invalid("invalid query string", {"format": "json or csv"})
    tz = current_app.config["SETTINGS"].timezone
    try:
        start, end = lead_quality.period(
            request.args.get("from"), request.args.get("to"), tz, utcnow().date()
        )
    except ValueError as exc:
        raise Invalid("invalid query string", {"from": str(exc)}) from None
    rows = lead_quality.lead_quality(g.session, start, end, by)
    if fmt == "csv":
        labels = [r.label for r in returns.list_reasons(g.session)]
        return Response(
            lead_quality.as_csv(rows, labels),
            mimetype="text/csv",
            headers={"Content-Disposition": f'attachment; filename="lead-quality-{by}.csv"'},
        )
    return jsonify(by=by, start=start.isoformat(), end=end.isoformat(), rows=rows)
