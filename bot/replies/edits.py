"""Reply rules as a marketer edits them: each change is committed on the session it is
given (the request's), then this process's cached rules are dropped again (another request
may have cached the old ones between the write and the commit)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from bot.core.models import ReplyRule
from bot.replies import rules
from bot.replies.rules import DuplicateName, ReplyRuleIn

__all__ = ["DuplicateName", "create_rule", "delete_rule", "update_rule"]


def _committed(session: Session) -> None:
    session.commit()
    rules.invalidate()


def create_rule(session: Session, data: ReplyRuleIn) -> ReplyRule:
    """A new reply rule; DuplicateName when its name is taken."""
    row = rules.create_rule(session, data)
    _committed(session)
    return row


def update_rule(session: Session, row: ReplyRule, data: ReplyRuleIn) -> ReplyRule:
    rules.update_rule(session, row, data)
    _committed(session)
    return row


def delete_rule(session: Session, row: ReplyRule) -> None:
    rules.delete_rule(session, row)
    _committed(session)
