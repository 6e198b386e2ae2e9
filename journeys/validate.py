"""Is a journey definition fit to publish? Every problem at once, each naming the step and the
field: unknown step types and malformed steps, missing or unknown branch targets, unreachable
steps, loops with no wait or ask in them, not exactly one trigger, ask choices that clash,
A/B splits not adding up to 100, unknown time zones, message payloads missing what their kind
needs, and (when the known sets are given) unknown tags and templates.

A tag the journey itself adds (an ``add_tag`` action or a choice's ``tag``) counts as known
to the rest of the journey: adding creates it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter, ValidationError

from journeys import graph, words
from journeys.model import (
    STEP_TYPES,
    Action,
    Ask,
    Condition,
    Definition,
    Goal,
    Pred,
    Step,
    Trigger,
    Wait,
)
from journeys.webhook_urls import Allow, url_refusal

SEND_NEEDS: dict[str, tuple[str, ...]] = {
    "text": ("content",),
    "news": ("title", "url"),
    "link": ("title", "url"),
    "image": ("media_id",),
    "miniprogram": ("title", "appid", "pagepath", "thumb_media_id"),
    "template": ("template_id", "data"),
    "wecom_text": ("content",),
    "wecom_textcard": ("title", "description", "url"),
    "wecom_markdown": ("content",),
}
_STEP: TypeAdapter[Any] = TypeAdapter(Step)


@dataclass(frozen=True)
class Problem:
    step: str | None  # None: the journey as a whole (or a step without an id)
    field: str
    message: str

    def __str__(self) -> str:
        where = f"step {self.step}" if self.step else "journey"
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class DefinitionError(ValueError):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def _message(err: Mapping[str, Any]) -> str:
    return str(err["msg"]).removeprefix("Value error, ")


_NAMED = re.compile(r"^([A-Za-z_][A-Za-z0-9_.\[\]]*): (.+)$", re.S)


def _problem(
    step: str | None, prefix: str, loc: tuple[Any, ...], err: Mapping[str, Any]
) -> Problem:
    """A pydantic error as a Problem; a model-level message ``field: what`` names its field."""
    field, message = _field(loc), _message(err)
    named = _NAMED.match(message)
    if named:
        field = f"{field}.{named.group(1)}" if field else named.group(1)
        message = named.group(2)
    return Problem(step, prefix + field, message)


def _field(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _parse(data: Any) -> tuple[Definition | None, list[Problem], list[dict[str, Any]]]:
    """The definition if it parses, shape problems, and every step as a dict (for the graph)."""
    if isinstance(data, Definition):
        dumps = [s.model_dump(by_alias=True, exclude_none=True) for s in data.steps]
        return data, [], dumps
    if not isinstance(data, Mapping):
        return None, [Problem(None, "", "a journey definition is an object")], []
    problems: list[Problem] = []
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        problems.append(Problem(None, "steps", "a journey needs a non-empty list of steps"))
        raw_steps = []
    parsed, dicts = [], []
    for i, raw in enumerate(raw_steps):
        if not isinstance(raw, Mapping):
            problems.append(Problem(None, f"steps[{i}]", "a step is an object"))
            continue
        sid = raw.get("id") if isinstance(raw.get("id"), str) else None
        prefix = "" if sid else f"steps[{i}]."
        dicts.append(dict(raw))
        kind = raw.get("type")
        if kind not in STEP_TYPES:
            problems.append(
                Problem(
                    sid,
                    f"{prefix}type",
                    f"unknown step type {kind!r}; use one of {', '.join(STEP_TYPES)}",
                )
            )
            continue
        try:
            parsed.append(_STEP.validate_python(raw))
        except ValidationError as e:
            for err in e.errors():
                loc = tuple(err["loc"])
                loc = loc[1:] if loc and loc[0] == kind else loc
                problems.append(_problem(sid, prefix, loc, err))
    try:
        definition = Definition.model_validate({**data, "steps": parsed})
    except ValidationError as e:
        definition = None
        for err in e.errors():
            loc = tuple(err["loc"])
            if loc and loc[0] == "steps":
                continue  # reported step by step above
            problems.append(_problem(None, "", loc, err))
    return (definition if not problems else None), problems, dicts


def _missing_branches(step: Any) -> Iterator[tuple[str, str]]:
    if isinstance(step, Trigger) and step.next is None:
        yield "next", "a trigger needs a first step"
    elif isinstance(step, Wait):
        if step.next is None:
            yield "next", "missing branch: where to go when the wait is over"
        if step.event is not None and step.timeout_next is None:
            yield "timeout_next", "missing branch: where to go when the event does not come"
    elif isinstance(step, Condition):
        if step.if_ is not None:
            for name in ("yes", "no"):
                if getattr(step, name) is None:
                    yield name, "missing branch"
        if step.branches is not None:
            for i, b in enumerate(step.branches):
                if b.next is None:
                    yield f"branches[{i}].next", "missing branch"
            if step.default is None:
                yield "default", "missing branch: where to go when no branch holds"
        if step.split is not None:
            for i, arm in enumerate(step.split):
                if arm.next is None:
                    yield f"split[{i}].next", "missing branch"
    elif isinstance(step, Ask):
        if step.timeout_next is None:
            yield "timeout_next", "missing branch: where to go when no answer comes"
        if not step.free_text and step.no_match_next is None:
            yield "no_match_next", "missing branch: where to go when the answer matches no choice"
        if not step.choices and not step.free_text:
            yield "choices", "an ask needs choices, or free_text: true"
        if step.next is None:
            if not step.choices:
                yield "next", "missing branch: where to go with the answer"
            for i, ch in enumerate(step.choices):
                if ch.next is None:
                    yield (
                        f"choices[{i}].next",
                        "missing branch (give the choice or the step a next)",
                    )


def _ask_clashes(step: Ask) -> Iterator[tuple[str, str]]:
    owners: dict[str, int] = {}
    keys: dict[str, int] = {}
    for i, ch in enumerate(step.choices):
        for w in dict.fromkeys(words.normalize(x) for x in (ch.label, ch.saved, *ch.synonyms)):
            if w in owners and owners[w] != i:
                yield f"choices[{i}]", f"{w!r} also belongs to choices[{owners[w]}]"
            owners.setdefault(w, i)
        if ch.click_key:
            if ch.click_key in keys:
                yield f"choices[{i}].click_key", f"also the key of choices[{keys[ch.click_key]}]"
            keys.setdefault(ch.click_key, i)


def _pred_tags(pred: Pred, where: str) -> Iterator[tuple[str, str]]:
    if pred.tag is not None:
        yield f"{where}.tag", pred.tag
    if pred.no_tag is not None:
        yield f"{where}.no_tag", pred.no_tag
    for key in ("all", "any"):
        for i, sub in enumerate(getattr(pred, key) or []):
            yield from _pred_tags(sub, f"{where}.{key}[{i}]")
    if pred.not_ is not None:
        yield from _pred_tags(pred.not_, f"{where}.not")


def _tag_refs(step: Any) -> Iterator[tuple[str, str]]:
    if isinstance(step, Trigger):
        if step.on == "tag_added" and step.tag:
            yield "tag", step.tag
        if step.segment is not None:
            yield from _pred_tags(step.segment, "segment")
    elif isinstance(step, Condition):
        if step.if_ is not None:
            yield from _pred_tags(step.if_, "if")
        for i, b in enumerate(step.branches or []):
            yield from _pred_tags(b.when, f"branches[{i}].when")
    elif isinstance(step, Goal):
        yield from _pred_tags(step.when, "when")
    elif isinstance(step, Action) and step.do == "remove_tag" and step.tag:
        yield "tag", step.tag


def _added_tags(steps: list[Any]) -> set[str]:
    added = {s.tag for s in steps if isinstance(s, Action) and s.do == "add_tag" and s.tag}
    for s in steps:
        if isinstance(s, Ask):
            added |= {ch.tag for ch in s.choices if ch.tag}
    return added


def added_tags(data: Any) -> set[str]:
    """The tags a definition (its data, valid or not) gives contacts; empty if unreadable."""
    try:
        return _added_tags(Definition.model_validate(data).steps)
    except Exception:  # a draft that does not parse adds nothing
        return set()


@dataclass(frozen=True)
class Known:
    """What the definition is checked against; None skips that check."""

    tags: set[str] | None = None
    templates: set[str] | None = None
    webhook_allow: Allow | None = None  # refuse webhook urls to addresses not allowed
    webhooks: set[str] | None = None  # the registered webhook endpoint urls
    segments: set[int] | None = None  # the saved segment ids


def _preds(step: Any) -> Iterator[tuple[str, Pred]]:
    if isinstance(step, Trigger) and step.segment is not None:
        yield "segment", step.segment
    elif isinstance(step, Condition):
        if step.if_ is not None:
            yield "if", step.if_
        for i, b in enumerate(step.branches or []):
            yield f"branches[{i}].when", b.when
    elif isinstance(step, Goal):
        yield "when", step.when


def named_segments(d: Definition) -> set[int]:
    """The saved segment ids a definition names (a trigger's ``segment_id``, ``{segment: id}``)."""
    found = {s.segment_id for s in d.steps if isinstance(s, Trigger) and s.segment_id}
    preds = [p for s in d.steps for _where, p in _preds(s)] + ([d.goal] if d.goal else [])
    for pred in preds:
        found |= {p.segment for _where, p in pred.walk("") if p.segment is not None}
    return found


def _segment_refs(step: Any, known: set[int] | None) -> Iterator[Problem]:
    if known is None:
        return
    if isinstance(step, Trigger) and step.segment_id is not None and step.segment_id not in known:
        yield Problem(step.id, "segment_id", f"no saved segment {step.segment_id}")
    for top, pred in _preds(step):
        for where, p in pred.walk(top):
            if p.segment is not None and p.segment not in known:
                yield Problem(step.id, f"{where}.segment", f"no saved segment {p.segment}")


def _segment_only(pred: Pred, where: str) -> Iterator[tuple[str, str]]:
    for path, p in pred.walk(where):
        for clause in p.segment_only():
            yield (
                f"{path}.{clause}",
                "only a saved segment reads this; save it as a segment and use {segment: <id>}",
            )


def _step_problems(d: Definition, known: Known) -> Iterator[Problem]:
    if d.goal is not None:
        for where, message in _segment_only(d.goal, "goal"):
            yield Problem(None, where, message)
    for s in d.steps:
        for top, pred in _preds(s):
            for where, message in _segment_only(pred, top):
                yield Problem(s.id, where, message)
        yield from _segment_refs(s, known.segments)
    if d.goal is not None and known.segments is not None:
        for where, p in d.goal.walk("goal"):
            if p.segment is not None and p.segment not in known.segments:
                yield Problem(None, f"{where}.segment", f"no saved segment {p.segment}")
    known_tags = known.tags
    tags = None if known_tags is None else set(known_tags) | _added_tags(d.steps)
    if d.goal is not None and tags is not None:
        for where, tag in _pred_tags(d.goal, "goal"):
            if tag not in tags:
                yield Problem(None, where, f"unknown tag {tag!r}")
    for s in d.steps:
        for where, message in _missing_branches(s):
            yield Problem(s.id, where, message)
        if tags is not None:
            for where, tag in _tag_refs(s):
                if tag not in tags:
                    yield Problem(s.id, where, f"unknown tag {tag!r}")
        if isinstance(s, Ask):
            for where, message in _ask_clashes(s):
                yield Problem(s.id, where, message)
        if isinstance(s, Condition) and s.split is not None:
            total = sum(arm.percent for arm in s.split)
            if abs(total - 100) > 1e-9:
                yield Problem(s.id, "split", f"the percentages add up to {total:g}, not 100")
        if isinstance(s, Condition):
            yield from _bandit_problems(s)
        if isinstance(s, Action):
            yield from _action_problems(s, d, known)


def _bandit_problems(s: Condition) -> Iterator[Problem]:
    """A bandit split learns from its arms' next steps (the path says which arm a contact
    took), so each arm leads somewhere else."""
    if s.mode != "bandit":
        if s.goal_event is not None:
            yield Problem(s.id, "goal_event", "only a split with mode: bandit has a goal event")
        return
    if s.split is None:
        yield Problem(s.id, "mode", "mode: bandit is for a split")
        return
    if s.goal_event is None:
        yield Problem(s.id, "goal_event", "a bandit split needs the event that converts")
    nexts = [arm.next for arm in s.split if arm.next is not None]
    if len(set(nexts)) != len(nexts):
        yield Problem(s.id, "split", "each arm of a bandit split goes to a different step")
    if s.min_share * len(s.split) >= 1:
        yield Problem(
            s.id, "min_share", f"{len(s.split)} arms × {s.min_share:g} leaves nothing to learn"
        )


def _action_problems(s: Action, d: Definition, known: Known) -> Iterator[Problem]:
    known_templates = known.templates
    if s.do == "send":
        needs = SEND_NEEDS.get(s.kind or "")
        if needs is None:
            yield Problem(
                s.id, "kind", f"unknown message kind {s.kind!r}; use one of {', '.join(SEND_NEEDS)}"
            )
            return
        payload = s.payload or {}
        for key in needs:
            if payload.get(key) in (None, "", {}):
                yield Problem(s.id, f"payload.{key}", f"a {s.kind} message needs {key}")
        template = payload.get("template_id")
        unknown = known_templates is not None and template not in known_templates
        if s.kind == "template" and template and unknown:
            yield Problem(s.id, "payload.template_id", f"unknown template {template!r}")
        if s.fallback is not None:
            if s.kind not in ("text", "news", "link", "image", "miniprogram"):
                yield Problem(s.id, "fallback", "only customer-service messages have a fallback")
            for key in SEND_NEEDS["template"]:
                if s.fallback.get(key) in (None, "", {}):
                    yield Problem(s.id, f"fallback.{key}", f"a fallback template needs {key}")
            fb = s.fallback.get("template_id")
            if fb and known_templates is not None and fb not in known_templates:
                yield Problem(s.id, "fallback.template_id", f"unknown template {fb!r}")
    elif s.do == "enter_journey" and s.journey == d.id:
        yield Problem(s.id, "journey", "a journey cannot enter itself")
    elif s.do == "webhook" and s.url:
        refusal = None if known.webhook_allow is None else url_refusal(s.url, known.webhook_allow)
        if refusal:
            yield Problem(s.id, "url", f"{refusal}; webhooks go to public addresses only")
        elif known.webhooks is not None and s.url not in known.webhooks:
            yield Problem(
                s.id,
                "url",
                "no webhook endpoint is registered for this url (POST /api/webhook-endpoints)",
            )


def validate(
    definition: Definition | Mapping[str, Any],
    known_tags: set[str] | None = None,
    known_templates: set[str] | None = None,
    *,
    webhook_allow: Allow | None = None,
    known_webhooks: set[str] | None = None,
    known_segments: set[int] | None = None,
) -> list[Problem]:
    """Every problem with the definition (a Definition or its JSON/YAML data); [] when it
    may be published. ``known_tags``/``known_templates``/``known_webhooks`` (endpoint
    urls)/``webhook_allow``: None skips those checks."""
    parsed, problems, dicts = _parse(definition)
    found, _ = graph.check(dicts)
    problems += [Problem(*f) for f in found]
    if parsed is not None:
        known = Known(known_tags, known_templates, webhook_allow, known_webhooks, known_segments)
        problems += _step_problems(parsed, known)
    elif isinstance(definition, Mapping):
        # shape problems elsewhere: still check the steps that parsed on their own
        for raw in dicts:
            try:
                step = _STEP.validate_python(raw)
            except ValidationError:
                continue
            for where, message in _missing_branches(step):
                problems.append(Problem(step.id, where, message))
    return problems


def check(
    definition: Definition | Mapping[str, Any],
    known_tags: set[str] | None = None,
    known_templates: set[str] | None = None,
) -> Definition:
    """The parsed definition, or DefinitionError with every problem."""
    problems = validate(definition, known_tags, known_templates)
    if problems:
        raise DefinitionError(problems)
    parsed, _, _ = _parse(definition)
    assert parsed is not None
    return parsed
