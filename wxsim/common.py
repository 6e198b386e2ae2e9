"""What every simulated API call goes through: injected faults, the access token, the JSON body,
and WeChat's way of answering errors (HTTP 200 with ``{errcode, errmsg}``)."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from typing import Any

from flask import Response, current_app, g, jsonify, request

from wxsim.entities import Token
from wxsim.errors import ApiError
from wxsim.state import SimState


def sim():  # -> wxsim.app.Simulator (not imported: app imports the blueprints)
    return current_app.extensions["wxsim"]


def state() -> SimState:
    return sim().state


def api(platform: str, *, auth: bool = True, post: bool | None = None) -> Callable:
    """Decorate a view that returns a JSON-able dict (or raises ApiError).

    ``platform``: oa | wecom (which error table, which tokens). ``auth``: require a valid
    ``access_token`` (then ``g.token`` holds it). ``post``: True for POST-only APIs (OA answers
    43002 to a GET), False for GET-only, None for either.
    """

    def decorate(view: Callable[..., dict[str, Any]]) -> Callable[..., Response]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            st = state()
            key = st.call_started(platform, request.path)  # in flight until answered
            try:
                return answer(st, *args, **kwargs)
            finally:
                st.call_finished(key)

        def answer(st: SimState, *args: Any, **kwargs: Any) -> Response:
            arrived = st.now()  # calls are logged at arrival, as the platform counts them
            fault, latency = st.draw_fault(platform, request.path)
            if latency:
                time.sleep(latency)
            if fault == "http500":
                st.log_call(platform, request.path, None, arrived)
                return Response("<html><body>500 Internal Server Error</body></html>", 500)
            g.platform = platform
            try:
                if fault == "busy":
                    raise ApiError(-1)
                if fault == "rate":
                    raise ApiError(45009)
                if post is True and request.method != "POST":
                    raise ApiError(43002)
                if post is False and request.method != "GET":
                    raise ApiError(43001)
                if auth:
                    g.token = st.check_token(platform, request.args.get("access_token"))
                result = view(*args, **kwargs)
            except ApiError as exc:
                result = exc.body(platform)
            st.log_call(platform, request.path, int(result.get("errcode", 0)), arrived)
            return jsonify(result)

        return wrapper

    return decorate


def ok(**extra: Any) -> dict[str, Any]:
    return {"errcode": 0, "errmsg": "ok", **extra}


def body() -> dict[str, Any]:
    """The request's JSON body, whatever its Content-Type (WeChat ignores it)."""
    platform = g.get("platform", "oa")
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise ApiError(44002 if platform == "oa" else 40058, "empty post data")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        if platform == "oa":
            raise ApiError(47001) from None
        raise ApiError(40058, "Warning: wrong json format.") from None
    if not isinstance(data, dict):
        raise ApiError(47001 if platform == "oa" else 40058, "body must be a JSON object")
    return data


def current_token() -> Token:
    return g.token


def utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))
