"""H5 campaign benchmark.

1. Page views per second of a campaign page with visit tracking on (the chain, the
   ``h5.visit`` event, the view counter), against the same page's HTML served as a static file
   by the same gunicorn in the same run. Two tracked mixes: returning visitors (a pool of
   cookies, each seen before: the view costs Redis only) and first visits (no cookie: every
   request writes one ``h5.arrival`` event and its outbox row; the contact, its identity, the
   chain node and the ``h5.visit`` are made by the background drain, timed after the runs).
2. Attribution of 100,000 visits down a share chain of depth 5 (an employee, then 6 people per
   sharer per level: 9,330 people), level by level from several threads; every person also
   revisits through other people's links (their own, their children's: cycles and
   self-referral tried) until 100,000 visits. Checks: one node and one ``h5.visit`` per person,
   each at the depth of their first touch, no double counts (checked once the background
   drain has settled every arrival; the drain is timed on its own).

    .venv/bin/python bench/h5.py [--requests 4000] [--concurrency 8] [--workers N]

Uses DATABASE_URL / REDIS_URL when set (point them at scratch ones), else SQLite and an
embedded Redis in a temporary directory. Prints the figures; stops what it started.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # not bench/: this file would shadow the h5 package

STATIC_NAME = "_bench_page.html"  # written next to the page's own CSS/JS, removed afterwards
SPEC = {
    "slug": "bench",
    "name": "bench",
    "title": "2026 春季私域增长大会",
    "kind": "landing",
    "body": "<p>三月，与<strong>500+</strong>品牌一起聊私域增长。</p>" * 5,
    "cover_url": "/h5/static/covers/sample.jpg",
    "form": {"fields": [{"name": "name", "required": True}, {"name": "phone", "required": True}]},
    "reward": {"points_per_form": 10, "depth": 3},
}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str, cookie: str | None = None) -> tuple[int, bytes, str | None]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Connection": "close", "User-Agent": "Mozilla/5.0 (iPhone)"}
    if cookie:
        headers["Cookie"] = f"yuchi_v={cookie}"
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    set_cookie = resp.getheader("Set-Cookie")
    conn.close()
    return resp.status, body, set_cookie


def load(
    port: int, paths: list[tuple[str, str | None]], concurrency: int
) -> tuple[float, int, list[float]]:
    """(requests per second, errors, latencies ms) for these (path, cookie) requests."""
    errors, latencies, lock = 0, [], threading.Lock()
    it = iter(paths)

    def worker() -> None:
        nonlocal errors
        while True:
            with lock:
                item = next(it, None)
            if item is None:
                return
            t0 = time.perf_counter()
            status, _, _ = get(port, *item)
            took = (time.perf_counter() - t0) * 1000
            with lock:
                latencies.append(took)
                errors += status != 200

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(paths) / (time.perf_counter() - start), errors, latencies


def cpu_by_part(server_pgid: int, redis_url: str) -> dict[str, float]:
    """CPU seconds used so far by the parts of the stack on this machine: the gunicorn tree, the
    embedded Redis (found by its socket) and every PostgreSQL process (all of them: the server
    is shared, so read it on a quiet machine; an external Redis is not counted)."""
    socket = redis_url.partition("unix://")[2]
    parts = {"gunicorn": 0.0, "redis": 0.0, "postgres": 0.0}
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        comm = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        pgid = int(fields[2])
        used = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
        if pgid == server_pgid:
            parts["gunicorn"] += used
        elif comm.startswith("redis-server") and socket and socket in _cmdline(stat.parent):
            parts["redis"] += used
        elif comm.startswith("postgres"):
            parts["postgres"] += used
    return parts


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def p(latencies: list[float], q: float) -> float:
    return statistics.quantiles(latencies, n=100)[int(q) - 1] if len(latencies) > 1 else 0.0


def start_gunicorn(env: dict[str, str], port: int, workers: int) -> subprocess.Popen:
    env = {**env, "PORT": str(port), "WEB_CONCURRENCY": str(workers), "YUCHI_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen(
        [
            str(ROOT / ".venv/bin/gunicorn"),
            "-c",
            "python:bot.gunicorn_conf",
            "bot.app:create_app()",
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if get(port, "/healthz")[0] == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("gunicorn did not start")


def page_views(env: dict[str, str], settings, args) -> bool:  # noqa: ANN001
    from bot.campaigns import codes

    port = free_port()
    proc = start_gunicorn(env, port, args.workers)
    static = ROOT / "h5" / "static" / STATIC_NAME
    try:
        code = codes.referral_code(settings.secret_key, codes.Sharer(1, userid="zhangsan"))
        page = f"/h5/c/bench?r={code}"
        status, html, _ = get(port, page)
        static.write_bytes(html)
        pool = []
        for _ in range(args.visitors):  # returning visitors: each has been here once
            _, _, cookie = get(port, page)
            pool.append(cookie.split("yuchi_v=", 1)[1].split(";", 1)[0])
        n = args.requests
        runs = {
            "static file": [(f"/h5/static/{STATIC_NAME}", None)] * n,
            "tracked, returning": [(page, pool[i % len(pool)]) for i in range(n)],
            "tracked, first visits": [(page, None)] * n,
        }
        load(port, runs["static file"][:300], args.concurrency)  # warm-up
        load(port, runs["tracked, returning"][:300], args.concurrency)
        results: dict[str, list[float]] = {k: [] for k in runs}
        print(
            f"\npage views: {n} requests per run, {args.concurrency} connections, {args.workers} workers"
        )
        print(f"  page {len(html):,} bytes of HTML; {len(pool)} returning visitors")
        print(
            f"{'run':>4} {'what':<22} {'req/s':>8} {'errors':>6} {'p50 ms':>7} {'p99 ms':>7}"
            "  CPU ms/request: gunicorn redis postgres load"
        )
        failed = False
        for r in range(args.rounds):
            for what, paths in runs.items():
                cpu0, own0 = cpu_by_part(proc.pid, env["REDIS_URL"]), time.process_time()
                rate, errors, lat = load(port, paths, args.concurrency)
                cpu1, own1 = cpu_by_part(proc.pid, env["REDIS_URL"]), time.process_time()
                results[what].append(rate)
                failed |= errors > 0
                ms = {k: (cpu1[k] - cpu0[k]) * 1000 / len(paths) for k in cpu0}
                print(
                    f"{r + 1:>4} {what:<22} {rate:>8.1f} {errors:>6} {p(lat, 50):>7.1f} {p(lat, 99):>7.1f}"
                    f"  {ms['gunicorn']:>20.2f} {ms['redis']:>5.2f} {ms['postgres']:>8.2f}"
                    f" {(own1 - own0) * 1000 / len(paths):>4.2f}"
                )
        base = statistics.median(results["static file"])
        for what in ("tracked, returning", "tracked, first visits"):
            ratio = statistics.median(results[what]) / base
            print(f"ratio {what} / static file: {ratio:.2f}x (target >= 0.5x)")
        if args.views_only:
            return not failed
        settled, took = drain_all(settings)
        print(f"background: {settled:,} outbox rows (arrivals, then their visits) in {took:.1f} s")
        return not failed
    finally:
        static.unlink(missing_ok=True)
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def drain_all(settings) -> tuple[int, float]:  # noqa: ANN001
    """Run the outbox drains in this process until no row is pending: (rows, seconds)."""
    from bot.background import jobs

    total, start = 0, time.perf_counter()
    while True:
        done = sum(jobs.drain_outbox(part, settings.drains) for part in range(settings.drains))
        if not done:
            return total, time.perf_counter() - start
        total += done


def build_tree(branching: int, depth: int) -> list[list[int]]:
    """People by level: level 1 are brought by the employee; person ids count from 0."""
    levels, next_id = [], 0
    width = 1
    for _ in range(depth):
        width *= branching
        levels.append(list(range(next_id, next_id + width)))
        next_id += width
    return levels


def attribution(settings, args) -> bool:  # noqa: ANN001
    from bot.campaigns import actions, codes, store, visitors
    from bot.campaigns.spec import CampaignSpec
    from bot.contacts import identity
    from bot.core.db import session_scope

    with session_scope(settings.database_url) as s:
        camp = store.create(s, CampaignSpec.model_validate({**SPEC, "slug": "bench-chain"}))
        s.expunge(camp)
    levels = build_tree(args.branching, 5)
    people = [p for level in levels for p in level]
    tokens = {p: visitors.new_token() for p in people}
    parent = {}
    for d, level in enumerate(levels):
        for i, person in enumerate(level):
            parent[person] = None if d == 0 else levels[d - 1][i // args.branching]
    depth_of = {p: d + 1 for d, level in enumerate(levels) for p in level}
    shared = {
        None: codes.referral_code(settings.secret_key, codes.Sharer(camp.id, userid="zhangsan"))
    }

    def visit(person: int, via: int | None) -> None:
        shared[person] = actions.view(settings, camp, tokens[person], shared[via]).share_code

    visits = 0
    start = time.perf_counter()
    with ThreadPoolExecutor(args.threads) as pool:
        for level in levels:  # first touches, a level at a time, each person twice at once
            list(pool.map(lambda q: visit(q, parent[q]), level + level))
            visits += 2 * len(level)
        rng = random.Random(5)
        extra = []
        while visits + len(extra) < args.visits:
            who = rng.choice(people)
            via = rng.choice([who, rng.choice(people), parent[who]])
            extra.append((who, via))
        list(pool.map(lambda wv: visit(*wv), extra))
        visits += len(extra)
    took = time.perf_counter() - start
    settled, drained = drain_all(settings)
    print(f"\nbackground: {settled:,} outbox rows (arrivals, then their visits) in {drained:.1f} s")
    with session_scope(settings.database_url) as s:
        contact = {p: identity.identity_owner(s, visitors.KIND, tokens[p]) for p in people}
    if None in contact.values():
        print(
            f"  people without a contact after the drain: {sum(c is None for c in contact.values())}"
        )
        return False
    return check_attribution(settings, camp, people, depth_of, parent, contact, visits, took)


def check_attribution(settings, camp, people, depth_of, parent, contact, visits, took) -> bool:  # noqa: ANN001
    import sqlalchemy as sa

    from bot.core.db import session_scope
    from bot.core.models import Event, Referral

    with session_scope(settings.database_url) as s:
        nodes = {
            r.contact_id: r
            for r in s.execute(sa.select(Referral).where(Referral.campaign_id == camp.id)).scalars()
        }
        e = Event.__table__.c
        visit_events = s.execute(
            sa.select(e.contact_id, sa.func.count())
            .where(e.type == "h5.visit", e.properties["campaign_id"].as_integer() == camp.id)
            .group_by(e.contact_id)
        ).all()
    by_id = {r.id: r for r in nodes.values()}
    wrong_depth = sum(nodes[contact[p]].depth != depth_of[p] for p in people)
    wrong_parent = sum(
        (by_id[nodes[contact[p]].parent_id].contact_id if nodes[contact[p]].parent_id else None)
        != (contact[parent[p]] if parent[p] is not None else None)
        for p in people
    )
    doubles = sum(n - 1 for _, n in visit_events if n > 1)
    print(f"\nattribution: {visits:,} visits by {len(people):,} people down a chain of depth 5")
    print(f"  {visits / took:,.0f} visits/s over {took:.1f} s")
    print(
        f"  nodes {len(nodes):,} (expected {len(people):,}); h5.visit events {sum(n for _, n in visit_events):,}"
    )
    print(f"  double counts {doubles}; wrong depth {wrong_depth}; wrong parent {wrong_parent}")
    print(f"  deepest node {max(n.depth for n in nodes.values())}")
    return len(nodes) == len(people) == len(visit_events) and not (
        doubles or wrong_depth or wrong_parent
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=(os.cpu_count() or 1) * 2 + 1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--visitors", type=int, default=200)
    parser.add_argument("--visits", type=int, default=100_000)
    parser.add_argument("--branching", type=int, default=6)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument(
        "--views-only", action="store_true", help="page views only: no drain, no attribution"
    )
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="yuchi-bench-h5-"))
    env = {**os.environ, "YUCHI_VAR_DIR": str(tmp), "YUCHI_ENV": "development"}
    embedded = None
    if not env.get("REDIS_URL"):
        from bot.core.embedded_redis import EmbeddedRedis

        embedded = EmbeddedRedis(tmp / "redis.db")
        env["REDIS_URL"] = embedded.url
    os.environ.update(env)
    from bot.campaigns import store
    from bot.campaigns.spec import CampaignSpec
    from bot.core import db
    from bot.core.config import load_settings

    settings = load_settings()
    db.upgrade(settings.database_url)
    with db.session_scope(settings.database_url) as s:
        store.create(s, CampaignSpec.model_validate(SPEC))
    print(
        f"database {settings.database_url.split('@')[-1]}, redis {env['REDIS_URL'].split('@')[-1]}"
    )
    ok = True
    try:
        ok &= page_views(env, settings, args)
        if not args.views_only:
            ok &= attribution(settings, args)
    finally:
        if embedded is not None:
            embedded.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print("\nprocesses left behind: none" if ok else "\nFAILED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
