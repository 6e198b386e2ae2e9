"""A journey's life as a marketer drives it: create and edit the draft, publish, pause,
resume and stop (``TRANSITIONS``), take one contact out or hold them in place; each commits the session it is
given, then does its after-commit work (wake what came due, kick the outbox)."""

from __future__ import annotations

import math
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

import journeys
from bot.audiences import segments as saved_segments
from bot.automation import definitions as journey_definitions
from bot.automation import enroll as journey_enroll
from bot.automation import reports, webhook_endpoints
from bot.automation import wake_jobs as journey_wake_jobs
from bot.automation.preview_input import load_definition
from bot.contacts import identity as contacts
from bot.core import queue
from bot.core.config import Settings
from bot.core.models import Contact, Enrollment, Journey, utcnow
from bot.tagging.edits import known_tags
from journeys.webhook_urls import Allow

TRANSITIONS = {  # action: (allowed from, to)
    "publish": (("draft", "paused", "published", "stopped"), "published"),
    "pause": (("published",), "paused"),
    "resume": (("paused",), "published"),
    "stop": (("published", "paused"), "stopped"),
}


class NotFound(LookupError):
    """No such journey, contact or action (the message says which)."""


class Refused(Exception):
    """The journey's state does not allow it (a conflict)."""


class InvalidDefinition(ValueError):
    def __init__(self, problems: list[journeys.Problem]):
        self.problems = problems
        super().__init__("the journey definition is not valid")


def _checked(data: dict[str, Any], **known: Any) -> None:
    problems = journeys.validate(data, **known)
    if problems:
        raise InvalidDefinition(problems)


def draft(session: Session, journey_id: int) -> journeys.Definition:
    """The journey's draft, checked, for a preview or a forecast."""
    j = session.get(Journey, journey_id)
    if j is None:
        raise NotFound(f"no journey {journey_id}")
    _checked(j.definition)
    return load_definition(j.definition)


def create(session: Session, data: dict[str, Any], name: str, allow: Allow) -> dict[str, Any]:
    """A new journey whose draft is ``data``; Refused when the name is taken."""
    _checked(data, webhook_allow=allow)
    if session.execute(sa.select(Journey.id).where(Journey.name == name)).scalar() is not None:
        raise Refused(f"a journey named {name!r} exists")
    j = Journey(name=name, version=0, definition=data, status="draft")
    session.add(j)
    session.commit()
    return reports.journey_json(j, [])


def edit_draft(session: Session, j: Journey, data: dict[str, Any], allow: Allow) -> dict[str, Any]:
    """Replace the draft; contacts see it once it is published (as a new version)."""
    _checked(data, webhook_allow=allow)
    j.definition = data
    session.add(j)
    session.commit()
    return reports.journey_json(j, reports.versions(session, j.id))


def change_status(
    settings: Settings, session: Session, journey_id: int, action: str
) -> dict[str, Any]:
    """Publish, pause, resume or stop; the journey as JSON with what the change did
    (``new_version``, ``ended``, ``wakes``)."""
    if action not in TRANSITIONS:
        raise NotFound(f"no action {action!r}; one of {', '.join(TRANSITIONS)}")
    j = session.get(Journey, journey_id)
    if j is None:
        raise NotFound(f"no journey {journey_id}")
    allowed, to = TRANSITIONS[action]
    was = j.status
    if was not in allowed:
        raise Refused(f"cannot {action} a {was} journey")
    extra: dict[str, Any] = {}
    if action == "publish":
        _checked(
            j.definition,
            known_tags=known_tags(session),
            webhook_allow=settings.webhook_allow,
            known_webhooks=webhook_endpoints.urls(session),
            known_segments=saved_segments.ids(session),
        )
        extra["new_version"] = journey_definitions.publish(session, j) is not None
    elif action == "stop":
        extra["ended"] = journey_enroll.stop_journey(session, j.id, utcnow(), "journey stopped")
    j.status = to
    session.add(j)
    session.commit()
    if was == "paused" and to == "published":  # resumed (or published while paused)
        extra["wakes"] = journey_wake_jobs.resume_due(settings, j.id)
    if extra.get("ended"):
        queue.kick_outbox(settings)  # their journey.exited events
    return {**reports.journey_json(j, reports.versions(session, j.id)), **extra}


def remove_contact(settings: Settings, session: Session, journey_id: int, contact_id: int) -> int:
    """Take the contact out of the journey; how many enrollments ended (Refused: none)."""
    if session.get(Journey, journey_id) is None:
        raise NotFound(f"no journey {journey_id}")
    if session.get(Contact, contact_id) is None:
        raise NotFound(f"no contact {contact_id}")
    ended = journey_enroll.exit_all(
        session,
        contacts.resolve(session, contact_id),  # a merged contact's old id works too
        utcnow(),
        "removed by a marketer",
        journey_id=journey_id,
    )
    session.commit()
    if not ended:
        raise Refused(f"contact {contact_id} is not in journey {journey_id}")
    queue.kick_outbox(settings)  # the journey.exited event
    return ended


HOLDABLE = ("active", "waiting", "asking")


def _open_enrollment(session: Session, journey_id: int, contact_id: int, statuses: tuple) -> Any:
    if session.get(Journey, journey_id) is None:
        raise NotFound(f"no journey {journey_id}")
    if session.get(Contact, contact_id) is None:
        raise NotFound(f"no contact {contact_id}")
    en = Enrollment.__table__.c
    row = session.execute(
        sa.select(Enrollment)
        .where(
            en.journey_id == journey_id,
            en.contact_id == contacts.resolve(session, contact_id),
            en.status.in_(statuses),
        )
        .with_for_update()
    ).scalar()
    if row is None:
        raise Refused(f"contact {contact_id} has no enrollment in journey {journey_id} to change")
    return row


def pause_contact(session: Session, journey_id: int, contact_id: int) -> dict[str, Any]:
    """Hold one contact where they are in a journey (nothing moves for them until resumed:
    events and wakes pass them by); the enrollment as JSON."""
    row = _open_enrollment(session, journey_id, contact_id, HOLDABLE)
    row.paused_from, row.status = row.status, "paused"
    session.add(row)
    session.commit()
    return reports.enrollment_json(row, None)


def resume_contact(settings: Settings, session: Session, journey_id: int, contact_id: int) -> dict:
    """Let a held contact go on from where they were; a wait that came due meanwhile wakes now."""
    row = _open_enrollment(session, journey_id, contact_id, ("paused",))
    row.status, row.paused_from = row.paused_from or "waiting", None
    session.add(row)
    session.commit()
    if row.wake_at is not None and row.wake_at <= utcnow():
        journey_wake_jobs.enqueue_wakes(settings, [math.floor(utcnow().timestamp())])
    return reports.enrollment_json(row, None)
