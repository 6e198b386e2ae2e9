"""The OpenAPI document at /api/openapi.json: every /api/ route is in it (a route added without
its ``@described(...)`` line fails here), it is a valid OpenAPI 3.1 document, its request
bodies are the routes' own pydantic models, and it and its docs page need no token."""

from __future__ import annotations

import ast
import inspect
import json
import re
import textwrap

import pytest
from openapi_spec_validator import validate
from pydantic import BaseModel

from admin import openapi

DOC_ENDPOINTS = {"openapi.openapi_json", "openapi.docs_page"}  # the document itself
IGNORED = {"HEAD", "OPTIONS"}


def _routes(app) -> set[tuple[str, str]]:
    """(method, OpenAPI path) of every /api/ route in the app's url map."""
    found = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/") or rule.endpoint in DOC_ENDPOINTS:
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        found |= {(m.lower(), path) for m in rule.methods - IGNORED}
    return found


@pytest.fixture(scope="module")
def doc(settings):
    from bot.app import create_app

    app = create_app(settings)
    body = app.test_client().get("/api/openapi.json")
    assert body.status_code == 200 and body.mimetype == "application/json"
    return app, body.get_json()


def test_every_api_route_is_in_the_document(doc):
    app, document = doc
    described = {(m, p) for p, item in document["paths"].items() for m in item}
    routes = _routes(app)
    assert len(routes) > 80
    missing = sorted(routes - described)
    assert not missing, (
        "routes without a description: add @described(tag, summary, json=Model) under "
        f"their @bp.<method>(...) line (admin/openapi.py): {missing}"
    )
    assert not described - routes, "the document describes routes the app does not have"


def test_the_document_is_valid_openapi(doc):
    _, document = doc
    validate(document)
    assert document["openapi"].startswith("3.1")
    assert all(p.startswith("/api/") for p in document["paths"])  # not /sidebar/api/
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def test_bearer_auth_is_declared(doc):
    _, document = doc
    scheme = document["components"]["securitySchemes"]["bearer"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}
    assert document["security"] == [{"bearer": []}]
    for item in document["paths"].values():
        for op in item.values():
            assert op["responses"]["401"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ApiError"
            }


def test_each_operation_has_a_summary_a_tag_and_a_success(doc):
    _, document = doc
    for path, item in document["paths"].items():
        for method, op in item.items():
            assert op["summary"] and not op["summary"].endswith(f"<{method.upper()}>"), path
            assert op["tags"], path
            assert any(code.startswith("2") for code in op["responses"]), (method, path)


def test_bodies_are_the_routes_own_models(doc):
    """The body schemas are the pydantic models the routes validate with, unchanged, and
    no two models (nor their nested ones) share a name in the document."""
    _, document = doc
    schemas = document["components"]["schemas"]
    body = document["paths"]["/api/replies"]["post"]["requestBody"]["content"]
    assert body["application/json"]["schema"] == {"$ref": "#/components/schemas/ReplyRuleIn"}
    assert set(schemas["ReplyRuleIn"]["required"]) == {"name"}
    stage = document["paths"]["/api/contacts/{contact_id}/stage"]["put"]
    assert "requestBody" in stage and "auto" in schemas["StageIn"]["properties"]["stage"]["enum"]
    checkin = schemas["CheckIn"]["properties"]
    assert "pass" in checkin and "pass_" not in checkin  # the alias, as the body spells it

    for name, model in openapi.MODELS.items():
        own = json.loads(
            json.dumps(model.model_json_schema(ref_template="#/components/schemas/{model}"))
        )
        for nested, schema in own.pop("$defs", {}).items():
            assert schemas[nested] == schema, f"two models named {nested}"
        assert schemas[name] == own, name


def _body_models(func, depth: int = 1) -> set[type]:
    """The request models (pydantic, not tables) a view names, or a helper of its module that
    it calls names: ``validated(TagRuleIn, ...)``, ``_body(PreviewBody, ...)``, ..."""
    found: set[type] = set()
    names = func.__globals__
    for node in ast.walk(ast.parse(textwrap.dedent(inspect.getsource(func)))):
        chain = []
        while isinstance(node, ast.Attribute):
            chain.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            continue
        obj = names.get(node.id)
        if chain and not (inspect.ismodule(obj) or isinstance(obj, type)):
            continue  # g.session, request.args: not at import time
        for attr in reversed(chain):
            obj = getattr(obj, attr, None)
        if isinstance(obj, type) and issubclass(obj, BaseModel):
            if not hasattr(obj, "__table__"):
                found.add(obj)
        elif depth and inspect.isfunction(obj) and obj.__module__ == func.__module__:
            found |= _body_models(obj, depth - 1) if obj is not func else set()
    return found


