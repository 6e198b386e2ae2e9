"""Sales-operations benchmark on PostgreSQL: the lead-quality report and quick-reply search.

    .venv/bin/python bench/salesops.py [--contacts N] [--leads N] [--replies N] [--keep]

Creates the database named in DATABASE_URL (default
postgresql+psycopg://postgres@127.0.0.1:5432/bench_salesops; dropped first if it exists),
migrates it, and loads N contacts (spread over 20 channels, 10 campaigns), a lead for most of
them over 90 days (accepted, returned with a reason, or waiting), stage events to sql/customer
for a share of the accepted, journey enrollments for half, and a quick-reply library. Then it
prints, as medians of 5 runs each:

  a. GET /api/reports/lead-quality's service for the 90 days, by each grouping, beside the
     bare SQL count of the same leads grouped by rep (the least any such report reads);
  b. quick-reply search for a two-word query, beside a bare SELECT of as many replies.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_DB = "postgresql+psycopg://postgres@127.0.0.1:5432/bench_salesops"
SEED = 20261202
REASONS = ["预算不足", "时机未到", "联系不上", "非决策人", "非目标客户", "其他"]
WORDS = ["价格", "试用", "发票", "合同", "功能", "售后", "部署", "培训", "案例", "折扣"]


def fresh_database(url: str) -> None:
    import sqlalchemy as sa

    base, _, name = url.rpartition("/")
    admin = sa.create_engine(f"{base}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()


def load(url: str, contacts: int, leads: int, replies: int) -> None:
    import sqlalchemy as sa

    from bot.core import db
    from bot.core.models import (
        Channel,
        Contact,
        Enrollment,
        Event,
        Journey,
        LeadAssignment,
        QuickReply,
        QuickReplyGroup,
    )

    rng = random.Random(SEED)
    t0 = datetime(2026, 9, 1, tzinfo=UTC)
    engine = db.get_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(Channel.__table__),
            [
                {"name": f"渠道{i}", "state": f"ch{i}", "reps": [], "tags": [], "created_at": t0}
                for i in range(20)
            ],
        )
        conn.execute(
            sa.insert(Journey.__table__),
            [
                {
                    "name": f"旅程{i}",
                    "status": "published",
                    "definition": {},
                    "version": 1,
                    "created_at": t0,
                    "updated_at": t0,
                }
                for i in range(8)
            ],
        )
        conn.execute(
            sa.insert(Contact.__table__),
            [
                {
                    "subscribed": True,
                    "first_seen_at": t0,
                    "last_seen_at": t0,
                    "created_at": t0,
                    "stage": "mql",
                    "stage_manual": False,
                    "score": 50.0,
                    "source_channel_id": rng.randint(1, 20),
                    "fields": {"campaign": f"活动{rng.randint(0, 9)}"},
                }
                for _ in range(contacts)
            ],
        )
        lead_rows, stage_rows, enroll_rows = [], [], []
        for n in range(leads):
            cid = rng.randint(1, contacts)
            at = t0 + timedelta(minutes=rng.randint(0, 90 * 1440))
            status = rng.choices(["accepted", "returned", "assigned"], [55, 30, 15])[0]
            answered = at + timedelta(minutes=rng.randint(5, 600)) if status != "assigned" else None
            lead_rows.append(
                {
                    "contact_id": cid,
                    "userid": f"rep{rng.randint(0, 29)}",
                    "status": status,
                    "reason": "bench",
                    "assigned_at": at,
                    "responded_at": answered,
                    "return_reason": rng.choice(REASONS) if status == "returned" else None,
                }
            )
            if status == "accepted" and rng.random() < 0.4:
                stage_rows.append(
                    {
                        "contact_id": cid,
                        "type": "contact.stage_changed",
                        "source": "bot",
                        "occurred_at": at + timedelta(days=3),
                        "received_at": at,
                        "properties": {"to": "sql"},
                        "dedupe_key": f"b{n}s",
                        "interaction": False,
                    }
                )
            if cid % 2 == 0:
                enroll_rows.append(
                    {
                        "journey_id": rng.randint(1, 8),
                        "contact_id": cid,
                        "version": 1,
                        "status": "done",
                        "state": {},
                        "started_at": at - timedelta(days=1),
                    }
                )
        conn.execute(sa.insert(LeadAssignment.__table__), lead_rows)
        conn.execute(sa.insert(Event.__table__), stage_rows)
        conn.execute(sa.insert(Enrollment.__table__), enroll_rows)
        conn.execute(
            sa.insert(QuickReplyGroup.__table__),
            [{"name": f"分组{i}", "position": i, "created_at": t0} for i in range(20)],
        )
        conn.execute(
            sa.insert(QuickReply.__table__),
            [
                {
                    "group_id": rng.randint(1, 20),
                    "kind": "text",
                    "title": f"{rng.choice(WORDS)}说明{i}",
                    "content": "，".join(rng.sample(WORDS, 4)) + f"。第{i}条话术",
                    "position": i,
                    "created_at": t0,
                    "updated_at": t0,
                }
                for i in range(replies)
            ],
        )
        conn.execute(sa.text("ANALYZE"))


def median_ms(fn, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=20_000)
    parser.add_argument("--leads", type=int, default=30_000)
    parser.add_argument("--replies", type=int, default=2_000)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", DEFAULT_DB)

    import sqlalchemy as sa
    from sqlalchemy.orm import Session

    from bot.core import db
    from bot.sales import lead_quality, quick_replies

    fresh_database(url)
    db.upgrade(url)
    started = time.perf_counter()
    load(url, args.contacts, args.leads, args.replies)
    print(
        f"loaded {args.contacts} contacts, {args.leads} leads, {args.replies} quick replies in {time.perf_counter() - started:.1f} s"
    )
    start, end = datetime(2026, 9, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    with Session(db.get_engine(url)) as session:
        bare = sa.text(
            "SELECT userid, count(*), count(*) FILTER (WHERE status = 'accepted') FROM lead_assignment WHERE assigned_at >= :s AND assigned_at < :e GROUP BY userid"
        )
        base = median_ms(lambda: session.execute(bare, {"s": start, "e": end}).all())
        print(f"a. baseline: bare grouped count of the leads            {base:8.1f} ms")
        for by in lead_quality.GROUPINGS:
            ms = median_ms(lambda by=by: lead_quality.lead_quality(session, start, end, by))
            print(
                f"   lead-quality report by {by:<8}                      {ms:8.1f} ms  ({ms / base:.1f}× baseline)"
            )
        plain = median_ms(
            lambda: session.execute(sa.text("SELECT * FROM quick_reply ORDER BY id LIMIT 50")).all()
        )
        found = median_ms(lambda: quick_replies.search(session, "价格 试用"))
        print(f"b. baseline: SELECT 50 quick replies                    {plain:8.1f} ms")
        print(
            f"   quick-reply search '价格 试用' over {args.replies:<6}            {found:8.1f} ms  ({found / plain:.1f}× baseline)"
        )
    db.dispose_all()
    if not args.keep:
        base_url, _, name = url.rpartition("/")
        admin = sa.create_engine(f"{base_url}/postgres", isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
