"""/api/openapi.json and /api/docs: the API's OpenAPI document and a page that reads it.

Neither needs the API token: they describe the routes (as the source does) and show no data;
a browser can open the page without sending a header. The page is rendered on the server from
the document, with no script and nothing fetched from elsewhere, so it works offline.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Blueprint, jsonify, render_template
from flask.typing import ResponseReturnValue
from markupsafe import Markup, escape

from admin.openapi import TAGS, document

bp = Blueprint("openapi", __name__, url_prefix="/api", template_folder="templates")
METHODS = ("get", "post", "put", "patch", "delete")


@bp.get("/openapi.json")
def openapi_json() -> ResponseReturnValue:
    return jsonify(document())


@bp.get("/docs")
def docs_page() -> ResponseReturnValue:
    doc = document()
    sections: dict[str, list[dict[str, Any]]] = {t["name"]: [] for t in doc["tags"]}
    for path, item in doc["paths"].items():
        for method in METHODS:
            op = item.get(method)
            if op:
                name = op["tags"][0] if op["tags"] else "other"
                sections.setdefault(name, []).append({**op, "method": method, "path": path})
    tags = {t["name"]: t.get("description", TAGS.get(t["name"], "")) for t in doc["tags"]}
    return render_template(
        "admin/api_docs.html",
        doc=doc,
        sections=sections,
        tags=tags,
        schemas=doc["components"]["schemas"],
        type_of=type_of,
        limits_of=limits_of,
        ref_name=ref_name,
        prose=prose,
    )


def prose(text: str) -> Markup:
    """A docstring's text, its ``literals`` (or `literals`) as code."""
    return Markup(re.sub(r"``?([^`]+)``?", r"<code>\1</code>", str(escape(text))))


def ref_name(schema: dict[str, Any]) -> str | None:
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None


def type_of(schema: dict[str, Any]) -> Markup:
    """A schema's type in a few words, with a link to a named schema."""
    name = ref_name(schema)
    if name:
        return Markup('<a href="#schema-{0}">{0}</a>').format(name)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            parts = [p for p in schema[key] if p.get("type") != "null"]
            text = Markup(" | ").join(type_of(p) for p in parts)
            return text + (" | null" if len(parts) < len(schema[key]) else "")
    if "const" in schema:
        return escape(json.dumps(schema["const"], ensure_ascii=False))
    if "enum" in schema:
        return Markup("one of ") + Markup(", ").join(
            Markup("<code>{}</code>").format(v) for v in schema["enum"]
        )
    kind = schema.get("type", "any")
    if isinstance(kind, list):
        kind = " | ".join(kind)
    if kind == "array":
        return Markup("list of ") + type_of(schema.get("items", {}))
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return Markup("map of ") + type_of(schema["additionalProperties"])
    if schema.get("format"):
        return escape(f"{kind} ({schema['format']})")
    return escape(kind)


RANGES = (  # (low, high, how to say it)
    ("minLength", "maxLength", "{} characters"),
    ("minimum", "maximum", "{}"),
    ("minItems", "maxItems", "{} items"),
)


def limits_of(schema: dict[str, Any]) -> str:
    """The constraints and default of a property (or of one of its alternatives), as text."""
    parts: list[str] = []
    for s in (schema, *schema.get("anyOf", [])):
        for low, high, unit in RANGES:
            if low in s and high in s:
                parts.append(unit.format(f"{s[low]} to {s[high]}"))
            elif low in s:
                parts.append(unit.format(f"at least {s[low]}"))
            elif high in s:
                parts.append(unit.format(f"at most {s[high]}"))
        if "exclusiveMinimum" in s:
            parts.append(f"more than {s['exclusiveMinimum']}")
        if "exclusiveMaximum" in s:
            parts.append(f"less than {s['exclusiveMaximum']}")
        if "pattern" in s:
            parts.append(f"matching {s['pattern']}")
    if schema.get("default") is not None:
        parts.append(f"default {json.dumps(schema['default'], ensure_ascii=False)}")
    return "; ".join(parts)
