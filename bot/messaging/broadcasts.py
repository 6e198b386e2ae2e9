"""One message to many contacts. Creating a broadcast stores it and enqueues a fan-out job;
the fan-out writes one message row per contact (idempotency key ``b<id>:c<contact>``, so a
re-run creates nothing twice) and enqueues their delivery in batches. The per-app rate limit
in bot.core.wechat spreads the sends; progress is a count of the rows by status. A fan-out that
fails for a reason a re-run cannot fix (anything but Redis or the database being unreachable)
ends the broadcast ``failed`` with its reason; the sweeper only re-runs ``fanning_out`` ones."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import Field, PrivateAttr, ValidationError, model_validator
from sqlalchemy.orm import Session

from bot.audiences.resolve import Audience
from bot.audiences.resolve import contact_ids as audience_ids
from bot.core import queue
from bot.core.config import Settings
from bot.core.db import session_scope
from bot.core.input_guard import MAX_ID, Id
from bot.core.models import Broadcast, Contact, MassSend, Media, Message, utcnow
from bot.messaging import outbox as messaging
from bot.messaging.payloads import PAYLOADS, SendRequest, Strict, Template, media_refs
from journeys import bandit

MASS_KINDS = {"text", "image"}  # what a broadcast's mass send carries

log = logging.getLogger(__name__)
FAN_OUT = "bot.background.jobs.fan_out_broadcast"
BATCH = 500  # rows written per transaction
DELIVERY_BATCH = 50  # messages per delivery job


class Variant(Strict):
    name: str = Field(min_length=1, max_length=40)
    payload: dict[str, Any]
    percent: float = Field(ge=0, le=100)


def _parse_audience(raw: dict[str, Any]) -> Audience:
    """The audience, or a ValueError naming its bad part (``audience.tags.any``)."""
    try:
        return Audience.model_validate(raw, strict=True)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(["audience", *(str(p) for p in err["loc"])])
        msg = err["msg"].removeprefix("Value error, ")
        head, sep, rest = msg.partition(": ")
        if sep and "." not in loc and head in ("audience", "tags"):  # a whole-object check
            loc, msg = ("audience" if head == "audience" else "audience.tags"), rest
        raise ValueError(f"{loc}: {msg}") from None


class BroadcastRequest(Strict):
    """``audience``: "subscribed", or exactly one of {"segment": id}, {"tags": {"any"|"all":
    [...]}}, {"ids": [...]}; ``contact_ids`` is the older spelling of ids. Outside the 48-hour
    window: ``fail``, ``hold`` (until they write), ``template`` (``template`` instead) or
    ``mass`` (the OA's mass send, text and image only)."""

    name: str = Field(min_length=1, max_length=100)
    kind: Literal["text", "news", "link", "image", "miniprogram", "template"]
    payload: dict[str, Any]
    marketing: bool = True
    outside_window: Literal["hold", "fallback", "fail", "mass", "template"] = "fail"
    template: Template | None = None
    audience: Literal["subscribed"] | dict[str, Any] | None = None
    contact_ids: list[Id] | None = Field(default=None, min_length=1, max_length=100_000)
    # an A/B set: each contact gets one variant's payload instead of ``payload`` (optional)
    variants: list[Variant] | None = Field(default=None, min_length=2, max_length=5)
    # ``bandit``: the variants learn (bot.messaging.broadcast_bandit): the ``explore`` share of
    # the audience gets them by their percentages; after ``decide_after_minutes`` the rest
    # gets them by weights from the conversions to ``goal`` (Thompson sampling, each variant
    # keeping at least ``min_share``)
    mode: Literal["split", "bandit"] = "split"
    goal: str | None = Field(default=None, max_length=64)
    explore: float | None = Field(default=None, ge=0.05, le=0.5)
    decide_after_minutes: int | None = Field(default=None, ge=10, le=10080)
    min_share: float | None = Field(default=None, gt=0, lt=0.2)
    _audience: Audience | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _consistent(self) -> BroadcastRequest:
        self.payload = (
            PAYLOADS[self.kind]
            .model_validate(self.payload)
            .model_dump(mode="json", exclude_none=True)
        )
        if (self.audience is None) == (self.contact_ids is None):
            raise ValueError("audience: give either audience or contact_ids")
        if isinstance(self.audience, dict):
            self._audience = _parse_audience(self.audience)
        for i, v in enumerate(self.variants or []):
            try:
                v.payload = (
                    PAYLOADS[self.kind]
                    .model_validate(v.payload)
                    .model_dump(mode="json", exclude_none=True)
                )
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                raise ValueError(f"variants[{i}].payload.{where}: {first['msg']}") from None
        self._check_bandit()
        if self.variants is not None:
            total = sum(v.percent for v in self.variants)
            if abs(total - 100) > 1e-9:
                raise ValueError(f"variants: the percentages add up to {total:g}, not 100")
            if len({v.name for v in self.variants}) != len(self.variants):
                raise ValueError("variants: each variant has its own name")
            if self.outside_window == "mass":
                raise ValueError("variants: an OA mass send carries one message to everyone")
        if self.outside_window == "fallback":
            raise ValueError(
                "outside_window: a broadcast names its policy: template, with template"
            )
        if self.outside_window == "template":
            if self.template is None:
                raise ValueError("template: outside_window=template needs the template to send")
            if self.kind == "template":
                raise ValueError("outside_window: a template broadcast has no 48-hour window")
        elif self.template is not None:
            raise ValueError("template: only used with outside_window=template")
        if self.outside_window == "mass" and self.kind not in MASS_KINDS:
            raise ValueError("outside_window: a mass send carries text or image")
        return self

    def _check_bandit(self) -> None:
        from bot.messaging.reports import valid_goal

        if self.mode != "bandit":
            for name in ("goal", "explore", "decide_after_minutes", "min_share"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name}: only used with mode=bandit")
            return
        if self.variants is None:
            raise ValueError("variants: mode=bandit learns between variants; give two or more")
        if self.goal is None:
            raise ValueError("goal: mode=bandit needs the goal event it counts (e.g. h5.x)")
        if not valid_goal(self.goal):
            raise ValueError("goal: an event type like h5.form_submitted")
        if self.outside_window == "mass":
            raise ValueError("outside_window: an OA mass send goes out in one pass, not staged")
        if self.min_share is not None and self.min_share * len(self.variants) >= 1:
            raise ValueError("min_share: the variants' least shares add up to 1 or more")

    def bandit_spec(self) -> dict[str, Any] | None:
        if self.mode != "bandit":
            return None
        return {
            "goal": self.goal,
            "explore": self.explore if self.explore is not None else 0.2,
            "decide_after_minutes": self.decide_after_minutes or 60,
            "min_share": self.min_share if self.min_share is not None else 0.05,
        }

    @property
    def parsed_audience(self) -> Audience | None:
        return self._audience

    def stored_audience(self) -> dict[str, Any]:
        if self.contact_ids is not None:
            return {"contact_ids": self.contact_ids}
        if self._audience is None:
            return {"subscribed": True}
        return self._audience.model_dump(mode="json", exclude_none=True)

    def rows_policy(self) -> tuple[str, dict[str, Any] | None]:
        """(the message rows' outside_window, their fallback template)."""
        if self.outside_window == "template":
            assert self.template is not None
            return "fallback", self.template.model_dump(mode="json", exclude_none=True)
        return self.outside_window, None


def create(settings: Settings, req: BroadcastRequest) -> Broadcast:
    spec = req.bandit_spec()
    now = utcnow()
    with session_scope(settings.database_url) as session:
        row = Broadcast(
            bandit=spec,
            decide_at=now + timedelta(minutes=spec["decide_after_minutes"]) if spec else None,
            created_at=now,
            name=req.name,
            kind=req.kind,
            payload=req.payload,
            marketing=req.marketing,
            outside_window=req.outside_window,
            variants=[v.model_dump(mode="json") for v in req.variants] if req.variants else None,
            fallback=req.template.model_dump(mode="json", exclude_none=True)
            if req.template
            else None,
            audience=req.stored_audience(),
        )
        session.add(row)
        session.flush()
    _enqueue_fan_out(settings, row.id)
    return row


def audience_select(session: Session, audience: dict[str, Any]) -> sa.Select:
    """The stored audience as a SELECT of contact ids (``contact_ids``: those that exist)."""
    if "contact_ids" in audience:
        ids = sorted(set(audience["contact_ids"]))
        bad = [i for i in ids if type(i) is not int or not 1 <= i <= MAX_ID]
        if bad:
            raise ValueError(f"contact_ids out of range: {bad[:10]}")
        return sa.select(Contact.id).where(Contact.id.in_(ids))
    if audience.get("subscribed"):
        return sa.select(Contact.id).where(Contact.subscribed.is_(True))
    return audience_ids(session, audience)


def audience_contact_ids(session: Session, audience: dict[str, Any]) -> list[int]:
    """The stored audience's contact ids, sorted (``contact_ids`` as given: a row is made for
    each, and delivery says what became of one that does not exist)."""
    if "contact_ids" in audience:
        audience_select(session, audience)  # the range check
        return sorted(set(audience["contact_ids"]))
    return sorted(session.execute(audience_select(session, audience)).scalars())


def _enqueue_fan_out(settings: Settings, broadcast_id: int) -> bool:
    try:
        queue.get_queue(settings, queue.BULK).enqueue(
            FAN_OUT, broadcast_id, job_id=f"broadcast-{broadcast_id}", job_timeout=3600
        )
    except queue.REDIS_ERRORS:
        return False  # it stays "fanning_out" and the sweeper enqueues it again
    return True


def sweep(settings: Settings) -> int:
    """Re-enqueue fan-outs whose job is gone (Redis down or flushed)."""
    with session_scope(settings.database_url) as session:
        ids = list(
            session.execute(
                sa.select(Broadcast.id).where(Broadcast.status == "fanning_out")
            ).scalars()
        )
    todo = [i for i in ids if not queue.job_alive(settings, f"broadcast-{i}")]
    for i in todo:
        queue.drop_job(settings, f"broadcast-{i}")
        _enqueue_fan_out(settings, i)
    return len(todo)


def problems(session: Session, req: BroadcastRequest) -> dict[str, str]:
    """What the database says is wrong with a valid-looking request: unknown contacts, an
    unknown segment, media that is not ours. {field: reason}; empty when fine."""
    from bot.audiences.resolve import segment_missing

    found: dict[str, str] = {}
    ids = req.contact_ids
    field = "contact_ids"
    audience = req.parsed_audience
    if audience is not None and audience.ids is not None:
        ids, field = audience.ids, "audience.ids"
    missing = missing_contacts(session, ids or [])
    if missing:
        shown = ", ".join(map(str, missing[:20])) + (" …" if len(missing) > 20 else "")
        found[field] = f"{len(missing)} unknown contact(s): {shown}"
    if audience is not None:
        why = segment_missing(session, audience)
        if why:
            found["audience.segment"] = why
    for ref in media_refs(req.kind, req.payload):
        m = session.get(Media, ref)
        if m is None:
            found["payload.media"] = f"no media {ref}"
        elif req.kind in ("news", "link") and not m.permanent:
            found["payload.media"] = "a news picture needs a permanent image (it has a URL)"
    return found


def missing_contacts(session: Session, ids: list[int]) -> list[int]:
    """The ids in ``ids`` that no contact has, in order."""
    wanted = sorted(set(ids))
    found: set[int] = set()
    for start in range(0, len(wanted), 1000):
        chunk = wanted[start : start + 1000]
        found.update(session.execute(sa.select(Contact.id).where(Contact.id.in_(chunk))).scalars())
    return [i for i in wanted if i not in found]


# A re-run may succeed once these pass; anything else fails the same way every time.
TRANSIENT = (*queue.REDIS_ERRORS, sa.exc.OperationalError, sa.exc.InterfaceError)


def fan_out(settings: Settings, broadcast_id: int) -> int:
    """Create the message rows and enqueue them; safe to run again. A failure no re-run can
    fix ends the broadcast ``failed`` with its reason."""
    return run_or_fail(settings, broadcast_id, "fan-out", _fan_out)


def run_or_fail(
    settings: Settings, broadcast_id: int, stage: str, run: Callable[[Settings, int], int]
) -> int:
    """``run(settings, broadcast_id)``; a failure no re-run can fix ends the broadcast
    ``failed`` with the stage and the reason, and returns 0. A transient one (Redis or the
    database unreachable) is raised: the broadcast keeps its status for the sweeper."""
    try:
        return run(settings, broadcast_id)
    except TRANSIENT:
        raise
    except Exception as exc:
        reason = f"{stage} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:400]}"
        log.exception("broadcast %s: %s", broadcast_id, reason)
        with session_scope(settings.database_url) as session:
            session.execute(
                sa.update(Broadcast.__table__)
                .where(Broadcast.__table__.c.id == broadcast_id)
                .values(status="failed", reason=reason)
            )
        return 0


def _fan_out(settings: Settings, broadcast_id: int) -> int:
    with session_scope(settings.database_url) as session:
        b = session.get(Broadcast, broadcast_id)
        if b is None or b.status != "fanning_out":
            return 0
        ids = audience_contact_ids(session, b.audience)
        variants = b.variants or []
        spec = b.bandit
    if spec:  # only the explore share now; the rest when the decision is made
        ids = [c for c in ids if in_explore(broadcast_id, c, spec)]
    created = write_rows(
        settings,
        broadcast_id,
        ids,
        lambda cid: variant_of(broadcast_id, cid, variants) if variants else None,
    )
    with session_scope(settings.database_url) as session:
        session.execute(
            sa.update(Broadcast.__table__)
            .where(Broadcast.__table__.c.id == broadcast_id)
            .values(total=len(ids), status="exploring" if spec else "queued")
        )
    if spec:
        from bot.messaging import broadcast_bandit

        broadcast_bandit.started(settings, broadcast_id)
    return created


def write_rows(
    settings: Settings,
    broadcast_id: int,
    ids: list[int],
    pick: Callable[[int], int | None],
) -> int:
    """One message row per contact (``pick``: the contact's variant), enqueued in batches;
    the rows that exist already (key ``b<id>:c<contact>``) are left as they are."""
    with session_scope(settings.database_url) as session:
        b = session.get(Broadcast, broadcast_id)
        assert b is not None
        kind, marketing, payload = b.kind, b.marketing, b.payload
        outside, fallback = b.outside_window, b.fallback
        if outside == "template":
            outside = "fallback"
        elif outside == "fallback":  # older rows: "fallback" was refused, never stored
            outside = "fail"
        variants = b.variants or []
    created = 0
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        rows = []
        for cid in chunk:
            variant = pick(cid)
            row = messaging.new_message_row(
                SendRequest.model_construct(
                    kind=kind,
                    payload=variants[variant]["payload"] if variant is not None else payload,
                    contact_id=cid,
                    to_user=None,
                    idempotency_key=f"b{broadcast_id}:c{cid}",
                    marketing=marketing,
                    outside_window=outside,
                    fallback=Template.model_validate(fallback) if fallback else None,
                    reply_to_event_id=None,
                ),
                broadcast_id=broadcast_id,
            )
            row["variant"] = variant
            rows.append(row)
        with session_scope(settings.database_url) as session:
            new_ids = messaging.insert_messages(session, rows)
        messaging.enqueue(settings, new_ids, batch=DELIVERY_BATCH)
        created += len(new_ids)
    return created


def variant_of(broadcast_id: int, contact_id: int, variants: list[dict[str, Any]]) -> int:
    """The contact's variant: their fixed draw for this broadcast against the percentages."""
    u = bandit.draw(f"broadcast-{broadcast_id}", "variants", contact_id)
    return bandit.arm_for(u, [float(v["percent"]) for v in variants])


def in_explore(broadcast_id: int, contact_id: int, spec: dict[str, Any]) -> bool:
    """Is the contact in a bandit broadcast's explore share (their fixed draw, own salt)?"""
    return bandit.draw(f"broadcast-{broadcast_id}", "explore", contact_id) < spec["explore"]


def _audience_summary(audience: dict[str, Any]) -> dict[str, Any]:
    """The audience as shown: id lists by their length (they may hold 100,000 ids)."""
    ids = audience.get("ids", audience.get("contact_ids"))
    return {"ids": len(ids)} if isinstance(ids, list) else audience


def _bandit_progress(session: Session, b: Broadcast) -> dict[str, Any]:
    if not b.bandit:
        return {"mode": "split"}
    from bot.messaging import broadcast_bandit

    return {"mode": "bandit", **broadcast_bandit.stage(session, b)}


def progress(session: Session, broadcast_id: int) -> dict[str, Any] | None:
    b = session.get(Broadcast, broadcast_id)
    if b is None:
        return None
    t = Message.__table__.c
    counts = dict(
        session.execute(
            sa.select(t.status, sa.func.count())
            .where(t.broadcast_id == broadcast_id)
            .group_by(t.status)
        ).all()
    )
    first, last = session.execute(
        sa.select(sa.func.min(t.sent_at), sa.func.max(t.sent_at)).where(
            t.broadcast_id == broadcast_id, t.status == "sent"
        )
    ).one()
    done = sum(counts.get(s, 0) for s in messaging.FINAL | {"held"})
    mass = [
        {
            "id": m.id,
            "target": m.target,
            "tag_id": m.tag_id,
            "recipients": m.recipients,
            "status": m.status,
            "msg_id": m.msg_id,
            "platform_status": m.platform_status,
            "total_count": m.total_count,
            "filter_count": m.filter_count,
            "sent_count": m.sent_count,
            "error_count": m.error_count,
            "error_code": m.error_code,
            "error_message": m.error_message,
        }
        for m in session.execute(
            sa.select(MassSend).where(MassSend.broadcast_id == broadcast_id).order_by(MassSend.id)
        ).scalars()
    ]
    return {
        "id": b.id,
        "name": b.name,
        "kind": b.kind,
        "status": b.status
        if b.status in ("fanning_out", "failed", "exploring")
        else ("done" if done >= b.total else "sending"),
        "reason": b.reason,
        "outside_window": b.outside_window,
        "audience": _audience_summary(b.audience),
        "total": b.total,
        "variants": [v["name"] for v in b.variants] if b.variants else None,
        **_bandit_progress(session, b),
        "mass_sends": mass,
        "counts": counts,
        "done": done,
        "first_sent_at": first.isoformat() if first else None,
        "last_sent_at": last.isoformat() if last else None,
        "created_at": b.created_at.isoformat(),
        "checked_at": utcnow().isoformat(),
    }
