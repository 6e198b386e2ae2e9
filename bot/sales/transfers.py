"""Customer transfers through WeCom: 在职转接 (a rep still employed hands customers to another,
``externalcontact/transfer_customer``) and 离职继承 (a departed rep's customers,
``externalcontact/resigned/transfer_customer``). One ``customer_transfer`` row per customer
records what the platform said and what became of it:

- the call answers per customer: errcode 0 → ``waiting`` (the customer has 24 hours to
  refuse), anything else → ``failed`` with that errcode (40128: transferred twice in 90 days,
  40129: already on its way, 40131: not the handover rep's customer, …);
- later, the callbacks: ``transfer_fail`` (``customer_refused`` → ``refused``,
  ``customer_limit_exceed`` → ``limit_exceeded``) and the takeover rep's
  ``add_external_contact`` (→ ``completed``; the contact's owner follows);
- and the sweeper asks ``transfer_result`` about waiting rows whose 24 hours have passed, for
  what no callback said (a takeover rep who was already the customer's contact gets none).

A customer with a transfer already waiting is skipped, so asking twice changes nothing.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.contacts import record as events
from bot.core import wechat
from bot.core.config import Settings
from bot.core.db import session_scope
from bot.core.models import Contact, CustomerTransfer, FollowUser, Rep, utcnow

if TYPE_CHECKING:
    from bot.core.context import Context

log = logging.getLogger(__name__)

# kind -> (the transfer API, the result API), under /cgi-bin/
APIS = {
    "in_service": ("externalcontact/transfer_customer", "externalcontact/transfer_result"),
    "resigned": (
        "externalcontact/resigned/transfer_customer",
        "externalcontact/resigned/transfer_result",
    ),
}
RESULT_STATUS = {1: "completed", 2: "waiting", 3: "refused", 4: "limit_exceeded"}
FAIL_REASONS = {"customer_refused": "refused", "customer_limit_exceed": "limit_exceeded"}
PER_CALL = 100  # the platform's limit per transfer call
WAIT = timedelta(hours=24)
MAX_PAGES = 50


class TransferError(Exception):
    """A transfer that cannot be asked for (unknown or inactive rep, the same rep twice)."""


class TransferUnavailable(Exception):
    """WeCom could not be reached; nothing was recorded for the customers not yet asked."""


def transfer_json(t: CustomerTransfer) -> dict[str, Any]:
    iso = lambda v: v.isoformat() if v else None  # noqa: E731
    return {
        "id": t.id,
        "contact_id": t.contact_id,
        "external_userid": t.external_userid,
        "handover_userid": t.handover_userid,
        "takeover_userid": t.takeover_userid,
        "kind": t.kind,
        "status": t.status,
        "errcode": t.errcode,
        "requested_at": iso(t.requested_at),
        "takeover_at": iso(t.takeover_at),
        "finished_at": iso(t.finished_at),
    }


def list_transfers(session: Session, userid: str, limit: int = 200) -> list[CustomerTransfer]:
    """The transfers from or to ``userid``, newest first."""
    t = CustomerTransfer.__table__.c
    query = sa.select(CustomerTransfer).where(
        sa.or_(t.handover_userid == userid, t.takeover_userid == userid)
    )
    return list(session.execute(query.order_by(t.id.desc()).limit(limit)).scalars())


def customers_of(
    session: Session, userid: str, contact_ids: list[int] | None = None
) -> list[tuple[int, str]]:
    """(contact id, external_userid) of the rep's WeCom customers (those among
    ``contact_ids`` when given)."""
    f = FollowUser.__table__.c
    query = sa.select(f.contact_id, f.external_userid).where(
        f.userid == userid, f.status == "active", f.external_userid != ""
    )
    if contact_ids is not None:
        query = query.where(f.contact_id.in_(contact_ids))
    return [(c, e) for c, e in session.execute(query.order_by(f.contact_id)).all()]


def _waiting(session: Session, externals: list[str]) -> set[str]:
    t = CustomerTransfer.__table__.c
    rows = session.execute(
        sa.select(t.external_userid).where(t.external_userid.in_(externals), t.status == "waiting")
    ).scalars()
    return set(rows)


def _record(
    settings: Settings,
    kind: str,
    pair: tuple[str, str],
    chunk: list[tuple[int, str]],
    codes: dict[str, int],
) -> list[dict[str, Any]]:
    """One row per customer of a call, with a ``sales.transfer_requested`` timeline note."""
    now, out = utcnow(), []
    with session_scope(settings.database_url) as session:
        for contact_id, external in chunk:
            code = codes.get(external, -1)
            row = CustomerTransfer(
                contact_id=contact_id,
                external_userid=external,
                handover_userid=pair[0],
                takeover_userid=pair[1],
                kind=kind,
                status="waiting" if code == 0 else "failed",
                errcode=code,
                requested_at=now,
                takeover_at=now + WAIT if code == 0 else None,
                finished_at=None if code == 0 else now,
            )
            session.add(row)
            session.flush()
            props = {"transfer_id": row.id, "kind": kind, "from": pair[0], "to": pair[1]}
            props["errcode"] = code
            key = f"transfer:{row.id}"
            events.append(
                session, contact_id, "sales.transfer_requested", props, key, pipeline=False
            )
            out.append(transfer_json(row))
    return out


def _call(
    settings: Settings, kind: str, pair: tuple[str, str], externals: list[str], message: str | None
) -> dict[str, int]:
    """errcode per customer; a whole-call refusal gives every customer its code."""
    body: dict[str, Any] = {
        "handover_userid": pair[0],
        "takeover_userid": pair[1],
        "external_userid": externals,
    }
    if message:
        body["transfer_success_msg"] = message
    try:
        result = wechat.wecom(settings).call("post", APIS[kind][0], data=body)
    except wechat.PlatformError as exc:
        if exc.errcode is None or exc.transient:
            raise TransferUnavailable(str(exc)) from None
        return {e: exc.errcode for e in externals}
    return {c.get("external_userid"): int(c.get("errcode", -1)) for c in result.get("customer", [])}


def request(
    settings: Settings,
    kind: str,
    handover: str,
    takeover: str,
    customers: list[tuple[int, str]],
    message: str | None = None,
) -> dict[str, Any]:
    """Ask WeCom to move ``customers`` (contact id, external_userid) from ``handover`` to
    ``takeover``, in calls of at most 100; TransferUnavailable."""
    with session_scope(settings.database_url) as session:
        busy = _waiting(session, [e for _, e in customers])
    todo = [(c, e) for c, e in customers if e not in busy]
    rows: list[dict[str, Any]] = []
    for start in range(0, len(todo), PER_CALL):
        chunk = todo[start : start + PER_CALL]
        codes = _call(settings, kind, (handover, takeover), [e for _, e in chunk], message)
        rows += _record(settings, kind, (handover, takeover), chunk, codes)
    return {
        "kind": kind,
        "handover_userid": handover,
        "takeover_userid": takeover,
        "waiting": [r for r in rows if r["status"] == "waiting"],
        "failed": [r for r in rows if r["status"] == "failed"],
        "skipped": sorted(c for c, e in customers if e in busy),
    }


def transfer_customers(
    settings: Settings,
    handover: str,
    takeover: str,
    contact_ids: list[int] | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    """在职转接: hand ``handover``'s WeCom customers (those among ``contact_ids``, else all) to
    ``takeover``. TransferError, TransferUnavailable. ``not_customers``: the contact ids asked
    for that are not ``handover``'s WeCom customers."""
    with session_scope(settings.database_url) as session:
        heir = session.get(Rep, takeover)
        if heir is None or not heir.active or takeover == handover:
            raise TransferError(f"{takeover} is not another active rep who can take over")
        customers = customers_of(session, handover, contact_ids)
    summary = request(settings, "in_service", handover, takeover, customers, message)
    known = {c for c, _ in customers}
    summary["not_customers"] = sorted(set(contact_ids or []) - known)
    return summary


