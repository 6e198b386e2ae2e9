"""Saved segments in the JSON API: create, list, read, change, delete; a live count and a
keyset-paged sample of their contacts."""

from __future__ import annotations

import time
from typing import Any

from flask import abort, g, jsonify
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field

from admin.common import Invalid, api_blueprint, id_arg, int_arg, validated
from admin.openapi import described
from bot.audiences import segments

bp = api_blueprint("segments", __name__)


class SegmentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=500)
    definition: dict[str, Any]


def _save(segment_id: int | None) -> ResponseReturnValue:
    body = validated(SegmentBody, "segment")
    data = segments.SegmentIn(body.name, body.definition, body.description)
    try:
        if segment_id is None:
            row = segments.create(g.session, data)
        else:
            row = segments.update(g.session, segment_id, data)
    except segments.SegmentInvalid as exc:
        raise Invalid("invalid segment", exc.fields) from None
    except segments.DuplicateName:
        raise Invalid("invalid segment", {"name": "a segment with this name exists"}) from None
    except segments.UnknownSegment:
        abort(404, description=f"no segment {segment_id}")
    g.session.commit()
    return jsonify(segments.to_json(row)), 201 if segment_id is None else 200


def _known(segment_id: int) -> None:
    try:
        segments.get(g.session, segment_id)
    except segments.UnknownSegment:
        abort(404, description=f"no segment {segment_id}")


@bp.get("/segments")
@described("segments", "List the saved segments")
def list_segments() -> ResponseReturnValue:
    return jsonify(segments=[segments.to_json(r) for r in segments.list_segments(g.session)])


@bp.post("/segments")
@described(
    "segments",
    "Save a segment (422 names the bad clause by its path)",
    json=SegmentBody,
    status=201,
    errors=(409,),
)
def create_segment() -> ResponseReturnValue:
    return _save(None)


@bp.get("/segments/<id:segment_id>")
@described("segments", "One segment", errors=(404,))
def get_segment(segment_id: int) -> ResponseReturnValue:
    _known(segment_id)
    return jsonify(segments.to_json(segments.get(g.session, segment_id)))


@bp.put("/segments/<id:segment_id>")
@described("segments", "Change a segment", json=SegmentBody, errors=(404, 409))
def update_segment(segment_id: int) -> ResponseReturnValue:
    _known(segment_id)
    return _save(segment_id)


@bp.delete("/segments/<id:segment_id>")
@described(
    "segments", "Delete a segment no journey or segment names", status=204, errors=(404, 409)
)
def delete_segment(segment_id: int) -> ResponseReturnValue:
    _known(segment_id)
    try:
        segments.delete(g.session, segment_id)
    except segments.SegmentInvalid as exc:
        return jsonify(error="segment in use", fields=exc.fields), 409
    g.session.commit()
    return "", 204


@bp.get("/segments/<id:segment_id>/count")
@described("segments", "How many contacts are in it now", errors=(404,))
def count_segment(segment_id: int) -> ResponseReturnValue:
    _known(segment_id)
    started = time.perf_counter()
    n = segments.count(g.session, segment_id)
    took = round((time.perf_counter() - started) * 1000, 1)
    g.session.commit()  # the default scoring rules may have been installed
    return jsonify(segment_id=segment_id, count=n, took_ms=took)


@bp.get("/segments/<id:segment_id>/contacts")
@described("segments", "Its contacts, a page at a time (?cursor=, ?limit=)", errors=(404,))
def segment_contacts(segment_id: int) -> ResponseReturnValue:
    _known(segment_id)
    after = id_arg("cursor")
    limit = int_arg("limit", segments.PAGE, 1, 200) or segments.PAGE
    contacts, cursor = segments.page(g.session, segment_id, after, limit)
    g.session.commit()
    return jsonify(segment_id=segment_id, contacts=contacts, next_cursor=cursor)
