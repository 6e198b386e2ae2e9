"""The journey engine's pure core: definitions, validation and ``advance``.

Nothing here does I/O or reads the clock; the runner (bot/) loads state and contact snapshots,
calls :func:`advance` and executes the commands it returns. See ARCHITECTURE.md.
"""

from journeys.commands import (
    AddPoints,
    AddTag,
    Answered,
    CallWebhook,
    Command,
    Converted,
    EnterJourney,
    Exit,
    HandOff,
    NotifyRep,
    RemoveTag,
    Schedule,
    Send,
    SetField,
    SetStage,
)
from journeys.engine import (
    Contact,
    Event,
    State,
    WaitingFor,
    advance,
    enter,
    goal_reached,
    start,
    triggered_by,
)
from journeys.entry import Enrollment, may_enter
from journeys.model import Definition, parse
from journeys.validate import DefinitionError, Problem, added_tags, check, validate

__all__ = [
    "AddPoints",
    "AddTag",
    "Answered",
    "CallWebhook",
    "Command",
    "Contact",
    "Converted",
    "Definition",
    "DefinitionError",
    "EnterJourney",
    "Enrollment",
    "Event",
    "Exit",
    "HandOff",
    "NotifyRep",
    "Problem",
    "RemoveTag",
    "Schedule",
    "Send",
    "SetField",
    "SetStage",
    "State",
    "WaitingFor",
    "added_tags",
    "advance",
    "enter",
    "check",
    "goal_reached",
    "may_enter",
    "parse",
    "start",
    "triggered_by",
    "validate",
]
