"""Yuchi at scale on PostgreSQL: 1,000,000 contacts and 10,000,000 events (issue 19).

    .venv/bin/python bench/scale.py [--contacts N] [--events N] [--requests N]
                                    [--web-workers 2] [--job-workers 2] [--keep]
    .venv/bin/python bench/scale.py --reuse [--recompute]   # a kept database again

Creates the database named in DATABASE_URL (default
postgresql+psycopg://postgres@127.0.0.1:5432/bench_scale; dropped first if it exists), flushes
the Redis DB in REDIS_URL (default redis://127.0.0.1:6379/6) and migrates. Then:

  1. seeds N contacts (openid each, unionid and external_userid for most), 90 days of events
     (10 a contact on average, a long tail of heavy contacts) and tags, with COPY; the
     secondary indexes are dropped for the load and built again, then VACUUM ANALYZE;
  2. builds every ledger (the scores) with the parallel recompute: its parts taken by K rq
     worker processes, progress printed, events/s;
  3. serves the API as deployed (gunicorn -c python:bot.gunicorn_conf -w W) and times, one
     request at a time, p50/p99 of: /healthz (the floor), contact by openid / unionid /
     external_userid, timeline first and 20th page for random and for the heaviest contacts,
     the contact page, the score explain (built, and pending right after a publish);
  4. the same deep page in the database: the old OR keyset beside the row comparison;
  5. "contacts with >= 2 oa.click in the last 14 days" on the event table (its index) and on
     per-contact daily counts (the alternative, built here to measure it);
  6. the recompute after a publish: one process (the serial path, on a sample) as the
     baseline, then K workers over everyone.

Drops the database and flushes the Redis DB at the end (unless --keep). --contacts 100000
takes a few minutes on 2 cores; the full size about half an hour.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import multiprocessing as mp
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # not bench/: bench/journeys.py would shadow the journeys package

from bench.scoring import (  # noqa: E402 - after the path fix
    KEYS,
    NEW_RULES,
    PRICE_TEXTS,
    TEXTS,
    create_database,
    drop_database,
    machine_facts,
    raw_connection,
)

DEFAULT_DB = "postgresql+psycopg://postgres@127.0.0.1:5432/bench_scale"
DEFAULT_REDIS = "redis://127.0.0.1:6379/6"
TOKEN = "bench-scale-token"
APPID, CORP = "wxscale0000000001", "wwscale0000000001"
DAYS = 90
SEED = 20261202
PAGE = 50  # the API's default page
MIX = [("oa.text", 38), ("oa.click", 24), ("oa.view", 22), ("msg.sent", 8), ("oa.scan", 3)]
TAGS = [f"兴趣:{w}" for w in ("价格", "案例", "试用", "发票", "售后", "活动", "直播", "白皮书")] + [
    f"渠道:海报{i}" for i in range(12)
]
SEEDED = ("contact", "identity", "event", "contact_tag")


def say(message: str = "") -> None:
    print(message, flush=True)


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def row(name: str, samples: list[float], note: str = "") -> None:
    ms = [s * 1000 for s in samples]
    say(
        f"  {name:<34} p50 {pct(ms, 0.5):7.2f} ms   p99 {pct(ms, 0.99):7.2f} ms"
        f"   max {max(ms):7.2f} ms   n={len(ms)}{'   ' + note if note else ''}"
    )


# --- 1. seeding ------------------------------------------------------------------------------


def _props_pool(rng: random.Random) -> dict[str, list[str]]:
    """A few hundred properties per kind, escaped for COPY's text format."""

    def one(kind: str, i: int) -> dict:
        if kind == "oa.text":
            return {"content": rng.choice(PRICE_TEXTS if i % 8 == 0 else TEXTS), "msg_id": str(i)}
        if kind == "oa.click":
            return {"key": rng.choice(KEYS)}
        if kind == "oa.view":
            return {"url": f"https://mp.weixin.qq.com/s/{rng.getrandbits(40):x}"}
        if kind == "oa.scan":
            return {"scene": f"poster{i % 20}"}
        return {"message_id": i, "kind": "text"}

    return {
        k: [json.dumps(one(k, i), ensure_ascii=False).replace("\\", "\\\\") for i in range(300)]
        for k, _w in MIX
    }


