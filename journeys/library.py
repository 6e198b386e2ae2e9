"""Ready-made journeys: YAML files in journeys/library/, loaded and validated."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import yaml

from journeys.model import Definition
from journeys.validate import check

FOLDER = Path(__file__).resolve().parent / "library"


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. YAML 1.1 would read the keys ``yes``, ``no`` and
    ``on`` (a condition's branches, a trigger's kind) as true and false."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def read_yaml(text: str) -> Any:
    """A journey definition's data from YAML text (use this, not yaml.safe_load)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def names() -> list[str]:
    """The ready-made journeys, by file name without .yaml."""
    return sorted(p.stem for p in FOLDER.glob("*.yaml"))


@functools.cache
def load(name: str) -> Definition:
    """The named journey, validated (DefinitionError if it is not valid; KeyError if there
    is no such journey)."""
    if name not in names():
        raise KeyError(f"no ready-made journey {name!r}; there are {', '.join(names())}")
    data = read_yaml((FOLDER / f"{name}.yaml").read_text(encoding="utf-8"))
    return check(data)
