"""create_app(): the only place blueprints are registered."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from flask import Flask, Response, jsonify, make_response, request
from flask.json.provider import DefaultJSONProvider
from flask.sessions import NullSession, SessionInterface
from werkzeug.exceptions import HTTPException

from bot.core import input_guard, redact
from bot.core.config import Settings, load_settings, warn_about_defaults
from journeys import words


class GuardedJSON(DefaultJSONProvider):
    """JSON bodies through input_guard.load_json: too deep, NaN or unfit characters are a
    ValueError (so ``get_json`` answers 400, or None when silent) instead of a 500."""

    def loads(self, s: str | bytes, **kwargs: object) -> object:
        return input_guard.load_json(s, **kwargs)


def _register_blueprints(app: Flask) -> None:
    from admin.api import bp as api_bp
    from admin.api_docs import bp as api_docs_bp
    from admin.campaigns import bp as campaigns_bp
    from admin.channels import bp as channels_bp
    from admin.events import bp as events_bp
    from admin.journey_tools import bp as journey_tools_bp
    from admin.journeys import bp as journeys_bp
    from admin.lead_quality import bp as lead_quality_bp
    from admin.lead_reasons import bp as lead_reasons_bp
    from admin.leads import bp as leads_bp
    from admin.media import bp as media_bp
    from admin.menus import bp as menus_bp
    from admin.messages import bp as messages_bp
    from admin.quick_replies import bp as quick_replies_bp
    from admin.scores import bp as scores_bp
    from admin.segments import bp as segments_bp
    from admin.tags import bp as tags_bp
    from admin.webhooks import bp as webhooks_bp
    from bot.health import bp as health_bp
    from h5.links import bp as tracked_links_bp
    from h5.pages import bp as h5_bp
    from h5.rewards import bp as h5_rewards_bp
    from handlers.oa import bp as oa_bp
    from handlers.wecom import bp as wecom_bp
    from sidebar.api import bp as sidebar_api_bp
    from sidebar.pages import bp as sidebar_bp

    app.register_blueprint(health_bp)
    app.register_blueprint(oa_bp)
    app.register_blueprint(wecom_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(channels_bp)
    app.register_blueprint(leads_bp)
    app.register_blueprint(lead_reasons_bp)
    app.register_blueprint(lead_quality_bp)
    app.register_blueprint(quick_replies_bp)
    app.register_blueprint(messages_bp)
    app.register_blueprint(media_bp)
    app.register_blueprint(tags_bp)
    app.register_blueprint(scores_bp)
    app.register_blueprint(segments_bp)
    app.register_blueprint(journeys_bp)
    app.register_blueprint(journey_tools_bp)
    app.register_blueprint(webhooks_bp)
    app.register_blueprint(menus_bp)
    app.register_blueprint(events_bp)
    app.register_blueprint(api_docs_bp)
    app.register_blueprint(sidebar_bp)
    app.register_blueprint(sidebar_api_bp)
    app.register_blueprint(campaigns_bp)
    app.register_blueprint(tracked_links_bp)
    app.register_blueprint(h5_bp)
    app.register_blueprint(h5_rewards_bp)


class _NoCookieSession(SessionInterface):
    """Yuchi keeps nothing in Flask's signed-cookie session (the sidebar and the campaign
    pages sign their own cookies): no request opens or saves one."""

    def open_session(self, app: Flask, request: object) -> NullSession:
        return NullSession()

    def save_session(self, app: Flask, session: object, response: Response) -> None:
        return None


SIDEBAR_ERRORS = {
    404: "找不到这个页面。",
    405: "不支持这种请求方式。",
    413: "提交的内容太大。",
    400: "请求无效。",
}


def create_app(config: Mapping[str, str] | Settings | None = None) -> Flask:
    """Build the app. ``config`` is a Settings object, or environment-style overrides."""
    settings = config if isinstance(config, Settings) else load_settings(overrides=config)
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    redact.install()
    warn_about_defaults(settings)

    app = Flask(__name__)
    app.json = GuardedJSON(app)
    app.session_interface = _NoCookieSession()
    app.url_map.converters["id"] = input_guard.IdConverter
    app.config.update(
        SETTINGS=settings,
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        JSON_AS_ASCII=False,
    )
    app.json.ensure_ascii = False  # Chinese stays readable in API responses
    app.before_request(_refuse_unfit_input)
    words.initialize()

    _register_blueprints(app)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        reason = redact.text(exc.description or exc.name)
        if exc.code == 413:
            reason = f"request body larger than {settings.max_body_bytes} bytes"
        if request.path.startswith("/sidebar/"):
            return _sidebar_error(exc.code or 500)
        if request.path.startswith("/api/") or request.path == "/healthz":
            response = jsonify(error=exc.name, reason=reason)
            response.status_code = exc.code or 500
            return response
        return Response(f"{reason}\n", status=exc.code or 500, mimetype="text/plain")

    return app


def _sidebar_error(status: int) -> Response:
    """The sidebar's errors are in Chinese: a page, or JSON under /sidebar/api/."""
    from sidebar.guard import json_error, page_error

    answer = json_error if request.path.startswith("/sidebar/api/") else page_error
    return make_response(answer(status, SIDEBAR_ERRORS.get(status, "请求无法处理。")))


def _refuse(status: int, summary: str, field: str, problem: str) -> Response:
    if request.path.startswith("/sidebar/"):
        return _sidebar_error(status)
    if request.path.startswith("/api/"):
        response = jsonify(error=summary, fields={field: problem})
        response.status_code = status
        return response
    return Response(f"{summary}: {field}: {problem}\n", status=status, mimetype="text/plain")


def _refuse_unfit_input() -> Response | None:
    """Before any route: a query string or path with characters no route stores is a 400; on
    /api/, a JSON body that does not decode is a 400 and one too deep or holding unfit
    characters a 422, each naming what is wrong."""
    unfit = input_guard.unfit_query(request.args.items(multi=True))
    if unfit is not None:
        return _refuse(400, "invalid query string", unfit[0], unfit[1])
    problem = input_guard.unfit_text(request.path)
    if problem is not None:
        return _refuse(400, "invalid path", "path", problem)
    if not (request.path.startswith("/api/") and request.is_json):
        return None
    raw = request.get_data(cache=True)
    if not raw.strip():
        return None
    try:
        input_guard.load_json(raw)
    except input_guard.UnfitBody as exc:
        return _refuse(422, "invalid body", exc.field or "body", exc.message)
    except ValueError as exc:
        return _refuse(400, "the body is not valid JSON", "body", str(exc))
    return None