def _event_counts(rng: random.Random, contacts: int, events: int) -> list[int]:
    weights = [rng.paretovariate(1.6) for _ in range(contacts)]
    scale = (events - contacts) / sum(weights)
    counts = [int(w * scale) for w in weights]
    for i in rng.choices(range(contacts), k=events - contacts - sum(counts)):
        counts[i] += 1
    return counts


def _indexes(cur) -> list[tuple[str, str]]:  # noqa: ANN001 - a psycopg cursor
    """The secondary indexes of the seeded tables that no constraint owns: (name, definition)."""
    return cur.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename"
        " = ANY(%s) AND indexname NOT IN (SELECT conname FROM pg_constraint)",
        (list(SEEDED),),
    ).fetchall()


def _copy_events(cur, rng: random.Random, counts: list[int], start: float, span: float) -> tuple:  # noqa: ANN001
    """Each contact's events into seed_event; returns each contact's first and last times."""
    pool = _props_pool(rng)
    kinds, weights = zip(*MIX, strict=True)
    contacts = len(counts)
    firsts, lasts = [0.0] * (contacts + 1), [0.0] * (contacts + 1)
    with cur.copy("COPY seed_event (contact_id, type, properties, t) FROM STDIN") as evs:
        for cid in range(1, contacts + 1):
            first = start + rng.random() * span * 0.95
            times = [first + rng.random() * (span + start - first) for _ in range(counts[cid - 1])]
            firsts[cid], lasts[cid] = first, max(times, default=first)
            lines = [f"{cid}\toa.subscribe\t{{}}\t{first}\n"]
            for kind, t in zip(rng.choices(kinds, weights, k=len(times)), times, strict=True):
                lines.append(f"{cid}\t{kind}\t{rng.choice(pool[kind])}\t{t}\n")
            evs.write("".join(lines))
    return firsts, lasts


def _copy_people(cur, rng: random.Random, firsts: list, lasts: list, stamp: str) -> None:  # noqa: ANN001
    contacts = len(firsts) - 1
    with cur.copy(
        "COPY contact (id, subscribed, first_seen_at, last_seen_at, last_interaction_at,"
        " created_at, stage, stage_manual, score) FROM STDIN"
    ) as people:
        for cid in range(1, contacts + 1):
            first = datetime.fromtimestamp(firsts[cid], UTC).isoformat()
            last = datetime.fromtimestamp(lasts[cid], UTC).isoformat()
            people.write(f"{cid}\tt\t{first}\t{last}\t{last}\t{first}\tsubscriber\tf\t0\n")
    with cur.copy("COPY identity (contact_id, kind, app_id, value, created_at) FROM STDIN") as ids:
        for cid in range(1, contacts + 1):
            ids.write(f"{cid}\topenid\t{APPID}\toScale{cid:09d}\t{stamp}\n")
            if cid % 10:
                ids.write(f"{cid}\tunionid\t\tuScale{cid:09d}\t{stamp}\n")
            if cid % 3 == 0:
                ids.write(f"{cid}\texternal_userid\t{CORP}\twmScale{cid:09d}\t{stamp}\n")
    with cur.copy("COPY contact_tag (contact_id, tag, source, created_at) FROM STDIN") as tags:
        for cid in range(1, contacts + 1):
            for tag in rng.sample(TAGS, cid % 4):
                tags.write(f"{cid}\t{tag}\trule\t{stamp}\n")


