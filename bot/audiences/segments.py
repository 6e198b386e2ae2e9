"""Saved segments: a name and a definition in the one condition language (a journeys ``Pred``),
checked when saved (every bad clause named by its path), compiled to one SQL query
(bot.audiences.sql) to count, page or test one contact.

Other areas call ``member_ids`` (a Select of contact ids to join or count) and ``matches``."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.orm import Session

import journeys
from bot.audiences import sql
from bot.core.models import Contact, Journey, JourneyVersion, Segment, utcnow
from bot.scoring.versions import active
from journeys.conditions import Cmp
from journeys.model import Pred
from journeys.validate import named_segments

S = Segment.__table__.c
K = Contact.__table__.c
PAGE = 50
NUMBERS = ("score", "count", "silent_days", "source")  # a number: no text operators


class SegmentInvalid(ValueError):
    """Bad input: ``fields`` maps each bad path (``definition.all[0].score.prefix``) to why."""

    def __init__(self, fields: dict[str, str]):
        self.fields = fields
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))


class DuplicateName(Exception):
    pass


class UnknownSegment(LookupError):
    pass


# --- checking a definition -----------------------------------------------------------------


def _path(loc: tuple[Any, ...]) -> str:
    out = "definition"
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{'not' if part == 'not_' else part}"
    return out


def _problems(pred: Pred) -> Iterator[tuple[str, str]]:
    """What a definition that parsed still cannot be: what SQL cannot read."""
    for where, p in pred.walk("definition"):
        if p.answer is not None:
            yield f"{where}.answer", "a segment has no answers (only a journey's ask step has)"
        for name in NUMBERS:
            cmp = getattr(p, name)
            for op in ("prefix", "contains", "keywords"):
                if isinstance(cmp, Cmp) and getattr(cmp, op) is not None:
                    yield (
                        f"{where}.{name}.{op}",
                        f"{name} is a number: use eq, in, gt, gte, lt, lte",
                    )
        cmps: list[tuple[str, Cmp]] = [(f"{where}.{k}", getattr(p, k)) for k in ("stage", "owner")]
        if p.is_ is not None:
            cmps.append((f"{where}.is", p.is_))
        cmps += [(f"{where}.conditions.{k}", c) for k, c in (p.conditions or {}).items()]
        for name in [*(p.conditions or {}), *([p.field] if p.field is not None else [])]:
            if '"' in name or "" in name.split("."):
                yield (
                    f"{where}.{'field' if name == p.field else 'conditions.' + name}",
                    ("a property name in a segment has no double quotes or empty parts (a..b)"),
                )
        for at, cmp in cmps:
            if isinstance(cmp, Cmp) and cmp.keywords is not None:
                yield f"{at}.keywords", "a segment cannot match jieba words; use contains"


def _references(pred: Pred) -> Iterator[tuple[str, int]]:
    for where, p in pred.walk("definition"):
        if p.segment is not None:
            yield f"{where}.segment", p.segment


def parse(data: Any) -> Pred:
    """The definition, or SegmentInvalid naming every bad clause."""
    if not isinstance(data, Mapping):
        raise SegmentInvalid({"definition": "a condition object, e.g. {tag: 意向:价格}"})
    try:
        pred = Pred.model_validate(data)
    except ValidationError as exc:
        fields: dict[str, str] = {}
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            fields.setdefault(_path(tuple(err["loc"])), msg)
        raise SegmentInvalid(fields) from None
    problems = dict(_problems(pred))
    if problems:
        raise SegmentInvalid(problems)
    return pred


def _definitions(session: Session) -> dict[int, Pred]:
    return {
        r.id: Pred.model_validate(r.definition)
        for r in session.execute(sa.select(S.id, S.definition))
    }


def _check_references(session: Session, pred: Pred, own_id: int | None) -> None:
    """Every ``{segment: id}`` names a saved segment, and none leads back to this one."""
    saved = _definitions(session)
    problems: dict[str, str] = {}
    for where, ref in _references(pred):
        if ref not in saved:
            problems[where] = f"no segment {ref}"
        elif own_id is not None and (ref == own_id or own_id in _reachable(saved, ref)):
            problems[where] = (
                f"segment {ref} includes this segment: a segment cannot include itself"
            )
    if problems:
        raise SegmentInvalid(problems)


def _reachable(saved: Mapping[int, Pred], start: int) -> set[int]:
    seen: set[int] = set()
    todo = [start]
    while todo:
        for _where, ref in _references(saved.get(todo.pop(), Pred(tag="-"))):
            if ref not in seen:
                seen.add(ref)
                todo.append(ref)
    return seen


# --- the store -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentIn:
    name: str
    definition: Any
    description: str = ""


def _clean(data: SegmentIn) -> tuple[str, str, Pred]:
    name = data.name.strip()
    problems: dict[str, str] = {}
    if not 1 <= len(name) <= 100:
        problems["name"] = "1 to 100 characters"
    if len(data.description) > 500:
        problems["description"] = "at most 500 characters"
    try:
        pred = parse(data.definition)
    except SegmentInvalid as exc:
        problems.update(exc.fields)
        raise SegmentInvalid(problems) from None
    if problems:
        raise SegmentInvalid(problems)
    return name, data.description, pred


def _dump(pred: Pred) -> dict[str, Any]:
    return pred.model_dump(mode="json", by_alias=True, exclude_none=True)


def _name_taken(session: Session, name: str, other_than: int | None) -> bool:
    q = sa.select(S.id).where(S.name == name)
    if other_than is not None:
        q = q.where(S.id != other_than)
    return session.execute(q).first() is not None


def create(session: Session, data: SegmentIn) -> Segment:
    """Store a new segment in the caller's transaction (SegmentInvalid, DuplicateName)."""
    name, description, pred = _clean(data)
    _check_references(session, pred, None)
    if _name_taken(session, name, None):
        raise DuplicateName(name)
    row = Segment(name=name, description=description, definition=_dump(pred))
    session.add(row)
    session.flush()
    return row


