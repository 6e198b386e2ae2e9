"""The OpenAPI document of /api/, built by spectree from the routes' own pydantic models.

A route is described by one line under its ``@bp.<method>(...)`` line::

    @bp.post("/segments")
    @described("segments", "Save a segment", json=SegmentIn, status=201, errors=(409,))
    def create_segment() -> ResponseReturnValue: ...

``described`` only records the description: the request still runs the route's own code
(``validated(...)`` answers 422 with ``{"error", "fields"}``), so the document changes no
behaviour. tests/integration/test_openapi.py fails for any /api/ route without it, and
for one whose ``json=`` is not the model it reads. Query parameters need no mention: they are
read from the view's source (admin.query_args).
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flask import current_app
from pydantic import BaseModel, ConfigDict
from spectree import Response, SecurityScheme, SecuritySchemeData, SpecTree, Tag
from spectree.plugins.flask_plugin import FlaskPlugin
from spectree.plugins.werkzeug_utils import werkzeug_parse_rule

from admin.query_args import query_parameters
from bot.core import input_guard

F = Callable[..., Any]

TAGS = {  # the document's sections, in this order; a new name works without an entry
    "contacts": "Contacts, their identities and timelines",
    "tags": "Tag rules, the interest dictionary and a contact's tags",
    "replies": "Auto-reply rules (OA keywords, subscribe, default)",
    "scoring": "Lead scores, stages and the versioned scoring rules",
    "messages": "Outbound messages and broadcasts",
    "journeys": "Journeys: drafts, versions, lifecycle, preview, forecast and stats",
    "webhooks": "The urls journey webhooks may call",
    "campaigns": "Campaigns, personal links, check-ins, stats and chains",
    "points": "The rewards catalogue and people's points",
    "channels": "WeCom channel QR codes (渠道活码)",
    "leads": "Leads handed to sales, and why a lead may be returned",
    "reps": "The staff directory, hand-overs and customer transfers",
    "quick-replies": "The reps' quick replies (话术库)",
    "reports": "Reports",
    "segments": "Saved segments: the condition language over contacts, counts and samples",
    "media": "Images uploaded to the Official Account once, re-uploaded when they expire",
    "menus": "The Official Account menu as data: default and by tag, published in one call",
    "events": "Events posted by other systems (a CRM, a shop, a form tool)",
}


class ApiError(BaseModel):
    """Every error answer: ``error`` says what went wrong; a 422 names each bad field in
    ``fields`` (or, for a journey definition, lists ``problems``)."""

    model_config = ConfigDict(title="ApiError")

    error: str
    reason: str | None = None
    fields: dict[str, str] | None = None
    problems: list[dict[str, Any]] | None = None


class _Plugin(FlaskPlugin):
    """spectree's Flask plugin, knowing our ``<id:...>`` converter (a row id)."""

    def parse_path(
        self, route: Any, path_parameter_descriptions: Mapping[str, str] | None
    ) -> tuple[str, list]:
        path, parameters = super().parse_path(route, path_parameter_descriptions)
        ids = {v for c, _, v in werkzeug_parse_rule(str(route)) if c == "id"}
        for p in parameters:
            if p["name"] in ids:
                p["schema"] = {"type": "integer", "minimum": 1, "maximum": input_guard.MAX_ID}
            if not p["description"]:
                p.pop("description")
        return path, parameters


MODELS: dict[str, type] = {}


def _model_name(model: type) -> str:
    """A model's class name; two different models of one name would be a mistake."""
    name = getattr(model, "__name__", str(model))
    if MODELS.setdefault(name, model) is not model:
        name = f"{model.__module__}.{name}"
    return name


spec = SpecTree(
    backend=_Plugin,
    mode="strict",  # only described routes: a route left out is seen missing, not guessed
    annotations=False,
    title="Yuchi API",
    version="1",
    description=(
        "The JSON API of Yuchi (鱼池). Every operation needs "
        "`Authorization: Bearer $YUCHI_API_TOKEN`. Bad input is a 422 naming each bad "
        "field; ids in paths are whole numbers from 1 to 2^31-1."
    ),
    security_schemes=[
        SecurityScheme(
            name="bearer",
            data=SecuritySchemeData(
                type="http", scheme="bearer", description="the YUCHI_API_TOKEN setting"
            ),
        )
    ],
    security={"bearer": []},
    validation_error_model=ApiError,
    naming_strategy=_model_name,
    nested_naming_strategy=lambda _parent, child: child,
)


def described(
    tag: str,
    summary: str,
    *,
    json: type[BaseModel] | None = None,
    status: int = 200,
    returns: type[BaseModel] | None = None,
    errors: Iterable[int] = (),
    path: Mapping[str, str] | None = None,
) -> Callable[[F], F]:
    """Describe the route below: its tag (section), a one-line summary, the pydantic model
    of its JSON body, its success status (and model, if it has one) and the error statuses
    it answers besides 401 and 422. The view's docstring becomes the description."""
    answers: dict[str, Any] = {f"HTTP_{status}": returns, "HTTP_401": ApiError}
    answers.update({f"HTTP_{code}": ApiError for code in errors})

    def decorate(view: F) -> F:
        recorded = spec.validate(
            json=json,
            resp=Response(**answers),
            tags=[Tag(name=tag, description=TAGS[tag]) if tag in TAGS else tag],
            path_parameter_descriptions=path,
            operation_id=f"{view.__module__.rsplit('.', 1)[-1]}.{view.__name__}",
            skip_validation=True,
        )(view)
        recorded.__doc__ = "\n\n".join(p for p in (summary, view.__doc__) if p)

        # The route calls the view itself, never spectree; spectree finds the description
        # through __wrapped__, as it does under any decorator placed above its own.
        @functools.wraps(recorded)
        def route(*args: Any, **kwargs: Any) -> Any:
            return view(*args, **kwargs)

        return route  # type: ignore[return-value]

    return decorate


@functools.cache
def document() -> dict[str, Any]:
    """The OpenAPI document (built once, in an app context), with the sections in TAGS'
    order and each operation's query parameters as its view reads them (admin.query_args)."""
    doc = copy.deepcopy(spec.spec)
    for rule in current_app.url_map.iter_rules():
        route = current_app.view_functions[rule.endpoint]
        if spec.get_function_metadata(route) is None:
            continue
        path, _ = spec.backend.parse_path(rule, None)
        query = query_parameters(inspect.unwrap(route))
        for method in rule.methods or ():
            op = doc["paths"].get(path, {}).get(method.lower())
            if op is not None:
                op["parameters"] = [*op["parameters"], *query]
    order = {name: i for i, name in enumerate(TAGS)}
    doc["tags"].sort(key=lambda t: order.get(t["name"], len(order)))
    return doc