def seed(url: str, contacts: int, events: int, now: datetime) -> None:
    rng = random.Random(SEED)
    start = (now - timedelta(days=DAYS)).timestamp()
    span = now.timestamp() - start
    counts = _event_counts(rng, contacts, events)
    t0 = time.perf_counter()
    with raw_connection(url) as conn, conn.cursor() as cur:
        dropped = _indexes(cur)
        for name, _definition in dropped:
            cur.execute(f'DROP INDEX "{name}"')
        cur.execute(
            "CREATE UNLOGGED TABLE seed_event (contact_id int, type text, properties jsonb,"
            " t double precision)"
        )
        firsts, lasts = _copy_events(cur, rng, counts, start, span)
        _copy_people(cur, rng, firsts, lasts, now.isoformat())
        say(f"  copied in {time.perf_counter() - t0:.0f} s")
        cur.execute(
            "INSERT INTO event (contact_id, type, source, properties, occurred_at, received_at,"
            " processed_at) SELECT contact_id, type, CASE WHEN type LIKE 'msg.%%' THEN 'bot'"
            " ELSE 'oa' END, properties, to_timestamp(t), to_timestamp(t), to_timestamp(t)"
            " FROM seed_event ORDER BY t"  # as they arrived: a contact's events spread out
        )
        cur.execute("DROP TABLE seed_event")
        cur.execute("SELECT setval('contact_id_seq', (SELECT max(id) FROM contact))")
        conn.commit()
        say(f"  events stored in time order after {time.perf_counter() - t0:.0f} s")
        for _name, definition in dropped:
            cur.execute(definition)
        conn.commit()
        say(f"  {len(dropped)} indexes built again after {time.perf_counter() - t0:.0f} s")
    vacuum(url)
    took = time.perf_counter() - t0
    say(
        f"  seeded {contacts:,} contacts, {events:,} events in {took:.0f} s ({events / took:,.0f} events/s)"
    )


def vacuum(url: str) -> None:
    with raw_connection(url) as conn:
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")


# --- 2 and 6. recomputes ---------------------------------------------------------------------


def _bulk_worker(env: dict[str, str]) -> None:
    os.environ.update(env)
    from bot.background.worker import BurstWorker
    from bot.core import queue
    from bot.core.config import load_settings

    settings = load_settings()
    worker = BurstWorker(
        [queue.get_queue(settings, queue.BULK)], connection=queue.get_redis(settings)
    )
    worker.work(burst=True, logging_level="ERROR")


def _autovacuum(url: str) -> bool:
    with raw_connection(url) as conn:
        on = conn.execute("SHOW autovacuum").fetchone()[0] == "on"
    if not on:
        say("    (autovacuum is off on this server: ANALYZE score_entry every 30 s, as it would)")
    return on


def _analyze(url: str, table: str) -> None:
    """What autovacuum does as a table grows: without it, a ledger table analyzed empty is
    planned as empty, and deleting a batch's old lines becomes a sequential scan."""
    with raw_connection(url) as conn:
        conn.autocommit = True
        conn.execute(f"ANALYZE {table}")


def _watch(settings, version: int, procs: list, started: float) -> None:  # noqa: ANN001
    """Until the workers are done: a progress line every 10 s."""
    from bot.core.db import session_scope
    from bot.scoring import recompute

    shown = analyzed = started
    autovacuum = _autovacuum(settings.database_url)
    while any(p.is_alive() for p in procs):
        time.sleep(2)
        if not autovacuum and time.perf_counter() - analyzed > 30:
            _analyze(settings.database_url, "score_entry")
            analyzed = time.perf_counter()
        if time.perf_counter() - shown < 10:
            continue
        shown = time.perf_counter()
        with session_scope(settings.database_url) as s:
            got = recompute.progress(s, version)
        say(
            f"    {time.perf_counter() - started:5.0f} s  parts {got['parts_done']}/{got['parts']}"
            f"  {got['contacts']:,} contacts  {got['events']:,} events"
            f"  {got['events_per_second'] or 0:,} events/s  ids left {got['ids_left']:,}"
        )
    for p in procs:
        p.join()


def parallel_recompute(settings, env: dict[str, str], workers: int) -> dict:  # noqa: ANN001
    """Plan the active version's parts, run them on ``workers`` rq worker processes, print
    progress; the final progress."""
    from bot.core.db import session_scope
    from bot.scoring import recompute, versions

    with session_scope(settings.database_url) as s:
        version = versions.active(s).version
        s.commit()
    for part in recompute.plan(settings, version):
        recompute.enqueue_part(settings, version, part)
    ctx = mp.get_context("spawn")
    started = time.perf_counter()
    procs = [ctx.Process(target=_bulk_worker, args=(env,)) for _ in range(workers)]
    for p in procs:
        p.start()
    try:
        _watch(settings, version, procs, started)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    took = time.perf_counter() - started
    with session_scope(settings.database_url) as s:
        got = recompute.progress(s, version)
    got["wall_seconds"] = took
    say(
        f"  (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)\n"
        f"  version {version}: {got['contacts']:,} contacts, {got['events']:,} events with"
        f" {workers} workers: {got['events_per_second'] or 0:,} events/s from the first part's"
        f" start to the last commit ({got['events'] / took:,.0f} events/s over {took:.0f} s"
        " wall, starting the worker processes included)"
    )
    return got


