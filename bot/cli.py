"""The `yuchi` command."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import click

from bot.core.config import ConfigError, Settings, load_settings, warn_about_defaults

GUNICORN_APP = "bot.app:create_app()"


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        click.secho("Configuration problems:", fg="red", err=True)
        for problem in exc.problems:
            click.secho(f"  ✗ {problem}", fg="red", err=True)
        click.echo("See README.md, 'Configuration', for every setting.", err=True)
        sys.exit(2)


def _ok(message: str) -> None:
    click.secho("  ✓ ", fg="green", nl=False)
    click.echo(message)


@click.group()
def main() -> None:
    """鱼池 Yuchi: SCRM and marketing automation for WeChat."""
    logging.basicConfig(
        level=os.environ.get("YUCHI_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # import-time chatter


@main.command("check-config")
def check_config() -> None:
    """Validate the settings and show where each comes from (secrets masked)."""
    settings = _settings()
    width = max(len(name) for name, _, _ in settings.describe())
    for name, shown, origin in settings.describe():
        flag = click.style(f"  {origin}", fg="yellow") if origin else ""
        click.echo(f"  {name:<{width}}  {shown}{flag}")
    if settings.defaults_used:
        click.secho(
            f"\n{len(settings.defaults_used)} setting(s) use public development defaults: fine on "
            "this machine, never for a real account (set YUCHI_ENV=production to forbid them).",
            fg="yellow",
        )
    else:
        _ok("configuration is complete")


# --- database ------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """Database migrations."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from bot.core.db import current_revision, upgrade

    settings = _settings()
    before = current_revision(settings.database_url)
    upgrade(settings.database_url, revision)
    after = current_revision(settings.database_url)
    _ok(
        f"database at revision {after} (was {before or 'empty'}): {_safe_url(settings.database_url)}"
    )


@db.command("current")
def db_current() -> None:
    """Print the database's migration revision."""
    from bot.core.db import current_revision

    click.echo(current_revision(_settings().database_url) or "empty (run: yuchi db upgrade)")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# --- reply rules ---------------------------------------------------------------------------


@main.group()
def replies() -> None:
    """Keyword, welcome and menu auto-replies."""


@replies.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def replies_import(file: Path) -> None:
    """Create or update the reply rules in FILE (YAML, `replies:` list), all or nothing."""
    from bot.core.db import session_scope
    from bot.replies import rules as autoreply

    settings = _settings()
    try:
        rules = autoreply.parse_yaml(file.read_text(encoding="utf-8"))
    except autoreply.RuleImportError as exc:
        click.secho(
            f"{file}: nothing imported, {len(exc.problems)} problem(s):", fg="red", err=True
        )
        for problem in exc.problems:
            click.secho(f"  ✗ {problem}", fg="red", err=True)
        sys.exit(1)
    with session_scope(settings.database_url) as session:
        created, updated = autoreply.import_rules(session, rules)
    _ok(f"{file}: {created} rule(s) created, {updated} updated")


# --- tag rules and interest words ----------------------------------------------------------


@main.group()
def tags() -> None:
    """Tag rules and the interest dictionary."""


@tags.command("import")
@click.argument(
    "file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--defaults", is_flag=True, help="Import the bundled interest dictionary.")
def tags_import(file: Path | None, defaults: bool) -> None:
    """Create or update the tag rules (by name) and interest words in FILE (YAML,
    `tag_rules:` list and `interest_words:` mapping), all or nothing."""
    from bot.core.db import session_scope
    from bot.tagging import rules as tag_rules
    from bot.tagging import store as tag_store

    if (file is None) == (not defaults):
        raise click.UsageError("give a FILE or --defaults (not both)")
    path = file or tag_store.DEFAULT_INTEREST_WORDS
    settings = _settings()
    try:
        rules, words = tag_rules.parse_yaml(path.read_text(encoding="utf-8"))
    except tag_rules.TagFileError as exc:
        click.secho(
            f"{path}: nothing imported, {len(exc.problems)} problem(s):", fg="red", err=True
        )
        for problem in exc.problems:
            click.secho(f"  ✗ {problem}", fg="red", err=True)
        sys.exit(1)
    with session_scope(settings.database_url) as session:
        counts = tag_store.import_file(session, rules, words)
    _ok(
        f"{path}: {counts['created']} tag rule(s) created, {counts['updated']} updated, "
        f"{counts['words']} interest word(s)"
    )