def resigned_customers(
    settings: Settings, handover: str, heirs: dict[int, str]
) -> list[dict[str, Any]]:
    """离职继承: each of the departed rep's WeCom customers in ``heirs`` (contact id → the rep
    who takes them) goes to that rep; one summary per heir."""
    with session_scope(settings.database_url) as session:
        customers = customers_of(session, handover, list(heirs))
    by_heir: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for contact_id, external in customers:
        by_heir[heirs[contact_id]].append((contact_id, external))
    return [
        request(settings, "resigned", handover, heir, group)
        for heir, group in sorted(by_heir.items())
    ]


# --- results ---------------------------------------------------------------------------------------


def _finish(session: Session, row: CustomerTransfer, status: str, when: datetime) -> None:
    row.status, row.finished_at = status, when
    session.add(row)
    if status == "completed" and row.contact_id is not None:
        c = Contact.__table__.c
        session.execute(
            sa.update(Contact.__table__)
            .where(
                c.id == row.contact_id,
                sa.or_(c.owner_userid == row.handover_userid, c.owner_userid.is_(None)),
            )
            .values(owner_userid=row.takeover_userid)
        )


def on_event(ctx: Context) -> None:
    """Pipeline step: the platform's word on a waiting transfer (transfer_fail, or the
    takeover rep's new external contact)."""
    ev = ctx.event
    if ev.type == "wecom.transfer_failed":
        status = FAIL_REASONS.get(str(ev.properties.get("fail_reason")), "refused")
    elif ev.type == "wecom.contact_added":
        status = "completed"
    else:
        return
    t = CustomerTransfer.__table__.c
    rows = ctx.session.execute(
        sa.select(CustomerTransfer).where(
            t.contact_id == ev.contact_id,
            t.takeover_userid == str(ev.properties.get("userid") or ""),
            t.status == "waiting",
        )
    ).scalars()
    for row in rows:
        _finish(ctx.session, row, status, ev.occurred_at)


