"""Counting saved segments on PostgreSQL at 1,000,000 contacts and 10,000,000 events (issue 16).

    .venv/bin/python bench/segments.py [--contacts N] [--events N] [--runs R] [--keep] [--reuse]

Seeds the database named in DATABASE_URL (default
postgresql+psycopg://postgres@127.0.0.1:5432/seg1m; dropped and created again) with
bench/scale.py's seeding (COPY; 90 days of events, a long tail of heavy contacts; 0-3 of 20
tags each), then gives every contact a score (0-100) and a last scoring activity, so the
default rules' 30-day half-life decays them differently. ``--reuse`` skips all that and counts
on the database a ``--keep`` run left (the seeding moment is kept in it, so windows stay put).

Then 20 different segments, each ``{all: [tag, score range (decayed), ">= N events of a type
in the last D days"]}``, are saved through bot.audiences.segments and counted R times each
(after one warm-up count each), alternating with the same count written by hand in plain SQL:
both columns are printed, their p50/p95, and the query plan of one (EXPLAIN ANALYZE).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.scale import MIX, TAGS, pct, say, seed, vacuum  # noqa: E402 - after the path fix
from bench.scoring import (  # noqa: E402
    create_database,
    drop_database,
    machine_facts,
    raw_connection,
)

DEFAULT_DB = "postgresql+psycopg://postgres@127.0.0.1:5432/seg1m"
SEED = 20261216
HAND = """
SELECT count(*) FROM contact c
WHERE c.merged_into_id IS NULL
  AND c.id IN (SELECT contact_id FROM contact_tag WHERE tag = %(tag)s)
  AND c.score >= %(lo)s
  AND c.score * power(0.5, greatest(extract(epoch FROM %(now)s - greatest(c.last_interaction_at,
        c.score_activity_at))::float8 / 86400, 0) / 30) BETWEEN %(lo)s AND %(hi)s
  AND c.id IN (SELECT contact_id FROM event WHERE type = %(type)s AND occurred_at >= %(since)s
               GROUP BY contact_id HAVING count(*) >= %(n)s)
