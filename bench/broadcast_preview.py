"""The broadcast preview on N contacts: how long ``POST /api/broadcasts/preview``'s service
takes for a one-tag audience (every contact decided by ``send_rules.decide``), beside a plain
SQL count of the same audience done by hand in the same run (the least any preview costs).

    .venv/bin/python bench/broadcast_preview.py [--contacts N] [--runs R]
    DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1/bench_preview \\
        .venv/bin/python bench/broadcast_preview.py

Seeds N contacts (openid, half tagged 「意向」, a third outside the 48-hour window, one in ten
with three marketing messages today) on a fresh SQLite file, or on DATABASE_URL, which must
be an empty database (migrated here). Prints the median and p95 of R runs of each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # before bench/ (the script's own directory): its
    # journeys.py would shadow the journeys package

import sqlalchemy as sa  # noqa: E402

from bot.core import db  # noqa: E402
from bot.core.config import load_settings  # noqa: E402
from bot.core.models import Contact, ContactTag, Identity, Message, utcnow  # noqa: E402
from bot.messaging.broadcast_preview import preview  # noqa: E402
from bot.messaging.broadcasts import BroadcastRequest  # noqa: E402

TAG = "意向"


def seed(url: str, n: int) -> None:
    now = utcnow()
    old = now - timedelta(days=3)
    with db.session_scope(url) as s:
        if s.execute(sa.select(sa.func.count()).select_from(Contact)).scalar_one():
            sys.exit("the database is not empty: give a fresh one")
        s.execute(
            sa.insert(Contact.__table__),
            [
                {
                    "id": i,
                    "subscribed": True,
                    "first_seen_at": now,
                    "last_seen_at": now,
                    "last_interaction_at": old if i % 3 == 0 else now,
                    "created_at": now,
                }
                for i in range(1, n + 1)
            ],
        )
        s.execute(
            sa.insert(Identity.__table__),
            [
                {
                    "contact_id": i,
                    "kind": "openid",
                    "app_id": "wxbench",
                    "value": f"o{i:08d}",
                    "created_at": now,
                }
                for i in range(1, n + 1)
            ],
        )
        s.execute(
            sa.insert(ContactTag.__table__),
            [
                {"contact_id": i, "tag": TAG, "source": "manual", "created_at": now}
                for i in range(2, n + 1, 2)
            ],
        )
        s.execute(
            sa.insert(Message.__table__),
            [
                {
                    "contact_id": i,
                    "channel": "oa",
                    "kind": "text",
                    "payload": {},
                    "outside_window": "hold",
                    "marketing": True,
                    "status": "sent",
                    "attempts": 1,
                    "sent_at": now,
                    "created_at": now,
                    "updated_at": now,
                    "idempotency_key": f"bench-{i}-{k}",
                }
                for i in range(10, n + 1, 10)
                for k in range(3)
            ],
        )


def timed(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL"):
        tmp = tempfile.mkdtemp(prefix="yuchi-bench-preview-")
        os.environ["DATABASE_URL"] = f"sqlite:///{tmp}/bench.db"
    os.environ.setdefault("WECHAT_OA_APPID", "wxbench")
    os.environ.setdefault("YUCHI_QUIET_HOURS", "")
    settings = load_settings()
    db.upgrade(settings.database_url)
    seed(settings.database_url, args.contacts)
    with db.get_engine(settings.database_url).connect() as conn:  # as autovacuum would
        conn.execute(sa.text("ANALYZE"))
        conn.commit()
    req = BroadcastRequest.model_validate(
        {
            "name": "bench",
            "kind": "text",
            "payload": {"content": "新品"},
            "audience": {"tags": {"any": [TAG]}},
            "outside_window": "mass",
        }
    )
    result = {}

    def run_preview() -> None:
        with db.session_scope(settings.database_url) as s:
            result.update(preview(s, settings, req))

    def run_count() -> None:
        with db.session_scope(settings.database_url) as s:
            s.execute(
                sa.text("SELECT count(DISTINCT contact_id) FROM contact_tag WHERE tag = :t"),
                {"t": TAG},
            ).scalar_one()

    base = timed(run_count, args.runs)
    ours = timed(run_preview, args.runs)
    engine = db.get_engine(settings.database_url).dialect.name

    def p95(xs: list[float]) -> float:
        return sorted(xs)[max(0, round(0.95 * len(xs)) - 1)]

    print(f"{engine}, {args.contacts} contacts, audience {result['total']}, {args.runs} runs")
    print(f"  routes {result['routes']}  not sent {result['not_sent']}")
    print(f"  preview          median {statistics.median(ours):8.1f} ms  p95 {p95(ours):8.1f} ms")
    print(f"  plain SQL count  median {statistics.median(base):8.1f} ms  p95 {p95(base):8.1f} ms")


if __name__ == "__main__":
    main()