def update(session: Session, segment_id: int, data: SegmentIn) -> Segment:
    row = get(session, segment_id)
    name, description, pred = _clean(data)
    _check_references(session, pred, segment_id)
    if _name_taken(session, name, segment_id):
        raise DuplicateName(name)
    row.name, row.description, row.definition = name, description, _dump(pred)
    row.updated_at = utcnow()
    session.add(row)
    session.flush()
    return row


def delete(session: Session, segment_id: int) -> None:
    """Remove a segment (its remembered members go with it); SegmentInvalid while another
    segment includes it."""
    row = get(session, segment_id)
    users = [
        sid
        for sid, pred in _definitions(session).items()
        if sid != segment_id and any(ref == segment_id for _w, ref in _references(pred))
    ]
    if users:
        raise SegmentInvalid({"id": f"segments {users} include this segment"})
    journeys_ = _journeys_naming(session, segment_id)
    if journeys_:
        names = ", ".join(journeys_)
        raise SegmentInvalid({"id": f"published or paused journeys name this segment: {names}"})
    session.delete(row)
    session.flush()


def _journeys_naming(session: Session, segment_id: int) -> list[str]:
    """The published or paused journeys whose running version names the segment."""
    j, v = Journey.__table__.c, JourneyVersion.__table__.c
    rows = session.execute(
        sa.select(j.name, v.definition)
        .join(JourneyVersion.__table__, sa.and_(v.journey_id == j.id, v.version == j.version))
        .where(j.status.in_(["published", "paused"]))
        .order_by(j.id)
    )
    found = []
    for name, definition in rows:
        try:
            d = journeys.parse(definition)
        except ValidationError:
            continue
        if segment_id in named_segments(d):
            found.append(name)
    return found


def get(session: Session, segment_id: int) -> Segment:
    row = session.get(Segment, segment_id)
    if row is None:
        raise UnknownSegment(segment_id)
    return row


def ids(session: Session) -> set[int]:
    """Every saved segment's id (what a journey may name)."""
    return set(session.execute(sa.select(S.id)).scalars())


def list_segments(session: Session) -> list[Segment]:
    return list(session.execute(sa.select(Segment).order_by(S.id)).scalars())


def to_json(row: Segment) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "definition": row.definition,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }


# --- members -------------------------------------------------------------------------------


def facts(session: Session, now: datetime | None = None) -> sql.Facts:
    """What compiling needs: the clock, the dialect, decay's half-life, every saved segment."""
    return sql.Facts(
        now=now or utcnow(),
        dialect=session.get_bind().dialect.name,
        half_life_days=active(session).rules.half_life,
        segments=_definitions(session),
    )


def definition_of(session: Session, segment_id: int) -> Pred:
    return Pred.model_validate(get(session, segment_id).definition)


def member_ids(session: Session, segment_id: int, now: datetime | None = None) -> sa.Select:
    """The ids of the segment's contacts (never a merged one) as one query: count it, page it,
    join it (``WHERE contact_id IN (...)``). UnknownSegment for an unknown id."""
    return sql.members(definition_of(session, segment_id), facts(session, now))


def matches(
    session: Session, segment_id: int, contact_id: int, now: datetime | None = None
) -> bool:
    """Is this contact in the segment now? (The same query, on one contact.)"""
    q = member_ids(session, segment_id, now).where(K.id == contact_id)
    return session.execute(sa.select(sa.exists(q))).scalar_one()


def count(session: Session, segment_id: int, now: datetime | None = None) -> int:
    inner = member_ids(session, segment_id, now).subquery()
    return session.execute(sa.select(sa.func.count()).select_from(inner)).scalar_one()


def page(
    session: Session, segment_id: int, after: int | None = None, limit: int = PAGE
) -> tuple[list[dict[str, Any]], int | None]:
    """A keyset page of the segment's contacts by id (``after``: the last id of the previous
    page); the contacts and the cursor of the next page (None: the last page)."""
    ids = member_ids(session, segment_id)
    if after is not None:
        ids = ids.where(K.id > after)
    rows = session.execute(
        ids.with_only_columns(
            K.id, K.name, K.stage, K.score, K.subscribed, K.owner_userid, K.last_seen_at
        )
        .order_by(K.id)
        .limit(limit + 1)
    ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    contacts = [
        {
            "id": r.id,
            "name": r.name,
            "stage": r.stage,
            "score": round(r.score or 0.0, 2),
            "subscribed": r.subscribed,
            "owner_userid": r.owner_userid,
            "last_seen_at": r.last_seen_at.isoformat() if r.last_seen_at else None,
        }
        for r in rows
    ]
    return contacts, (rows[-1].id if more and rows else None)
