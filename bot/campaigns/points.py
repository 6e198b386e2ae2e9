"""Points (积分): a ledger per person (``u:<userid>`` for an employee, ``c:<contact>`` for a
customer), each line with its reason and a key so a retried credit adds nothing; a balance row
that redemptions take from with one conditional UPDATE, and rewards whose stock is taken the
same way, so concurrent redemptions never overspend and stock never goes below zero."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.campaigns import chain
from bot.core.db import dialect_insert
from bot.core.models import Campaign, PointsBalance, PointsEntry, Redemption, Reward, utcnow

PE, PB, RW = PointsEntry.__table__, PointsBalance.__table__, Reward.__table__


class RedeemRefused(Exception):
    """Not enough points, out of stock, or no such reward: the message says which (Chinese)."""


def add_points(
    session: Session, holder: str, campaign_id: int | None, points: int, reason: str, key: str
) -> bool:
    inserted = session.execute(
        dialect_insert(session, PE)
        .values(
            holder=holder,
            campaign_id=campaign_id,
            points=points,
            reason=reason,
            key=key,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing(index_elements=["key", "holder"])
        .returning(PE.c.id)
    ).scalar()
    if inserted is None:
        return False
    session.execute(
        dialect_insert(session, PB)
        .values(holder=holder, balance=0)
        .on_conflict_do_nothing(index_elements=["holder"])
    )
    session.execute(
        sa.update(PB).where(PB.c.holder == holder).values(balance=PB.c.balance + points)
    )
    return True


def credit_form(session: Session, campaign: Campaign, node: chain.Node, who: str) -> list[dict]:
    """The reward rule for one form submitted by the contact at ``node``: each sharer up the
    chain, to the rule's depth, gets its points once (the key names the form)."""
    rule = campaign.spec.get("reward") or {}
    points = int(rule.get("points_per_form") or 0)
    if points <= 0:
        return []
    credited = []
    for level, holder in chain.ancestors(session, node, int(rule.get("depth") or 3)):
        reason = f"「{campaign.title}」{who}提交表单（第{level}级）"
        if add_points(
            session, holder, campaign.id, points, reason, f"form:{campaign.id}:{node.contact_id}"
        ):
            credited.append({"holder": holder, "level": level, "points": points})
    return credited


def balance(session: Session, holder: str) -> int:
    return session.execute(sa.select(PB.c.balance).where(PB.c.holder == holder)).scalar() or 0


def ledger(session: Session, holder: str, limit: int = 50) -> list[dict[str, Any]]:
    rows = session.execute(
        sa.select(PE).where(PE.c.holder == holder).order_by(PE.c.id.desc()).limit(limit)
    ).all()
    return [
        {"points": r.points, "reason": r.reason, "at": r.created_at.isoformat(), "key": r.key}
        for r in rows
    ]


def rewards(session: Session) -> list[Reward]:
    return list(session.execute(sa.select(Reward).order_by(Reward.cost, Reward.id)).scalars())


def add_reward(session: Session, name: str, kind: str, cost: int, stock: int) -> Reward:
    row = Reward(name=name, kind=kind, cost=cost, stock=stock)
    session.add(row)
    session.commit()
    return row


@dataclass(frozen=True)
class Redeemed:
    redemption_id: int
    reward: str
    code: str
    balance: int
    repeated: bool


def _previous(session: Session, request_key: str) -> Redeemed | None:
    row = session.execute(
        sa.select(Redemption).where(Redemption.request_key == request_key)
    ).scalar()
    if row is None:
        return None
    reward = session.get(Reward, row.reward_id)
    return Redeemed(row.id, reward.name, row.code, balance(session, row.holder), True)


def redeem(session: Session, holder: str, reward_id: int, request_key: str) -> Redeemed:
    """Spend points on one reward and commit; the same ``request_key`` again answers the first
    redemption. Raises RedeemRefused."""
    earlier = _previous(session, request_key)
    if earlier is not None:
        return earlier
    reward = session.get(Reward, reward_id)
    if reward is None:
        raise RedeemRefused("没有这个奖品")
    taken = session.execute(
        sa.update(RW).where(RW.c.id == reward_id, RW.c.stock > 0).values(stock=RW.c.stock - 1)
    ).rowcount
    if taken != 1:
        session.rollback()
        raise RedeemRefused("奖品已兑完")
    spent = session.execute(
        sa.update(PB)
        .where(PB.c.holder == holder, PB.c.balance >= reward.cost)
        .values(balance=PB.c.balance - reward.cost)
    ).rowcount
    if spent != 1:
        session.rollback()
        raise RedeemRefused("积分不足")
    code = f"YC{secrets.token_hex(5).upper()}"
    row = Redemption(
        reward_id=reward_id, holder=holder, cost=reward.cost, code=code, request_key=request_key
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError:  # the same request, concurrently: it won
        session.rollback()
        earlier = _previous(session, request_key)
        if earlier is None:
            raise
        return earlier
    session.execute(
        sa.insert(PE).values(
            holder=holder,
            campaign_id=None,
            points=-reward.cost,
            reason=f"兑换「{reward.name}」",
            key=f"redeem:{row.id}",
            created_at=utcnow(),
        )
    )
    session.commit()
    return Redeemed(row.id, reward.name, code, balance(session, holder), False)
