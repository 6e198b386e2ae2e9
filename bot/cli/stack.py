"""`yuchi up|serve|worker|sweep|demo`: run the stack, or one part of it."""

from __future__ import annotations

import os
import sys

import click

from bot.cli.common import ok, safe_url, settings_or_exit
from bot.cli.processes import gunicorn_cmd, redis_env, spawn, stop_all, supervise, wait_healthy
from bot.core.config import Settings, load_settings, warn_about_defaults


@click.command()
@click.option("--host", default=None, help="listen address  [default: HOST, else 127.0.0.1]")
@click.option("--port", type=int, default=None, help="listen port  [default: PORT, else 8000]")
@click.option("--workers", type=int, default=None, help="gunicorn workers (default 2×CPU+1)")
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Run the web server (gunicorn) in the foreground."""
    settings = settings_or_exit()
    host, port = host or settings.host, port or settings.port
    warn_about_defaults(settings)
    with redis_env(settings) as env:
        commands = {"web": gunicorn_cmd(host, port, workers)}
        sys.exit(supervise({"web": spawn(commands["web"], env)}, commands, env))


@click.command()
@click.option("--burst", is_flag=True, help="Process what is queued, then exit.")
@click.option("--fork", is_flag=True, help="Run each job in a forked child (rq's default; slower).")
@click.option(
    "--urgent",
    "lane",
    flag_value="urgent",
    help="Only the urgent queue (the outbox drains, answers to a contact): a worker that is "
    "never busy with wakes, deliveries or broadcasts when someone is waiting.",
)
@click.option(
    "--background",
    "lane",
    flag_value="background",
    help="Everything but the urgent queue, at lower CPU priority (YUCHI_WORKER_NICE): run it "
    "beside `yuchi worker --urgent`, which must then be running.",
)
def worker(burst: bool, fork: bool, lane: str | None) -> None:
    """Run the rq worker (with its scheduler) and the sweeper. Without --urgent or
    --background it serves every queue."""
    settings = settings_or_exit()
    lane = lane or "all"
    yield_cpu(settings, lane)
    if settings.redis_url is None:
        with redis_env(settings) as env:
            os.environ["REDIS_URL"] = env["REDIS_URL"]
            sys.exit(run_worker(load_settings(), burst, fork, lane))
    sys.exit(run_worker(settings, burst, fork, lane))


def yield_cpu(settings: Settings, lane: str) -> None:
    """A background-lane worker lowers its CPU priority (YUCHI_WORKER_NICE): thousands of wakes
    or deliveries then take what the web and the urgent lane (answers to contacts) leave. A
    worker that serves the urgent queue never does: an answer must not run at low priority."""
    if lane == "background" and settings.worker_nice:
        os.nice(settings.worker_nice)


def run_worker(settings: Settings, burst: bool, fork: bool = False, lane: str = "all") -> int:
    from bot.background import worker

    return worker.run(settings, burst=burst, fork=fork, lane=lane)


@click.command("sweep")
def sweep_once() -> None:
    """Re-enqueue work whose background job never ran, once (outbox rows, due messages)."""
    from bot.background.sweeper import sweep_all

    counts = sweep_all(settings_or_exit())
    ok(
        f"{counts['outbox']} outbox row(s) and {counts['requeued']} message(s) re-enqueued; "
        f"{counts['unknown']} message(s) stuck mid-send marked unknown"
    )


@click.command()
@click.option("--host", default=None, help="listen address  [default: HOST, else 127.0.0.1]")
@click.option("--port", type=int, default=None, help="listen port  [default: PORT, else 8000]")
@click.option("--workers", type=int, default=None, help="gunicorn workers (default 2×CPU+1)")
@click.option(
    "--job-workers",
    type=click.IntRange(1, 64),
    default=None,
    help="background (rq) worker processes  [default: YUCHI_JOB_WORKERS, else 2]",
)
def up(host: str | None, port: int | None, workers: int | None, job_workers: int | None) -> None:
    """Run the whole stack in the foreground: migrations, Redis, web and worker."""
    from bot.core.db import current_revision, upgrade

    settings = settings_or_exit()
    host, port = host or settings.host, port or settings.port
    job_workers = job_workers or settings.job_workers
    click.secho("鱼池 Yuchi: starting", bold=True)
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    ok(
        f"database ready (revision {current_revision(settings.database_url)}): {safe_url(settings.database_url)}"
    )
    if settings.defaults_used:
        click.secho(
            f"  ! {len(settings.defaults_used)} settings use public development defaults "
            "(fine here; `yuchi check-config` lists them)",
            fg="yellow",
        )
    with redis_env(settings) as env:
        commands = {"web": gunicorn_cmd(host, port, workers)}
        for n in range(1, job_workers + 1):
            name = "worker" if job_workers == 1 else f"worker {n}"
            commands[name] = [sys.executable, "-m", "bot.cli", "worker", "--background"]
        # One urgent worker per outbox drain, so every drain can run at once.
        for n in range(1, settings.drains + 1):
            name = "urgent worker" if settings.drains == 1 else f"urgent worker {n}"
            commands[name] = [sys.executable, "-m", "bot.cli", "worker", "--urgent"]
        procs = {name: spawn(cmd, env) for name, cmd in commands.items()}
        shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        base = f"http://{shown_host}:{port}"
        if wait_healthy(f"{base}/healthz", procs):
            ok(
                f"web on {base}, {job_workers} background worker(s) and {settings.drains} for "
                "urgent work (answers to contacts) running"
            )
            click.echo(
                f"\n  Official Account callback URL  {base}/wechat/oa\n"
                f"  WeCom callback URL             {base}/wechat/wecom\n"
                f"  Sales sidebar (WeCom toolbar)  {base}/sidebar/\n"
                f"  Campaign pages                 {base}/h5/c/<slug>\n"
                f"  Health                         {base}/healthz\n"
                f"  API (Bearer YUCHI_API_TOKEN)   {base}/api/contacts\n"
            )
            if "WECHAT_OA_TOKEN" in settings.defaults_used:
                click.echo(
                    f"  Development callback Token {settings.oa_token!r}, "
                    f"EncodingAESKey {settings.oa_aes_key!r}, AppID {settings.oa_appid!r}\n"
                )
            click.echo("Press Ctrl+C to stop.")
        else:
            click.secho(
                f"the web server did not become healthy at {base}/healthz", fg="red", err=True
            )
            stop_all(procs)
            sys.exit(1)
        sys.exit(supervise(procs, commands, env))


@click.command()
@click.option("--port", default=8000, type=int, show_default=True, help="Yuchi's port")
@click.option("--sim-port", default=8100, type=int, show_default=True, help="the simulator's port")
@click.option(
    "--exit", "exit_after", is_flag=True, help="Stop after the scenario instead of running on."
)
# One piece: the demo is one script read top to bottom (start, seed, play, hand over).
def demo(port: int, sim_port: int, exit_after: bool) -> None:
    """Run the stack against the local WeChat simulator, seed a small setup and play a
    follower's first minutes (follow from a QR poster, ask the price, click the menu)."""

    from bot.core.db import upgrade
    from wxsim import demo as scenario
    from wxsim.app import SimConfig
    from wxsim.testing import running_simulator

    settings = settings_or_exit()
    click.secho("鱼池 Yuchi 演示：本地模拟微信平台", bold=True)
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    ok(f"database ready: {safe_url(settings.database_url)}")
    base = f"http://127.0.0.1:{port}"
    config = SimConfig.from_settings(settings, callback_base=base)
    with redis_env(settings) as env, running_simulator(config, port=sim_port) as sim:
        ok(f"WeChat simulator on {sim.base_url}")
        env.update(sim.env)
        env.setdefault("YUCHI_LOG_LEVEL", "ERROR")  # the scenario's own lines are the show
        commands = {
            "web": gunicorn_cmd("127.0.0.1", port, 2),
            "worker": [sys.executable, "-m", "bot.cli", "worker"],
        }
        procs = {name: spawn(cmd, env) for name, cmd in commands.items()}
        if not wait_healthy(f"{base}/healthz", procs):
            click.secho(f"Yuchi did not become healthy at {base}", fg="red", err=True)
            stop_all(procs)
            sys.exit(1)
        ok(f"Yuchi on {base}")
        api = scenario.Api(base, settings.api_token)
        counter = iter(range(1, 100))

        def say(text: str) -> None:
            click.echo(f"     {text}")

        def step(text: str) -> None:
            click.secho(f"\n  {next(counter)}. {text}", fg="cyan")

        try:
            step("准备：保存自动回复、创建菜单")
            scenario.seed(api, say)
            contact_id = scenario.play(sim, api, say, step)
            step("小鱼在鱼池里的时间线")
            for line in scenario.timeline(api, contact_id):
                say(line)
        except Exception as exc:  # show what broke, then stop cleanly
            click.secho(f"\nThe demo stopped: {exc}", fg="red", err=True)
            stop_all(procs)
            sys.exit(1)
        if exit_after:
            stop_all(procs)
            return
        click.echo(
            f"\nKeep playing (another terminal):\n"
            f'  .venv/bin/yuchi sim say "有优惠吗" --openid {scenario.OPENID} --sim-url {sim.base_url}\n'
            f"  .venv/bin/yuchi sim inbox --openid {scenario.OPENID} --sim-url {sim.base_url}\n"
            f"  curl -H 'Authorization: Bearer {settings.api_token}' {base}/api/contacts/{contact_id}/events\n"
            "Press Ctrl+C to stop."
        )
        sys.exit(supervise(procs, commands, env))
