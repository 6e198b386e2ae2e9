"""Lead-scoring benchmark on PostgreSQL: 100,000 contacts, 2,000,000 events.

    .venv/bin/python bench/scoring.py [--contacts N] [--events N] [--job-events N]
                                      [--job-workers K] [--keep]

Creates the database named in DATABASE_URL (default
postgresql+psycopg://postgres@127.0.0.1:5432/bench_scoring; dropped first if it exists) and
flushes the Redis DB in REDIS_URL (default redis://127.0.0.1:6379/4), migrates with
bot.core.db.upgrade, and loads contacts and 90 days of Official Account events with COPY. Then:

  0. builds every contact's ledger under the default rules (scoring.recompute), timed;
  a. events scored per second through the real job path: a sample of new events with outbox
     rows, drained by K rq SimpleWorker processes (burst) running bot.background.jobs with every pipeline
     step, and how much of that time the scoring step takes; then scoring.verify on a sample;
  b. the time to explain one contact's score (scoring.explain; median of 100 random contacts);
  c. the time to recompute every score after publishing a new rule version (scoring.publish +
     scoring.recompute over all contacts and events), with progress lines and events/s.

Drops the database and flushes the Redis DB at the end (unless --keep). Exits 1 when any
sampled contact fails scoring.verify (before or after the recompute). See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import multiprocessing as mp
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_DB = "postgresql+psycopg://postgres@127.0.0.1:5432/bench_scoring"
DEFAULT_REDIS = "redis://127.0.0.1:6379/4"
DEAD = "http://127.0.0.1:9"  # platform APIs refuse at once: a bench makes no network calls
DAYS = 90
SEED = 20261125

TEXTS = [
    "你好",
    "在吗",
    "想了解一下你们的产品",
    "有优惠吗",
    "怎么使用",
    "谢谢",
    "好的",
    "可以试用吗",
    "发票怎么开",
    "客服电话是多少",
    "支持哪些功能",
    "和别家比有什么优势",
]
PRICE_TEXTS = ["请问价格是多少", "有报价单吗", "这个多少钱", "企业版什么价格", "能发一份报价吗"]
KEYS = ["MENU_PRICE", "MENU_CASES", "MENU_CONTACT", "MENU_TRIAL"]
# Kinds of events after the first follow, and how often they occur.
MIX = [
    ("oa.text", 38),
    ("oa.click", 24),
    ("oa.view", 22),
    ("msg.sent", 8),
    ("oa.scan", 3),
    ("oa.location", 2),
    ("oa.unsubscribe", 1.5),
    ("oa.subscribe", 1.5),
]
INTERACTIONS = {"oa.text", "oa.click", "oa.scan", "oa.subscribe", "oa.location"}
# Rules published in step (c): different points, caps and thresholds.
NEW_RULES = {
    "note": "bench v2",
    "events": [
        {"id": "follow", "event": "oa.subscribe", "points": 8, "cap_lifetime": 8},
        {"id": "scan", "event": "oa.scan", "points": 4, "cap_per_day": 8},
        {"id": "text_message", "event": "oa.text", "points": 3, "cap_per_day": 12},
        {"id": "menu_click", "event": "oa.click", "points": 2, "cap_per_day": 6},
        {
            "id": "trial_click",
            "event": "oa.click",
            "when": {"key": {"eq": "MENU_TRIAL"}},
            "points": 10,
            "cap_lifetime": 10,
        },
        {
            "id": "read_article",
            "event": "oa.view",
            "when": {"url": {"prefix": "https://mp.weixin.qq.com/"}},
            "points": 4,
            "cap_per_day": 16,
            "cap_lifetime": 120,
        },
        {
            "id": "price_interest",
            "event": "oa.text",
            "when": {"content": {"contains_any": ["价格", "报价", "多少钱"]}},
            "points": 15,
            "cap_lifetime": 30,
        },
        {"id": "unsubscribe", "event": "oa.unsubscribe", "points": -40},
    ],
    "decay": {"half_life_days": 45},
    "stages": {"lead": 15, "mql": 60, "sql": 120},
}


def say(message: str = "") -> None:
    print(message, flush=True)


def _n(x: float) -> str:
    return f"{x:,.0f}"


# --- machine and servers -------------------------------------------------------------------


def machine_facts(url: str, redis_url: str) -> list[str]:
    import redis
    import sqlalchemy as sa

    from bot.core import db

    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    mem = "?"
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        kb = int(next(ln for ln in f if ln.startswith("MemTotal")).split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    with db.get_engine(url).connect() as conn:
        pg = conn.execute(sa.text("SHOW server_version")).scalar()
        buffers = conn.execute(sa.text("SHOW shared_buffers")).scalar()
    info = redis.Redis.from_url(redis_url).info("server")
    return [
        f"machine     {cpu}, {os.cpu_count()} CPUs, {mem} RAM, {platform.system()} {platform.release()}",
        f"python      {platform.python_version()} ({sys.executable})",
        f"postgresql  {pg} (shared_buffers {buffers}), same machine, {_safe(url)}",
        f"redis       {info.get('redis_version')}, {redis_url}",
    ]


def _safe(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def create_database(url: str) -> None:
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    from bot.core.db import normalize_url

    target = make_url(normalize_url(url))
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{target.database}"'))
    admin.dispose()


def drop_database(url: str) -> None:
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    from bot.core import db

    db.dispose_all()
    target = make_url(db.normalize_url(url))
    admin = sa.create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{target.database}" WITH (FORCE)'))
    admin.dispose()


def raw_connection(url: str):  # noqa: ANN201 - a psycopg connection
    import psycopg
    from sqlalchemy.engine import make_url

    from bot.core.db import normalize_url

    u = make_url(normalize_url(url))
    return psycopg.connect(
        host=u.host or "127.0.0.1",
        port=u.port or 5432,
        user=u.username,
        password=u.password,
        dbname=u.database,
    )


# --- data ----------------------------------------------------------------------------------


def _props(rng: random.Random, kind: str, i: int) -> str:
    if kind == "oa.text":
        content = rng.choice(PRICE_TEXTS) if rng.random() < 0.12 else rng.choice(TEXTS)
        return json.dumps({"content": content, "msg_id": str(10**15 + i)}, ensure_ascii=False)
    if kind == "oa.click":
        return json.dumps({"key": rng.choice(KEYS)})
    if kind == "oa.view":
        if rng.random() < 0.8:
            url = f"https://mp.weixin.qq.com/s/{rng.getrandbits(40):x}"
        else:
            url = f"https://example.com/p/{rng.randrange(500)}"
        return json.dumps({"url": url, "menu_id": "101"})
    if kind == "oa.scan":
        return json.dumps({"scene": f"poster{rng.randrange(20)}", "ticket": "T"})
    if kind == "oa.location":
        return json.dumps({"latitude": 31.23, "longitude": 121.47, "precision": 30.0})
    if kind == "msg.sent":
        return json.dumps({"message_id": i, "kind": "text"})
    if kind == "oa.subscribe":
        return json.dumps({"scene": f"poster{rng.randrange(20)}"} if rng.random() < 0.3 else {})
    return "{}"


def generate(contacts: int, events: int, now: datetime) -> tuple[list, list]:
    """Contacts with 90 days of events: (contact rows, event rows sorted by time)."""
    rng = random.Random(SEED)
    start = now - timedelta(days=DAYS)
    span = (now - start).total_seconds()
    weights = [rng.paretovariate(1.6) for _ in range(contacts)]
    extra = events - contacts
    scale = extra / sum(weights)
    counts = [int(w * scale) for w in weights]
    for i in rng.choices(range(contacts), k=extra - sum(counts)):
        counts[i] += 1
    kinds, kind_weights = zip(*MIX, strict=True)
    start_ts = start.timestamp()
    rows: list[tuple] = []
    people: list[tuple] = []
    n = 0
    for cid in range(1, contacts + 1):
        first = start_ts + rng.random() * span * 0.95
        times = sorted(
            first + rng.random() * (start_ts + span - first) for _ in range(counts[cid - 1])
        )
        seq = [("oa.subscribe", first)] + list(
            zip(rng.choices(kinds, kind_weights, k=len(times)), times, strict=True)
        )
        subscribed, sub_at, unsub_at, last_interaction = True, first, None, first
        for kind, ts in seq:
            n += 1
            rows.append((ts, cid, kind, _props(rng, kind, n)))
            if kind == "oa.subscribe":
                subscribed, sub_at = True, ts
            elif kind == "oa.unsubscribe":
                subscribed, unsub_at = False, ts
            if kind in INTERACTIONS:
                last_interaction = max(last_interaction, ts)
        people.append((cid, subscribed, sub_at, unsub_at, first, seq[-1][1], last_interaction))
    rows.sort()
    return people, rows


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def load(url: str, people: list[tuple], rows: list[tuple], appid: str) -> None:
    with raw_connection(url) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY contact (id, subscribed, subscribed_at, unsubscribed_at, first_seen_at, "
            "last_seen_at, last_interaction_at, created_at, stage, stage_manual, score) FROM STDIN"
        ) as copy:
            for cid, sub, sub_at, unsub_at, first, last, inter in people:
                copy.write_row(
                    (
                        cid,
                        sub,
                        _dt(sub_at),
                        _dt(unsub_at) if unsub_at else None,
                        _dt(first),
                        _dt(last),
                        _dt(inter),
                        _dt(first),
                        "subscriber",
                        False,
                        0.0,
                    )
                )
        with cur.copy(
            "COPY identity (contact_id, kind, app_id, value, created_at) FROM STDIN"
        ) as copy:
            for cid, *_rest in people:
                copy.write_row((cid, "openid", appid, f"oBench{cid:09d}", _dt(_rest[3])))
        with cur.copy(
            "COPY event (id, contact_id, type, source, properties, occurred_at, received_at, "
            "dedupe_key, processed_at) FROM STDIN"
        ) as copy:
            for i, (ts, cid, kind, props) in enumerate(rows, 1):
                at = _dt(ts)
                source = "bot" if kind.startswith("msg.") else "oa"
                copy.write_row((i, cid, kind, source, props, at, at, f"b{i}", at))
        cur.execute("SELECT setval('contact_id_seq', (SELECT max(id) FROM contact))")
        cur.execute("SELECT setval('event_id_seq', (SELECT max(id) FROM event))")
        conn.commit()
    with raw_connection(url) as conn:
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")


# --- (a) the job path ----------------------------------------------------------------------


def add_sample(url: str, contacts: int, count: int, now: datetime) -> tuple[int, list[int]]:
    """New events (scored kinds, the last hour) with pending outbox rows, as record() leaves
    them. Returns the first new event id and the contacts they belong to."""
    rng = random.Random(SEED + 1)
    picked = rng.choices(range(1, contacts + 1), k=count)
    kinds = rng.choices(["oa.text", "oa.click", "oa.view"], [45, 30, 25], k=count)
    times = sorted(now.timestamp() - rng.random() * 3600 for _ in range(count))
    with raw_connection(url) as conn, conn.cursor() as cur:
        first = cur.execute("SELECT max(id) FROM event").fetchone()[0] + 1
        with cur.copy(
            "COPY event (id, contact_id, type, source, properties, occurred_at, received_at, "
            "dedupe_key) FROM STDIN"
        ) as copy:
            for j in range(count):
                at = _dt(times[j])
                props = _props(rng, kinds[j], first + j)
                copy.write_row((first + j, picked[j], kinds[j], "oa", props, at, at, f"s{j}"))
        with cur.copy("COPY outbox (event_id, status, attempts, created_at) FROM STDIN") as copy:
            for j in range(count):
                copy.write_row((first + j, "pending", 0, _dt(times[j])))
        cur.execute("SELECT setval('event_id_seq', (SELECT max(id) FROM event))")
        cur.execute(
            "UPDATE contact c SET last_seen_at = greatest(c.last_seen_at, s.at), "
            "last_interaction_at = greatest(c.last_interaction_at, s.at) "
            "FROM (SELECT contact_id, max(occurred_at) AS at FROM event WHERE id >= %s "
            "AND type <> 'oa.view' GROUP BY contact_id) s WHERE c.id = s.contact_id",
            (first,),
        )
        conn.commit()
        conn.execute("ANALYZE event")
        conn.execute("ANALYZE outbox")
    return first, sorted(set(picked))


def _worker(env: dict[str, str], ready, go, out: str) -> None:  # noqa: ANN001
    """One rq SimpleWorker process (burst), each pipeline step timed."""
    os.environ.update(env)
    from bot.background import pipeline
    from bot.background.worker import BurstWorker
    from bot.core import queue
    from bot.core.config import load_settings

    spent: dict[str, float] = {}
    calls: dict[str, int] = {}

    def timed(step):  # noqa: ANN001, ANN202
        name = f"{step.__module__}.{step.__name__}"

        def run(ctx):  # noqa: ANN001, ANN202
            t = time.perf_counter()
            try:
                return step(ctx)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - t
                calls[name] = calls.get(name, 0) + 1

        return run

    pipeline.STEPS[:] = [timed(s) for s in pipeline.STEPS]
    settings = load_settings()
    worker = BurstWorker(queue.all_queues(settings), connection=queue.get_redis(settings))
    ready.set()
    go.wait()
    logging.getLogger("bot").setLevel(logging.ERROR)  # "no active rep" for every new MQL
    worker.work(burst=True, logging_level="ERROR")
    Path(out).write_text(json.dumps({"spent": spent, "calls": calls}))


def run_job_path(
    url: str, env: dict[str, str], first: int, count: int, workers: int, tmp: Path
) -> dict:
    import sqlalchemy as sa

    from bot.core import db, queue
    from bot.core.config import load_settings

    settings = load_settings()
    ctx = mp.get_context("spawn")
    go = ctx.Event()
    procs = []
    for k in range(workers):
        ready = ctx.Event()
        p = ctx.Process(target=_worker, args=(env, ready, go, str(tmp / f"worker{k}.json")))
        p.start()
        procs.append((p, ready))
    for _p, ready in procs:
        ready.wait(120)
    for _ in range(workers):
        queue.kick_outbox(settings, force=True)  # one drain job per worker
    started = time.perf_counter()
    go.set()
    engine = db.get_engine(url)
    done, last_print = 0, started
    while done < count:
        time.sleep(0.1)
        with engine.connect() as conn:
            done = conn.execute(
                sa.text(
                    "SELECT count(*) FROM outbox WHERE status = 'done' "
                    "AND event_id BETWEEN :first AND :last"
                ),
                {"first": first, "last": first + count - 1},
            ).scalar()
        if time.perf_counter() - last_print > 10:
            last_print = time.perf_counter()
            say(f"    … {_n(done)} of {_n(count)} events processed")
        if not any(p.is_alive() for p, _ in procs) and done < count:
            break
    elapsed = time.perf_counter() - started
    for p, _ in procs:
        p.join(60)
    spent: dict[str, float] = {}
    calls: dict[str, int] = {}
    for k in range(workers):
        with contextlib.suppress(OSError):
            data = json.loads((tmp / f"worker{k}.json").read_text())
            for name, s in data["spent"].items():
                spent[name] = spent.get(name, 0.0) + s
            for name, c in data["calls"].items():
                calls[name] = calls.get(name, 0) + c
    return {"done": done, "seconds": elapsed, "spent": spent, "calls": calls}


# --- main ----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=2_000_000, help="in the database at (c)")
    parser.add_argument("--job-events", type=int, default=20_000, help="the sample for (a)")
    parser.add_argument("--job-workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--explain-samples", type=int, default=100)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()

    url = os.environ.get("DATABASE_URL", DEFAULT_DB)
    redis_url = os.environ.get("REDIS_URL", DEFAULT_REDIS)
    tmp = Path(tempfile.mkdtemp(prefix="yuchi-bench-scoring-"))
    env = {
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "YUCHI_VAR_DIR": str(tmp),
        "YUCHI_LOG_LEVEL": "ERROR",
        "WECHAT_API_BASE": DEAD,
        "WECOM_API_BASE": DEAD,
    }
    os.environ.update(env)

    import redis
    import sqlalchemy as sa

    from bot.core import db
    from bot.core.config import load_settings
    from bot.scoring import versions
    from bot.scoring.explain import explain, verify
    from bot.scoring.recompute import Recomputed, recompute
    from bot.scoring.rules import RuleSet

    say("鱼池 Yuchi lead-scoring benchmark")
    create_database(url)
    rconn = redis.Redis.from_url(redis_url)
    rconn.flushdb()
    for line in machine_facts(url, redis_url):
        say(f"  {line}")
    settings = load_settings()
    mismatches = 0
    try:
        db.upgrade(url)
        now = datetime.now(UTC)
        historic = args.events - args.job_events
        t = time.perf_counter()
        people, rows = generate(args.contacts, historic, now)
        gen_s = time.perf_counter() - t
        t = time.perf_counter()
        load(url, people, rows, settings.oa_appid)
        load_s = time.perf_counter() - t
        kinds: dict[str, int] = {}
        for row in rows:
            kinds[row[2]] = kinds.get(row[2], 0) + 1
        del people, rows
        say(
            f"\ndata: {_n(args.contacts)} contacts, {_n(historic)} events over {DAYS} days "
            f"(generated in {gen_s:.1f} s, COPY + VACUUM ANALYZE in {load_s:.1f} s)"
        )
        say(
            "  "
            + ", ".join(
                f"{k} {v / historic:.0%}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])
            )
        )

        def progress(label: str, total_contacts: int):  # noqa: ANN202
            marks = {round(total_contacts * q / 10) for q in range(1, 11)}
            state = {"next": 0}

            def show(r: Recomputed) -> None:
                if (
                    r.contacts >= min(m for m in marks if m > state["next"])
                    or r.contacts == total_contacts
                ):
                    state["next"] = r.contacts
                    rate = r.events / r.seconds if r.seconds else 0
                    say(
                        f"    … {label}: {_n(r.contacts)} contacts, {_n(r.events)} events, "
                        f"{_n(r.lines)} lines, {r.seconds:.1f} s ({_n(rate)} events/s)"
                    )

            return show

        # 0. build every ledger under the default rules (version 1, installed on first use)
        say("\n0. building every ledger under the default rules (scoring.recompute)")
        built = recompute(settings, progress=progress("build", args.contacts))
        say(
            f"   {_n(built.contacts)} contacts, {_n(built.events)} events, {_n(built.lines)} "
            f"ledger lines, {_n(built.stage_changes)} stage changes in {built.seconds:.1f} s "
            f"= {_n(built.events / built.seconds)} events/s"
        )
        # Their contact.stage_changed events count as processed long ago: (a) times only its sample.
        with db.get_engine(url).begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE outbox SET status = 'done', done_at = now() WHERE status = 'pending'"
                )
            )
        rconn.flushdb()

        # a. the real job path
        say(
            f"\na. events scored through the job path: {_n(args.job_events)} new events (text, "
            f"click, view; the last hour) with outbox rows, {args.job_workers} rq SimpleWorker "
            "process(es), burst, bot.background.jobs.drain_outbox → process_batch → every pipeline step"
        )
        first, touched = add_sample(url, args.contacts, args.job_events, now)
        job = run_job_path(url, env, first, args.job_events, args.job_workers, tmp)
        say(
            f"   {_n(job['done'])} of {_n(args.job_events)} events processed in "
            f"{job['seconds']:.1f} s = {_n(job['done'] / job['seconds'])} events/s"
        )
        for name, s in sorted(job["spent"].items(), key=lambda kv: -kv[1]):
            n = job["calls"].get(name, 1)
            say(
                f"     step {name:<28} {s * 1000 / n:6.2f} ms/event (CPU+DB wait, summed over workers)"
            )
        with db.get_engine(url).connect() as conn:
            written = conn.execute(
                sa.text(
                    "SELECT count(*) FROM score_entry s JOIN event e ON e.id = s.event_id "
                    "WHERE e.id BETWEEN :first AND :last"
                ),
                {"first": first, "last": first + args.job_events - 1},
            ).scalar()
        say(f"   {_n(written)} ledger lines written for the sample (caps hold the rest back)")
        rng = random.Random(SEED + 2)
        check = rng.sample(touched, min(300, len(touched)))
        ok = 0
        with db.session_scope(url) as s:
            for cid in check:
                ok += verify(s, cid).ok
        say(
            f"   verify: incremental score = ledger = replay from scratch for {ok} of {len(check)} "
            "sampled contacts"
        )
        mismatches += len(check) - ok

        # b. explain one contact's score
        with db.session_scope(url) as s:
            explain(s, 1, datetime.now(UTC))  # warm the rule cache
        times, line_counts = [], []
        for cid in rng.sample(range(1, args.contacts + 1), args.explain_samples):
            with db.session_scope(url) as s:
                t = time.perf_counter()
                out = explain(s, cid, datetime.now(UTC))
                times.append(time.perf_counter() - t)
                line_counts.append(len(out["lines"]))
        times.sort()
        say(
            f"\nb. explain one contact's score (scoring.explain, {args.explain_samples} random contacts): "
            f"median {statistics.median(times) * 1000:.2f} ms, p90 {times[int(len(times) * 0.9)] * 1000:.2f} ms, "
            f"max {times[-1] * 1000:.2f} ms; lines per contact median {statistics.median(line_counts):.0f}, "
            f"max {max(line_counts)}"
        )

        # c. publish a new version and recompute everything
        with db.get_engine(url).connect() as conn:
            total_events = conn.execute(sa.text("SELECT count(*) FROM event")).scalar()
        say(
            f"\nc. publish a new rule version and recompute every score ({_n(args.contacts)} "
            f"contacts, {_n(total_events)} events in the database)"
        )
        with db.session_scope(url) as s:
            version = versions.publish(s, RuleSet.model_validate(NEW_RULES))
        again = recompute(settings, progress=progress(f"v{version}", args.contacts))
        say(
            f"   version {version}: {_n(again.contacts)} contacts, {_n(again.events)} events, "
            f"{_n(again.lines)} ledger lines, {_n(again.stage_changes)} stage changes in "
            f"{again.seconds:.1f} s = {_n(again.events / again.seconds)} events/s, "
            f"{_n(again.contacts / again.seconds)} contacts/s"
        )
        with db.session_scope(url) as s:
            ok = sum(verify(s, cid).ok for cid in check[:100])
        say(f"   verify after the recompute: {ok} of {min(100, len(check))} sampled contacts")
        mismatches += min(100, len(check)) - ok
    finally:
        rconn.flushdb()
        if args.keep:
            say(f"\nkept database {_safe(url)}")
        else:
            drop_database(url)
            say("\ndatabase dropped, Redis DB flushed")
    if mismatches:
        say(f"\nFAILED: {mismatches} sampled contact(s) failed scoring.verify")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
