"""Tagged events on PostgreSQL at 1,000,000 events: the association table ``event_tag`` (what
Yuchi uses) against a ``text[]`` tag array on ``event`` with a GIN index, for the two questions
of issue 18.

    .venv/bin/python bench/tagged_events.py [--events N] [--contacts N] [--runs N] [--keep]

Creates the database named in DATABASE_URL (default
postgresql+psycopg://postgres@127.0.0.1:5432/bench_tagged; dropped first if it exists), migrates
it with bot.core.db.upgrade (the real ``event`` and ``event_tag`` tables and indexes), adds
``event.tags text[]`` with a GIN index for the other layout, and seeds both from the same data
server-side (INSERT … SELECT over generate_series; then VACUUM ANALYZE): N events over 90 days
for the contacts, 25 % earning one tag and 5 % two, of 20 tags (skewed: 意向:价格 is the most
common, tag19 the rarest).

Each question is timed on each layout (median of --runs, after one warm-up run), the answers
are checked to be the same, and the plan's top lines are printed. The array is measured with
its GIN index alone and with an extra B-tree on event.occurred_at (what it would need for the
time range). Also printed: index sizes, and the time to write 20,000 tagged events into each
layout (rolled back). Drops the database at the end unless --keep.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_DB = "postgresql+psycopg://postgres@127.0.0.1:5432/bench_tagged"
HOT, RARE = "意向:价格", "tag19"

SEED_CONTACTS = """
INSERT INTO contact (id, subscribed, first_seen_at, last_seen_at, created_at, stage,
                     stage_manual, score)
SELECT g, true, now() - interval '90 days', now(), now(), 'subscriber', false, 0
FROM generate_series(1, %(contacts)s) g
"""
# tag k of 20 with probability falling with k (20·u² for u uniform); a second, other tag for 5 %.
SEED_EVENTS = """
INSERT INTO event (contact_id, type, source, properties, occurred_at, received_at,
                   processed_at, tags)
SELECT 1 + floor(random() * %(contacts)s)::int,
       (ARRAY['oa.text', 'oa.click', 'oa.view', 'oa.scan'])[1 + floor(random() * 4)::int],
       'oa', '{}'::jsonb, ts, ts, ts,
       CASE WHEN r < 0.25 THEN ARRAY[bench_tag_name(k1)]
            WHEN r < 0.30 THEN ARRAY[bench_tag_name(k1), bench_tag_name((k1 + 1 + floor(random() * 19)::int) %% 20)]
       END
FROM (SELECT now() - random() * interval '90 days' AS ts, random() AS r,
             floor(20 * random() ^ 2)::int AS k1
      FROM generate_series(1, %(events)s)) s