def serial_sample(settings, contacts: int, size: int) -> float:  # noqa: ANN001
    """The serial path (one process) on random contacts: events/s."""
    from bot.scoring.recompute import recompute

    ids = random.Random(SEED + 6).sample(range(1, contacts + 1), min(size, contacts))
    got = recompute(settings, ids)
    rate = got.events / got.seconds
    say(
        f"  one process, {got.contacts:,} random contacts: {got.events:,} events in {got.seconds:.1f} s: {rate:,.0f} events/s"
    )
    return rate


# --- 3. the API --------------------------------------------------------------------------------


def start_web(env: dict[str, str], workers: int, port: int, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "gunicorn", "-c", "python:bot.gunicorn_conf", "--bind",
           f"127.0.0.1:{port}", "--workers", str(workers), "bot.app:create_app()"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, env={**os.environ, **env}, cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    for _ in range(600):
        try:
            if get(port, "/healthz")[0] == 200:
                return proc
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"gunicorn did not start: see {log}")


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}"})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body


def timed(port: int, paths: list[str], bodies: list[bytes] | None = None) -> list[float]:
    out = []
    for path in paths:
        t = time.perf_counter()
        status, body = get(port, path)
        out.append(time.perf_counter() - t)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {body[:200]!r}")
        if bodies is not None:
            bodies.append(body)
    return out


def explain_path(bodies: list[bytes]) -> str:
    """Which path the score explains took: from the active version's ledger, or pending."""
    got = [json.loads(b) for b in bodies]
    built = sum(1 for e in got if e["ledger_built"])
    size = statistics.median(len(b) for b in bodies) / 1024
    lines = statistics.median(e["lines_total"] for e in got)
    return f"built {built}/{len(got)}, median {lines:.0f} lines, {size:.1f} KiB"


def timed_explain(name: str, port: int, paths: list[str]) -> None:
    bodies: list[bytes] = []
    samples = timed(port, paths, bodies)
    row(name, samples, explain_path(bodies))


def targets(url: str, contacts: int, n: int) -> dict:
    """Who to ask for: random contacts, the heaviest, the deep-page cursors."""
    rng = random.Random(SEED + 3)
    with raw_connection(url) as conn:
        heavy = [r[0] for r in conn.execute(
            "SELECT contact_id FROM event GROUP BY contact_id ORDER BY count(*) DESC LIMIT 10"
        )]  # fmt: skip
        deep = [r[0] for r in conn.execute(
            "SELECT contact_id FROM event GROUP BY contact_id HAVING count(*) >= %s", (20 * PAGE,)
        )]  # fmt: skip
        sizes = dict(conn.execute(
            "SELECT contact_id, count(*) FROM event WHERE contact_id = ANY(%s) GROUP BY 1", (heavy,)
        ).fetchall())  # fmt: skip

        def page20(cid: int) -> int:
            return conn.execute(
                "SELECT id FROM event WHERE contact_id = %s ORDER BY occurred_at DESC, id DESC"
                " OFFSET %s LIMIT 1", (cid, 19 * PAGE - 1)
            ).fetchone()[0]  # fmt: skip

        random_deep = [rng.choice(deep) for _ in range(n)] if deep else []
        return {
            "contacts": contacts,
            "random": [rng.randint(1, contacts) for _ in range(n)],
            "heavy": heavy,
            "sizes": sizes,
            "deep": [(c, page20(c)) for c in random_deep[: min(n, 200)]],
            "heavy_deep": [(c, page20(c)) for c in heavy if sizes[c] >= 20 * PAGE],
            "deep_count": len(deep),
        }


def fresh(t: dict, n: int, rng: random.Random) -> list[int]:
    """Random contacts not asked for before: each kind of read meets pages as cold as the
    last (a contact read once is in PostgreSQL's buffers for the next read)."""
    return [rng.randint(1, t["contacts"]) for _ in range(n)]


