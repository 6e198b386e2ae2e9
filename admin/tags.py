"""Tags in the JSON API: tag rules, the interest dictionary, manual tags on a contact, and
the overview of every tag with the WeCom corp tag library."""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from flask import abort, current_app, g, jsonify
from flask.typing import ResponseReturnValue
from pydantic import AfterValidator, BaseModel, ConfigDict

from admin.common import Invalid, api_blueprint, error, validated
from bot.contacts import identity as contacts
from bot.core.models import Contact, ContactTag, TagRule
from bot.tagging import store as tag_store
from bot.tagging import tags as tagging
from bot.tagging.rules import InterestWordsIn, TagRuleIn
from journeys.tag_names import checked_tag

bp = api_blueprint("tags", __name__)


class ManualTag(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    tag: Annotated[str, AfterValidator(checked_tag)]


def _rule_or_404(rule_id: int) -> TagRule:
    row = g.session.get(TagRule, rule_id)
    if row is None:
        abort(404, description=f"no tag rule {rule_id}")
    return row


def _contact_or_404(contact_id: int) -> int:
    if g.session.get(Contact, contact_id) is None:
        abort(404, description=f"no contact {contact_id}")
    return contacts.resolve(g.session, contact_id)


def _duplicate() -> Invalid:
    return Invalid("invalid tag rule", {"name": "a tag rule with this name exists"})


# --- tag rules -------------------------------------------------------------------------------


@bp.get("/tag-rules")
def list_tag_rules() -> ResponseReturnValue:
    return jsonify(tag_rules=[tag_store.rule_to_json(r) for r in tag_store.list_rules(g.session)])


@bp.get("/tag-rules/<id:rule_id>")
def get_tag_rule(rule_id: int) -> ResponseReturnValue:
    return jsonify(tag_store.rule_to_json(_rule_or_404(rule_id)))


@bp.post("/tag-rules")
def create_tag_rule() -> ResponseReturnValue:
    data = validated(TagRuleIn, "tag rule")
    try:
        row = tag_store.create_rule(g.session, data)
    except tag_store.DuplicateName:
        raise _duplicate() from None
    g.session.commit()
    tagging.invalidate()
    return jsonify(tag_store.rule_to_json(row)), 201


@bp.put("/tag-rules/<id:rule_id>")
def update_tag_rule(rule_id: int) -> ResponseReturnValue:
    row = _rule_or_404(rule_id)
    data = validated(TagRuleIn, "tag rule")
    try:
        tag_store.update_rule(g.session, row, data)
    except tag_store.DuplicateName:
        raise _duplicate() from None
    g.session.commit()
    tagging.invalidate()
    return jsonify(tag_store.rule_to_json(row))


@bp.delete("/tag-rules/<id:rule_id>")
def delete_tag_rule(rule_id: int) -> ResponseReturnValue:
    tag_store.delete_rule(g.session, _rule_or_404(rule_id))
    g.session.commit()
    tagging.invalidate()
    return "", 204


# --- the interest dictionary -----------------------------------------------------------------


@bp.get("/interest-words")
def get_interest_words() -> ResponseReturnValue:
    return jsonify(words=tag_store.interest_words(g.session))


@bp.put("/interest-words")
def put_interest_words() -> ResponseReturnValue:
    data = validated(InterestWordsIn, "interest words")
    tag_store.set_interest_words(g.session, data.words, replace=True)
    g.session.commit()
    tagging.invalidate()
    return jsonify(words=tag_store.interest_words(g.session))


# --- a contact's tags ------------------------------------------------------------------------


def _tag_json(row: ContactTag) -> dict:
    return {
        "contact_id": row.contact_id,
        "tag": row.tag,
        "source": row.source,
        "source_ref": row.source_ref,
        "added_at": row.created_at.isoformat(),
    }


@bp.post("/contacts/<id:contact_id>/tags")
def add_contact_tag(contact_id: int) -> ResponseReturnValue:
    cid = _contact_or_404(contact_id)
    data = validated(ManualTag, "tag")
    added = tagging.add_tag(g.session, cid, data.tag, "manual", "api")
    g.session.commit()
    tagging.kick_sync(current_app.config["SETTINGS"], g.session)
    row = g.session.execute(
        sa.select(ContactTag).where(ContactTag.contact_id == cid, ContactTag.tag == data.tag)
    ).scalar_one()
    return jsonify(_tag_json(row)), 201 if added else 200


@bp.delete("/contacts/<id:contact_id>/tags/<path:tag>")
def remove_contact_tag(contact_id: int, tag: str) -> ResponseReturnValue:
    cid = _contact_or_404(contact_id)
    if not tagging.remove_tag(g.session, cid, tag):
        return error(404, f"contact {contact_id} has no tag {tag!r}")
    g.session.commit()
    tagging.kick_sync(current_app.config["SETTINGS"], g.session)
    return "", 204


# --- overview --------------------------------------------------------------------------------


@bp.get("/tags")
def list_tags() -> ResponseReturnValue:
    return jsonify(tag_store.overview(g.session))
