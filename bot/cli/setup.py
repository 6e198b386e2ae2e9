"""`yuchi check-config` and `yuchi db`: the settings and the database's migrations."""

from __future__ import annotations

import os

import click

from bot.cli.common import ok, safe_url, settings_or_exit
from bot.core.config import DOTENV, VARIABLES, dotenv_environment


@click.command("check-config")
@click.option("--explain", is_flag=True, help="Print what each variable means under its value.")
def check_config(explain: bool) -> None:
    """Validate the settings and show every variable, its value and where it comes from
    (secrets masked). Reads the environment, then ./.env (the environment wins)."""
    settings = settings_or_exit()
    rows = settings.describe()
    from_file = dotenv_environment().keys() - os.environ.keys()
    width = max(len(name) for name, _, _ in rows)
    for name, shown, given_origin in rows:
        origin = given_origin or (f"from {DOTENV}" if name in from_file else "")
        flag = click.style(f"  {origin}", fg="yellow") if origin else ""
        click.echo(f"  {name:<{width}}  {shown}{flag}")
        if explain:
            click.secho(f"  {'':<{width}}  {VARIABLES[name].help}", dim=True)
    if settings.defaults_used:
        click.secho(
            f"\n{len(settings.defaults_used)} setting(s) use public development defaults: fine on "
            "this machine, never for a real account (set YUCHI_ENV=production to forbid them).",
            fg="yellow",
        )
    else:
        ok("configuration is complete")


@click.group()
def db() -> None:
    """Database migrations."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    from bot.core.db import current_revision, upgrade

    settings = settings_or_exit()
    before = current_revision(settings.database_url)
    upgrade(settings.database_url, revision)
    after = current_revision(settings.database_url)
    ok(f"database at revision {after} (was {before or 'empty'}): {safe_url(settings.database_url)}")


@db.command("current")
def db_current() -> None:
    """Print the database's migration revision."""
    from bot.core.db import current_revision

    click.echo(current_revision(settings_or_exit().database_url) or "empty (run: yuchi db upgrade)")
