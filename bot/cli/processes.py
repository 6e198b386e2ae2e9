"""Child processes of `yuchi up|serve|demo`: the embedded Redis, gunicorn, and a supervisor
that restarts a child that dies and stops them all together."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import click

from bot.cli.common import ok
from bot.core.config import Settings

GUNICORN_APP = "bot.app:create_app()"


@contextlib.contextmanager
def redis_env(settings: Settings) -> Iterator[dict[str, str]]:
    """Environment for child processes; starts the embedded Redis when REDIS_URL is unset
    and stops it (if we started it) on the way out."""
    env = dict(os.environ)
    if settings.redis_url:
        yield env
        return
    from bot.core.embedded_redis import EmbeddedRedis

    server = EmbeddedRedis(settings.embedded_redis_path)
    ok(f"embedded Redis {'started' if server.owner else 'attached'}: {server.url}")
    env["REDIS_URL"] = server.url
    try:
        yield env
    finally:
        server.stop()
        if server.owner:
            ok("embedded Redis stopped")


def gunicorn_cmd(host: str, port: int, workers: int | None) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "python:bot.gunicorn_conf",
        "--bind",
        f"{host}:{port}",
    ]
    if workers:
        cmd += ["--workers", str(workers)]
    return [*cmd, GUNICORN_APP]


RESTART_FIRST, RESTART_MAX = 1.0, 30.0  # s: waits before starting a child that died again


STEADY = 60.0  # s: a child that ran this long before dying starts again after RESTART_FIRST


def supervise(
    procs: dict[str, subprocess.Popen], commands: dict[str, list[str]], env: dict[str, str]
) -> int:
    """Run until SIGINT or SIGTERM, then stop every child. A child that exits meanwhile (a
    worker killed by the OOM killer, say) is started again from ``commands``, after a wait
    that doubles while it keeps dying; the others, the web above all, go on serving."""
    stop = {"signal": None}

    def on_signal(signum: int, _frame: object) -> None:
        stop["signal"] = signum

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    started = dict.fromkeys(procs, time.monotonic())
    delays: dict[str, float] = {}
    due: dict[str, float] = {}  # name: when to start it again
    while stop["signal"] is None:
        now = time.monotonic()
        for name, p in procs.items():
            if name in due:
                if now >= due.pop(name):
                    procs[name], started[name] = spawn(commands[name], env), now
                    click.secho(f"{name} started again", fg="yellow", err=True)
                continue
            if p.poll() is None:
                continue
            kill_group(p)  # what it started (rq's scheduler, gunicorn's workers) goes with it
            steady = now - started[name] >= STEADY
            delays[name] = RESTART_FIRST if steady else min(delays.get(name, 0.5) * 2, RESTART_MAX)
            due[name] = now + delays[name]
            click.secho(
                f"{name} exited unexpectedly (code {p.returncode}); starting it again in "
                f"{delays[name]:.0f} s",
                fg="red",
                err=True,
            )
        time.sleep(0.2)
    stop_all(procs)
    return 0


def kill_group(p: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(p.pid, signal.SIGKILL)


def spawn(cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
    """A child in a process group of its own, so stopping it also reaches what it started
    (gunicorn's workers, rq's scheduler process)."""
    return subprocess.Popen(cmd, env=env, start_new_session=True)


def stop_all(procs: dict[str, subprocess.Popen]) -> None:
    click.echo("\nStopping…")
    for p in procs.values():
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for name, p in procs.items():
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        # anything of its group still there (say an rq scheduler process its worker did not
        # stop) goes with it
        kill_group(p)
        ok(f"{name} stopped")


def wait_healthy(url: str, procs: dict[str, subprocess.Popen], seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs.values()):
            return False
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as resp:
            if resp.status == 200:
                return True
        time.sleep(0.3)
    return False
