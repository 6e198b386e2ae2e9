"""The `yuchi` command: one module per command group, registered here."""

from __future__ import annotations

import logging

import click

from bot.cli.journeys import journeys_group
from bot.cli.rules import replies, scoring_group, tags
from bot.cli.setup import check_config, db
from bot.cli.stack import demo, serve, sweep_once, up, worker
from bot.core import redact
from bot.core.config import ConfigError, load_settings


@click.group()
def main() -> None:
    """鱼池 Yuchi: SCRM and marketing automation for WeChat."""
    logging.basicConfig(
        level=_log_level(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # import-time chatter
    redact.install()


def _log_level() -> str:
    """YUCHI_LOG_LEVEL, or INFO while the settings have problems (the command reports them)."""
    try:
        return load_settings().log_level
    except ConfigError:
        return "INFO"


for command in (check_config, db, replies, tags, scoring_group, journeys_group):
    main.add_command(command)
for command in (up, serve, worker, sweep_once, demo):
    main.add_command(command)


def _register_sim() -> None:
    """`yuchi sim`: the development simulator (wxsim), when it is importable."""
    try:
        from wxsim.cli import sim
    except ImportError:  # a deployment without wxsim keeps a working `yuchi`
        return
    main.add_command(sim)


_register_sim()