# --- lead scoring --------------------------------------------------------------------------


@main.group("scoring")
def scoring_group() -> None:
    """Lead-scoring rules (versioned) and scores."""


def _scoring_rules(file: Path):  # noqa: ANN202 - a score_rules.RuleSet
    from bot.scoring import rules as score_rules

    try:
        return score_rules.parse_yaml(file.read_text(encoding="utf-8"))
    except score_rules.RuleSetError as exc:
        click.secho(f"{file}: nothing saved, {len(exc.problems)} problem(s):", fg="red", err=True)
        for problem in exc.problems:
            click.secho(f"  ✗ {problem}", fg="red", err=True)
        sys.exit(1)


def _recompute(settings: Settings, contact_ids: list[int] | None = None) -> None:
    from bot.scoring import ledger as scoring

    def show(r: scoring.Recomputed) -> None:
        rate = r.events / r.seconds if r.seconds else 0.0
        click.echo(
            f"  … {r.contacts:,} contacts, {r.events:,} events, {r.lines:,} lines, "
            f"{r.stage_changes:,} stage changes, {r.seconds:.1f} s ({rate:,.0f} events/s)"
        )

    result = scoring.recompute(settings, contact_ids, progress=show)
    if result.superseded:
        click.secho("  ! a newer version was published meanwhile; its recompute takes over")
    _ok(
        f"version {result.version}: {result.contacts:,} contact(s) recomputed from "
        f"{result.events:,} events in {result.seconds:.1f} s"
    )


@scoring_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def scoring_import(file: Path) -> None:
    """Install the rules in FILE (YAML) as version 1, when there are no scoring rules yet."""
    from bot.core.db import session_scope
    from bot.scoring import ledger as scoring

    settings = _settings()
    rules = _scoring_rules(file)
    with session_scope(settings.database_url) as session:
        version = scoring.install(session, rules)
    if version is None:
        click.secho(
            "scoring rules exist already; `yuchi scoring publish FILE` makes a new version",
            fg="red",
            err=True,
        )
        sys.exit(1)
    _ok(f"{file}: installed as version {version}")


@scoring_group.command("publish")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--now", is_flag=True, help="Recompute every score here instead of in a job.")
def scoring_publish(file: Path, now: bool) -> None:
    """Make the rules in FILE (YAML) the new active version and recompute every score."""
    from bot.core.db import session_scope
    from bot.scoring import ledger as scoring

    settings = _settings()
    rules = _scoring_rules(file)
    with session_scope(settings.database_url) as session:
        version = scoring.publish(session, rules)
    _ok(f"{file}: published as version {version}")
    if now:
        _recompute(settings)
    elif scoring.enqueue_recompute(settings, version):
        _ok(f"recompute queued as job {scoring.recompute_job_id(version)} (`yuchi worker` runs it)")
    else:
        click.secho("  ! Redis unreachable: run `yuchi scoring recompute`", fg="yellow")


@scoring_group.command("recompute")
@click.option("--contact", "contact_ids", type=int, multiple=True, help="Only these contacts.")
def scoring_recompute(contact_ids: tuple[int, ...]) -> None:
    """Rebuild score ledgers from the events under the active version, printing progress."""
    _recompute(_settings(), list(contact_ids) or None)


# --- journeys ------------------------------------------------------------------------------


@main.group("journeys")
def journeys_group() -> None:
    """Journeys: preview one in accelerated time, forecast one over the stored history."""