"""


def prepare(url: str, contacts: int, events: int) -> datetime:
    from bot.core import db

    now = datetime.now(UTC).replace(microsecond=0)
    create_database(url)
    db.upgrade(url)
    seed(url, contacts, events, now)
    finish(url, now, contacts, events)
    return now


def finish(url: str, now: datetime, contacts: int, events: int) -> None:
    """Scores and scoring activity for everyone, the seeding moment noted, ANALYZE."""
    t0 = time.perf_counter()
    with raw_connection(url) as conn:
        # A score 0-100 and a last scoring activity up to 60 days before the last interaction.
        conn.execute(
            "UPDATE contact SET score = (id::bigint * 7919 % 1000) / 10.0, score_activity_at ="
            " last_interaction_at - make_interval(days => (id::bigint * 31 % 60)::int)"
        )
        conn.execute(
            "CREATE TABLE bench_segments (seeded_at timestamptz, contacts int, events int)"
        )
        conn.execute("INSERT INTO bench_segments VALUES (%s, %s, %s)", (now, contacts, events))
        conn.commit()
    vacuum(url)
    say(f"  scores set and analyzed in {time.perf_counter() - t0:.0f} s")


def seeded(url: str) -> tuple[datetime, int, int]:
    """The seeding moment and size of a kept database (a run that stopped after seeding the
    events is finished here: its moment is the newest event's)."""
    with raw_connection(url) as conn:
        kept = conn.execute("SELECT to_regclass('bench_segments') IS NOT NULL").fetchone()[0]
        if not kept:
            now, events = conn.execute("SELECT max(occurred_at), count(*) FROM event").fetchone()
            contacts = conn.execute("SELECT count(*) FROM contact").fetchone()[0]
    if not kept:
        say("  finishing a database whose seeding stopped after the events")
        finish(url, now, contacts, events)
    with raw_connection(url) as conn:
        return conn.execute("SELECT seeded_at, contacts, events FROM bench_segments").fetchone()


def definitions(n: int) -> list[dict]:
    rng = random.Random(SEED)
    types = [t for t, _w in MIX]
    out = []
    for i in range(n):
        lo = rng.choice([5, 10, 20, 30, 40])
        out.append(
            {
                "tag": TAGS[i % len(TAGS)],
                "lo": float(lo),
                "hi": float(lo + rng.choice([20, 30, 50])),
                "type": types[i % len(types)],
                "n": rng.choice([1, 2, 3]),
                "days": rng.choice([7, 14, 30]),
            }
        )
    return out


def as_segment(d: dict) -> dict:
    return {
        "all": [
            {"tag": d["tag"]},
            {"score": {"gte": d["lo"], "lte": d["hi"]}},
            {"event": d["type"], "count": {"gte": d["n"]}, "within": f"{d['days']}d"},
        ]
    }


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--contacts", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=None, help="default: 10 a contact")
    ap.add_argument("--segments", type=int, default=20)
    ap.add_argument("--runs", type=int, default=3, help="timed counts per segment and side")
    ap.add_argument("--keep", action="store_true", help="keep the database")
    ap.add_argument("--reuse", action="store_true", help="count on a database kept before")
    args = ap.parse_args()
    url = os.environ.get("DATABASE_URL", DEFAULT_DB)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/1")
    if args.reuse:
        now, contacts, events = seeded(url)
        say(f"reusing {url}: {contacts:,} contacts, {events:,} events seeded at {now:%F %T}")
        from bot.core import db

        db.upgrade(url)
    else:
        events = args.events or 10 * args.contacts
        say(f"seeding {args.contacts:,} contacts, {events:,} events")
        now = prepare(url, args.contacts, events)
    for line in machine_facts(url, os.environ["REDIS_URL"]):
        say(line)
    try:
        run(url, now, args)
    finally:
        if not args.keep and not args.reuse:
            drop_database(url)
            say("database dropped")
    return 0


def run(url: str, now: datetime, args: argparse.Namespace) -> None:
    import sqlalchemy as sa

    from bot.audiences import segments
    from bot.core import db
    from bot.core.models import Segment

    say(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs before counting")
    specs = definitions(args.segments)
    with db.session_scope(url) as s:
        s.execute(sa.delete(Segment.__table__).where(Segment.__table__.c.name.like("bench %")))
        ids = [
            segments.create(s, segments.SegmentIn(f"bench {i}", as_segment(d))).id
            for i, d in enumerate(specs)
        ]
        s.commit()
    ours: dict[int, list[float]] = {i: [] for i in range(len(specs))}
    hand: dict[int, list[float]] = {i: [] for i in range(len(specs))}
    counts: dict[int, tuple[int, int]] = {}
    with db.session_scope(url) as s, raw_connection(url) as conn:
        for rnd in range(args.runs + 1):  # round 0 warms the cache
            for i, (sid, d) in enumerate(zip(ids, specs, strict=True)):
                params = {**d, "now": now, "since": now - timedelta(days=d["days"])}
                t0 = time.perf_counter()
                a = segments.count(s, sid, now)
                t1 = time.perf_counter()
                b = conn.execute(HAND, params).fetchone()[0]
                t2 = time.perf_counter()
                counts[i] = (a, b)
                if rnd:
                    ours[i].append(t1 - t0)
                    hand[i].append(t2 - t1)
        s.rollback()
        say(f"\n{'segment':<58} {'count':>8} {'hand':>8} {'ours ms':>8} {'hand ms':>8}")
        for i, d in enumerate(specs):
            text = f"{d['tag']} · score {d['lo']:g}-{d['hi']:g} · >={d['n']} {d['type']} in {d['days']}d"
            a, b = counts[i]
            mark = "" if a == b else "  DIFFERENT"
            say(
                f"{text:<58} {a:>8,} {b:>8,} {min(ours[i]) * 1000:8.1f} {min(hand[i]) * 1000:8.1f}{mark}"
            )
        say(f"  (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs at the end)")
        mine = [min(v) * 1000 for v in ours.values()]
        theirs = [min(v) * 1000 for v in hand.values()]
        say(
            f"\nover {len(specs)} segments (each the best of {args.runs} counts):"
            f"\n  bot.audiences.segments.count  p50 {pct(mine, 0.5):7.1f} ms   p95 {pct(mine, 0.95):7.1f} ms"
            f"   max {max(mine):7.1f} ms"
            f"\n  hand-written SQL              p50 {pct(theirs, 0.5):7.1f} ms   p95 {pct(theirs, 0.95):7.1f} ms"
            f"   max {max(theirs):7.1f} ms"
        )
        every = [t * 1000 for v in ours.values() for t in v]
        say(
            f"  every count of ours ({len(every)}): p50 {pct(every, 0.5):.1f} ms, p95 {pct(every, 0.95):.1f} ms"
        )
        worst = max(range(len(specs)), key=lambda i: min(ours[i]))
        inner = segments.member_ids(s, ids[worst], now).subquery()
        query = sa.select(sa.func.count()).select_from(inner)
        compiled = query.compile(
            dialect=s.get_bind().dialect, compile_kwargs={"literal_binds": True}
        )
        plan = conn.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + str(compiled)).fetchall()
        say(
            f"\nthe plan of the slowest, segment {worst} ({json.dumps(as_segment(specs[worst]), ensure_ascii=False)}):"
        )
        for (line,) in plan:
            say("  " + line)
        s.rollback()


if __name__ == "__main__":
    raise SystemExit(main())
