"""/api/media: images uploaded to the Official Account once, referenced by our id."""

from __future__ import annotations

from flask import g, jsonify, request
from flask.typing import ResponseReturnValue

from admin.common import Invalid, api_blueprint, end_reads, error, int_arg, settings
from admin.openapi import described
from bot.core import wechat
from bot.messaging import media

bp = api_blueprint("media", __name__)
MAX_UPLOAD = 10 * 1024 * 1024  # the platform's largest image


@bp.before_request
def _room_for_a_file() -> None:
    """An upload may be larger than the API's usual body limit (YUCHI_MAX_BODY_BYTES)."""
    if request.endpoint == "media.upload_media":
        request.max_content_length = MAX_UPLOAD + 64 * 1024


@bp.post("/media")
@described(
    "media",
    "Upload an image once (multipart: file, kind, permanent)",
    status=201,
    errors=(413, 502),
)
def upload_media() -> ResponseReturnValue:
    """multipart/form-data: ``file``, ``kind`` (image | thumb), ``permanent`` (true/false)."""
    upload = request.files.get("file")
    if upload is None:
        raise Invalid("invalid media", {"file": "send the file as multipart field 'file'"})
    kind = request.form.get("kind", "image")
    permanent_raw = request.form.get("permanent", "false").lower()
    if permanent_raw not in ("true", "false"):
        raise Invalid("invalid media", {"permanent": "true or false"})
    content = upload.read(MAX_UPLOAD + 1)
    try:
        media.check(kind, permanent_raw == "true", upload.filename or "", content)
    except media.Invalid as exc:
        raise Invalid("invalid media", {exc.field: exc.reason}) from None
    end_reads()
    row = media.create(settings(), kind, permanent_raw == "true", upload.filename or "", content)
    return jsonify(media.media_json(row)), 201


@bp.get("/media")
@described("media", "List the uploaded media")
def list_media() -> ResponseReturnValue:
    limit = int_arg("limit", 100, 1, 500)
    return jsonify(media=[media.media_json(m) for m in media.listing(g.session, limit)])


@bp.get("/media/<id:media_id>")
@described("media", "One uploaded medium, with its media_id and expiry", errors=(404,))
def get_media(media_id: int) -> ResponseReturnValue:
    row = media.get(g.session, media_id)
    if row is None:
        return error(404, f"no media {media_id}")
    return jsonify(media.media_json(row))


@bp.post("/media/<id:media_id>/upload")
@described("media", "Upload it to the platform again, now", errors=(404, 502))
def reupload_media(media_id: int) -> ResponseReturnValue:
    """Upload it again now (sends do it by themselves when the platform's id expires)."""
    if media.get(g.session, media_id) is None:
        return error(404, f"no media {media_id}")
    end_reads()
    try:
        row = media.upload(settings(), media_id)
    except wechat.PlatformError as exc:
        return error(502, f"the platform refused the upload: {exc.errcode} {exc.errmsg}")
    return jsonify(media.media_json(row))
