"""Journeys: drafts, published versions, enrollments, the run-log and webhooks."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from bot.core.models.columns import BIGINT, JSONType, ts_column, utcnow


class Journey(SQLModel, table=True):
    """A journey (journeys/): ``definition`` is the editable draft; publishing it makes a new
    JourneyVersion, the one new contacts enter (``version``; 0 before the first publish).
    draft | published (contacts enter and advance) | paused (nothing moves) | stopped."""

    __tablename__ = "journey"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, unique=True)
    version: int = Field(default=0)
    definition: dict = Field(default_factory=dict, sa_column=sa.Column(JSONType, nullable=False))
    status: str = Field(default="draft", max_length=16)
    published_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())


class JourneyVersion(SQLModel, table=True):
    """A published definition, never changed: enrollments run on the version they entered."""

    __tablename__ = "journey_version"
    __table_args__ = (sa.UniqueConstraint("journey_id", "version", name="uq_journey_version"),)

    id: int | None = Field(default=None, primary_key=True)
    journey_id: int = Field(foreign_key="journey.id")
    version: int
    definition: dict = Field(default_factory=dict, sa_column=sa.Column(JSONType, nullable=False))
    published_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())


class Enrollment(SQLModel, table=True):
    """One contact's way through one journey: the engine's State, serialized."""

    __tablename__ = "enrollment"
    __table_args__ = (
        sa.Index("ix_enrollment_contact", "contact_id", "status"),
        # the event that started it: a re-run pipeline never enrolls twice on one event
        sa.UniqueConstraint("journey_id", "start_event_id", name="uq_enrollment_start"),
    )

    id: int | None = Field(default=None, primary_key=True)
    journey_id: int = Field(foreign_key="journey.id", index=True)
    version: int = Field(default=1)
    contact_id: int = Field(foreign_key="contact.id")
    # active | waiting | asking | paused | done | exited | converted
    status: str = Field(default="active", max_length=16)
    # paused (a manager held this one contact): the status it resumes to
    paused_from: str | None = Field(default=None, max_length=16)
    step: str | None = Field(default=None, max_length=64)
    state: dict = Field(default_factory=dict, sa_column=sa.Column(JSONType, nullable=False))
    wake_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True, index=True))
    start_event_id: int | None = Field(default=None, sa_column=sa.Column(BIGINT, nullable=True))
    last_event_id: int | None = Field(default=None, sa_column=sa.Column(BIGINT, nullable=True))
    started_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    ended_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    reason: str | None = Field(default=None, max_length=200)  # why it ended


class StepRun(SQLModel, table=True):
    """The run-log: one row per command a journey executed, so each runs once."""

    __tablename__ = "step_run"
    __table_args__ = (
        sa.UniqueConstraint("enrollment_id", "step", "visit", "idx", name="uq_step_run"),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(BIGINT, primary_key=True, autoincrement=True)
    )
    enrollment_id: int = Field(foreign_key="enrollment.id")
    step: str = Field(max_length=64)
    visit: int = Field(default=1)
    idx: int = Field(default=0)  # turn * 1000 + the command's position in that advance call
    kind: str = Field(max_length=32)
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())


class WebhookEndpoint(SQLModel, table=True):
    """Where journey webhooks may go: a journey's webhook url must be one of these. The
    secret signs each request (Standard Webhooks); the API shows it once, when created."""

    __tablename__ = "webhook_endpoint"

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(max_length=2000, unique=True)
    secret: str = Field(max_length=100)
    note: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    # Event types this endpoint subscribes to (``oa.click``, ``api.*``, ``*``); None: it only
    # receives journey webhooks.
    event_types: list | None = Field(default=None, sa_column=sa.Column(JSONType, nullable=True))


class WebhookDelivery(SQLModel, table=True):
    """One journey webhook to deliver (the truth; its rq job only carries it): ``pending``
    until it is ``answered`` (any HTTP status below 500), ``failed`` (no answer or a 5xx
    after every attempt) or ``refused`` (an address not allowed, no registered endpoint)."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (sa.Index("ix_webhook_delivery_due", "status", "due_at"),)

    id: int | None = Field(
        default=None, sa_column=sa.Column(BIGINT, primary_key=True, autoincrement=True)
    )
    key: str = Field(max_length=200, unique=True)  # the journey.webhook event's dedupe key
    contact_id: int = Field(foreign_key="contact.id")
    # An event subscription's delivery: signed with this endpoint's secret (None: a journey
    # webhook, signed with the secret of the endpoint that has its url).
    endpoint_id: int | None = Field(default=None)
    url: str = Field(max_length=2000)
    body: dict = Field(default_factory=dict, sa_column=sa.Column(JSONType, nullable=False))
    status: str = Field(default="pending", max_length=16)
    attempts: int = Field(default=0)
    due_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())  # next attempt
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
    finished_at: datetime | None = Field(default=None, sa_column=ts_column(nullable=True))
    # what came back: {status, duration_ms, excerpt?} or {error}
    result: dict | None = Field(default=None, sa_column=sa.Column(JSONType, nullable=True))


class SplitAssignment(SQLModel, table=True):
    """The arm a contact was given at a bandit split, stored on their first pass (the engine
    keeps it for the rest of that enrollment from the path; a later enrollment of the contact
    gets it pinned by the runner); conversions are counted per arm from these rows."""

    __tablename__ = "split_assignment"
    __table_args__ = (
        sa.UniqueConstraint("enrollment_id", "step", name="uq_split_assignment"),
        sa.Index("ix_split_assignment_arm", "journey_id", "step", "arm"),
        sa.Index("ix_split_assignment_contact", "contact_id", "journey_id"),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(BIGINT, primary_key=True, autoincrement=True)
    )
    journey_id: int = Field(foreign_key="journey.id")
    step: str = Field(max_length=100)
    arm: int
    contact_id: int = Field(foreign_key="contact.id")
    enrollment_id: int = Field(
        sa_column=sa.Column(BIGINT, sa.ForeignKey("enrollment.id"), nullable=False)
    )
    assigned_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())


class OptimisationLog(SQLModel, table=True):
    """Every change of a bandit split's arm weights, with the counts it was computed from;
    the newest row of a (journey, step) is the weights in force."""

    __tablename__ = "optimisation_log"
    __table_args__ = (sa.Index("ix_optimisation_log_step", "journey_id", "step", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    journey_id: int = Field(foreign_key="journey.id")
    step: str = Field(max_length=100)
    goal: str = Field(max_length=64)
    weights: list = Field(default_factory=list, sa_column=sa.Column(JSONType, nullable=False))
    # per arm: {"arm": name, "assigned": n, "converted": k}
    counts: list = Field(default_factory=list, sa_column=sa.Column(JSONType, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=ts_column())