def api_reads(port: int, t: dict, n: int) -> None:
    rng = random.Random(SEED + 4)
    union = [c if c % 10 else c + 1 for c in fresh(t, n, rng)]
    external = [c - c % 3 or 3 for c in fresh(t, n, rng)]
    heavy = [t["heavy"][i % len(t["heavy"])] for i in range(n)]
    cases = [
        ("/healthz (the floor)", ["/healthz"] * n),
        ("contact by openid", [f"/api/contacts?openid=oScale{c:09d}" for c in fresh(t, n, rng)]),
        ("contact by unionid", [f"/api/contacts?unionid=uScale{c:09d}" for c in union]),
        ("contact by external_userid",
         [f"/api/contacts?external_userid=wmScale{c:09d}" for c in external]),
        ("contact page", [f"/api/contacts/{c}" for c in fresh(t, n, rng)]),
        ("timeline page 1, random", [f"/api/contacts/{c}/events" for c in fresh(t, n, rng)]),
        ("timeline page 20, random deep",
         [f"/api/contacts/{c}/events?before={b}" for c, b in t["deep"]]),
        ("timeline page 1, heaviest", [f"/api/contacts/{c}/events" for c in heavy]),
        ("timeline page 20, heaviest",
         [f"/api/contacts/{c}/events?before={b}" for c, b in rng.choices(t["heavy_deep"], k=n)]
         if t["heavy_deep"] else []),
        ("score explain, random", [f"/api/contacts/{c}/score" for c in fresh(t, n, rng)]),
        ("score explain, heaviest", [f"/api/contacts/{c}/score" for c in heavy]),
    ]  # fmt: skip
    for name, paths in cases:
        if paths:
            timed(port, paths[-20:])  # warm the server (these contacts are measured last)
            if name.startswith("score explain"):
                timed_explain(name, port, paths)
            else:
                row(name, timed(port, paths))


# --- 4 and 5. in the database ------------------------------------------------------------------


def explain_ms(conn, sql: str, params: tuple) -> float:  # noqa: ANN001
    plan = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params).fetchone()[0]
    return plan[0]["Execution Time"]


def keyset_in_db(url: str, t: dict) -> None:
    cid = t["heavy"][0]
    old = ("SELECT id FROM event WHERE contact_id = %s AND (occurred_at < %s OR (occurred_at = %s"
           " AND id < %s)) ORDER BY occurred_at DESC, id DESC LIMIT 51")  # fmt: skip
    new = ("SELECT id FROM event WHERE contact_id = %s AND (occurred_at, id) < (%s, %s)"
           " ORDER BY occurred_at DESC, id DESC LIMIT 51")  # fmt: skip
    with raw_connection(url) as conn:
        total = t["sizes"][cid]
        for label, offset in (("page 20", 19 * PAGE - 1), ("last page", max(0, total - PAGE - 1))):
            at, eid = conn.execute(
                "SELECT occurred_at, id FROM event WHERE contact_id = %s"
                " ORDER BY occurred_at DESC, id DESC OFFSET %s LIMIT 1", (cid, offset)
            ).fetchone()  # fmt: skip
            runs = {"OR keyset (before)": [], "row comparison (now)": []}
            for _ in range(7):
                runs["OR keyset (before)"].append(explain_ms(conn, old, (cid, at, at, eid)))
                runs["row comparison (now)"].append(explain_ms(conn, new, (cid, at, eid)))
            for name, ms in runs.items():
                say(
                    f"  {label} of contact {cid} ({total:,} events), {name:<22} median {statistics.median(ms):8.3f} ms"
                )


DAILY = (
    "SELECT count(*) FROM (SELECT contact_id FROM bench_daily WHERE type = 'oa.click'"
    " AND day >= %s GROUP BY contact_id HAVING sum(n) >= 2) x"
)


