"""The benchmark's floor: the baseline plus the least the issue's hot path prescribes.

What `baseline_app` does (signature, decrypt, parse, encrypted text reply), and in between
exactly what issue 15 asks of a callback: one INSERT of the event with its dedupe key and its
reply (ON CONFLICT DO NOTHING), one durable commit, one Redis command (SET NX, as the outbox
kick). No contact, no rules, no outbox table, no ORM: the plain DB-API driver and redis-py.
Whatever Yuchi does, it cannot be cheaper than this on the same machine, so its rate against
the baseline bounds the intake ratio any implementation of that design can reach.

    FLOOR_DATABASE=/tmp/floor.sqlite3 FLOOR_REDIS_URL=unix:///… \\
        gunicorn -c python:bot.gunicorn_conf --bind 127.0.0.1:8002 bench.floor_app:app

FLOOR_DATABASE is a SQLite file (WAL, synchronous=FULL: the commit waits for the disk, as
Yuchi's does) or a postgresql:// URL (the driver's own durable commit). FLOOR_SQLITE_SYNC=NORMAL
drops the fsync, to see what it costs (that is not durable, so not the floor).
"""

from __future__ import annotations

import os
import threading

import redis
from flask import Flask, Response, request
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.replies import TextReply
from wechatpy.utils import check_signature

TOKEN = os.environ["WECHAT_OA_TOKEN"]
AES_KEY = os.environ["WECHAT_OA_AES_KEY"]
APPID = os.environ["WECHAT_OA_APPID"]
DATABASE = os.environ["FLOOR_DATABASE"]
REDIS_URL = os.environ["FLOOR_REDIS_URL"]
REPLY = "您好，价格请见菜单「产品价格」，或回复型号查询。"
TABLE = "bench_floor_event"
POSTGRES = DATABASE.startswith("postgresql")
INSERT = (
    f"INSERT INTO {TABLE} (dedupe_key, openid, content, reply) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (dedupe_key) DO NOTHING"
    if POSTGRES
    else f"INSERT INTO {TABLE} (dedupe_key, openid, content, reply) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (dedupe_key) DO NOTHING"
)

crypto = WeChatCrypto(TOKEN, AES_KEY, APPID)
app = Flask(__name__)
_local = threading.local()


def create_table() -> None:
    """Made once as the app loads (in gunicorn's master); bench/webhook.py drops it after."""
    conn = _connect()
    serial = "BIGSERIAL" if POSTGRES else "INTEGER"
    conn.cursor().execute(
        f"CREATE TABLE IF NOT EXISTS {TABLE} (id {serial} PRIMARY KEY, "
        "dedupe_key TEXT NOT NULL UNIQUE, openid TEXT NOT NULL, content TEXT, reply TEXT)"
    )
    conn.close()


def _connect():  # noqa: ANN202 - a DB-API connection of either driver
    if POSTGRES:
        import psycopg

        # autocommit: the one statement is its own transaction, one round trip (no BEGIN
        # and COMMIT of their own), committed durably before the driver returns
        return psycopg.connect(
            DATABASE.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
        )
    import sqlite3

    # isolation_level None: the INSERT is its own transaction (no BEGIN and COMMIT statements)
    conn = sqlite3.connect(DATABASE, timeout=10, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    # FLOOR_SQLITE_SYNC=NORMAL (a diagnostic, not the floor): the same without the fsync
    conn.execute(f"PRAGMA synchronous={os.environ.get('FLOOR_SQLITE_SYNC', 'FULL')}")
    return conn


def _db():  # noqa: ANN202
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = _connect()
    return conn


create_table()
_redis: redis.Redis | None = None


def _kick() -> None:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(REDIS_URL)
    _redis.set("bench:floor:kick", 1, nx=True, px=200)


@app.get("/healthz")
def healthz() -> Response:
    return Response("ok\n", mimetype="text/plain")


@app.post("/wechat/oa")
def callback() -> Response:
    args = request.args
    try:
        timestamp, nonce = args["timestamp"], args["nonce"]
        check_signature(TOKEN, args["signature"], timestamp, nonce)
        plaintext = crypto.decrypt_message(
            request.get_data(), args["msg_signature"], timestamp, nonce
        )
    except (KeyError, InvalidSignatureException):
        return Response("forbidden\n", status=403, mimetype="text/plain")
    message = parse_message(plaintext)
    reply = TextReply(message=message, content=REPLY).render()
    _db().cursor().execute(  # committed when it returns (autocommit)
        INSERT, (f"oa:{message.id}", message.source, getattr(message, "content", None), REPLY)
    )
    _kick()
    return Response(crypto.encrypt_message(reply, nonce), mimetype="application/xml")