"""
NAME_FUNCTION = """
CREATE FUNCTION bench_tag_name(k int) RETURNS text IMMUTABLE LANGUAGE sql
AS $$ SELECT CASE WHEN k = 0 THEN '意向:价格' ELSE 'tag' || k END $$
"""
SEED_EVENT_TAGS = """
INSERT INTO event_tag (event_id, tag, contact_id, occurred_at, source, actor)
SELECT id, unnest(tags), contact_id, occurred_at, 'interest', NULL FROM event
WHERE tags IS NOT NULL
"""

# (question, association-table SQL, array SQL); %(tag)s, %(since)s, %(until)s, %(n)s.
QUESTIONS = [
    (
        "events tagged {tag}, last 7 days, newest 50 (the API's page)",
        """SELECT et.event_id FROM event_tag et JOIN event e ON e.id = et.event_id
           WHERE et.tag = %(tag)s AND et.occurred_at >= now() - interval '7 days'
           ORDER BY et.occurred_at DESC, et.event_id DESC LIMIT 50""",
        """SELECT id FROM event WHERE tags @> ARRAY[%(tag)s]
           AND occurred_at >= now() - interval '7 days'
           ORDER BY occurred_at DESC, id DESC LIMIT 50""",
    ),
    (
        "events tagged {tag} between day -37 and day -30 (all of them)",
        """SELECT et.event_id FROM event_tag et
           WHERE et.tag = %(tag)s AND et.occurred_at >= now() - interval '37 days'
           AND et.occurred_at < now() - interval '30 days'""",
        """SELECT id FROM event WHERE tags @> ARRAY[%(tag)s]
           AND occurred_at >= now() - interval '37 days'
           AND occurred_at < now() - interval '30 days'""",
    ),
    (
        "contacts with >= 2 events tagged {tag} in the last 14 days",
        """SELECT contact_id FROM event_tag
           WHERE tag = %(tag)s AND occurred_at >= now() - interval '14 days'
           GROUP BY contact_id HAVING count(*) >= 2""",
        """SELECT contact_id FROM event
           WHERE tags @> ARRAY[%(tag)s] AND occurred_at >= now() - interval '14 days'
           GROUP BY contact_id HAVING count(*) >= 2""",
    ),
    (
        "contacts with >= 3 events tagged {tag} in 90 days",
        """SELECT contact_id FROM event_tag
           WHERE tag = %(tag)s AND occurred_at >= now() - interval '90 days'
           GROUP BY contact_id HAVING count(*) >= 3""",
        """SELECT contact_id FROM event
           WHERE tags @> ARRAY[%(tag)s] AND occurred_at >= now() - interval '90 days'
           GROUP BY contact_id HAVING count(*) >= 3""",
    ),
]


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def recreate(url: str) -> None:
    base, _, name = libpq(url).rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop(url: str) -> None:
    base, _, name = libpq(url).rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')


def seed(conn: psycopg.Connection, events: int, contacts: int) -> None:
    t0 = time.perf_counter()
    conn.execute("ALTER TABLE event ADD COLUMN tags text[]")
    conn.execute(NAME_FUNCTION)
    conn.execute(SEED_CONTACTS, {"contacts": contacts})
    conn.execute(SEED_EVENTS, {"contacts": contacts, "events": events})
    conn.execute(SEED_EVENT_TAGS)
    conn.execute("CREATE INDEX ix_event_tags_gin ON event USING gin (tags)")
    conn.commit()
    conn.autocommit = True
    conn.execute("VACUUM ANALYZE contact, event, event_tag")
    conn.autocommit = False
    n = conn.execute("SELECT count(*) FROM event_tag").fetchone()[0]
    hot = conn.execute("SELECT count(*) FROM event_tag WHERE tag = %s", (HOT,)).fetchone()[0]
    print(
        f"seeded {events:,} events, {contacts:,} contacts, {n:,} event_tag rows "
        f"({hot:,} {HOT}) in {time.perf_counter() - t0:.1f} s"
    )


def timed(conn: psycopg.Connection, sql: str, params: dict, runs: int) -> tuple[float, set]:
    rows = conn.execute(sql, params).fetchall()  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        rows = conn.execute(sql, params).fetchall()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), {r[0] for r in rows}


def plan(conn: psycopg.Connection, sql: str, params: dict) -> str:
    lines = [r[0] for r in conn.execute("EXPLAIN (COSTS OFF) " + sql, params).fetchall()]
    nodes = [ln.strip().lstrip("-> ").strip() for ln in lines if "Scan" in ln]
    return "; ".join(nodes)[:110]


def compare(conn: psycopg.Connection, runs: int, label: str) -> bool:
    same = True
    for question, assoc_sql, array_sql in QUESTIONS:
        for tag in (HOT, RARE):
            params = {"tag": tag}
            a_ms, a_rows = timed(conn, assoc_sql, params, runs)
            b_ms, b_rows = timed(conn, array_sql, params, runs)
            if "newest 50" not in question and a_rows != b_rows:
                same = False
            print(f"  {question.format(tag=tag)}: {len(a_rows):,} rows")
            print(f"    event_tag      {a_ms:9.2f} ms   {plan(conn, assoc_sql, params)}")
            ratio = b_ms / a_ms if a_ms else float("inf")
            print(
                f"    {label:14} {b_ms:9.2f} ms   {plan(conn, array_sql, params)}  ({ratio:.1f}×)"
            )
    return same


def write_cost(conn: psycopg.Connection, n: int = 20_000) -> None:
    """Time to write n tagged events each way (one tag each), rolled back."""
    new = (
        f"""SELECT 1 + floor(random() * 1000)::int AS c, now() AS ts FROM generate_series(1, {n})"""
    )
    t0 = time.perf_counter()
    conn.execute(
        f"""WITH ins AS (INSERT INTO event (contact_id, type, source, properties, occurred_at,
                                            received_at, processed_at)
                         SELECT c, 'oa.text', 'oa', '{{}}', ts, ts, ts FROM ({new}) s
                         RETURNING id, contact_id, occurred_at)
            INSERT INTO event_tag (event_id, tag, contact_id, occurred_at, source)
            SELECT id, %s, contact_id, occurred_at, 'interest' FROM ins""",
        (HOT,),
    )
    assoc = time.perf_counter() - t0
    conn.rollback()
    t0 = time.perf_counter()
    conn.execute(
        f"""INSERT INTO event (contact_id, type, source, properties, occurred_at, received_at,
                               processed_at, tags)
            SELECT c, 'oa.text', 'oa', '{{}}', ts, ts, ts, ARRAY[%s] FROM ({new}) s""",
        (HOT,),
    )
    array = time.perf_counter() - t0
    conn.rollback()
    print(
        f"write {n:,} tagged events: event + event_tag {assoc * 1000:.0f} ms, "
        f"event with tags[] (GIN) {array * 1000:.0f} ms ({assoc / array:.2f}×)"
    )


def sizes(conn: psycopg.Connection) -> None:
    def size(what: str) -> str:
        return conn.execute("SELECT pg_size_pretty(pg_relation_size(%s))", (what,)).fetchone()[0]

    array_bytes = conn.execute(
        "SELECT pg_size_pretty(coalesce(sum(pg_column_size(tags)), 0)) FROM event"
    ).fetchone()[0]
    print(
        f"sizes: event_tag heap {size('event_tag')}, its primary key {size('event_tag_pkey')}, "
        f"ix_event_tag_time {size('ix_event_tag_time')}; "
        f"tags[] in event {array_bytes}, GIN {size('ix_event_tags_gin')}"
    )


def main() -> int:
    import os

    from bot.core import db

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--contacts", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", DEFAULT_DB)
    if not url.startswith("postgresql"):
        print("DATABASE_URL must be PostgreSQL (a scratch database: it is dropped)")
        return 2
    recreate(url)
    try:
        db.upgrade(url)
        db.dispose_all()
        with psycopg.connect(libpq(url)) as conn:
            seed(conn, args.events, args.contacts)
            sizes(conn)
            print("median of", args.runs, "runs; the ratio is the array's time over event_tag's")
            same = compare(conn, args.runs, "tags[] GIN")
            conn.execute("CREATE INDEX ix_event_time ON event (occurred_at)")
            conn.commit()
            conn.autocommit = True
            conn.execute("ANALYZE event")
            conn.autocommit = False
            print("with a B-tree on event.occurred_at as well:")
            same = compare(conn, args.runs, "tags[] GIN+time") and same
            conn.execute("DROP INDEX ix_event_time")
            conn.commit()
            write_cost(conn)
        print("same answers from both layouts:", "yes" if same else "NO")
        return 0 if same else 1
    finally:
        if not args.keep:
            drop(url)


if __name__ == "__main__":
    sys.exit(main())