def event_history(url: str, settings, now: datetime, runs: int) -> None:  # noqa: ANN001
    """The service's query on the event table beside the same question on per-contact daily
    counts (built here as the pipeline would keep them), run in turns."""
    from bot.contacts import history
    from bot.core.db import session_scope

    since = now - timedelta(days=14)
    with raw_connection(url) as conn:
        t = time.perf_counter()
        conn.execute(
            "CREATE TABLE bench_daily AS SELECT contact_id, type, (occurred_at AT TIME ZONE"
            " 'Asia/Shanghai')::date AS day, count(*)::int AS n FROM event GROUP BY 1, 2, 3"
        )
        conn.execute("CREATE INDEX ON bench_daily (type, day, contact_id) INCLUDE (n)")
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE bench_daily")
        built = time.perf_counter() - t
        rows = conn.execute("SELECT count(*) FROM bench_daily").fetchone()[0]
        window = conn.execute(
            "SELECT count(*) FROM bench_daily WHERE type = 'oa.click' AND day >= %s", (since.date(),)
        ).fetchone()[0]  # fmt: skip
        clicks = conn.execute(
            "SELECT count(*) FROM event WHERE type = 'oa.click' AND occurred_at >= %s", (since,)
        ).fetchone()[0]  # fmt: skip
        on_events, on_daily, answers = [], [], [0, 0]
        with session_scope(settings.database_url) as s:
            for i in range(runs + 1):
                t = time.perf_counter()
                answers[0] = history.count_contacts_with_events(s, "oa.click", 2, since)
                on_events.append(time.perf_counter() - t)
                t = time.perf_counter()
                answers[1] = conn.execute(DAILY, (since.date(),)).fetchone()[0]
                on_daily.append(time.perf_counter() - t)
                if i == 0:  # the first of each warms the cache
                    on_events, on_daily = [], []
        conn.execute("DROP TABLE bench_daily")
    row("event table (its index)", on_events, f"{answers[0]:,} contacts")
    row("daily counts (alternative)", on_daily, f"{answers[1]:,} contacts (whole local days)")
    say(
        f"  rows read: event {clicks:,}, daily counts {window:,} (of {rows:,}, built in {built:.0f} s)"
    )


# --- the run -----------------------------------------------------------------------------------


def publish_v2(settings) -> int:  # noqa: ANN001
    from bot.core.db import session_scope
    from bot.scoring import rules as score_rules
    from bot.scoring import versions

    with session_scope(settings.database_url) as s:
        version = versions.publish(s, score_rules.RuleSet.model_validate(NEW_RULES))
        s.commit()
    return version


def unpublish(settings, version: int) -> None:  # noqa: ANN001
    """Take back a version published only to time the pending explain (--reuse): the one
    before it is active again, so the next run times the ledgers this database has built."""
    with raw_connection(settings.database_url) as conn:
        conn.execute("DELETE FROM score_entry WHERE ruleset_version = %s", (version,))
        conn.execute("DELETE FROM scoring_ruleset WHERE version = %s", (version,))
        conn.execute(
            "UPDATE scoring_ruleset SET active = (version = (SELECT max(version) FROM"
            " scoring_ruleset))"
        )
        conn.commit()


def build_ledgers(settings, ids: list[int]) -> None:  # noqa: ANN001
    """The ledgers of ``ids`` under the active version, where not built yet: the explain is
    timed as served from a built ledger (the pending path is timed apart)."""
    from bot.core.db import session_scope
    from bot.scoring import recompute, versions
    from bot.scoring.rules import MARKER

    with session_scope(settings.database_url) as s:
        version = versions.active(s).version
        s.commit()
    with raw_connection(settings.database_url) as conn:
        built = {r[0] for r in conn.execute(
            "SELECT contact_id FROM score_entry WHERE contact_id = ANY(%s) AND event_id ="
            " -contact_id AND rule_id = %s AND ruleset_version = %s", (ids, MARKER, version)
        )}  # fmt: skip
    todo = sorted(set(ids) - built)
    if todo:
        got = recompute.recompute(settings, todo)
        say(f"  (built the ledgers of {got.contacts} of them under version {version}:"
            f" {got.events:,} events in {got.seconds:.1f} s)")  # fmt: skip


