"""Reply rules as a marketer edits them: each change is committed on the session it is
given (the request's), then the rules' version is bumped so that every process, this one
included, reloads them (another request may have cached the old ones before the commit)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from bot.core.config import Settings
from bot.core.models import ReplyRule
from bot.replies import rules
from bot.replies.rules import DuplicateName, ReplyRuleIn

__all__ = ["DuplicateName", "create_rule", "delete_rule", "update_rule"]


def _committed(settings: Settings, session: Session) -> None:
    session.commit()
    rules.changed(settings)


def create_rule(settings: Settings, session: Session, data: ReplyRuleIn) -> ReplyRule:
    """A new reply rule; DuplicateName when its name is taken."""
    row = rules.create_rule(session, data)
    _committed(settings, session)
    return row


def update_rule(
    settings: Settings, session: Session, row: ReplyRule, data: ReplyRuleIn
) -> ReplyRule:
    rules.update_rule(session, row, data)
    _committed(settings, session)
    return row


def delete_rule(settings: Settings, session: Session, row: ReplyRule) -> None:
    rules.delete_rule(session, row)
    _committed(settings, session)
