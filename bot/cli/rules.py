"""`yuchi replies|tags|scoring`: import reply rules, tag rules and interest words, and scoring
rules from YAML; publish and recompute scores."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bot.cli.common import ok, settings_or_exit
from bot.core.config import Settings


@click.group()
def replies() -> None:
    """Keyword, welcome and menu auto-replies."""


@replies.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def replies_import(file: Path) -> None:
    """Create or update the reply rules in FILE (YAML, `replies:` list), all or nothing."""
    from bot.core.db import session_scope
    from bot.replies import rules as autoreply

    settings = settings_or_exit()
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
    autoreply.changed(settings)  # a running server's processes reload them
    ok(f"{file}: {created} rule(s) created, {updated} updated")


@click.group()
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
    from bot.tagging import tags as tagging

    if (file is None) == (not defaults):
        raise click.UsageError("give a FILE or --defaults (not both)")
    path = file or tag_store.DEFAULT_INTEREST_WORDS
    settings = settings_or_exit()
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
    tagging.changed(settings)  # a running server's processes reload them
    ok(
        f"{path}: {counts['created']} tag rule(s) created, {counts['updated']} updated, "
        f"{counts['words']} interest word(s)"
    )


@click.group("scoring")
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
    from bot.scoring.recompute import Recomputed, recompute

    def show(r: Recomputed) -> None:
        rate = r.events / r.seconds if r.seconds else 0.0
        click.echo(
            f"  … {r.contacts:,} contacts, {r.events:,} events, {r.lines:,} lines, "
            f"{r.stage_changes:,} stage changes, {r.seconds:.1f} s ({rate:,.0f} events/s)"
        )

    result = recompute(settings, contact_ids, progress=show)
    if result.superseded:
        click.secho("  ! a newer version was published meanwhile; its recompute takes over")
    ok(
        f"version {result.version}: {result.contacts:,} contact(s) recomputed from "
        f"{result.events:,} events in {result.seconds:.1f} s"
    )


@scoring_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def scoring_import(file: Path) -> None:
    """Install the rules in FILE (YAML) as version 1, when there are no scoring rules yet."""
    from bot.core.db import session_scope
    from bot.scoring import versions

    settings = settings_or_exit()
    rules = _scoring_rules(file)
    with session_scope(settings.database_url) as session:
        version = versions.install(session, rules)
    if version is None:
        click.secho(
            "scoring rules exist already; `yuchi scoring publish FILE` makes a new version",
            fg="red",
            err=True,
        )
        sys.exit(1)
    ok(f"{file}: installed as version {version}")


@scoring_group.command("publish")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--now", is_flag=True, help="Recompute every score here instead of in a job.")
def scoring_publish(file: Path, now: bool) -> None:
    """Make the rules in FILE (YAML) the new active version and recompute every score."""
    from bot.core.db import session_scope
    from bot.scoring import recompute, versions

    settings = settings_or_exit()
    rules = _scoring_rules(file)
    with session_scope(settings.database_url) as session:
        version = versions.publish(session, rules)
    ok(f"{file}: published as version {version}")
    if now:
        _recompute(settings)
    elif recompute.enqueue_recompute(settings, version):
        ok(
            f"recompute queued as job {recompute.recompute_job_id(version)} (`yuchi worker` runs it)"
        )
    else:
        click.secho("  ! Redis unreachable: run `yuchi scoring recompute`", fg="yellow")


@scoring_group.command("recompute")
@click.option("--contact", "contact_ids", type=int, multiple=True, help="Only these contacts.")
def scoring_recompute(contact_ids: tuple[int, ...]) -> None:
    """Rebuild score ledgers from the events under the active version, printing progress."""
    _recompute(settings_or_exit(), list(contact_ids) or None)