def _journey_definition(ref: str, settings: Settings | None = None):  # noqa: ANN202
    """A ready-made journey's name, a YAML file, or (with settings) a journey id's draft."""
    import journeys
    from journeys import library

    try:
        if ref.isdigit() and settings is not None:
            from bot.core.db import session_scope
            from bot.core.models import Journey

            with session_scope(settings.database_url) as session:
                j = session.get(Journey, int(ref))
                data = dict(j.definition) if j is not None else None
            if data is None:
                raise click.UsageError(f"no journey {ref}")
            return journeys.check(data)
        path = Path(ref)
        if path.suffix in (".yaml", ".yml") or path.is_file():
            if not path.is_file():
                raise click.UsageError(f"no such file: {ref}")
            return journeys.check(library.read_yaml(path.read_text(encoding="utf-8")))
        return library.load(ref)
    except KeyError:
        raise click.UsageError(
            f"{ref!r} is not a ready-made journey ({', '.join(library.names())}) or a YAML file"
        ) from None
    except journeys.DefinitionError as exc:
        click.secho(f"{ref}: {len(exc.problems)} problem(s):", fg="red", err=True)
        for problem in exc.problems:
            click.secho(f"  ✗ {problem}", fg="red", err=True)
        sys.exit(1)


def _scripted(text: str) -> dict | str:
    """「+2h 大概五万」 answers two hours after the question; 「click:KEY」 clicks the menu."""
    after = None
    if text.startswith("+") and " " in text:
        after, _, text = text[1:].partition(" ")
    item: dict = {"click": text[6:]} if text.startswith("click:") else {"text": text}
    return {**item, "after": after} if after else item


@journeys_group.command("preview")
@click.argument("journey")
@click.option("--reply", "replies", multiple=True, help="The contact's next answer (repeat).")
@click.option("--tag", "tags", multiple=True, help="A tag the contact has (repeat).")
@click.option("--score", type=float, default=0.0, show_default=True)
@click.option("--start", default=None, help="When the contact enters, e.g. 2025-03-03T21:30.")
@click.option("--days", type=click.IntRange(1, 365), default=60, show_default=True)
@click.option("--sim-url", default=None, help="Also deliver to a running simulator's follower.")
@click.option("--openid", default="o_journey_preview", show_default=True)
@click.option("--seconds-per-day", type=float, default=1.0, show_default=True)
def journeys_preview(
    journey: str,
    replies: tuple[str, ...],
    tags: tuple[str, ...],
    score: float,
    start: str | None,
    days: int,
    sim_url: str | None,
    openid: str,
    seconds_per_day: float,
) -> None:
    """Run JOURNEY (a ready-made name or a YAML file) for a simulated contact and print what
    they would receive and when. --reply answers questions in order ("+2h text": two hours
    later; "click:KEY": a menu click). With --sim-url each message is also delivered to the
    follower OPENID of that running simulator, SECONDS-PER-DAY real seconds a simulated day."""
    from datetime import datetime

    from bot.automation import preview as journey_preview
    from bot.automation import preview_simulator
    from bot.automation.preview_input import PreviewError
    from bot.automation.preview_transcript import Line

    settings = _settings()
    d = _journey_definition(journey)
    inbox = None
    if sim_url:
        inbox = preview_simulator.SimulatorInbox(sim_url, settings, openid, seconds_per_day)
    try:
        when = datetime.fromisoformat(start) if start else (inbox.now() if inbox else None)
    except ValueError:
        raise click.UsageError(f"--start {start!r}: use ISO 8601, e.g. 2025-03-03T21:30") from None
    except preview_simulator.SimulatorError as exc:
        click.secho(f"✗ {exc}", fg="red", err=True)
        sys.exit(1)
    contact = {"tags": list(tags), "score": score} if tags or score else None
    try:
        transcript = journey_preview.preview(
            d,
            replies=[_scripted(r) for r in replies],
            contact=contact,
            start=when,
            settings=settings,
            max_days=days,
        )
    except PreviewError as exc:
        raise click.UsageError(str(exc)) from None
    click.secho(f"旅程预览：{d.name}（{d.id}）", bold=True)
    if inbox is None:
        click.echo(transcript.text)
    else:
        click.echo(
            f"  逐条投递到模拟器 {sim_url} 的粉丝 {openid}，每模拟一天 {seconds_per_day:g} 秒"
        )

        def show(line: Line, outcome: str | None) -> None:
            click.echo(line.line)
            if outcome:
                click.secho(f"            → {outcome}", fg="green" if "送达" in outcome else "red")

        try:
            played = inbox.play(transcript, show)
        except preview_simulator.SimulatorError as exc:
            click.secho(f"✗ {exc}", fg="red", err=True)
            sys.exit(1)
        _ok(
            f"{played.delivered} message(s) in {openid}'s inbox on the simulator, "
            f"{len(played.refused)} refused, {played.not_sent} not sent (held/skipped/invalid)"
        )
    if transcript.unused_replies:
        click.secho(f"  ! 没用到的回复：{'、'.join(transcript.unused_replies)}", fg="yellow")