def test_each_body_is_the_model_its_route_reads(doc):
    """A route that validates its body with a model is described with that model (json=),
    and a route described with one does read it."""
    app, _ = doc
    checked = 0
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/") or rule.endpoint in DOC_ENDPOINTS:
            continue
        route = app.view_functions[rule.endpoint]
        described = openapi.spec.get_function_metadata(route).json
        reads = {m.__name__ for m in _body_models(inspect.unwrap(route))}
        assert reads == ({described} if described else set()), rule.endpoint
        checked += bool(described)
    assert checked >= 30


def test_path_ids_are_row_ids(doc):
    _, document = doc
    [param] = document["paths"]["/api/contacts/{contact_id}"]["get"]["parameters"]
    assert param["in"] == "path" and param["required"] is True
    assert param["schema"] == {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}
    action = document["paths"]["/api/journeys/{journey_id}/{action}"]["post"]["parameters"]
    assert {p["name"]: p["schema"]["type"] for p in action} == {
        "journey_id": "integer",
        "action": "string",
    }


def test_the_document_and_docs_need_no_token_and_change_nothing(client, auth):
    assert client.get("/api/openapi.json").status_code == 200
    page = client.get("/api/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "/api/contacts/{contact_id}" in html and 'id="schema-ReplyRuleIn"' in html
    assert not re.search(r"""(src|href|action)=["']?(https?:)?//""", html)  # nothing from elsewhere
    assert "<script" not in html
    # the described routes still answer as before: 401 without the token, their own 422
    assert client.get("/api/replies").status_code == 401
    bad = client.post("/api/replies", json={"name": "x", "trigger": "nope"}, headers=auth)
    assert bad.status_code == 422
    assert bad.get_json()["error"] == "invalid reply rule" and "trigger" in bad.get_json()["fields"]


def test_spectree_is_never_on_the_request_path(client, auth, monkeypatch):
    """The description is only read for the document: a request never enters spectree, so
    the routes validate and answer exactly as they did before."""

    def entered(*args, **kwargs):
        raise AssertionError("spectree ran on a request")

    monkeypatch.setattr(openapi.spec.backend, "validate", entered)
    monkeypatch.setattr(openapi.spec.backend, "request_validation", entered)
    assert client.get("/api/replies", headers=auth).status_code == 200
    created = client.post(
        "/api/replies", json={"trigger": "subscribe", "name": "w", "reply": "欢迎"}, headers=auth
    )
    assert created.status_code == 201
    rule = created.get_json()["id"]
    assert client.delete(f"/api/replies/{rule}", headers=auth).status_code == 204
    csv = client.get("/api/reports/lead-quality?format=csv", headers=auth)
    assert csv.status_code == 200 and csv.mimetype == "text/csv"


def test_query_parameters_carry_the_bounds_the_route_checks(doc, client, auth):
    _, document = doc
    ops = document["paths"]
    query = {
        p["name"]: p["schema"]
        for p in ops["/api/tags/contacts"]["get"]["parameters"]
        if p["in"] == "query"
    }
    assert list(query) == ["tag", "at_least", "since", "limit", "after"]
    assert query["limit"] == {"type": "integer", "default": 100, "minimum": 1, "maximum": 1000}
    assert query["since"] == {"type": "string", "format": "date-time"}
    # the route refuses one past the documented maximum, and takes the maximum
    since = "2026-01-01T00:00:00Z"
    over = client.get(f"/api/tags/contacts?tag=a&since={since}&limit=1001", headers=auth)
    assert over.status_code == 422 and "limit" in over.get_json()["fields"]
    ok = client.get(f"/api/tags/contacts?tag=a&since={since}&limit=1000", headers=auth)
    assert ok.status_code == 200
    names = [p["name"] for p in ops["/api/contacts/{contact_id}/messages"]["get"]["parameters"]]
    assert names == ["contact_id", "limit", "before"]
