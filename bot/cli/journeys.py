"""`yuchi journeys preview|forecast`: try a journey before publishing it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from bot.cli.common import ok, settings_or_exit
from bot.core.config import Settings


@click.group("journeys")
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


def _play_on_simulator(
    inbox: Any, transcript: Any, sim_url: str, openid: str, seconds_per_day: float
) -> None:
    """Deliver the preview's messages one by one to the simulator's follower, printing each."""
    from bot.automation import preview_simulator
    from bot.automation.preview_transcript import Line

    click.echo(f"  逐条投递到模拟器 {sim_url} 的粉丝 {openid}，每模拟一天 {seconds_per_day:g} 秒")

    def show(line: Line, outcome: str | None) -> None:
        click.echo(line.line)
        if outcome:
            click.secho(f"            → {outcome}", fg="green" if "送达" in outcome else "red")

    try:
        played = inbox.play(transcript, show)
    except preview_simulator.SimulatorError as exc:
        click.secho(f"✗ {exc}", fg="red", err=True)
        sys.exit(1)
    ok(
        f"{played.delivered} message(s) in {openid}'s inbox on the simulator, "
        f"{len(played.refused)} refused, {played.not_sent} not sent (held/skipped/invalid)"
    )


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

    settings = settings_or_exit()
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
        _play_on_simulator(inbox, transcript, sim_url, openid, seconds_per_day)
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

    settings = settings_or_exit()
    d = _journey_definition(journey, settings)
    now = utcnow()
    with Session(get_engine(settings.database_url)) as session:
        result = journey_forecast.forecast(
            session, d, since=now - timedelta(days=days), until=now, now=now, settings=settings
        )
        session.rollback()
    click.echo(result.table())
