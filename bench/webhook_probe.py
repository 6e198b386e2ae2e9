"""In-process probe for bench/webhook.py: statements and CPU per callback (the web side) and
per event (the background drain), with no HTTP, no other process and no load generator.

    .venv/bin/python -m bench.webhook_probe [--callbacks N]

Uses DATABASE_URL / REDIS_URL when set, else a fresh SQLite database and embedded Redis in a
temporary directory. Prints one JSON line (what bench/webhook.py reads) after its log lines.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--callbacks", type=int, default=1000)
    parser.add_argument(
        "--profile", metavar="DIR", help="write cProfile stats of the web and background parts"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from bench import webhook as wb

    var = Path(tempfile.mkdtemp(prefix="yuchi-probe-"))
    env = {**os.environ, **wb.BENCH_ENV, "YUCHI_VAR_DIR": str(var)}
    os.environ.update(env)
    try:
        wb.run_cli(["db", "upgrade"], env)
        (var / "replies.yaml").write_text(wb.REPLIES_YAML, encoding="utf-8")
        wb.run_cli(["replies", "import", str(var / "replies.yaml")], env)
        print(json.dumps(_probe(args.callbacks, args.profile)))
    finally:
        shutil.rmtree(var, ignore_errors=True)
    return 0


def _probe(n: int, profile_dir: str | None = None) -> dict[str, float]:
    import cProfile

    import sqlalchemy as sa

    from bench import webhook as wb
    from bot.app import create_app
    from bot.background.jobs import process_batch
    from bot.core import rawdb
    from bot.core.config import load_settings
    from bot.core.db import get_engine, session_scope
    from bot.core.models import Outbox

    settings = load_settings()
    client = create_app(settings).test_client()
    first = int(time.time()) * 10**7 + 9 * 10**6
    warm, measured = 300, n
    reqs = wb.make_set("probe", warm + measured, first, 7).requests

    def post(raw: bytes) -> None:
        head, _, body = raw.partition(b"\r\n\r\n")
        path = head.split(b"\r\n", 1)[0].split(b" ")[1].decode()
        resp = client.post(path, data=body, content_type="text/xml")
        assert resp.status_code == 200 and resp.data != b"success", resp.data[:200]

    for raw in reqs[:warm]:  # every sender is known from here on: the steady state
        post(raw)
    with session_scope(settings.database_url) as s:
        mark = s.execute(sa.select(sa.func.max(Outbox.id))).scalar() or 0
    _drain(settings, process_batch, 0)

    count = [0]

    def seen(*_args: object) -> None:
        count[0] += 1

    engine = get_engine(settings.database_url)
    sa.event.listen(engine, "before_cursor_execute", seen)
    rawdb.observers.append(seen)  # the callback's own statements on the DB-API cursor
    web_prof, bg_prof = cProfile.Profile(), cProfile.Profile()
    c0, w0 = time.process_time(), time.perf_counter()
    with web_prof if profile_dir else _nothing():
        for raw in reqs[warm:]:
            post(raw)
    web_cpu, web_statements = time.process_time() - c0, count[0]
    web_wall = time.perf_counter() - w0
    count[0] = 0
    c0 = time.process_time()
    with bg_prof if profile_dir else _nothing():
        done = _drain(settings, process_batch, mark)
    bg_cpu, bg_statements = time.process_time() - c0, count[0]
    if profile_dir:  # the CPU figures above then include the profiler's own cost
        Path(profile_dir).mkdir(parents=True, exist_ok=True)
        web_prof.dump_stats(Path(profile_dir) / "web.prof")
        bg_prof.dump_stats(Path(profile_dir) / "background.prof")
        print(f"profiles written to {profile_dir}/web.prof and background.prof", file=sys.stderr)
    sa.event.remove(engine, "before_cursor_execute", seen)
    rawdb.observers.remove(seen)
    return {
        "callbacks": measured,
        "web_statements": web_statements / measured,
        "web_cpu_ms": web_cpu * 1000 / measured,
        # wall − CPU: mostly the commit's fsync (SQLite synchronous=FULL) or the server's time
        "web_wall_ms": web_wall * 1000 / measured,
        "events": done,
        "bg_statements": bg_statements / max(done, 1),
        "bg_cpu_ms": bg_cpu * 1000 / max(done, 1),
    }


def _nothing():
    import contextlib

    return contextlib.nullcontext()


def _drain(settings: object, process_batch: object, after: int) -> int:
    """Process every pending outbox row above ``after`` in batches of 100, as a drain does."""
    import sqlalchemy as sa

    from bot.core.db import session_scope
    from bot.core.models import Outbox

    t = Outbox.__table__.c
    done = 0
    while True:
        with session_scope(settings.database_url) as s:
            ids = list(
                s.execute(
                    sa.select(t.id)
                    .where(t.status == "pending", t.id > after)
                    .order_by(t.id)
                    .limit(100)
                ).scalars()
            )
        if not ids:
            return done
        done += sum(1 for v in process_batch(settings, ids).values() if v == "done")


if __name__ == "__main__":
    sys.exit(main())
