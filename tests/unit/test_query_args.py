"""admin.query_args: the query parameters of a view, read from its source with the bounds the
view checks. The views here are never called, only read."""

from __future__ import annotations

from flask import request

from admin import common
from admin.common import id_arg, int_arg, text_arg, time_arg
from admin.query_args import query_parameters
from bot.core import input_guard

MOST = 2**10 - 24


def _since_required():
    return time_arg("since")


def listing(limit_default=None):
    q = text_arg("q", 100)
    limit = int_arg("limit", 50, 1, MOST)
    before = id_arg("before")
    since = _since_required()
    owner = request.args.get("owner") or None
    by = request.args.get("by", "api")
    version = int_arg("version", limit_default, 1, input_guard.MAX_ID)
    again = int_arg("limit", 7, 1, 2)  # the first reading of a name counts
    other = common.int_arg("page", 1, 1, 9)  # not one of the helpers by name: not read
    return q, limit, before, since, owner, by, version, again, other


def test_every_reader_with_its_bounds_in_order():
    params = {p["name"]: p["schema"] for p in query_parameters(listing)}
    assert list(params) == ["q", "limit", "before", "since", "owner", "by", "version"]
    assert params["q"] == {"type": "string", "minLength": 1, "maxLength": 100}
    assert params["limit"] == {"type": "integer", "default": 50, "minimum": 1, "maximum": 1000}
    assert params["before"] == {"type": "integer", "minimum": 1, "maximum": input_guard.MAX_ID}
    assert params["since"] == {"type": "string", "format": "date-time"}
    assert params["owner"] == {"type": "string"}
    assert params["by"] == {"type": "string", "default": "api"}
    # a default known only at request time is left out, the bounds stay
    assert params["version"] == {"type": "integer", "minimum": 1, "maximum": input_guard.MAX_ID}
    assert all(p["in"] == "query" for p in query_parameters(listing))


def test_a_view_without_query_reads_none():
    def plain():
        return request.get_json()

    assert query_parameters(plain) == []


def test_a_view_without_source_reads_none():
    made: dict = {}
    exec("def made(): return int_arg('limit', 1, 1, 2)", {"int_arg": int_arg}, made)
    assert query_parameters(made["made"]) == []