def reads(args: argparse.Namespace, env: dict, settings, url: str, started: list) -> dict:  # noqa: ANN001
    """Step 3, the API (the explain pending after publishing a new version); the targets."""
    t = targets(url, args.contacts, args.requests)
    say(f"\n3. the API: gunicorn -w {args.web_workers}, one request at a time;"
        f" heaviest contacts {sorted(t['sizes'].values(), reverse=True)[:3]} events,"
        f" {t['deep_count']:,} contacts have a 20th page")  # fmt: skip
    build_ledgers(settings, t["heavy"])
    web = start_web(env, args.web_workers, args.port, Path(env["YUCHI_VAR_DIR"]) / "web.log")
    started.append(web)
    api_reads(args.port, t, args.requests)
    say(f"  (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    t["version"] = publish_v2(settings)
    say(f"  (published version {t['version']}; its ledgers not built yet)")
    pending = [f"/api/contacts/{c}/score" for c in fresh(t, args.requests, random.Random(SEED))]
    timed(args.port, pending[-20:])
    timed_explain("score explain pending, random", args.port, pending)
    heavy = [t["heavy"][i % len(t["heavy"])] for i in range(args.requests)]
    paths = [f"/api/contacts/{c}/score" for c in heavy]
    timed_explain("score explain pending, heaviest", args.port, paths)
    if args.reuse and not args.recompute:
        unpublish(settings, t["version"])
        say(f"  (version {t['version']} taken back: this database stays as it was)")
    return t


def run(args: argparse.Namespace, env: dict, settings, url: str, started: list) -> None:  # noqa: ANN001
    """The six steps; the web server, once started, is put in ``started`` for the caller to
    stop (whatever happens)."""
    now = datetime.now(UTC)
    events = args.events or 10 * args.contacts
    say(f"\n1. seeding {args.contacts:,} contacts, {events:,} events (COPY)")
    seed(url, args.contacts, events, now)
    say(f"\n2. building every ledger (default rules), {args.job_workers} workers")
    parallel_recompute(settings, env, args.job_workers)
    vacuum(url)
    t = reads(args, env, settings, url, started)
    version = t["version"]
    say("\n4. a deep page in the database (EXPLAIN ANALYZE execution time)")
    keyset_in_db(url, t)
    say('\n5. "contacts with >= 2 oa.click in the last 14 days"')
    event_history(url, settings, now, 7)
    recompute_after_publish(args, env, settings, version)


def recompute_after_publish(args: argparse.Namespace, env: dict, settings, version: int) -> None:  # noqa: ANN001
    """Step 6: the serial path on a sample, then the parallel recompute over everyone."""
    say(f"\n6. recompute after a publish (version {version})")
    serial = serial_sample(settings, args.contacts, max(2000, args.contacts // 50))
    got = parallel_recompute(settings, env, args.job_workers)
    rate = got["events_per_second"] or 0
    say(f"  {args.job_workers} workers: {rate:,.0f} events/s, {rate / serial:.1f}x one process")


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--contacts", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=None, help="default: 10 a contact")
    ap.add_argument("--requests", type=int, default=400, help="timed requests per read")
    ap.add_argument("--web-workers", type=int, default=2)
    ap.add_argument("--job-workers", type=int, default=2)
    ap.add_argument("--port", type=int, default=8619)
    ap.add_argument("--keep", action="store_true", help="keep the database")
    ap.add_argument(
        "--reuse", action="store_true", help="a kept database: time the reads again (steps 3, 4)"
    )
    ap.add_argument(
        "--recompute",
        action="store_true",
        help="with --reuse: step 6 too, on the version published in step 3 (it stays active)",
    )
    args = ap.parse_args()
    url = os.environ.get("DATABASE_URL", DEFAULT_DB)
    env = {
        "DATABASE_URL": url,
        "REDIS_URL": os.environ.get("REDIS_URL", DEFAULT_REDIS),
        "YUCHI_API_TOKEN": TOKEN,
        "WECHAT_OA_APPID": APPID,
        "WECOM_CORP_ID": CORP,
        "YUCHI_LOG_LEVEL": "WARNING",
        "YUCHI_VAR_DIR": tempfile.mkdtemp(prefix="yuchi-bench-scale-"),
    }
    os.environ.update(env)
    import redis

    from bot.core import db
    from bot.core.config import load_settings

    if not args.reuse:
        create_database(url)
        redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    db.upgrade(url)
    settings = load_settings()
    for line in machine_facts(url, env["REDIS_URL"]):
        say(line)
    web: list = []
    try:
        if args.reuse:
            t = reads(args, env, settings, url, web)
            say("\n4. a deep page in the database (EXPLAIN ANALYZE execution time)")
            keyset_in_db(url, t)
            if args.recompute:
                recompute_after_publish(args, env, settings, t["version"])
        else:
            run(args, env, settings, url, web)
    finally:
        for proc in web:
            os.killpg(proc.pid, 15)
            proc.wait(30)
        redis.Redis.from_url(env["REDIS_URL"]).flushdb()
        if not (args.keep or args.reuse):
            drop_database(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
