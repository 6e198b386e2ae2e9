"""The versioned scoring rule sets in the database: which version is active, installing the
default one, publishing a new one. The rules themselves are pure, in bot/scoring/rules.py."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.core.db import dialect_insert
from bot.core.models import ScoringRuleSet, utcnow
from bot.scoring import rules as score_rules
from bot.scoring.rules import RuleSet

DEFAULT_RULES = Path(__file__).parent.parent / "defaults" / "scoring.yaml"

R = ScoringRuleSet.__table__

# Built once (building a statement costs more than running it): it runs for every event.
_ACTIVE = (
    sa.select(R.c.version, R.c.created_at)
    .where(R.c.active.is_(True))
    .order_by(R.c.version.desc())
    .limit(1)
)


@dataclass(frozen=True)
class Active:
    version: int
    rules: RuleSet
    created_at: datetime


# Parsed rule sets by (database, version, created_at). A version's rules never change, so
# nothing here goes stale; the active version itself is read on every use (one small query),
# which keeps every process on the same version the moment a new one is published.
_parsed: dict[tuple[str, int, datetime], RuleSet] = {}
_parsed_lock = threading.Lock()


def default_rules() -> RuleSet:
    return score_rules.parse_yaml(DEFAULT_RULES.read_text(encoding="utf-8"))


def install(session: Session, rules: RuleSet) -> int | None:
    """Make ``rules`` version 1 if there is no rule set yet; None if there is one."""
    if session.execute(sa.select(R.c.version).limit(1)).first() is not None:
        return None
    return session.execute(
        dialect_insert(session, R)
        .values(version=1, rules=rules.to_json(), active=True, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["version"])
        .returning(R.c.version)
    ).scalar()


def active(session: Session) -> Active:
    """The active rule set; the default one is installed as version 1 on first use."""
    row = session.connection().execute(_ACTIVE).first()
    if row is None:
        install(session, default_rules())
        row = session.connection().execute(_ACTIVE).first()
        if row is None:
            raise RuntimeError("scoring_ruleset has versions but none is active")
    key = (str(session.get_bind().url), row.version, row.created_at)
    rules = _parsed.get(key)
    if rules is None:
        data = session.execute(sa.select(R.c.rules).where(R.c.version == row.version)).scalar_one()
        rules = RuleSet.model_validate(data)
        with _parsed_lock:
            _parsed[key] = rules
    return Active(row.version, rules, row.created_at)


def publish(session: Session, rules: RuleSet) -> int:
    """Store ``rules`` as a new version and make it the active one (the caller commits, then
    calls ``enqueue_recompute``)."""
    if session.get_bind().dialect.name == "postgresql":  # one publisher at a time
        session.execute(sa.text("SELECT pg_advisory_xact_lock(7271001)"))
    session.execute(sa.update(R).where(R.c.active.is_(True)).values(active=False))
    version = (session.execute(sa.select(sa.func.max(R.c.version))).scalar() or 0) + 1
    session.execute(
        sa.insert(R).values(
            version=version, rules=rules.to_json(), active=True, created_at=utcnow()
        )
    )
    return version


def ruleset_json(act: Active) -> dict[str, Any]:
    return {
        "version": act.version,
        "active": True,
        "created_at": act.created_at.isoformat(),
        "rules": act.rules.to_json(),
    }
