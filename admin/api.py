"""The JSON API under /api/, guarded by ``Authorization: Bearer $YUCHI_API_TOKEN``."""

from __future__ import annotations

from flask import abort, g, jsonify, request
from flask.typing import ResponseReturnValue

from admin.common import (
    Invalid,
    api_blueprint,
    error,
    id_arg,
    int_arg,
    settings,
    text_arg,
    validated,
)
from admin.openapi import described
from bot.contacts import timeline as store
from bot.core.models import ReplyRule
from bot.replies import edits as reply_edits
from bot.replies import rules as autoreply

bp = api_blueprint("api", __name__)


# --- contacts and timelines ---------------------------------------------------------------


@bp.get("/contacts")
@described("contacts", "Find contacts by an identity (?openid=, ?unionid=, ...), newest first")
def list_contacts() -> ResponseReturnValue:
    limit = int_arg("limit", 50, 1, 200)
    before = id_arg("before")
    identity = next(
        ((k, request.args[k]) for k in store.IDENTITY_KINDS if request.args.get(k)), None
    )
    contacts, next_before = store.find_contacts(g.session, identity, limit, before)
    return jsonify(contacts=contacts, next_before=next_before)


@bp.get("/contacts/<id:contact_id>")
@described("contacts", "A contact with identities, tags and state", errors=(404,))
def get_contact(contact_id: int) -> ResponseReturnValue:
    contact = store.contact_json(g.session, contact_id)
    if contact is None:
        return error(404, f"no contact {contact_id}")
    return jsonify(contact)


@bp.get("/contacts/<id:contact_id>/events")
@described("contacts", "A contact's timeline, newest first (?limit=, ?before=)", errors=(404,))
def contact_events(contact_id: int) -> ResponseReturnValue:
    """``?type=oa.text&tag=意向:价格``: of one type, carrying one tag."""
    limit = int_arg("limit", 50, 1, 200)
    before = id_arg("before")
    type_, tag = text_arg("type", 64), text_arg("tag", 64)
    contact = store.contact_json(g.session, contact_id, with_tags=False)
    if contact is None:
        return error(404, f"no contact {contact_id}")
    events, next_before = store.timeline(
        g.session, contact["id"], limit, before, types=[type_] if type_ else None, tag=tag
    )
    return jsonify(events=events, next_before=next_before)


# --- reply rules ---------------------------------------------------------------------------


def _rule_or_404(rule_id: int) -> ReplyRule:
    row = g.session.get(ReplyRule, rule_id)
    if row is None:
        abort(404, description=f"no reply rule {rule_id}")
    return row


@bp.get("/replies")
@described("replies", "List the reply rules")
def list_replies() -> ResponseReturnValue:
    return jsonify(replies=[autoreply.rule_to_json(r) for r in autoreply.list_rules(g.session)])


@bp.get("/replies/<id:rule_id>")
@described("replies", "One reply rule", errors=(404,))
def get_reply(rule_id: int) -> ResponseReturnValue:
    return jsonify(autoreply.rule_to_json(_rule_or_404(rule_id)))


@bp.post("/replies")
@described("replies", "Create a reply rule", json=autoreply.ReplyRuleIn, status=201)
def create_reply() -> ResponseReturnValue:
    data = validated(autoreply.ReplyRuleIn, "reply rule")
    try:
        row = reply_edits.create_rule(settings(), g.session, data)
    except reply_edits.DuplicateName:
        raise Invalid("invalid reply rule", {"name": "a rule with this name exists"}) from None
    return jsonify(autoreply.rule_to_json(row)), 201


@bp.put("/replies/<id:rule_id>")
@described("replies", "Replace a reply rule", json=autoreply.ReplyRuleIn, errors=(404,))
def update_reply(rule_id: int) -> ResponseReturnValue:
    row = _rule_or_404(rule_id)
    data = validated(autoreply.ReplyRuleIn, "reply rule")
    try:
        reply_edits.update_rule(settings(), g.session, row, data)
    except reply_edits.DuplicateName:
        raise Invalid("invalid reply rule", {"name": "a rule with this name exists"}) from None
    return jsonify(autoreply.rule_to_json(row))


@bp.delete("/replies/<id:rule_id>")
@described("replies", "Delete a reply rule", status=204, errors=(404,))
def delete_reply(rule_id: int) -> ResponseReturnValue:
    reply_edits.delete_rule(settings(), g.session, _rule_or_404(rule_id))
    return "", 204
