"""One message to many contacts. Creating a broadcast stores it and enqueues a fan-out job;
the fan-out writes one message row per contact (idempotency key ``b<id>:c<contact>``, so a
re-run creates nothing twice) and enqueues their delivery in batches. The per-app rate limit
in bot.core.wechat spreads the sends; progress is a count of the rows by status. A fan-out that
fails for a reason a re-run cannot fix (anything but Redis or the database being unreachable)
ends the broadcast ``failed`` with its reason; the sweeper only re-runs ``fanning_out`` ones."""

from __future__ import annotations

import logging
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import Field, ValidationError, model_validator
from sqlalchemy.orm import Session

from bot.core import queue
from bot.core.config import Settings
from bot.core.db import session_scope
from bot.core.input_guard import MAX_ID, Id
from bot.core.models import Broadcast, Contact, Message, utcnow
from bot.messaging import outbox as messaging
from bot.messaging.payloads import PAYLOADS, SendRequest, Strict
from journeys import bandit

log = logging.getLogger(__name__)
FAN_OUT = "bot.background.jobs.fan_out_broadcast"
BATCH = 500  # rows written per transaction
DELIVERY_BATCH = 50  # messages per delivery job


class Variant(Strict):
    name: str = Field(min_length=1, max_length=40)
    payload: dict[str, Any]
    percent: float = Field(ge=0, le=100)


class BroadcastRequest(Strict):
    name: str = Field(min_length=1, max_length=100)
    kind: Literal["text", "news", "link", "image", "miniprogram", "template"]
    payload: dict[str, Any]
    marketing: bool = True
    outside_window: Literal["hold", "fallback", "fail"] = "fail"
    audience: Literal["subscribed"] | None = None
    contact_ids: list[Id] | None = Field(default=None, min_length=1, max_length=100_000)
    # an A/B set: each contact gets one variant's payload instead of ``payload`` (optional)
    variants: list[Variant] | None = Field(default=None, min_length=2, max_length=5)

    @model_validator(mode="after")
    def _consistent(self) -> BroadcastRequest:
        self.payload = (
            PAYLOADS[self.kind]
            .model_validate(self.payload)
            .model_dump(mode="json", exclude_none=True)
        )
        if (self.audience is None) == (self.contact_ids is None):
            raise ValueError("audience: give either audience='subscribed' or contact_ids")
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
        if self.variants is not None:
            total = sum(v.percent for v in self.variants)
            if abs(total - 100) > 1e-9:
                raise ValueError(f"variants: the percentages add up to {total:g}, not 100")
            if len({v.name for v in self.variants}) != len(self.variants):
                raise ValueError("variants: each variant has its own name")
        if self.outside_window == "fallback":
            raise ValueError(
                "outside_window: a broadcast has no per-contact fallback; use hold or fail"
            )
        return self


def create(settings: Settings, req: BroadcastRequest) -> Broadcast:
    with session_scope(settings.database_url) as session:
        audience = {"subscribed": True} if req.audience else {"contact_ids": req.contact_ids}
        row = Broadcast(
            name=req.name,
            kind=req.kind,
            payload=req.payload,
            marketing=req.marketing,
            outside_window=req.outside_window,
            audience=audience,
            variants=[v.model_dump(mode="json") for v in req.variants] if req.variants else None,
        )
        session.add(row)
        session.flush()
    _enqueue_fan_out(settings, row.id)
    return row


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


def missing_contacts(session: Session, ids: list[int]) -> list[int]:
    """The ids in ``ids`` that no contact has, in order."""
    wanted = sorted(set(ids))
    found: set[int] = set()
    for start in range(0, len(wanted), 1000):
        chunk = wanted[start : start + 1000]
        found.update(session.execute(sa.select(Contact.id).where(Contact.id.in_(chunk))).scalars())
    return [i for i in wanted if i not in found]


# A re-run may succeed once these pass; anything else fails the same way every time.
_TRANSIENT = (*queue.REDIS_ERRORS, sa.exc.OperationalError, sa.exc.InterfaceError)


def fan_out(settings: Settings, broadcast_id: int) -> int:
    """Create the message rows and enqueue them; safe to run again. A failure no re-run can
    fix ends the broadcast ``failed`` with its reason."""
    try:
        return _fan_out(settings, broadcast_id)
    except _TRANSIENT:
        raise  # still fanning_out: the sweeper enqueues it again
    except Exception as exc:
        reason = f"fan-out failed: {type(exc).__name__}: {str(exc).splitlines()[0][:400]}"
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
        if "contact_ids" in b.audience:
            ids = sorted(set(b.audience["contact_ids"]))
            bad = [i for i in ids if type(i) is not int or not 1 <= i <= MAX_ID]
            if bad:
                raise ValueError(f"contact_ids out of range: {bad[:10]}")
        else:
            ids = list(
                session.execute(
                    sa.select(Contact.id).where(Contact.subscribed.is_(True)).order_by(Contact.id)
                ).scalars()
            )
        kind, marketing, payload, outside = b.kind, b.marketing, b.payload, b.outside_window
        variants = b.variants or []
    created = 0
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        rows = []
        for cid in chunk:
            variant = variant_of(broadcast_id, cid, variants) if variants else None
            row = messaging.new_message_row(
                SendRequest.model_construct(
                    kind=kind,
                    payload=variants[variant]["payload"] if variant is not None else payload,
                    contact_id=cid,
                    to_user=None,
                    idempotency_key=f"b{broadcast_id}:c{cid}",
                    marketing=marketing,
                    outside_window=outside,
                    fallback=None,
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
    with session_scope(settings.database_url) as session:
        session.execute(
            sa.update(Broadcast.__table__)
            .where(Broadcast.__table__.c.id == broadcast_id)
            .values(total=len(ids), status="queued")
        )
    return created


def variant_of(broadcast_id: int, contact_id: int, variants: list[dict[str, Any]]) -> int:
    """The contact's variant: their fixed draw for this broadcast against the percentages."""
    u = bandit.draw(f"broadcast-{broadcast_id}", "variants", contact_id)
    return bandit.arm_for(u, [float(v["percent"]) for v in variants])


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
    return {
        "id": b.id,
        "name": b.name,
        "kind": b.kind,
        "status": b.status
        if b.status in ("fanning_out", "failed")
        else ("done" if done >= b.total else "sending"),
        "reason": b.reason,
        "total": b.total,
        "variants": [v["name"] for v in b.variants] if b.variants else None,
        "counts": counts,
        "done": done,
        "first_sent_at": first.isoformat() if first else None,
        "last_sent_at": last.isoformat() if last else None,
        "created_at": b.created_at.isoformat(),
        "checked_at": utcnow().isoformat(),
    }
