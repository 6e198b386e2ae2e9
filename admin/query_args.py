"""The query parameters a view reads, found in its source for the OpenAPI document.

The routes read their query strings with admin.common's helpers (``int_arg("limit", 50, 1,
200)``, ``id_arg``, ``time_arg``, ``text_arg``) or ``request.args.get("name")``; reading those
calls (in the view and the module's helpers it calls) documents the parameters with the very
bounds the route checks, with nothing to keep in step by hand.
"""

from __future__ import annotations

import ast
import inspect
import operator
import textwrap
from collections.abc import Callable
from typing import Any

from bot.core import input_guard

_OPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Pow: operator.pow,
}
_UNKNOWN = object()


def _value(node: ast.expr, names: dict[str, Any]) -> Any:
    """A constant, a module-level name (``input_guard.MAX_ID``) or arithmetic of those;
    _UNKNOWN for anything that needs the request (``j.version``)."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _value(node.operand, names)
        return _UNKNOWN if inner is _UNKNOWN else -inner
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _value(node.left, names), _value(node.right, names)
        if _UNKNOWN in (left, right):
            return _UNKNOWN
        return _OPS[type(node.op)](left, right)
    chain: list[str] = []
    while isinstance(node, ast.Attribute):
        chain.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or node.id not in names:
        return _UNKNOWN
    value = names[node.id]
    if chain and not inspect.ismodule(value):
        return _UNKNOWN
    for attr in reversed(chain):
        value = getattr(value, attr, _UNKNOWN)
    return value if isinstance(value, int | str) else _UNKNOWN


def _schema(helper: str, args: list[Any]) -> dict[str, Any] | None:
    """The schema of one helper call's parameter (``args`` after the name)."""
    known = [a for a in args if a is not _UNKNOWN]
    if helper == "int_arg" and len(args) == 3:
        schema: dict[str, Any] = {"type": "integer"}
        for key, value in zip(("default", "minimum", "maximum"), args, strict=True):
            if value is not _UNKNOWN and value is not None:
                schema[key] = value
        return schema
    if helper == "id_arg":
        return {"type": "integer", "minimum": 1, "maximum": input_guard.MAX_ID}
    if helper == "time_arg":
        return {"type": "string", "format": "date-time"}
    if helper == "text_arg" and len(known) == 1:
        return {"type": "string", "minLength": 1, "maxLength": known[0]}
    if helper == "get":  # request.args.get(name[, default])
        schema = {"type": "string"}
        if known and isinstance(known[0], str) and known[0]:
            schema["default"] = known[0]
        return schema
    return None


HELPERS = ("int_arg", "id_arg", "time_arg", "text_arg")  # admin.common's


def _reader(call: ast.Call) -> str | None:
    """Which reader of the query string ``call`` is: a helper's name, "get" for
    ``request.args.get(...)``, or None."""
    func = call.func
    if not call.args:
        return None
    if isinstance(func, ast.Name) and func.id in HELPERS:
        return func.id
    if (
        isinstance(func, ast.Attribute)
        and func.attr == "get"
        and isinstance(func.value, ast.Attribute)
        and func.value.attr == "args"
        and isinstance(func.value.value, ast.Name)
        and func.value.value.id == "request"
    ):
        return "get"
    return None


def query_parameters(view: Callable[..., Any], depth: int = 1) -> list[dict[str, Any]]:
    """OpenAPI ``in: query`` parameters of what ``view`` reads (itself, or a function of its
    module that it calls), in the order it reads them."""
    names = view.__globals__  # type: ignore[attr-defined]
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(view)))
    except (OSError, TypeError):  # no source shipped: the document goes without them
        return []
    calls = sorted(
        (n for n in ast.walk(tree) if isinstance(n, ast.Call)),
        key=lambda n: (n.lineno, n.col_offset),
    )
    found: dict[str, dict[str, Any]] = {}
    for call in calls:
        reader = _reader(call)
        if reader is None:
            called = names.get(call.func.id) if isinstance(call.func, ast.Name) else None
            if depth and inspect.isfunction(called) and called.__module__ == view.__module__:
                for p in query_parameters(called, depth - 1):
                    found.setdefault(p["name"], p)
            continue
        name = _value(call.args[0], names)
        schema = _schema(reader, [_value(a, names) for a in call.args[1:]])
        if isinstance(name, str) and schema is not None:
            found.setdefault(name, {"name": name, "in": "query", "schema": schema})
    return list(found.values())
