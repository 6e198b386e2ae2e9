"""A campaign's figures: counts per step, conversion, per sharer and per depth, leaderboards
of employees and of customers (points earned here), and any sharer's chain as a tree."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.campaigns import chain
from bot.core.models import Campaign, Event, PointsEntry

STEPS = {
    "h5.visit": "visits",
    "h5.share": "shares",
    "h5.form_submitted": "forms",
    "h5.follow": "follows",
    "h5.download": "downloads",
    "h5.signup": "signups",
    "h5.checkin": "checkins",
}
FUNNEL = [
    ("visits", "forms"),
    ("forms", "signups"),
    ("signups", "checkins"),
    ("visits", "shares"),
    ("visits", "follows"),
    ("forms", "downloads"),
]


def _events(session: Session, campaign_id: int) -> list[Any]:
    e = Event.__table__.c
    return session.execute(
        sa.select(e.type, e.contact_id, e.properties).where(
            e.type.in_(list(STEPS)), e.properties["campaign_id"].as_integer() == campaign_id
        )
    ).all()


def _rate(a: int, b: int) -> float:
    return round(b / a, 4) if a else 0.0


def _leaders(session: Session, campaign_id: int, prefix: str, limit: int = 10) -> list[dict]:
    p = PointsEntry.__table__.c
    rows = session.execute(
        sa.select(p.holder, sa.func.sum(p.points).label("points"), sa.func.count().label("lines"))
        .where(p.campaign_id == campaign_id, p.holder.startswith(prefix))
        .group_by(p.holder)
        .order_by(sa.desc("points"), p.holder)
        .limit(limit)
    ).all()
    return [{"holder": r.holder, "points": int(r.points), "credits": r.lines} for r in rows]


def campaign_stats(session: Session, camp: Campaign, page_views: int) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    uniques: set[int] = set()
    per_sharer: dict[str, Counter[str]] = defaultdict(Counter)
    per_depth: dict[int, Counter[str]] = defaultdict(Counter)
    for type_, contact_id, props in _events(session, camp.id):
        step = STEPS[type_]
        counts[step] += 1
        if type_ == "h5.visit":
            uniques.add(contact_id)
        per_sharer[props.get("sharer") or "(direct)"][step] += 1
        per_depth[int(props.get("depth") or 0)][step] += 1
    totals = {step: counts.get(step, 0) for step in STEPS.values()}
    return {
        "campaign_id": camp.id,
        "slug": camp.slug,
        "page_views": page_views,
        "unique_visitors": len(uniques),
        **totals,
        "conversion": {f"{a}_to_{b}": _rate(totals[a], totals[b]) for a, b in FUNNEL},
        "per_sharer": {k: dict(v) for k, v in sorted(per_sharer.items())},
        "per_depth": {str(k): dict(v) for k, v in sorted(per_depth.items())},
        "leaderboard": {
            "employees": _leaders(session, camp.id, "u:"),
            "customers": _leaders(session, camp.id, "c:"),
        },
    }


def sharer_tree(
    session: Session, camp: Campaign, userid: str | None, contact_id: int | None
) -> dict:
    """The chain below an employee (``userid``) or a customer (``contact_id``)."""
    root = chain.node_of(session, camp.id, contact_id) if contact_id is not None else None
    children = chain.tree(session, camp.id, root, userid)

    def size(nodes: list[dict]) -> int:
        return sum(1 + size(n["children"]) for n in nodes)

    return {
        "campaign_id": camp.id,
        "sharer": f"u:{userid}" if userid else f"c:{contact_id}",
        "depth": root.depth if root else 0,
        "people": size(children),
        "children": children,
    }
