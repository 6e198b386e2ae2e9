"""A broadcast's report on PostgreSQL: Yuchi's grouped SQL (bot.messaging.reports) beside a
baseline that fetches the rows and computes the same figures in Python, in the same run.

    .venv/bin/python bench/send_reports.py [--messages N] [--events N] [--runs N] [--keep]

Creates the database named in DATABASE_URL (default
postgresql+psycopg://postgres@127.0.0.1:5432/bench_reports; dropped first if it exists),
migrates it, and seeds server-side (INSERT … SELECT over generate_series; VACUUM ANALYZE):
N contacts, one broadcast with a message to each (90 % sent over one hour, 5 % failed with one
of three codes, 5 % held), the events of those contacts over 20 days around the send (replies,
stop words, unfollows, the goal, other types), and clicks on 10 % of the messages (some twice).
Both ways are timed (median of --runs after one warm-up) and must give the same figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # not bench/: bench/journeys.py would shadow the journeys package

DEFAULT_DB = "postgresql+psycopg://postgres@127.0.0.1:5432/bench_reports"
GOAL = "h5.form_submitted"
T0 = "2026-11-01 10:00:00+00"

SEED = [
    """INSERT INTO contact (id, subscribed, first_seen_at, last_seen_at, created_at, stage,
                            stage_manual, score, asking)
       SELECT g, true, %(t0)s, %(t0)s, %(t0)s, 'subscriber', false, 0, false
       FROM generate_series(1, %(n)s) g""",
    """INSERT INTO broadcast (id, name, kind, payload, marketing, outside_window, audience,
                              total, status, created_at)
       VALUES (1, 'bench', 'text', '{}', true, 'fail', '{}', %(n)s, 'queued', %(t0)s)""",
    """INSERT INTO message (contact_id, channel, kind, payload, outside_window, marketing,
                            broadcast_id, status, attempts, error_code, created_at,
                            updated_at, sent_at)
       SELECT g, 'oa', 'text', '{"content": "x"}', 'fail', true, 1,
              CASE WHEN r < 0.90 THEN 'sent' WHEN r < 0.95 THEN 'failed' ELSE 'held' END, 1,
              CASE WHEN r >= 0.90 AND r < 0.95 THEN (ARRAY[45015, 40003, 45047])[1 + g %% 3] END,
              %(t0)s, %(t0)s,
              CASE WHEN r < 0.90 THEN %(t0)s::timestamptz + random() * interval '1 hour' END
       FROM (SELECT g, random() AS r FROM generate_series(1, %(n)s) g) s""",
    """INSERT INTO event (contact_id, type, source, properties, occurred_at, received_at,
                          processed_at)
       SELECT 1 + floor(random() * %(n)s)::int, t,
              'oa',
              CASE WHEN t = 'oa.text' THEN jsonb_build_object('content',
                   (ARRAY['好的', '退订', '在吗', 'TD', '多少钱'])[1 + floor(random() * 5)::int])
                   ELSE '{}'::jsonb END,
              ts, ts, ts
       FROM (SELECT %(t0)s::timestamptz - interval '5 days' + random() * interval '20 days'
                    AS ts,
                    (ARRAY['oa.text', 'oa.text', 'oa.click', 'oa.view', 'oa.unsubscribe',
                           'h5.form_submitted', 'h5.visit', 'oa.image'])
                    [1 + floor(random() * 8)::int] AS t
             FROM generate_series(1, %(events)s)) s""",
    """INSERT INTO message_click (message_id, contact_id, link, url, clicked_at)
       SELECT id, contact_id, 0, 'https://example.com/a', sent_at + random() * interval '4 days'
       FROM message, generate_series(1, 2) k
       WHERE status = 'sent' AND id %% 10 = 0 AND (k = 1 OR id %% 30 = 0)""",
]


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def recreate(url: str, drop_only: bool = False) -> None:
    base, _, name = libpq(url).rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{name}"')


def baseline(conn: psycopg.Connection, reach_s: float, conv_s: float) -> dict:
    """The same figures, the rows fetched and looped over in Python."""
    msgs = conn.execute(
        "SELECT id, contact_id, status, error_code, sent_at FROM message WHERE broadcast_id = 1"
    ).fetchall()
    events: dict[int, list] = {}
    for cid, type_, content, at in conn.execute(
        "SELECT e.contact_id, e.type, e.properties->>'content', e.occurred_at FROM event e"
        " JOIN message m ON m.contact_id = e.contact_id AND m.broadcast_id = 1"
        " WHERE e.type = ANY(%s)",
        (["oa.text", "oa.image", "oa.unsubscribe", GOAL],),
    ):
        events.setdefault(cid, []).append((type_, content, at))
    clicks: dict[int, list] = {}
    for mid, cid, at in conn.execute(
        "SELECT k.message_id, k.contact_id, k.clicked_at FROM message_click k"
        " JOIN message m ON m.id = k.message_id WHERE m.broadcast_id = 1"
    ):
        clicks.setdefault(mid, []).append((cid, at))
    stop = {"退订", "TD", "T", "取消", "取消订阅", "退出", "STOP", "UNSUBSCRIBE"}
    out = {"sent": 0, "failed": 0, "held": 0, "codes": {}, "clicks": 0}
    reach, negative, conv, clickers = set(), set(), set(), set()
    for mid, cid, status, code, sent_at in msgs:
        if status == "sent":
            out["sent"] += 1
        elif status == "failed":
            out["failed"] += 1
            out["codes"][str(code)] = out["codes"].get(str(code), 0) + 1
        elif status == "held":
            out["held"] += 1
        for kcid, _at in clicks.get(mid, []):
            out["clicks"] += 1
            clickers.add(kcid)
        if sent_at is None:
            continue
        r_end, n_end = sent_at + timedelta(seconds=reach_s), sent_at + timedelta(hours=24)
        c_end = sent_at + timedelta(seconds=conv_s)
        if any(sent_at <= at <= r_end for _, at in clicks.get(mid, [])):
            reach.add(cid)
        for type_, content, at in events.get(cid, []):
            is_stop = type_ == "oa.text" and (content or "").strip().upper() in stop
            if type_ in ("oa.text", "oa.image") and not is_stop and sent_at <= at <= r_end:
                reach.add(cid)
            if (type_ == "oa.unsubscribe" or is_stop) and sent_at <= at <= n_end:
                negative.add(cid)
            if type_ == GOAL and sent_at <= at <= c_end:
                conv.add(cid)
    out.update(reach=len(reach), negative=len(negative), conversions=len(conv))
    out["clickers"] = len(clickers)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=50_000)
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    url = os.environ.get("DATABASE_URL") or DEFAULT_DB
    os.environ["DATABASE_URL"] = url
    recreate(url)
    from bot.core import db
    from bot.core.config import load_settings
    from bot.messaging import reports

    db.upgrade(url)
    settings = load_settings()
    t = time.perf_counter()
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        params = {"n": args.messages, "events": args.events, "t0": T0}
        for sql in SEED:
            conn.execute(sql, params)
        conn.execute("VACUUM ANALYZE")
    print(
        f"seeded {args.messages:,} messages, {args.events:,} events in "
        f"{time.perf_counter() - t:.1f} s"
    )

    def ours() -> dict:
        with db.session_scope(url) as s:
            return reports.broadcast_report(s, settings, 1, GOAL)

    def theirs() -> dict:
        with psycopg.connect(libpq(url)) as conn:
            return baseline(conn, settings.reach_window, settings.conversion_window)

    times: dict[str, list[float]] = {"grouped SQL (yuchi)": [], "fetch + Python loop": []}
    answers = {}
    for _ in range(args.runs + 1):
        for name, fn in (("grouped SQL (yuchi)", ours), ("fetch + Python loop", theirs)):
            t = time.perf_counter()
            answers[name] = fn()
            times[name].append(time.perf_counter() - t)
    a, b = answers["grouped SQL (yuchi)"], answers["fetch + Python loop"]
    same = (
        all(
            a[k] == b[k]
            for k in (
                "sent",
                "failed",
                "held",
                "reach",
                "negative",
                "conversions",
                "clicks",
                "clickers",
            )
        )
        and a["failed_by_code"] == b["codes"]
    )
    for name, ts in times.items():
        print(f"{name:22} median {statistics.median(ts[1:]) * 1000:8.1f} ms  (runs {args.runs})")
    print(
        f"figures: sent {a['sent']:,} reach {a['reach']:,} negative {a['negative']:,} "
        f"conversions {a['conversions']:,} clicks {a['clicks']:,}; same answers: {same}"
    )
    if not args.keep:
        db.dispose_all()
        recreate(url, drop_only=True)
    if not same:
        print("MISMATCH", a, b)
        sys.exit(1)


if __name__ == "__main__":
    main()
