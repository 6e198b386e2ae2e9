"""Campaigns: create, change, read (the spec as the API shows it)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.campaigns.spec import CampaignSpec, sanitize
from bot.core.models import Campaign, utcnow


class SlugTaken(Exception):
    """Another campaign has this slug."""


def _apply(row: Campaign, spec: CampaignSpec) -> None:
    row.slug, row.name, row.title, row.kind = spec.slug, spec.name, spec.title, spec.kind
    row.body = sanitize(spec.body)
    row.cover_url, row.cta = spec.cover_url, spec.cta
    row.spec = spec.model_dump(
        mode="json", exclude={"slug", "name", "title", "kind", "body", "cover_url", "cta"}
    )
    row.updated_at = utcnow()


def _slug_owner(session: Session, slug: str) -> int | None:
    return session.execute(sa.select(Campaign.id).where(Campaign.slug == slug)).scalar()


def create(session: Session, spec: CampaignSpec) -> Campaign:
    if _slug_owner(session, spec.slug) is not None:
        raise SlugTaken(spec.slug)
    row = Campaign(slug=spec.slug, name="", title="", kind="landing")
    _apply(row, spec)
    session.add(row)
    session.commit()
    return row


def update(session: Session, campaign_id: int, spec: CampaignSpec) -> Campaign | None:
    row = session.get(Campaign, campaign_id)
    if row is None:
        return None
    owner = _slug_owner(session, spec.slug)
    if owner is not None and owner != campaign_id:
        raise SlugTaken(spec.slug)
    _apply(row, spec)
    session.add(row)
    session.commit()
    return row


def get(session: Session, campaign_id: int) -> Campaign | None:
    return session.get(Campaign, campaign_id)


def by_slug(session: Session, slug: str) -> Campaign | None:
    return session.execute(sa.select(Campaign).where(Campaign.slug == slug)).scalar()


def all_campaigns(session: Session) -> list[Campaign]:
    return list(session.execute(sa.select(Campaign).order_by(Campaign.id)).scalars())


def as_json(row: Campaign) -> dict[str, Any]:
    return {
        "id": row.id,
        "slug": row.slug,
        "name": row.name,
        "title": row.title,
        "kind": row.kind,
        "body": row.body,
        "cover_url": row.cover_url,
        "cta": row.cta,
        **row.spec,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }
