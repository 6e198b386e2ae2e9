"""The command tables: what the runner executes (bot.automation.execute.HANDLERS), what the
preview writes down (preview_recorder.LINES, CONTACT_CHANGES) and what the forecast counts
(forecast_replay.EFFECTS), each keyed by the engine's command type. Pure."""

from __future__ import annotations

from bot.automation.execute import HANDLERS
from bot.automation.forecast_replay import EFFECTS
from bot.automation.preview_recorder import CONTACT_CHANGES, LINES, apply_to_contact
from journeys import Contact
from journeys import commands as c

EVERY_COMMAND = set(c.Command.__subclasses__())


def test_the_runner_has_a_handler_for_every_command():
    assert set(HANDLERS) == EVERY_COMMAND


def test_the_preview_writes_a_line_for_every_command_but_a_schedule():
    assert set(LINES) == EVERY_COMMAND - {c.Schedule}  # the clock jumps to it instead


def test_preview_and_forecast_change_the_contact_for_the_same_commands():
    assert set(CONTACT_CHANGES) == set(EFFECTS) - {c.Send, c.HandOff}  # counted, not applied


def test_apply_to_contact_applies_tags_points_fields_and_stage():
    k = Contact(1, tags=frozenset({"old"}), score=5)
    for cmd in (
        c.AddTag(step="s", tag="VIP"),
        c.RemoveTag(step="s", tag="old"),
        c.AddPoints(step="s", points=10),
        c.SetField(step="s", field="city", value="上海"),
        c.SetStage(step="s", stage="mql"),
        c.Send(step="s", kind="text", payload={"content": "hi"}),  # changes nothing
    ):
        k = apply_to_contact(k, cmd)
    assert (k.tags, k.score, dict(k.fields), k.stage) == ({"VIP"}, 15, {"city": "上海"}, "mql")
