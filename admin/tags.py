"""Tags in the JSON API: tag rules, the interest dictionary, manual tags on a contact, and
the overview of every tag with the WeCom corp tag library."""

from __future__ import annotations

import re
from typing import Annotated

from flask import abort, g, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints

from admin.common import (
    Invalid,
    api_blueprint,
    error,
    id_arg,
    int_arg,
    settings,
    text_arg,
    time_arg,
    validated,
)
from admin.openapi import described
from bot.contacts import tagged
from bot.core.models import Contact, TagRule
from bot.tagging import edits
from bot.tagging import store as tag_store
from bot.tagging.rules import InterestWordsIn, TagRuleIn
from journeys.tag_names import checked_tag

bp = api_blueprint("tags", __name__)


# Who tagged by hand: a WeCom userid (1-64 of letters, digits and _-@.), else "api".
REP_USERID = r"^[A-Za-z0-9_\-@.]{1,64}$"


class ManualTag(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    tag: Annotated[str, AfterValidator(checked_tag)]
    by: Annotated[str, StringConstraints(pattern=REP_USERID)] = "api"


def _rule_or_404(rule_id: int) -> TagRule:
    row = g.session.get(TagRule, rule_id)
    if row is None:
        abort(404, description=f"no tag rule {rule_id}")
    return row


def _contact_or_404(contact_id: int) -> None:
    """Before the body is read: an unknown contact is a 404 whatever the body says."""
    if g.session.get(Contact, contact_id) is None:
        abort(404, description=f"no contact {contact_id}")


def _duplicate() -> Invalid:
    return Invalid("invalid tag rule", {"name": "a tag rule with this name exists"})


# --- tag rules -------------------------------------------------------------------------------


@bp.get("/tag-rules")
@described("tags", "List the tag rules")
def list_tag_rules() -> ResponseReturnValue:
    return jsonify(tag_rules=[tag_store.rule_to_json(r) for r in tag_store.list_rules(g.session)])


@bp.get("/tag-rules/<id:rule_id>")
@described("tags", "One tag rule", errors=(404,))
def get_tag_rule(rule_id: int) -> ResponseReturnValue:
    return jsonify(tag_store.rule_to_json(_rule_or_404(rule_id)))


@bp.post("/tag-rules")
@described("tags", "Create a tag rule", json=TagRuleIn, status=201)
def create_tag_rule() -> ResponseReturnValue:
    data = validated(TagRuleIn, "tag rule")
    try:
        row = edits.create_rule(settings(), g.session, data)
    except edits.DuplicateName:
        raise _duplicate() from None
    return jsonify(tag_store.rule_to_json(row)), 201


@bp.put("/tag-rules/<id:rule_id>")
@described("tags", "Replace a tag rule", json=TagRuleIn, errors=(404,))
def update_tag_rule(rule_id: int) -> ResponseReturnValue:
    row = _rule_or_404(rule_id)
    data = validated(TagRuleIn, "tag rule")
    try:
        edits.update_rule(settings(), g.session, row, data)
    except edits.DuplicateName:
        raise _duplicate() from None
    return jsonify(tag_store.rule_to_json(row))


@bp.delete("/tag-rules/<id:rule_id>")
@described("tags", "Delete a tag rule", status=204, errors=(404,))
def delete_tag_rule(rule_id: int) -> ResponseReturnValue:
    edits.delete_rule(settings(), g.session, _rule_or_404(rule_id))
    return "", 204


# --- the interest dictionary -----------------------------------------------------------------


@bp.get("/interest-words")
@described("tags", "The interest dictionary")
def get_interest_words() -> ResponseReturnValue:
    return jsonify(words=tag_store.interest_words(g.session))


@bp.put("/interest-words")
@described("tags", "Replace the interest dictionary", json=InterestWordsIn)
def put_interest_words() -> ResponseReturnValue:
    data = validated(InterestWordsIn, "interest words")
    return jsonify(words=edits.replace_interest_words(settings(), g.session, data.words))


# --- a contact's tags ------------------------------------------------------------------------


@bp.post("/contacts/<id:contact_id>/tags")
@described(
    "tags",
    "Tag a contact by hand (201 when new, 200 when it had the tag)",
    json=ManualTag,
    status=201,
    errors=(404,),
)
def add_contact_tag(contact_id: int) -> ResponseReturnValue:
    _contact_or_404(contact_id)
    data = validated(ManualTag, "tag")
    row, added = edits.tag_contact(settings(), g.session, contact_id, data.tag, data.by)
    return jsonify(edits.contact_tag_json(row)), 201 if added else 200


@bp.delete("/contacts/<id:contact_id>/tags/<path:tag>")
@described("tags", "Take a tag off a contact (?by=userid)", status=204, errors=(404,))
def remove_contact_tag(contact_id: int, tag: str) -> ResponseReturnValue:
    _contact_or_404(contact_id)
    by = request.args.get("by", "api")
    if not re.fullmatch(REP_USERID, by):
        raise Invalid("invalid query string", {"by": "a WeCom userid: 1-64 of A-Z a-z 0-9 _-@."})
    if not edits.untag_contact(settings(), g.session, contact_id, tag, by):
        return error(404, f"contact {contact_id} has no tag {tag!r}")
    return "", 204


# --- who earned a tag -------------------------------------------------------------------------


@bp.get("/tags/events")
@described("tags", "The events that earned a tag")
def tagged_events() -> ResponseReturnValue:
    """``?tag=意向:价格&since=…&until=…``: the events that earned the tag, newest first."""
    tag = _required_tag()
    limit = int_arg("limit", 50, 1, 200)
    since, until, before = time_arg("since"), time_arg("until"), id_arg("before")
    events, next_before = tagged.events_tagged(g.session, tag, since, until, limit, before)
    return jsonify(events=events, next_before=next_before)


@bp.get("/tags/contacts")
@described("tags", "Contacts with a tag earned at least N times since a time")
def tagged_contacts() -> ResponseReturnValue:
    """``?tag=意向:价格&at_least=3&since=…``: contacts with that many events tagged since."""
    tag = _required_tag()
    at_least = int_arg("at_least", 1, 1, 100_000)
    since = time_arg("since")
    if since is None:
        raise Invalid("invalid query string", {"since": "required"})
    limit, after = int_arg("limit", 100, 1, 1000), id_arg("after")
    contacts, next_after = tagged.contacts_tagged(g.session, tag, at_least, since, limit, after)
    return jsonify(contacts=contacts, next_after=next_after)


def _required_tag() -> str:
    tag = text_arg("tag", 64)
    if tag is None:
        raise Invalid("invalid query string", {"tag": "required"})
    return tag


# --- overview --------------------------------------------------------------------------------


@bp.get("/tags")
@described("tags", "Every tag, with the WeCom corp tag library")
def list_tags() -> ResponseReturnValue:
    return jsonify(tag_store.overview(g.session))
