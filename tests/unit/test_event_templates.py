"""Every event type the product emits reads as a Chinese sentence on the sidebar's timeline:
the string literals naming event types in bot/ and handlers/ each have a template."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from bot.desk import sentences

ROOT = Path(__file__).resolve().parents[2]
AREAS = ("oa", "wecom", "msg", "tag", "contact", "score", "lead", "journey", "note", "sales")
EVENT_TYPE = re.compile(rf"^({'|'.join(AREAS)})\.[a-z_]+$")
NOT_EVENTS = {"contact.id", "journey.id"}  # attribute paths that look alike
# types built at run time: "journey." + the enrollment's end status (bot.automation.execute)
BUILT = {"journey.done", "journey.exited", "journey.converted"}


def literals() -> dict[str, str]:
    found: dict[str, str] = {}
    for area in ("bot", "handlers"):
        for path in sorted((ROOT / area).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                value = node.value if isinstance(node, ast.Constant) else None
                if isinstance(value, str) and EVENT_TYPE.match(value) and value not in NOT_EVENTS:
                    found.setdefault(value, str(path.relative_to(ROOT)))
    return found


def test_every_emitted_event_type_has_a_template():
    found = literals()
    assert {"lead.returned", "sales.reminder_set", "tag.added", "oa.click"} <= set(found)
    missing = {t: where for t, where in found.items() if t not in sentences.TEMPLATES}
    missing.update({t: "built" for t in BUILT if t not in sentences.TEMPLATES})
    assert not missing, missing


def test_every_template_names_a_type_the_product_emits():
    unused = set(sentences.TEMPLATES) - set(literals()) - BUILT
    assert not unused, unused
