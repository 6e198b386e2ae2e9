"""WeCom customer transfers (客户继承): 在职转接 ``externalcontact/transfer_customer`` and
离职继承 ``externalcontact/resigned/transfer_customer``, with their ``transfer_result``.

The platform's rules, as the official pages state them: at most 100 customers per call; each
customer must be the handover rep's; in-service transfers need both reps employed, resigned
ones a handover rep who has left (40097); a customer of an employed rep can be transferred at
most twice in 90 days (40128); one already on its way answers 40129; the same rep on both sides
40130. A started transfer (errcode 0 for that customer) waits 24 hours, during which the
customer may refuse (``transfer_fail`` with ``customer_refused``); then the takeover happens,
unless the takeover rep has reached the customer limit (``customer_limit_exceed``, status 4).
The simulator settles due transfers when asked for a result, or through the actor
``settle_transfers`` (which also sends the callbacks).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from wxsim.common import api, body, ok, sim, state
from wxsim.entities import Transfer
from wxsim.errors import ApiError

bp = Blueprint("wxsim_transfer", __name__)

MAX_PER_CALL = 100
RULE_90_DAYS = 90 * 86400
MAX_IN_90_DAYS = 2
PAGE = 1000


def _userid(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise ApiError(41009, key)
    return value


def _customers(data: dict[str, Any]) -> list[str]:
    value = data.get("external_userid")
    if not value:
        raise ApiError(41035)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(40058, "external_userid must be a list of strings")
    if len(value) > MAX_PER_CALL:  # [unverified] the code answered past 100
        raise ApiError(40058, f"at most {MAX_PER_CALL} external_userid per call")
    return value


def _check_reps(handover: str, takeover: str, kind: str) -> None:
    st = state()
    if handover == takeover:
        raise ApiError(40130)
    giver, taker = st.rep(handover), st.rep(takeover)
    if giver is None:
        raise ApiError(40003, handover)
    if taker is None or taker.status != 1:
        raise ApiError(40003, takeover)
    if kind == "resigned" and giver.status != 5:
        raise ApiError(40097, handover)
    if kind == "in_service" and giver.status != 1:
        raise ApiError(40003, handover)


def _one(external_userid: str, handover: str, kind: str, now: float) -> int:
    """This customer's errcode in a transfer call (state lock held)."""
    st = state()
    contact = st.contacts.get(external_userid)
    if contact is None:
        return 40096
    if handover not in contact.follow:
        return 40131
    mine = [t for t in st.transfers if t.external_userid == external_userid]
    if any(t.status == 2 for t in mine):
        return 40129
    recent = [
        t
        for t in mine
        if t.kind == "in_service" and t.status in (1, 2) and now - t.requested_at < RULE_90_DAYS
    ]
    if kind == "in_service" and len(recent) >= MAX_IN_90_DAYS:
        return 40128
    return 0


def _transfer(kind: str) -> dict[str, Any]:
    data = body()
    handover, takeover = _userid(data, "handover_userid"), _userid(data, "takeover_userid")
    customers = _customers(data)
    message = data.get("transfer_success_msg") or ""
    if kind == "in_service" and (not isinstance(message, str) or len(message) > 200):
        raise ApiError(40058, "transfer_success_msg: at most 200 characters")
    st = state()
    with st.lock:
        _check_reps(handover, takeover, kind)
        now, wait = st.now(), sim().config.transfer_wait
        results = []
        for external_userid in customers:
            code = _one(external_userid, handover, kind, now)
            if code == 0:
                st.transfers.append(
                    Transfer(external_userid, handover, takeover, kind, now, now + wait, 2, message)
                )
            results.append({"external_userid": external_userid, "errcode": code})
    return ok(customer=results)


@bp.route("/cgi-bin/externalcontact/transfer_customer", methods=["POST"])
@api("wecom", post=True)
def transfer_customer() -> dict[str, Any]:
    return _transfer("in_service")


@bp.route("/cgi-bin/externalcontact/resigned/transfer_customer", methods=["POST"])
@api("wecom", post=True)
def resigned_transfer_customer() -> dict[str, Any]:
    return _transfer("resigned")


def _result(kind: str) -> dict[str, Any]:
    data = body()
    handover, takeover = _userid(data, "handover_userid"), _userid(data, "takeover_userid")
    cursor = data.get("cursor") or "0"
    if not isinstance(cursor, str) or not cursor.isdigit():
        raise ApiError(40058, "cursor")
    sim().actors.settle_transfers(in_background=True)
    st = state()
    with st.lock:
        mine = [
            t
            for t in st.transfers
            if (t.kind, t.handover, t.takeover) == (kind, handover, takeover)
        ]
    start = int(cursor)
    page = mine[start : start + PAGE]
    out = ok(
        customer=[
            {
                "external_userid": t.external_userid,
                "status": t.status,
                "takeover_time": int(t.takeover_time) if t.status in (1, 2) else 0,
            }
            for t in page
        ]
    )
    out["next_cursor"] = str(start + PAGE) if start + PAGE < len(mine) else ""
    return out


@bp.route("/cgi-bin/externalcontact/transfer_result", methods=["POST"])
@api("wecom", post=True)
def transfer_result() -> dict[str, Any]:
    return _result("in_service")


@bp.route("/cgi-bin/externalcontact/resigned/transfer_result", methods=["POST"])
@api("wecom", post=True)
def resigned_transfer_result() -> dict[str, Any]:
    return _result("resigned")
