"""create_app(): the only place blueprints are registered."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from bot.core.config import Settings, load_settings, warn_about_defaults
from journeys import words


def create_app(config: Mapping[str, str] | Settings | None = None) -> Flask:
    """Build the app. ``config`` is a Settings object, or environment-style overrides."""
    if isinstance(config, Settings):
        settings = config
    else:
        settings = load_settings({**os.environ, **(config or {})})
    logging.basicConfig(
        level=os.environ.get("YUCHI_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    warn_about_defaults(settings)

    app = Flask(__name__)
    app.config.update(
        SETTINGS=settings,
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        JSON_AS_ASCII=False,
    )
    app.json.ensure_ascii = False  # Chinese stays readable in API responses
    words.initialize()

    from admin.api import bp as api_bp
    from admin.channels import bp as channels_bp
    from admin.journey_tools import bp as journey_tools_bp
    from admin.journeys import bp as journeys_bp
    from admin.leads import bp as leads_bp
    from admin.messages import bp as messages_bp
    from admin.scores import bp as scores_bp
    from admin.tags import bp as tags_bp
    from bot.health import bp as health_bp
    from handlers.oa import bp as oa_bp
    from handlers.wecom import bp as wecom_bp

    app.register_blueprint(health_bp)
    app.register_blueprint(oa_bp)
    app.register_blueprint(wecom_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(channels_bp)
    app.register_blueprint(leads_bp)
    app.register_blueprint(messages_bp)
    app.register_blueprint(tags_bp)
    app.register_blueprint(scores_bp)
    app.register_blueprint(journeys_bp)
    app.register_blueprint(journey_tools_bp)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        reason = exc.description or exc.name
        if exc.code == 413:
            reason = f"request body larger than {settings.max_body_bytes} bytes"
        if request.path.startswith("/api/") or request.path == "/healthz":
            response = jsonify(error=exc.name, reason=reason)
            response.status_code = exc.code or 500
            return response
        return Response(f"{reason}\n", status=exc.code or 500, mimetype="text/plain")

    return app
