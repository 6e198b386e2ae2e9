"""What a marketer changes in scoring, each committed on the session it is given (the
request's) before its after-commit work: a contact's stage set by hand (kick the outbox
for the stage event), a new rule set published (queue the full recompute)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from bot.core.config import Settings
from bot.scoring import ledger, recompute, versions
from bot.scoring.rules import RuleSet


def set_stage(
    settings: Settings,
    session: Session,
    contact_id: int,
    stage: str,
    by: str,
    note: str | None = None,
) -> ledger.StageChange:
    """Set the stage by hand (``"auto"``: back to the thresholds); ledger.UnknownContact."""
    change = ledger.set_stage(session, contact_id, stage, by, note=note)
    session.commit()
    ledger.kick(settings, [change.outbox_id] if change.outbox_id else [])
    return change


def publish_ruleset(settings: Settings, session: Session, rules: RuleSet) -> dict[str, Any]:
    """Make ``rules`` the active version; the rule set as JSON with its recompute job."""
    version = versions.publish(session, rules)
    session.commit()
    queued = recompute.enqueue_recompute(settings, version)
    body = versions.ruleset_json(versions.active(session))
    body["recompute"] = {"job_id": recompute.recompute_job_id(version), "queued": queued}
    return body
