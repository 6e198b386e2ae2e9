"""Sidebar benchmark on PostgreSQL: the first screen of a customer with 10,000 events, among
100,000 contacts, beside the bare timeline query measured in the same run.

    .venv/bin/python bench/sidebar.py [--contacts N] [--events-each N] [--heavy N]
                                      [--requests N] [--keep]

Creates the database named in DATABASE_URL (default
postgresql+psycopg://postgres@127.0.0.1:5432/bench_sidebar; dropped first if it exists), uses
the Redis in REDIS_URL (default redis://127.0.0.1:6379/6), migrates, and loads with COPY:
N contacts (each with a WeCom identity, a follow user among 50 reps and ``--events-each``
events), one heavy contact with ``--heavy`` events, a built score ledger (one line per scored
event), tags and a journey enrollment. Then, alternately, R times each:

  screen    GET /sidebar/contacts/<heavy> through the app (a rep's session cookie): access
            check, header, score summary and reasons, tags, the first timeline page rendered in
            Chinese, journeys, notes, the lead; Flask, Jinja and all (the server's time);
  service   bot.desk.screen.contact_screen() alone (no HTTP, no template);
  baseline  the bare timeline query: the newest 21 events of that contact by (occurred_at, id).

Prints p50 / p90 / p99 / max in ms for each and the ratio to the baseline; the target is a
screen p99 under 100 ms. Drops the database at the end unless --keep.
"""

from __future__ import annotations

import argparse
import json
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

from bench.scoring import create_database, drop_database, machine_facts, raw_connection  # noqa: E402

DEFAULT_DB = "postgresql+psycopg://postgres@127.0.0.1:5432/bench_sidebar"
DEFAULT_REDIS = "redis://127.0.0.1:6379/6"
DEAD = "http://127.0.0.1:9"  # no platform calls are made; any attempt fails at once
SEED = 20261202
REPS = 50
KINDS = [("oa.text", 40), ("oa.click", 25), ("oa.view", 20), ("msg.sent", 10), ("oa.scan", 5)]
TEXTS = ["你好", "想了解一下价格", "有优惠吗", "能发一份报价单吗？", "好的谢谢", "可以试用吗"]
MENUS = ["产品价格", "成功案例", "联系我们", "免费试用"]


def say(message: str = "") -> None:
    print(message, flush=True)


def props(rng: random.Random, kind: str) -> str:
    if kind == "oa.text":
        return json.dumps({"content": rng.choice(TEXTS)}, ensure_ascii=False)
    if kind == "oa.click":
        return json.dumps({"key": rng.choice(MENUS)}, ensure_ascii=False)
    if kind == "oa.view":
        return json.dumps({"url": f"https://mp.weixin.qq.com/s/{rng.getrandbits(32):x}"})
    return "{}"


def load(url: str, contacts: int, each: int, heavy: int, corp: str) -> int:
    """Everything with COPY; returns the heavy contact's id (the last one)."""
    rng = random.Random(SEED)
    now = datetime.now(UTC)
    kinds, weights = zip(*KINDS, strict=True)
    heavy_id = contacts + 1
    with raw_connection(url) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY rep (userid, name, active, capacity, role, team, created_at) FROM STDIN"
        ) as cp:
            for r in range(REPS):
                cp.write_row((f"rep{r}", f"销售{r}", True, 200, "rep", "east", now))
        with cur.copy(
            "COPY contact (id, subscribed, first_seen_at, last_seen_at, last_interaction_at, "
            "created_at, name, stage, stage_manual, score, owner_userid) FROM STDIN"
        ) as cp:
            for cid in range(1, heavy_id + 1):
                first = now - timedelta(days=90)
                owner = "rep0" if cid == heavy_id else f"rep{cid % REPS}"
                cp.write_row(
                    (cid, True, first, now, now, first, f"客户{cid}", "mql", False, 42.0, owner)
                )
        with cur.copy(
            "COPY identity (contact_id, kind, app_id, value, created_at) FROM STDIN"
        ) as cp:
            for cid in range(1, heavy_id + 1):
                cp.write_row((cid, "external_userid", corp, f"wm{cid:010d}", now))
        with cur.copy(
            "COPY follow_user (contact_id, userid, external_userid, wecom_tags, added_at, status) FROM STDIN"
        ) as cp:
            for cid in range(1, heavy_id + 1):
                userid = "rep0" if cid == heavy_id else f"rep{cid % REPS}"
                cp.write_row((cid, userid, f"wm{cid:010d}", "[]", now, "active"))
        say(f"  {contacts + 1:,} contacts, identities and follow users")
        with cur.copy(
            "COPY event (contact_id, type, source, properties, occurred_at, received_at, processed_at) FROM STDIN"
        ) as cp:
            for cid in range(1, heavy_id + 1):
                n = heavy if cid == heavy_id else each
                for kind in rng.choices(kinds, weights, k=n):
                    at = now - timedelta(seconds=rng.uniform(0, 90 * 86400))
                    cp.write_row((cid, kind, "oa", props(rng, kind), at, at, at))
        say(f"  {contacts * each + heavy:,} events ({heavy:,} on contact {heavy_id})")
        ledger(cur, heavy_id)
        cur.execute(
            "INSERT INTO contact_tag (contact_id, tag, source, created_at) SELECT %s, t, 'manual', now() "
            "FROM unnest(ARRAY['高意向','预算五万','华东','展会','老客户转介']) t",
            (heavy_id,),
        )
        cur.execute(
            "INSERT INTO journey (name, version, definition, status, created_at) "
            "VALUES ('新客培育', 1, '{}', 'published', now()) RETURNING id"
        )
        (jid,) = cur.fetchone()
        cur.execute(
            "INSERT INTO enrollment (journey_id, version, contact_id, status, step, state, wake_at, started_at) "
            "VALUES (%s, 1, %s, 'waiting', 'wait_3d', '{}', now() + interval '2 days', now())",
            (jid, heavy_id),
        )
        conn.commit()
    with raw_connection(url) as conn:
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
    return heavy_id


