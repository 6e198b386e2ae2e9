"""The run command as a user runs it: `yuchi up` starts migrations, Redis, gunicorn and the
worker; callbacks over real HTTP are stored, replied to and processed; SIGTERM stops it all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from testenv import ORIGINAL_ENV, TEST_ENV, free_port

from wxsim.callbacks import OAPlatform, xml_fields

pytestmark = pytest.mark.slow


def http(method: str, url: str, body: bytes | None = None, token: str | None = None):
    req = urllib.request.Request(url, data=body, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, resp.read().decode()


def children_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


@pytest.fixture
def stack(tmp_path, clean):
    """`yuchi up` as a user runs it. On CI's second pass it shares PostgreSQL and Redis with
    the other tests: `clean` empties them first, so nothing left over answers for it."""
    port = free_port()
    env = {
        **ORIGINAL_ENV,
        **TEST_ENV,
        "YUCHI_VAR_DIR": str(tmp_path / "var"),
        "YUCHI_SWEEP_INTERVAL": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "up", "--port", str(port), "--workers", "2"],
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Press Ctrl+C to stop." in line:
            break
    assert any("Press Ctrl+C to stop." in line for line in lines), "".join(lines)
    banner = "".join(lines)
    # Keep draining its output so a full pipe never blocks the stack.
    drain = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    drain.start()
    proc.output = lambda: (drain.join(timeout=10), "".join(lines))[1]
    try:
        yield proc, f"http://127.0.0.1:{port}", banner
    finally:
        if proc.poll() is None:  # the test failed midway: stop everything it started
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def test_up_serves_processes_and_stops_cleanly(stack):
    proc, base, banner = stack
    assert f"{base}/wechat/oa" in banner and "database ready" in banner
    descendants = children_of(proc.pid)
    descendants += [c for p in list(descendants) for c in children_of(p)]

    status, body = http("GET", f"{base}/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"

    oa = OAPlatform(
        TEST_ENV["WECHAT_OA_TOKEN"], TEST_ENV["WECHAT_OA_AES_KEY"], TEST_ENV["WECHAT_OA_APPID"]
    )
    token = TEST_ENV["YUCHI_API_TOKEN"]
    rule = {"name": f"e2e-价格-{time.time_ns()}", "keywords": ["价格"], "reply": "价格表已发送"}
    req = urllib.request.Request(
        f"{base}/api/replies",
        data=json.dumps(rule).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert urllib.request.urlopen(req, timeout=10).status == 201

    openid = f"oE2E{time.time_ns()}"
    fields = oa.message_fields(openid, "text", Content="请问价格是多少", MsgId=time.time_ns())
    signed = oa.sign(xml_fields(fields), "safe")
    first = second = None
    for attempt in range(2):  # the same callback twice (a WeChat retry)
        status, body = http("POST", f"{base}/wechat/oa?{signed.query_string}", signed.body)
        assert status == 200
        plain = oa.decrypt_reply(body, signed.query["timestamp"], signed.query["nonce"])
        first, second = (plain, second) if attempt == 0 else (first, plain)
    assert "价格表已发送" in first and first == second

    _, body = http("GET", f"{base}/api/contacts?openid={openid}", token=token)
    [contact] = json.loads(body)["contacts"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the worker processes the event in the background
        _, body = http("GET", f"{base}/api/contacts/{contact['id']}/events", token=token)
        # the callback's own event (the background may add others, e.g. a stage change)
        events = [e for e in json.loads(body)["events"] if e["type"] == "oa.text"]
        if events and events[0]["processed_at"]:
            break
        time.sleep(0.2)
    assert len(events) == 1 and events[0]["processed_at"], events

    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=40)
    out = proc.output()
    assert proc.returncode == 0, out
    assert "web stopped" in out and "worker 1 stopped" in out and "worker 2 stopped" in out
    time.sleep(0.5)
    assert [p for p in descendants if alive(p)] == []  # gunicorn, workers, rq, redis-server
    if "embedded Redis started" in banner:
        assert "embedded Redis stopped" in out


def test_check_config_reports_malformed_settings(tmp_path):
    env = {
        **ORIGINAL_ENV,
        "WECHAT_OA_AES_KEY": "too-short",
        "REDIS_URL": "http://nope",
        "YUCHI_VAR_DIR": str(tmp_path),
    }
    out = subprocess.run(
        [sys.executable, "-m", "bot.cli", "check-config"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 2
    assert "WECHAT_OA_AES_KEY must be 43 characters" in out.stderr
    assert "REDIS_URL" in out.stderr
    env = {k: v for k, v in ORIGINAL_ENV.items() if k not in TEST_ENV}
    env.update(YUCHI_ENV="production", YUCHI_VAR_DIR=str(tmp_path))
    out = subprocess.run(
        [sys.executable, "-m", "bot.cli", "check-config"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 2 and "YUCHI_API_TOKEN is not set" in out.stderr
    env = {**ORIGINAL_ENV, **TEST_ENV, "YUCHI_VAR_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "bot.cli", "check-config"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0 and "configuration is complete" in out.stdout
    assert TEST_ENV["YUCHI_API_TOKEN"] not in out.stdout  # secrets are masked


def test_demo_plays_the_scenario_and_stops(tmp_path):
    # Its own SQLite and Redis: the scenario's replies must not meet rules other tests left in
    # a shared database (a real user's own rules would rightly compete with the demo's).
    env = {k: v for k, v in ORIGINAL_ENV.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(TEST_ENV, YUCHI_VAR_DIR=str(tmp_path / "var"))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot.cli",
            "demo",
            "--exit",
            "--port",
            str(free_port()),
            "--sim-port",
            str(free_port()),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        start_new_session=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "欢迎来到鱼池" in text  # the welcome reply to the QR follow
    assert "公众号菜单已发布（第 1 版）" in text  # through /api/menus and its publish
    assert "鱼池基础版每年 9800 元" in text  # the keyword reply to 「请问价格是多少」
    assert "小鱼在微信里收到：小鱼您好" in text  # the customer-service message arrived
    assert "oa.subscribe     poster_2026" in text and "msg.sent" in text
    assert "web stopped" in text and "worker stopped" in text


LINGERER = """
import subprocess, sys, time
# a grandchild that ignores SIGTERM, as an rq scheduler process its worker failed to stop
g = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"])
open(sys.argv[1], "w").write(str(g.pid))
time.sleep(120)
"""


def test_stopping_the_stack_also_stops_what_its_processes_started(tmp_path):
    from bot.cli import processes

    pid_file = tmp_path / "grandchild"
    child = processes.spawn([sys.executable, "-c", LINGERER, str(pid_file)], dict(os.environ))
    deadline = time.monotonic() + 20
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    grandchild = int(pid_file.read_text())
    assert alive(grandchild)
    processes.stop_all({"child": child})
    time.sleep(0.3)
    assert not alive(child.pid) and not alive(grandchild)