def _results(settings: Settings, kind: str, pair: tuple[str, str]) -> list[dict[str, Any]]:
    found, cursor = [], ""
    for _ in range(MAX_PAGES):
        body = {"handover_userid": pair[0], "takeover_userid": pair[1], "cursor": cursor}
        page = wechat.wecom(settings).call("post", APIS[kind][1], data=body)
        found += page.get("customer", [])
        cursor = page.get("next_cursor") or ""
        if not cursor:
            break
    return found


def sync_results(settings: Settings, now: datetime | None = None) -> int:
    """Ask ``transfer_result`` about waiting transfers whose 24 hours have passed (the
    sweeper); how many changed."""
    now = now or utcnow()
    t = CustomerTransfer.__table__.c
    with session_scope(settings.database_url) as session:
        pairs = session.execute(
            sa.select(t.kind, t.handover_userid, t.takeover_userid)
            .where(t.status == "waiting", t.takeover_at <= now)
            .distinct()
        ).all()
    changed = 0
    for kind, handover, takeover in pairs:
        try:
            answers = _results(settings, kind, (handover, takeover))
        except wechat.PlatformError as exc:
            log.warning("transfer_result %s→%s: %s", handover, takeover, exc)
            continue
        changed += _apply_results(settings, kind, (handover, takeover), answers)
    return changed


def _apply_results(
    settings: Settings, kind: str, pair: tuple[str, str], answers: list[dict]
) -> int:
    latest = {a.get("external_userid"): a for a in answers}
    t = CustomerTransfer.__table__.c
    changed = 0
    with session_scope(settings.database_url) as session:
        rows = session.execute(
            sa.select(CustomerTransfer).where(
                t.kind == kind,
                t.handover_userid == pair[0],
                t.takeover_userid == pair[1],
                t.status == "waiting",
            )
        ).scalars()
        for row in rows:
            answer = latest.get(row.external_userid)
            if answer is None:
                continue
            status = RESULT_STATUS.get(int(answer.get("status", 0)), "waiting")
            when = datetime.fromtimestamp(int(answer.get("takeover_time") or 0), UTC)
            if status == "waiting":
                row.takeover_at = max(when, utcnow() + timedelta(minutes=5))
                session.add(row)
                continue
            _finish(session, row, status, when if status == "completed" else utcnow())
            changed += 1
    return changed
