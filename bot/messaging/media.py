"""Images (and other media) uploaded to the Official Account once and referenced by our id.

A ``media`` row keeps the file's bytes and the platform's ``media_id``: temporary media
(``media/upload``) lives 3 days, so it is uploaded again before a send that references it
once it has expired (or is about to), and again when the platform answers 40007 (invalid
media_id); permanent material (``material/add_material``) keeps its id and has a URL, which
news articles use as their picture. Messages carry ``{"media": <our id>}``; ``bind`` swaps in
the platform's id (or URL) just before the call.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.core import wechat
from bot.core.config import Settings
from bot.core.db import session_scope
from bot.core.models import Media, utcnow

log = logging.getLogger(__name__)

TEMPORARY_LIFE = timedelta(days=3)
MARGIN = timedelta(hours=1)  # upload again this long before the platform forgets it
# kind -> (largest size in bytes, formats) per the platform's media rules
LIMITS: dict[str, tuple[int, set[str]]] = {
    "image": (10 * 1024 * 1024, {"jpeg", "png", "gif", "bmp"}),
    "thumb": (64 * 1024, {"jpeg"}),
}
TEMPORARY_FORMATS = {"image": {"jpeg", "png", "gif"}, "thumb": {"jpeg"}}  # no bmp for media/upload
CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "gif": "image/gif", "bmp": "image/bmp"}


class MediaError(Exception):
    """A media reference that cannot be sent (unknown id, upload refused)."""


@dataclass
class Invalid(Exception):
    field: str
    reason: str


def sniff(content: bytes) -> str | None:
    """The image format by its first bytes (never by the file name)."""
    if content.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if content[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if content.startswith(b"BM"):
        return "bmp"
    return None


def media_json(m: Media) -> dict[str, Any]:
    iso = lambda v: v.isoformat() if v else None  # noqa: E731
    return {
        "id": m.id,
        "kind": m.kind,
        "permanent": m.permanent,
        "filename": m.filename,
        "content_type": m.content_type,
        "size": m.size,
        "sha256": m.sha256,
        "media_id": m.media_id,
        "url": m.url,
        "uploaded_at": iso(m.uploaded_at),
        "expires_at": iso(m.expires_at),
        "uploads": m.uploads,
        "error": m.error,
        "created_at": iso(m.created_at),
    }


def check(kind: str, permanent: bool, filename: str, content: bytes) -> str:
    """The file's format, or Invalid naming the field."""
    if kind not in LIMITS:
        raise Invalid("kind", f"one of {', '.join(sorted(LIMITS))}")
    if not content:
        raise Invalid("file", "the file is empty")
    largest, formats = LIMITS[kind]
    if not permanent:
        formats = TEMPORARY_FORMATS[kind]
    if len(content) > largest:
        raise Invalid("file", f"{kind} files are at most {largest // 1024} KB")
    found = sniff(content)
    if found not in formats:
        raise Invalid("file", f"a {kind} must be {'/'.join(sorted(formats))}")
    if not filename or len(filename) > 200:
        raise Invalid("filename", "1 to 200 characters")
    return found


def create(settings: Settings, kind: str, permanent: bool, filename: str, content: bytes) -> Media:
    """Store the file and upload it now (a failed upload is kept as ``error`` and tried
    again before a send)."""
    found = check(kind, permanent, filename, content)
    with session_scope(settings.database_url) as session:
        row = Media(
            kind=kind,
            permanent=permanent,
            filename=filename,
            content_type=CONTENT_TYPES[found],
            size=len(content),
            sha256=hashlib.sha256(content).hexdigest(),
            content=content,
        )
        session.add(row)
        session.flush()
        media_id = row.id
    try:
        return upload(settings, media_id)
    except wechat.PlatformError:
        return get_row(settings, media_id)


def get_row(settings: Settings, media_id: int) -> Media:
    with session_scope(settings.database_url) as session:
        row = session.get(Media, media_id)
        if row is None:
            raise MediaError(f"no media {media_id}")
        session.expunge(row)
        return row


