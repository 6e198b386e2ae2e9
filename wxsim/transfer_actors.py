"""The people's side of customer transfers (see wxsim/transfer_api.py): a customer refuses
within their 24 hours, and the platform settles the transfers that have come due, telling
Yuchi through ``change_external_contact`` callbacks."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from wxsim.entities import FollowUser, Transfer

Callback = tuple[str, str, str, dict[str, Any]]  # change type, userid, external_userid, extra


class TransferActors:
    """Mixed into wxsim.actors.Actors (which provides state, config, _change, _now)."""

    state: Any
    config: Any
    _change: Callable[..., Any]

    def customer_refuses_transfer(self, external_userid: str) -> Any:
        """The customer refuses the rep they are being transferred to (within 24 hours):
        ``transfer_fail`` with ``FailReason=customer_refused`` (UserID: the takeover rep)."""
        from wxsim.actors import ActorError

        with self.state.lock:
            self.settle_due(self.state.now())
            waiting = [
                t
                for t in self.state.transfers
                if t.external_userid == external_userid and t.status == 2
            ]
            if not waiting:
                raise ActorError(f"no transfer of {external_userid} is waiting")
            waiting[0].status = 3
            takeover = waiting[0].takeover
        return self._change(
            "transfer_fail", takeover, external_userid, FailReason="customer_refused"
        )

    def settle_due(self, now: float) -> list[Callback]:
        """Complete (or fail, over the takeover rep's limit) every waiting transfer whose
        24 hours have passed; the callbacks to send (state lock held by the caller)."""
        out: list[Callback] = []
        for t in self.state.transfers:
            if t.status == 2 and t.takeover_time <= now:
                out += self._settle(t, now)
        return out

    def _settle(self, t: Transfer, now: float) -> list[Callback]:
        st = self.state
        contact = st.contacts.get(t.external_userid)
        if contact is None or t.handover not in contact.follow:
            t.status = 3  # the customer deleted the rep meanwhile [unverified: the status then]
            return []
        held = sum(1 for c in st.contacts.values() if t.takeover in c.follow)
        if held >= self.config.customer_limit:
            t.status = 4
            return [
                (
                    "transfer_fail",
                    t.takeover,
                    t.external_userid,
                    {"FailReason": "customer_limit_exceed"},
                )
            ]
        t.status, t.takeover_time = 1, now
        old = contact.follow.pop(t.handover)
        out: list[Callback] = []
        if t.takeover not in contact.follow:
            contact.follow[t.takeover] = FollowUser(
                userid=t.takeover,
                createtime=int(now),
                remark=old.remark,
                description=old.description,
                tag_ids=list(old.tag_ids),
            )
            out.append(("add_external_contact", t.takeover, t.external_userid, {}))
        if t.kind == "in_service":
            extra = {"Source": "DELETE_BY_TRANSFER"}
            out.append(("del_external_contact", t.handover, t.external_userid, extra))
        return out

    def settle_transfers(self, in_background: bool = False) -> list[Any]:
        """Settle what has come due and send the callbacks (from a background thread when
        asked from inside an API call); the callbacks' results (none when in background)."""
        with self.state.lock:
            callbacks = self.settle_due(self.state.now())
            generation = self.state.generation
        if not callbacks or not self.config.callback_base:
            return []

        def send() -> list[Any]:
            if self.state.generation != generation:
                return []
            return [self._change(change, u, e, **extra) for change, u, e, extra in callbacks]

        if in_background:
            threading.Thread(target=send, name="wxsim-transfers", daemon=True).start()
            return []
        return send()