@journeys_group.command("forecast")
@click.argument("journey")
@click.option("--days", type=click.IntRange(1, 365), default=30, show_default=True)
def journeys_forecast(journey: str, days: int) -> None:
    """Replay JOURNEY (a journey id's draft, a ready-made name or a YAML file) over the last
    DAYS days of stored events, sending and writing nothing, and print how many contacts
    would reach each step and how many messages would go out per day."""
    from datetime import timedelta

    from sqlmodel import Session

    from bot.automation import forecast as journey_forecast
    from bot.core.db import get_engine
    from bot.core.models import utcnow

    settings = _settings()
    d = _journey_definition(journey, settings)
    now = utcnow()
    with Session(get_engine(settings.database_url)) as session:
        result = journey_forecast.forecast(
            session, d, since=now - timedelta(days=days), until=now, now=now, settings=settings
        )
        session.rollback()
    click.echo(result.table())


# --- processes -----------------------------------------------------------------------------


@contextlib.contextmanager
def _redis_env(settings: Settings) -> Iterator[dict[str, str]]:
    """Environment for child processes; starts the embedded Redis when REDIS_URL is unset
    and stops it (if we started it) on the way out."""
    env = dict(os.environ)
    if settings.redis_url:
        yield env
        return
    from bot.core.embedded_redis import EmbeddedRedis

    server = EmbeddedRedis(settings.embedded_redis_path)
    _ok(f"embedded Redis {'started' if server.owner else 'attached'}: {server.url}")
    env["REDIS_URL"] = server.url
    try:
        yield env
    finally:
        server.stop()
        if server.owner:
            _ok("embedded Redis stopped")


def _gunicorn_cmd(host: str, port: int, workers: int | None) -> list[str]:
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


