"""What every `yuchi` command shares: settings or a clear exit, and the tick for a step done."""

from __future__ import annotations

import sys

import click

from bot.core import redact
from bot.core.config import ConfigError, Settings, load_settings


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        click.secho("Configuration problems:", fg="red", err=True)
        for problem in exc.problems:
            click.secho(f"  ✗ {problem}", fg="red", err=True)
        click.echo("See README.md, 'Configuration', for every setting.", err=True)
        sys.exit(2)


def ok(message: str) -> None:
    click.secho("  ✓ ", fg="green", nl=False)
    click.echo(message)


def safe_url(url: str) -> str:
    return redact.text(url)
