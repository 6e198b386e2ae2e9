"""/api/quick-replies: the reps' quick replies (话术库), in groups."""

from __future__ import annotations

from flask import abort, g, jsonify, request
from flask.typing import ResponseReturnValue

from admin.common import Invalid, api_blueprint, id_arg, int_arg, validated
from admin.openapi import described
from bot.core.models import QuickReply, QuickReplyGroup
from bot.sales import quick_replies as store

bp = api_blueprint("quick_replies", __name__)


def _group_or_404(group_id: int) -> QuickReplyGroup:
    row = g.session.get(QuickReplyGroup, group_id)
    if row is None:
        abort(404, description=f"no quick-reply group {group_id}")
    return row


def _reply_or_404(reply_id: int) -> QuickReply:
    row = g.session.get(QuickReply, reply_id)
    if row is None:
        abort(404, description=f"no quick reply {reply_id}")
    return row


@bp.get("/quick-replies")
@described("quick-replies", "The library by group, or the replies matching ?q=")
def list_replies() -> ResponseReturnValue:
    """The whole library by group, or with ``?q=`` the replies matching the words."""
    query = (request.args.get("q") or "").strip()
    group_id = id_arg("group_id")
    if not query and group_id is None:
        return jsonify(groups=store.library(g.session))
    if len(query) > 100:
        raise Invalid("invalid query string", {"q": "at most 100 characters"})
    limit = int_arg("limit", store.SEARCH_LIMIT, 1, 200)
    found = store.search(g.session, query, group_id, limit)
    return jsonify(replies=[{**store.reply_json(r), "send": store.chat_message(r)} for r in found])


def _save_group(row: QuickReplyGroup | None) -> QuickReplyGroup:
    data = validated(store.GroupIn, "quick-reply group")
    try:
        return store.save_group(g.session, data, row)
    except store.DuplicateName:
        raise Invalid(
            "invalid quick-reply group", {"name": "a group with this name exists"}
        ) from None


@bp.post("/quick-replies/groups")
@described("quick-replies", "Create a group", json=store.GroupIn, status=201)
def create_group() -> ResponseReturnValue:
    return jsonify(store.group_json(_save_group(None))), 201


@bp.put("/quick-replies/groups/<id:group_id>")
@described("quick-replies", "Replace a group", json=store.GroupIn, errors=(404,))
def change_group(group_id: int) -> ResponseReturnValue:
    return jsonify(store.group_json(_save_group(_group_or_404(group_id))))


@bp.delete("/quick-replies/groups/<id:group_id>")
@described("quick-replies", "Delete a group", status=204, errors=(404,))
def delete_group(group_id: int) -> ResponseReturnValue:
    store.delete_group(g.session, _group_or_404(group_id))
    return "", 204


def _save_reply(row: QuickReply | None) -> QuickReply:
    data = validated(store.ReplyIn, "quick reply")
    try:
        return store.save_reply(g.session, data, row)
    except store.UnknownGroup:
        raise Invalid("invalid quick reply", {"group_id": "no such group"}) from None


@bp.post("/quick-replies")
@described("quick-replies", "Create a quick reply", json=store.ReplyIn, status=201)
def create_reply() -> ResponseReturnValue:
    return jsonify(store.reply_json(_save_reply(None))), 201


@bp.get("/quick-replies/<id:reply_id>")
@described("quick-replies", "One quick reply, with what it sends", errors=(404,))
def get_reply(reply_id: int) -> ResponseReturnValue:
    row = _reply_or_404(reply_id)
    return jsonify({**store.reply_json(row), "send": store.chat_message(row)})


@bp.put("/quick-replies/<id:reply_id>")
@described("quick-replies", "Replace a quick reply", json=store.ReplyIn, errors=(404,))
def change_reply(reply_id: int) -> ResponseReturnValue:
    return jsonify(store.reply_json(_save_reply(_reply_or_404(reply_id))))


@bp.delete("/quick-replies/<id:reply_id>")
@described("quick-replies", "Delete a quick reply", status=204, errors=(404,))
def delete_reply(reply_id: int) -> ResponseReturnValue:
    store.delete_reply(g.session, _reply_or_404(reply_id))
    return "", 204
