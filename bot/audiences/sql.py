"""A segment definition (a journeys ``Pred``: the one condition language) compiled to one SQL
condition on the ``contact`` table, so a count, a page or a membership test is one query.

Every clause compiles to something true or false, never NULL, so ``not`` is plain ``NOT``:

- ``tag``/``no_tag``, ``identity``: ``[NOT] EXISTS`` a row of this contact, read from an index
  (``ix_contact_tag_tag_contact``, ``ix_identity_kind_value``): semi- and anti-joins, never
  ``NOT IN`` (at 1M contacts a negated clause is then a parallel hash anti join, 0.5 s);
- ``event``: the events of a type (``oa.*``, ``*``) in a window (``within``) whose properties
  meet ``conditions``. Beside a tag or identity clause in an ``all`` (the index has narrowed
  the contacts to a few percent), a probe per contact through ``ix_event_contact_type``:
  ``EXISTS (… OFFSET n-1)`` stops at the n-th event. Otherwise the window grouped by contact
  with ``count`` in HAVING, read through ``ix_event_type_time_contact``; a count that holds
  for zero events (``{lt: 2}``) becomes ``NOT EXISTS`` (the contacts whose count does not hold),
  so people with no events count. bench/segments.py measured both (the reasons there);
- ``score``: the score *decayed* to ``now`` (the active rule set's half-life, from the later of
  ``last_interaction_at`` and ``score_activity_at``), with the undecayed bound that implies it
  added so the planner can cut early;
- ``silent_days``: bounds on ``last_seen_at``; ``stage``, ``owner``, ``source``,
  ``subscribed``: the columns; ``field`` and event ``conditions``: JSON, where a list matches
  when any element does (journeys/conditions.py), numbers compare as numbers, text trimmed;
- ``segment``: the named saved segment's definition, inlined.

Not compiled (refused when a segment is saved, bot.audiences.segments): ``answer`` (a
journey's), ``keywords`` (jieba words) and text operators on numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from bot.core.models import Contact, ContactTag, Event, Identity, UTCDateTime
from journeys.conditions import BOUNDS, Cmp, compare, listed, number
from journeys.model import Pred

K = Contact.__table__.c
CT = ContactTag.__table__.c
E = Event.__table__.c
ID = Identity.__table__.c
MAX_DEPTH = 8  # segments inside segments
NUMERIC = r"^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$"

Bool = ColumnElement[bool]


class CompileError(ValueError):
    """A definition that cannot be compiled (an unknown or circular segment)."""


@dataclass(frozen=True)
class Facts:
    """What a compile needs besides the definition."""

    now: datetime
    dialect: str  # "postgresql" | "sqlite"
    half_life_days: float | None = None
    segments: Mapping[int, Pred] = field(default_factory=dict)  # {segment: id} clauses


def members(pred: Pred, facts: Facts) -> sa.Select:
    """The ids of the contacts (never a merged one) the definition holds for."""
    return sa.select(K.id).where(K.merged_into_id.is_(None), condition(pred, facts))


def condition(pred: Pred, facts: Facts, depth: int = 0) -> Bool:
    """The definition as a condition on ``contact`` (correlated: use it in a query on it)."""
    return _Compiler(facts, depth).pred(pred)


def _true(cond: Bool) -> Bool:
    """A condition that may be NULL (a NULL column) read as false."""
    return sa.case((cond, sa.true()), else_=sa.false())


class _Compiler:
    def __init__(self, facts: Facts, depth: int):
        self.facts, self.depth = facts, depth
        self.pg = facts.dialect == "postgresql"
        self.narrowed = False  # inside an `all` with a tag or identity clause

    def at(self, moment: datetime) -> Any:
        return sa.literal(moment, UTCDateTime())

    # --- the clauses ----------------------------------------------------------------------

    def pred(self, p: Pred) -> Bool:
        if p.all is not None:
            outer = self.narrowed
            self.narrowed = outer or any(_narrow(x) for x in p.all)
            try:
                return sa.and_(*(self.pred(x) for x in p.all))
            finally:
                self.narrowed = outer
        if p.any is not None:
            return sa.or_(*(self.pred(x) for x in p.any))
        if p.not_ is not None:
            return sa.not_(self.pred(p.not_))
        if p.tag is not None:
            return _has(sa.select(CT.contact_id).where(CT.tag == p.tag), CT.contact_id)
        if p.no_tag is not None:
            return sa.not_(_has(sa.select(CT.contact_id).where(CT.tag == p.no_tag), CT.contact_id))
        if p.event is not None:
            return self.event(p)
        if p.score is not None:
            return self.score(p.score)
        if p.stage is not None:
            return self.text(p.stage, K.stage)
        if p.silent_days is not None:
            return self.silent(p.silent_days)
        if p.subscribed is not None:
            return K.subscribed.is_(sa.true() if p.subscribed else sa.false())
        if p.owner is not None:
            return self.text(p.owner, K.owner_userid)
        if p.source is not None:
            return _true(self.number(p.source, K.source_channel_id, nullable=True))
        if p.identity is not None:
            rows = sa.select(ID.contact_id).where(ID.kind == p.identity)
            if p.is_ is not None:
                rows = rows.where(self.text(p.is_, ID.value))
            return _has(rows, ID.contact_id)
        if p.field is not None:
            assert p.is_ is not None
            return self.json(p.is_, K.fields, p.field)
        if p.segment is not None:
            inner = self.facts.segments.get(p.segment)
            if inner is None:
                raise CompileError(f"segment: no segment {p.segment}")
            if self.depth >= MAX_DEPTH:
                raise CompileError(f"segment: segments nest more than {MAX_DEPTH} deep")
            return condition(inner, self.facts, self.depth + 1)
        raise CompileError("answer: a segment has no answers (a journey's ask step has)")

    def event(self, p: Pred) -> Bool:
        assert p.event is not None
        rows = sa.select(E.contact_id).where(E.contact_id.is_not(None))
        if p.event.endswith(".*"):
            rows = rows.where(E.type.startswith(p.event[:-1], autoescape=True))
        elif p.event != "*":
            rows = rows.where(E.type == p.event)
        if p.within is not None:
            rows = rows.where(E.occurred_at >= self.at(self.facts.now - p.within))
        for key, cmp in (p.conditions or {}).items():
            rows = rows.where(self.json(cmp, E.properties, key))
        if self.narrowed:
            return self.probe(p.count, rows.where(E.contact_id == K.id))
        if p.count is None:  # at least once
            return _has(rows, E.contact_id)
        holds = self.number(p.count, sa.func.count())
        if compare(p.count, 0):  # people without any such event count too
            return sa.not_(_grouped(rows.group_by(E.contact_id).having(sa.not_(holds))))
        return _grouped(rows.group_by(E.contact_id).having(holds))

    def probe(self, cmp: Cmp | None, rows: sa.Select) -> Bool:
        """The count for this contact alone (ix_event_contact_type), stopping at the n-th
        event when the condition is "at least n": for a contact set a tag has narrowed, a
        probe each costs less than grouping the whole window."""
        at_least = _at_least(cmp)
        if at_least is not None:  # EXISTS (… OFFSET n-1): the n-th row, and no further
            return sa.exists(rows.with_only_columns(sa.literal(1)).offset(at_least - 1))
        assert cmp is not None
        counted = rows.with_only_columns(sa.func.count()).scalar_subquery()
        return self.number(cmp, counted)

    def score(self, cmp: Cmp) -> Bool:
        decayed = self.decayed()
        parts = [self.number(cmp, decayed)]
        if decayed is not K.score:  # |decayed| <= |score|: a bound on it bounds the score
            low = max((b for b in (cmp.gt, cmp.gte) if b is not None), default=None)
            high = min((b for b in (cmp.lt, cmp.lte) if b is not None), default=None)
            if low is not None and low > 0:
                parts.append(K.score >= low)
            if high is not None and high < 0:
                parts.append(K.score <= high)
        return sa.and_(*parts)

    def decayed(self) -> Any:
        h = self.facts.half_life_days
        if h is None:
            return K.score
        a, b = K.last_interaction_at, K.score_activity_at
        if self.pg:
            last = sa.func.greatest(a, b)
            days = sa.func.extract("epoch", self.at(self.facts.now) - last) / 86400.0
            days = sa.func.greatest(days, 0.0)
        else:
            last = sa.func.max(sa.func.coalesce(a, b), sa.func.coalesce(b, a))
            days = sa.func.julianday(self.at(self.facts.now)) - sa.func.julianday(last)
            days = sa.func.max(days, 0.0)
        factor = sa.func.coalesce(sa.func.power(0.5, days / float(h)), 1.0)
        return K.score * factor

    def silent(self, cmp: Cmp) -> Bool:
        """Days since last seen as bounds on ``last_seen_at`` (an index can read them)."""
        now, seen = self.facts.now, K.last_seen_at
        if cmp.exists is False:
            return sa.false()

        def day(n: float) -> Any:
            return self.at(now - timedelta(days=n))

        parts: list[Bool] = []
        if cmp.gt is not None:
            parts.append(seen < day(cmp.gt))
        if cmp.gte is not None:
            parts.append(seen <= day(cmp.gte))
        if cmp.lt is not None:
            parts.append(seen > day(cmp.lt))
        if cmp.lte is not None:
            parts.append(seen >= day(cmp.lte))
        for options in ([cmp.eq] if cmp.eq is not None else [], cmp.in_ or []):
            if options:
                parts.append(sa.or_(sa.false(), *(seen == day(n) for n in _numbers(options))))
        return sa.and_(sa.true(), *parts)

    # --- one value ------------------------------------------------------------------------

    def number(self, cmp: Cmp, x: Any, nullable: bool = False) -> Bool:
        """A Cmp on a number (text operators are refused when the segment is saved)."""
        parts: list[Bool] = []
        if cmp.exists is not None:
            here = x.is_not(None) if nullable else sa.true()
            parts.append(here if cmp.exists else sa.not_(here))
        for op in BOUNDS:
            bound = getattr(cmp, op)
            if bound is not None:
                parts.append(_bound(x, op, bound))
        for options in ([cmp.eq] if cmp.eq is not None else [], cmp.in_ or []):
            if options:
                ns = _numbers(options)
                parts.append(x.in_(ns) if ns else sa.false())
        return sa.and_(sa.true(), *parts)

    def text(self, cmp: Cmp, col: Any) -> Bool:
        """A Cmp on a text column (absent: NULL or empty)."""
        present = sa.and_(col.is_not(None), col != "")
        parts: list[Bool] = []
        if cmp.exists is not None:
            parts.append(present if cmp.exists else sa.not_(_true(present)))
        if cmp.operands:
            parts.append(present)
            parts.append(self.element(cmp, col, self.numeric_text(col), sa.literal("string")))
        return _true(sa.and_(sa.true(), *parts))

    def numeric_text(self, text: Any) -> Any:
        plain = sa.func.replace(text, ",", "")
        return sa.case((plain.regexp_match(NUMERIC), sa.cast(plain, sa.Float)), else_=sa.null())

    def element(self, cmp: Cmp, text: Any, num: Any, kind: Any) -> Bool:
        """The operands of ``cmp`` on one value: its text, its number (NULL: none) and its
        JSON kind (string, number, boolean, other)."""
        parts: list[Bool] = []

        def equals(operand: Any) -> Bool:
            if isinstance(operand, bool):
                return sa.and_(kind == "boolean", text == ("true" if operand else "false"))
            n, t = number(operand), str(operand).strip()
            trimmed = sa.and_(kind != "boolean", sa.func.trim(text) == t)
            if n is None:
                return trimmed
            return sa.or_(sa.and_(num.is_not(None), num == n), sa.and_(num.is_(None), trimmed))

        if cmp.eq is not None:
            parts.append(equals(cmp.eq))
        if cmp.in_ is not None:
            parts.append(sa.or_(*(equals(o) for o in cmp.in_)))
        if cmp.prefix is not None:
            parts.append(sa.or_(*(text.startswith(p, autoescape=True) for p in listed(cmp.prefix))))
        if cmp.contains is not None:
            lowered = sa.func.lower(text)
            parts.append(
                sa.or_(
                    *(lowered.contains(c.lower(), autoescape=True) for c in listed(cmp.contains))
                )
            )
        for op in BOUNDS:
            bound = getattr(cmp, op)
            if bound is not None:
                parts.append(sa.and_(num.is_not(None), _bound(num, op, bound)))
        return sa.and_(sa.true(), *parts)

    def json(self, cmp: Cmp, doc: Any, key: str) -> Bool:
        """A Cmp on a JSON document's property (``a.b`` nested); a list: any element."""
        path = key.split(".")
        parts: list[Bool] = []
        if self.pg:
            value = sa.func.jsonb_extract_path(doc, *path)
            kind = sa.func.jsonb_typeof(value)
            present = sa.and_(
                value.is_not(None),
                kind != "null",
                value != sa.cast(sa.literal('""'), doc.type),
                value != sa.cast(sa.literal("[]"), doc.type),
            )
        else:
            where = "$" + "".join(f'."{p}"' for p in path)
            kind = sa.func.json_type(doc, where)
            present = sa.and_(
                kind.is_not(None),
                kind != "null",
                sa.not_(sa.and_(kind == "text", sa.func.json_extract(doc, where) == "")),
                sa.not_(sa.and_(kind == "array", sa.func.json_array_length(doc, where) == 0)),
            )
        if cmp.exists is not None:
            parts.append(_true(present) if cmp.exists else sa.not_(_true(present)))
        if cmp.operands:
            parts.append(self.json_any(cmp, doc, path))
        return _true(sa.and_(sa.true(), *parts))

    def json_any(self, cmp: Cmp, doc: Any, path: list[str]) -> Bool:
        if self.pg:
            value = sa.func.jsonb_extract_path(doc, *path)
            listed_ = sa.case(
                (sa.func.jsonb_typeof(value) == "array", value),
                else_=sa.func.jsonb_build_array(value),
            )
            each = sa.func.jsonb_array_elements(listed_).table_valued("value")
            t = sa.func.jsonb_typeof(each.c.value)
            text = each.c.value.op("#>>")(sa.literal_column("'{}'"))
            kind = sa.case((t.in_(["string", "number", "boolean"]), t), else_="other")
            num = sa.case((t == "number", sa.cast(text, sa.Float)), else_=self.numeric_text(text))
            ok = sa.and_(t.not_in(["null", "array", "object"]), self.element(cmp, text, num, kind))
        else:
            where = "$" + "".join(f'."{p}"' for p in path)
            each = sa.func.json_each(doc, where).table_valued("value", "type")
            t = each.c.type
            text = sa.case(
                (t == "true", "true"), (t == "false", "false"), else_=sa.cast(each.c.value, sa.Text)
            )
            kind = sa.case(
                (t.in_(["integer", "real"]), "number"),
                (t == "text", "string"),
                (t.in_(["true", "false"]), "boolean"),
                else_="other",
            )
            num = sa.case(
                (t.in_(["integer", "real"]), sa.cast(each.c.value, sa.Float)),
                (t == "text", self.numeric_text(text)),
                else_=sa.null(),
            )
            ok = sa.and_(t.not_in(["null", "array", "object"]), self.element(cmp, text, num, kind))
        return sa.exists(sa.select(sa.literal(1)).select_from(each).where(ok))