def ledger(cur, heavy_id: int) -> None:  # noqa: ANN001 - a psycopg cursor
    """A built ledger for the heavy contact: one line per scored event (texts, clicks)."""
    cur.execute("SELECT version FROM scoring_ruleset WHERE active")
    version = cur.fetchone()[0]
    cur.execute(
        "INSERT INTO score_entry (contact_id, event_id, rule_id, ruleset_version, points, reason, "
        "occurred_at, created_at) SELECT contact_id, id, "
        "CASE type WHEN 'oa.text' THEN 'text_message' ELSE 'menu_click' END, %s, "
        "CASE type WHEN 'oa.text' THEN 1 ELSE 2 END, "
        "CASE type WHEN 'oa.text' THEN '发来消息' ELSE '点击菜单「' || (properties->>'key') || '」' END, "
        "occurred_at, now() FROM event WHERE contact_id = %s AND type IN ('oa.text', 'oa.click')",
        (version, heavy_id),
    )
    say(f"  {cur.rowcount:,} ledger lines for contact {heavy_id}")
    cur.execute(
        "INSERT INTO score_entry (contact_id, rule_id, ruleset_version, points, reason, occurred_at, created_at) "
        "VALUES (%s, '@ledger', %s, 0, '', now(), now())",
        (heavy_id, version),
    )


def stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]

    return {
        "p50": statistics.median(ordered),
        "p90": pct(90),
        "p99": pct(99),
        "max": ordered[-1],
    }


def measure(settings, heavy_id: int, requests: int) -> dict[str, list[float]]:  # noqa: ANN001
    import sqlalchemy as sa

    from bot.app import create_app
    from bot.core import db
    from bot.desk.screen import contact_screen
    from bot.sales import rep_session

    app = create_app(settings)
    client = app.test_client()
    client.set_cookie("yuchi_rep", rep_session.session_token(settings, "rep0"), path="/sidebar")
    engine = db.get_engine(settings.database_url)
    bare = sa.text(
        "SELECT id, type, source, properties, occurred_at FROM event WHERE contact_id = :c "
        "ORDER BY occurred_at DESC, id DESC LIMIT 21"
    )

    def screen() -> None:
        resp = client.get(f"/sidebar/contacts/{heavy_id}")
        assert resp.status_code == 200, resp.status_code
        resp.get_data()

    def service() -> None:
        assert contact_screen(settings, "rep0", heavy_id, None, None) is not None

    def baseline() -> None:
        with engine.connect() as conn:
            rows = conn.execute(bare, {"c": heavy_id}).all()
        assert len(rows) == 21

    runs = {"screen": screen, "service": service, "baseline": baseline}
    for fn in runs.values():  # warm-up: connections, caches, templates
        for _ in range(20):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(requests):
        for name, fn in runs.items():
            started = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - started) * 1000)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--events-each", type=int, default=5)
    parser.add_argument("--heavy", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL") or DEFAULT_DB
    redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS
    os.environ.update(
        DATABASE_URL=url,
        REDIS_URL=redis_url,
        WECHAT_API_BASE=DEAD,
        WECOM_API_BASE=DEAD,
        YUCHI_LOG_LEVEL="WARNING",
    )
    from bot.core import db
    from bot.core.config import load_settings

    settings = load_settings()
    create_database(url)
    try:
        db.upgrade(url)
        from bot.scoring.versions import active

        with db.session_scope(url) as session:
            active(session)  # installs the default rule set as version 1
        for line in machine_facts(url, redis_url):
            say(line)
        say(f"loading {args.contacts:,} contacts ...")
        started = time.perf_counter()
        heavy_id = load(url, args.contacts, args.events_each, args.heavy, settings.wecom_corp_id)
        say(f"  loaded in {time.perf_counter() - started:.1f} s")
        say(f"measuring {args.requests} rounds (screen, service, baseline alternately) ...")
        samples = measure(settings, heavy_id, args.requests)
        base = stats(samples["baseline"])
        say()
        say(f"{'':10} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}   p99 / baseline p99")
        for name, values in samples.items():
            s = stats(values)
            cells = " ".join(f"{s[k]:7.2f}" for k in ("p50", "p90", "p99", "max"))
            say(f"{name:10} {cells}  ms   {s['p99'] / base['p99']:6.1f}x")
        p99 = stats(samples["screen"])["p99"]
        say()
        say(f"first screen p99 {p99:.1f} ms: {'within' if p99 < 100 else 'OVER'} the 100 ms target")
        return 0 if p99 < 100 else 1
    finally:
        if not args.keep:
            drop_database(url)


if __name__ == "__main__":
    sys.exit(main())
