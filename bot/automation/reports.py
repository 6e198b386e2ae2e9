"""What the API shows of journeys: a journey with its versions, the list with how many
contacts are in each, per-step stats of a published version, a contact's enrollments."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.automation import definitions as journey_definitions
from bot.automation import enroll as journey_enroll
from bot.core.config import Settings
from bot.core.models import Contact, Enrollment, Journey, JourneyVersion, Message
from bot.messaging import reports as send_reports
from journeys import library, stats


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def journey_json(j: Journey, versions: list[JourneyVersion] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": j.id,
        "name": j.name,
        "version": j.version,
        "status": j.status,
        "published_at": _iso(j.published_at),
        "definition": j.definition,
    }
    if versions is not None:
        out["versions"] = [
            {"version": v.version, "published_at": _iso(v.published_at)} for v in versions
        ]
    return out


def enrollment_json(e: Enrollment, name: str | None) -> dict[str, Any]:
    return {
        "id": e.id,
        "journey_id": e.journey_id,
        "journey": name,
        "version": e.version,
        "status": e.status,
        "step": e.step,
        "wake_at": _iso(e.wake_at),
        "started_at": _iso(e.started_at),
        "ended_at": _iso(e.ended_at),
        "reason": e.reason,
        "answers": (e.state or {}).get("answers", {}),
    }


def versions(session: Session, journey_id: int) -> list[JourneyVersion]:
    return list(
        session.execute(
            sa.select(JourneyVersion)
            .where(JourneyVersion.journey_id == journey_id)
            .order_by(JourneyVersion.version)
        ).scalars()
    )


def journey_with_versions(session: Session, journey_id: int) -> dict[str, Any] | None:
    j = session.get(Journey, journey_id)
    return None if j is None else journey_json(j, versions(session, j.id))


def list_journeys(session: Session) -> dict[str, Any]:
    """Every journey (without its definition) with how many contacts are in it now, and the
    names of the ready-made ones."""
    en = Enrollment.__table__.c
    counts = dict(
        session.execute(
            sa.select(en.journey_id, sa.func.count())
            .where(en.status.in_(journey_enroll.OPEN))
            .group_by(en.journey_id)
        ).all()
    )
    rows = session.execute(sa.select(Journey).order_by(Journey.id)).scalars()
    return {
        "journeys": [
            {
                **{k: v for k, v in journey_json(j).items() if k != "definition"},
                "open": counts.get(j.id, 0),
            }
            for j in rows
        ],
        "library": library.names(),
    }


def _failed_sends(session: Session, journey_id: int, version: int) -> dict[str, int]:
    """Messages of each step that could not be delivered (a journey's sends carry their
    enrollment and step; migration 0019 filled them in for the older rows from their keys)."""
    en, m = Enrollment.__table__.c, Message.__table__.c
    ids = sa.select(en.id).where(en.journey_id == journey_id, en.version == version)
    rows = session.execute(
        sa.select(m.step, sa.func.count())
        .where(m.enrollment_id.in_(ids), m.status.in_(send_reports.FAILED))
        .group_by(m.step)
    )
    return {step: n for step, n in rows if step is not None}


def step_stats(
    session: Session,
    journey_id: int,
    version: int,
    settings: Settings | None = None,
    goal: str | None = None,
) -> dict[str, Any]:
    """How many contacts reached, are at and left each step of a published version; with
    ``settings``, each step that sends also has ``sends``: what its messages did
    (bot.messaging.reports, conversions to ``goal``)."""
    d = journey_definitions.definition_for(session, journey_id, version)
    en = Enrollment.__table__.c
    rows = session.execute(
        sa.select(en.status, en.step, en.state, en.reason).where(
            en.journey_id == journey_id, en.version == version
        )
    )
    paths = (
        stats.Path(r.status, r.step, tuple((r.state or {}).get("history") or ()), r.reason)
        for r in rows
    )
    counted = stats.count(d, paths, _failed_sends(session, journey_id, version))
    if settings is not None:
        ids = sa.select(en.id).where(en.journey_id == journey_id, en.version == version)
        for sid, fig in send_reports.step_figures(session, settings, ids, goal).items():
            counted["steps"].setdefault(sid, {})["sends"] = fig
        counted["windows"] = send_reports.windows(settings)
        counted["goal"] = goal
    return counted


def contact_enrollments(session: Session, contact_id: int) -> list[dict[str, Any]] | None:
    """The contact's enrollments, oldest first; None for an unknown contact."""
    if session.get(Contact, contact_id) is None:
        return None
    rows = session.execute(
        sa.select(Enrollment, Journey.name)
        .join(Journey, Journey.id == Enrollment.journey_id)
        .where(Enrollment.contact_id == contact_id)
        .order_by(Enrollment.id)
    ).all()
    return [enrollment_json(e, name) for e, name in rows]
