"""A journey's steps as a graph: the edges each step names, the checks that need the whole
graph (one trigger, known targets, reachability, loops that cannot stop) and its cycles."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

EDGE_KEYS = ("next", "yes", "no", "default", "timeout_next", "no_match_next")
EDGE_LISTS = ("branches", "split", "choices")


class Found(NamedTuple):
    step: str | None  # None: the journey as a whole
    field: str
    message: str


def edges(step: Mapping[str, Any]) -> list[tuple[str, Any]]:
    out = [(k, step[k]) for k in EDGE_KEYS if step.get(k) is not None]
    for key in EDGE_LISTS:
        items = step.get(key)
        if isinstance(items, list):
            out += [
                (f"{key}[{i}].next", item["next"])
                for i, item in enumerate(items)
                if isinstance(item, Mapping) and item.get("next") is not None
            ]
    return out


def check(dicts: list[dict[str, Any]]) -> tuple[list[Found], dict[str, list[str]]]:
    """Problems of the step graph (ids, the one trigger, edges to unknown steps, the trigger
    or a goal, unreachable steps, loops without a wait or an ask) and the graph itself."""
    problems: list[Found] = []
    types: dict[str, Any] = {}
    for d in dicts:
        sid = d.get("id")
        if not isinstance(sid, str):
            continue
        if sid in types:
            problems.append(Found(sid, "id", "more than one step has this id"))
        else:
            types[sid] = d.get("type")
    triggers = [d.get("id") for d in dicts if d.get("type") == "trigger"]
    if not triggers:
        problems.append(Found(None, "steps", "a journey needs exactly one trigger step"))
    for extra in triggers[1:]:
        problems.append(Found(extra, "type", "a journey has exactly one trigger; this is another"))
    graph: dict[str, list[str]] = {sid: [] for sid in types}
    for d in dicts:
        sid = d.get("id")
        if not isinstance(sid, str):
            continue
        for where, target in edges(d):
            if not isinstance(target, str):
                problems.append(Found(sid, where, "a step id (text) is needed here"))
            elif target not in types:
                problems.append(Found(sid, where, f"goes to unknown step {target!r}"))
            elif types[target] == "trigger":
                problems.append(Found(sid, where, "no step may go back to the trigger"))
            elif types[target] == "goal":
                problems.append(
                    Found(sid, where, "goal steps are checked at any time; no step goes to one")
                )
            elif target not in graph[sid]:
                graph[sid].append(target)
    if len(triggers) == 1 and isinstance(triggers[0], str):
        seen, todo = {triggers[0]}, [triggers[0]]
        while todo:
            for t in graph.get(todo.pop(), []):
                if t not in seen:
                    seen.add(t)
                    todo.append(t)
        for sid, kind in types.items():
            if sid not in seen and kind not in ("goal", "trigger"):
                problems.append(
                    Found(sid, "id", "unreachable: no path from the trigger leads here")
                )
    for component in cycles(graph):
        if not any(types[s] in ("wait", "ask") for s in component):
            loop = " → ".join([*component, component[0]])
            problems.append(
                Found(
                    component[0],
                    "next",
                    f"the loop {loop} has no wait or ask step, so it would never stop",
                )
            )
    return problems, graph


def cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components that contain a cycle (Tarjan), in definition order."""
    order = {s: i for i, s in enumerate(graph)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component, key=order.__getitem__))

    for v in graph:
        if v not in index:
            visit(v)
    return found
