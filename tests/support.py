"""Posting Official Account callbacks through a Flask test client."""

from __future__ import annotations

from dataclasses import dataclass

from defusedxml.ElementTree import fromstring

from bot.core import queue
from bot.core.config import Settings
from wxsim.callbacks import OAPlatform, xml_fields


@dataclass
class Reply:
    status: int
    body: str
    fields: dict[str, str] | None  # the passive reply's fields, decrypted; None for "success"


def post(client, oa: OAPlatform, fields: dict, mode: str = "safe") -> Reply:
    req = oa.sign(xml_fields(fields), mode)
    resp = client.post(f"/wechat/oa?{req.query_string}", data=req.body, content_type="text/xml")
    body = resp.get_data(as_text=True)
    if resp.status_code != 200 or body == "success":
        return Reply(resp.status_code, body, None)
    plaintext = (
        oa.decrypt_reply(body, req.query["timestamp"], req.query["nonce"])
        if mode != "plain"
        else body
    )
    root = fromstring(plaintext)
    flat = {child.tag: (child.text or "") for child in root}
    if root.find("Articles") is not None:
        item = root.find("Articles/item")
        flat.update({f"Article.{c.tag}": (c.text or "") for c in item})
    return Reply(resp.status_code, body, flat)


def text(oa: OAPlatform, openid: str, content: str, msg_id: int, **kw) -> dict:
    return oa.message_fields(openid, "text", Content=content, MsgId=msg_id, **kw)


def event(oa: OAPlatform, openid: str, name: str, create_time: int | None = None, **kw) -> dict:
    return oa.message_fields(openid, "event", create_time=create_time, Event=name, **kw)


def run_worker(settings: Settings) -> None:
    """Process everything queued, in this process (an rq SimpleWorker, burst mode)."""
    from bot.background.worker import BurstWorker

    BurstWorker(queue.all_queues(settings), connection=queue.get_redis(settings)).work(
        burst=True, logging_level="WARNING"
    )


_TABLES: dict[str, list[str]] = {}


def row_counts(settings: Settings) -> dict[str, int]:
    """Rows in every table (except Alembic's), in one query."""
    import sqlalchemy as sa

    from bot.core import db

    engine = db.get_engine(settings.database_url)
    if settings.database_url not in _TABLES:
        names = sa.inspect(engine).get_table_names()
        _TABLES[settings.database_url] = [t for t in names if t != "alembic_version"]
    tables = _TABLES[settings.database_url]
    query = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t}" for t in tables)
    with engine.connect() as conn:
        return dict(conn.execute(sa.text(query)).all())