def _supervise(
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
                    procs[name], started[name] = _spawn(commands[name], env), now
                    click.secho(f"{name} started again", fg="yellow", err=True)
                continue
            if p.poll() is None:
                continue
            _kill_group(p)  # what it started (rq's scheduler, gunicorn's workers) goes with it
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
    _stop_all(procs)
    return 0


def _kill_group(p: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(p.pid, signal.SIGKILL)


def _spawn(cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
    """A child in a process group of its own, so stopping it also reaches what it started
    (gunicorn's workers, rq's scheduler process)."""
    return subprocess.Popen(cmd, env=env, start_new_session=True)


def _stop_all(procs: dict[str, subprocess.Popen]) -> None:
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
        _kill_group(p)
        _ok(f"{name} stopped")


@main.command()
@click.option(
    "--host", default=lambda: os.environ.get("HOST", "127.0.0.1"), show_default="127.0.0.1"
)
@click.option(
    "--port", default=lambda: int(os.environ.get("PORT", "8000")), type=int, show_default="8000"
)
@click.option("--workers", type=int, default=None, help="gunicorn workers (default 2×CPU+1)")
def serve(host: str, port: int, workers: int | None) -> None:
    """Run the web server (gunicorn) in the foreground."""
    settings = _settings()
    warn_about_defaults(settings)
    with _redis_env(settings) as env:
        commands = {"web": _gunicorn_cmd(host, port, workers)}
        sys.exit(_supervise({"web": _spawn(commands["web"], env)}, commands, env))


@main.command()
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
    settings = _settings()
    lane = lane or "all"
    yield_cpu(settings, lane)
    if settings.redis_url is None:
        with _redis_env(settings) as env:
            os.environ["REDIS_URL"] = env["REDIS_URL"]
            sys.exit(_run_worker(load_settings(), burst, fork, lane))
    sys.exit(_run_worker(settings, burst, fork, lane))


def yield_cpu(settings: Settings, lane: str) -> None:
    """A background-lane worker lowers its CPU priority (YUCHI_WORKER_NICE): thousands of wakes
    or deliveries then take what the web and the urgent lane (answers to contacts) leave. A
    worker that serves the urgent queue never does: an answer must not run at low priority."""
    if lane == "background" and settings.worker_nice:
        os.nice(settings.worker_nice)


def _run_worker(settings: Settings, burst: bool, fork: bool = False, lane: str = "all") -> int:
    from bot.background import worker

    return worker.run(settings, burst=burst, fork=fork, lane=lane)


@main.command("sweep")
def sweep_once() -> None:
    """Re-enqueue work whose background job never ran, once (outbox rows, due messages)."""
    from bot.background.sweeper import sweep_all

    counts = sweep_all(_settings())
    _ok(
        f"{counts['outbox']} outbox row(s) and {counts['requeued']} message(s) re-enqueued; "
        f"{counts['unknown']} message(s) stuck mid-send marked unknown"
    )


def _wait_healthy(url: str, procs: dict[str, subprocess.Popen], seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs.values()):
            return False
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as resp:
            if resp.status == 200:
                return True
        time.sleep(0.3)
    return False


@main.command()
@click.option(
    "--host", default=lambda: os.environ.get("HOST", "127.0.0.1"), show_default="127.0.0.1"
)
@click.option(
    "--port", default=lambda: int(os.environ.get("PORT", "8000")), type=int, show_default="8000"
)
@click.option("--workers", type=int, default=None, help="gunicorn workers (default 2×CPU+1)")
@click.option(
    "--job-workers",
    type=click.IntRange(1, 64),
    default=lambda: int(os.environ.get("YUCHI_JOB_WORKERS", "2")),
    show_default="2",
    help="background (rq) worker processes",
)
def up(host: str, port: int, workers: int | None, job_workers: int) -> None:
    """Run the whole stack in the foreground: migrations, Redis, web and worker."""
    from bot.core.db import current_revision, upgrade

    settings = _settings()
    click.secho("鱼池 Yuchi: starting", bold=True)
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    _ok(
        f"database ready (revision {current_revision(settings.database_url)}): {_safe_url(settings.database_url)}"
    )
    if settings.defaults_used:
        click.secho(
            f"  ! {len(settings.defaults_used)} settings use public development defaults "
            "(fine here; `yuchi check-config` lists them)",
            fg="yellow",
        )
    with _redis_env(settings) as env:
        commands = {"web": _gunicorn_cmd(host, port, workers)}
        for n in range(1, job_workers + 1):
            name = "worker" if job_workers == 1 else f"worker {n}"
            commands[name] = [sys.executable, "-m", "bot.cli", "worker", "--background"]
        # One urgent worker per outbox drain, so every drain can run at once.
        for n in range(1, settings.drains + 1):
            name = "urgent worker" if settings.drains == 1 else f"urgent worker {n}"
            commands[name] = [sys.executable, "-m", "bot.cli", "worker", "--urgent"]
        procs = {name: _spawn(cmd, env) for name, cmd in commands.items()}
        shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        base = f"http://{shown_host}:{port}"
        if _wait_healthy(f"{base}/healthz", procs):
            _ok(
                f"web on {base}, {job_workers} background worker(s) and {settings.drains} for "
                "urgent work (answers to contacts) running"
            )
            click.echo(
                f"\n  Official Account callback URL  {base}/wechat/oa\n"
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
            _stop_all(procs)
            sys.exit(1)
        sys.exit(_supervise(procs, commands, env))


@main.command()
@click.option("--port", default=8000, type=int, show_default=True, help="Yuchi's port")
@click.option("--sim-port", default=8100, type=int, show_default=True, help="the simulator's port")
@click.option(
    "--exit", "exit_after", is_flag=True, help="Stop after the scenario instead of running on."
)
def demo(port: int, sim_port: int, exit_after: bool) -> None:
    """Run the stack against the local WeChat simulator, seed a small setup and play a
    follower's first minutes (follow from a QR poster, ask the price, click the menu)."""
    import dataclasses

    from bot.core import wechat
    from bot.core.db import upgrade
    from wxsim import demo as scenario
    from wxsim.app import SimConfig
    from wxsim.testing import running_simulator

    settings = _settings()
    click.secho("鱼池 Yuchi 演示：本地模拟微信平台", bold=True)
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    _ok(f"database ready: {_safe_url(settings.database_url)}")
    base = f"http://127.0.0.1:{port}"
    config = SimConfig.from_settings(settings, callback_base=base)
    with _redis_env(settings) as env, running_simulator(config, port=sim_port) as sim:
        _ok(f"WeChat simulator on {sim.base_url}")
        env.update(sim.env)
        env.setdefault("YUCHI_LOG_LEVEL", "ERROR")  # the scenario's own lines are the show
        commands = {
            "web": _gunicorn_cmd("127.0.0.1", port, 2),
            "worker": [sys.executable, "-m", "bot.cli", "worker"],
        }
        procs = {name: _spawn(cmd, env) for name, cmd in commands.items()}
        if not _wait_healthy(f"{base}/healthz", procs):
            click.secho(f"Yuchi did not become healthy at {base}", fg="red", err=True)
            _stop_all(procs)
            sys.exit(1)
        _ok(f"Yuchi on {base}")
        here = sim.point(dataclasses.replace(settings, redis_url=env["REDIS_URL"]))
        api = scenario.Api(base, settings.api_token)
        counter = iter(range(1, 100))

        def say(text: str) -> None:
            click.echo(f"     {text}")

        def step(text: str) -> None:
            click.secho(f"\n  {next(counter)}. {text}", fg="cyan")

        try:
            step("准备：保存自动回复、创建菜单")
            scenario.seed(
                api, lambda menu: wechat.oa(here).call("post", "menu/create", data=menu), say
            )
            contact_id = scenario.play(sim, api, say, step)
            step("小鱼在鱼池里的时间线")
            for line in scenario.timeline(api, contact_id):
                say(line)
        except Exception as exc:  # show what broke, then stop cleanly
            click.secho(f"\nThe demo stopped: {exc}", fg="red", err=True)
            _stop_all(procs)
            sys.exit(1)
        if exit_after:
            _stop_all(procs)
            return
        click.echo(
            f"\nKeep playing (another terminal):\n"
            f'  .venv/bin/yuchi sim say "有优惠吗" --openid {scenario.OPENID} --sim-url {sim.base_url}\n'
            f"  .venv/bin/yuchi sim inbox --openid {scenario.OPENID} --sim-url {sim.base_url}\n"
            f"  curl -H 'Authorization: Bearer {settings.api_token}' {base}/api/contacts/{contact_id}/events\n"
            "Press Ctrl+C to stop."
        )
        sys.exit(_supervise(procs, commands, env))


def _register_sim() -> None:
    """`yuchi sim`: the development simulator (wxsim), when it is importable."""
    try:
        from wxsim.cli import sim
    except ImportError:  # a deployment without wxsim keeps a working `yuchi`
        return
    main.add_command(sim)


_register_sim()


if __name__ == "__main__":
    main()