def get(session: Session, media_id: int) -> Media | None:
    """The row without its bytes (up to 10 MB: read only to upload them)."""
    return session.get(Media, media_id, options=[sa.orm.defer(Media.content)])


def listing(session: Session, limit: int = 100) -> list[Media]:
    return list(
        session.execute(
            sa.select(Media)
            .options(sa.orm.defer(Media.content))
            .order_by(Media.id.desc())
            .limit(limit)
        ).scalars()
    )


def upload(settings: Settings, media_id: int, now: datetime | None = None) -> Media:
    """Upload the file to the platform (``media/upload`` or ``material/add_material``) and
    keep its media_id with its expiry. Raises PlatformError (recorded on the row)."""
    now = now or utcnow()
    row = get_row(settings, media_id)
    path = "material/add_material" if row.permanent else "media/upload"
    files = {"media": (row.filename, row.content, row.content_type)}
    try:
        answer = wechat.oa(settings).call("post", path, params={"type": row.kind}, files=files)
    except wechat.PlatformError as exc:
        with session_scope(settings.database_url) as session:
            session.execute(
                sa.update(Media.__table__)
                .where(Media.__table__.c.id == media_id)
                .values(error=f"{exc.errcode}: {exc.errmsg}"[:500])
            )
        raise
    values = {
        "media_id": str(answer["media_id"]),
        "url": answer.get("url"),
        "uploaded_at": now,
        "expires_at": None if row.permanent else now + TEMPORARY_LIFE,
        "uploads": row.uploads + 1,
        "error": None,
    }
    with session_scope(settings.database_url) as session:
        session.execute(
            sa.update(Media.__table__).where(Media.__table__.c.id == media_id).values(**values)
        )
    log.info("media %s uploaded (%s): %s", media_id, path, values["media_id"])
    return get_row(settings, media_id)


def fresh(m: Media, now: datetime) -> bool:
    if m.media_id is None:
        return False
    return m.expires_at is None or now < m.expires_at - MARGIN


def platform_media(settings: Settings, media_id: int, now: datetime | None = None) -> Media:
    """Our media with a platform id good for a send now (uploaded again when expired)."""
    now = now or utcnow()
    row = get_row(settings, media_id)
    if fresh(row, now):
        return row
    try:
        return upload(settings, media_id, now)
    except wechat.PlatformError as exc:
        raise MediaError(f"media {media_id} could not be uploaded: {exc}") from None


def forget(settings: Settings, media_id: int) -> None:
    """The platform no longer knows the id (40007): upload again before the next send."""
    with session_scope(settings.database_url) as session:
        session.execute(
            sa.update(Media.__table__)
            .where(Media.__table__.c.id == media_id, Media.__table__.c.permanent.is_(False))
            .values(expires_at=utcnow() - MARGIN)
        )


def bind_image(settings: Settings, image: dict[str, Any]) -> dict[str, Any]:
    """``{"media": our id}`` -> ``{"media_id": the platform's}``; a platform id stays."""
    if "media" not in image:
        return image
    return {"media_id": platform_media(settings, int(image["media"])).media_id}


def bind(settings: Settings, body: dict[str, Any]) -> tuple[dict[str, Any], list[int]]:
    """A customer-service body with our media references swapped for the platform's; and the
    ids of our media it references (to forget on 40007)."""
    kind = body.get("msgtype")
    if kind == "image" and "media" in body.get("image", {}):
        ours = int(body["image"]["media"])
        return {**body, "image": bind_image(settings, body["image"])}, [ours]
    if kind == "news":
        articles = body["news"]["articles"]
        refs = [int(a["media"]) for a in articles if "media" in a]
        if not refs:
            return body, []
        bound = []
        for a in articles:
            if "media" in a:
                m = platform_media(settings, int(a["media"]))
                a = {k: v for k, v in a.items() if k != "media"} | {"picurl": m.url}
            bound.append(a)
        return {**body, "news": {"articles": bound}}, refs
    return body, []