_OPS: dict[str, Callable[[Any, float], Bool]] = {
    "gt": lambda x, b: x > b,
    "gte": lambda x, b: x >= b,
    "lt": lambda x, b: x < b,
    "lte": lambda x, b: x <= b,
}


def _has(rows: sa.Select, contact_id: Any) -> Bool:
    """``EXISTS (rows of this contact)``: a semi-join, and negated an anti-join, which the
    planner runs as a hash join that spills to disk when big (``NOT IN`` becomes a
    per-contact rescan once its hash outgrows work_mem)."""
    return sa.exists(rows.with_only_columns(sa.literal(1)).where(contact_id == K.id))


def _grouped(rows: sa.Select) -> Bool:
    """``EXISTS`` a row of the grouped contact ids for this contact (a semi-join on the
    grouped window, see ``_has``)."""
    g = rows.subquery()
    return sa.exists(sa.select(sa.literal(1)).select_from(g).where(g.c.contact_id == K.id))


def _narrow(p: Pred) -> bool:
    """A clause an index narrows to a small share of contacts (a tag, an identity kind)."""
    return p.tag is not None or p.identity is not None


def _at_least(cmp: Cmp | None) -> int | None:
    """n when the count condition is exactly "at least n" (none: at least once)."""
    if cmp is None:
        return 1
    dumped = cmp.model_dump(by_alias=True, exclude_none=True)
    if set(dumped) == {"gte"} and float(dumped["gte"]).is_integer() and dumped["gte"] >= 1:
        return int(dumped["gte"])
    if set(dumped) == {"gt"} and float(dumped["gt"]).is_integer() and dumped["gt"] >= 0:
        return int(dumped["gt"]) + 1
    return None


def _numbers(options: list[Any]) -> list[float]:
    """The operands that read as numbers (true/false never do)."""
    found = (number(o) for o in options if not isinstance(o, bool))
    return [n for n in found if n is not None]


def _bound(x: Any, op: str, bound: float) -> Bool:
    """``x op bound``; a whole bound as an integer (``count(*) >= 2``, not ``::numeric >= 2.0``)."""
    return _OPS[op](x, int(bound) if float(bound).is_integer() else bound)
