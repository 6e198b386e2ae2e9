"""GET /healthz: no auth; is the database reachable, is Redis?"""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue

from bot.core import queue
from bot.core.db import get_engine

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    settings = current_app.config["SETTINGS"]
    checks = {}
    try:
        with get_engine(settings.database_url).connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        checks["database"] = {"ok": True}
    except Exception as exc:
        checks["database"] = {"ok": False, "error": type(exc).__name__}
    try:
        queue.get_redis(settings).ping()
        checks["redis"] = {"ok": True, "queued": sum(len(q) for q in queue.all_queues(settings))}
    except Exception as exc:
        checks["redis"] = {"ok": False, "error": type(exc).__name__}
    # Callbacks keep working without Redis (the outbox holds the work): degraded, not down.
    status = (
        "ok"
        if all(c["ok"] for c in checks.values())
        else ("degraded" if checks["database"]["ok"] else "down")
    )
    return jsonify(status=status, **checks), (200 if checks["database"]["ok"] else 503)
