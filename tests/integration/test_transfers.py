"""Customer transfers through the simulator: 在职转接 from POST /api/reps/<userid>/transfer and
离职继承 when a rep leaves, with the platform's rules (100 per call, twice in 90 days, the
customer's 24 hours to refuse, the takeover rep's limit) and each customer's outcome."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from support import run_worker
from test_handoff import reps

from bot.core import db, wechat
from bot.core.models import Contact, CustomerTransfer, FollowUser, Identity, Rep, utcnow
from bot.sales import transfers
from wxsim.entities import ExternalContact
from wxsim.entities import FollowUser as SimFollow

DAY = 86400


def customers(sim, settings, userid: str, *externals: str) -> dict[str, int]:
    """The rep's WeCom customers, added through callbacks; external_userid -> contact id."""
    for ext in externals:
        sim.add_external_contact(userid, ext, name=f"客户{ext}")
    run_worker(settings)
    with db.session_scope(settings.database_url) as s:
        rows = s.execute(
            sa.select(Identity.value, Identity.contact_id).where(Identity.value.in_(externals))
        ).all()
        for _, cid in rows:
            s.execute(
                sa.update(Contact.__table__)
                .where(Contact.__table__.c.id == cid)
                .values(owner_userid=userid)
            )
    return dict(rows)


def rows(settings) -> dict[str, tuple[str, str, int | None]]:
    with db.session_scope(settings.database_url) as s:
        found = s.execute(sa.select(CustomerTransfer).order_by(CustomerTransfer.id)).scalars()
        return {t.external_userid: (t.takeover_userid, t.status, t.errcode) for t in found}


def follows(settings, cid: int) -> dict[str, str]:
    with db.session_scope(settings.database_url) as s:
        found = s.execute(sa.select(FollowUser).where(FollowUser.contact_id == cid)).scalars()
        return {f.userid: f.status for f in found}


def owner(settings, cid: int) -> str | None:
    with db.session_scope(settings.database_url) as s:
        return s.get(Contact, cid).owner_userid


def test_in_service_transfer_waits_24_hours_and_the_customer_may_refuse(
    sim, sim_settings, env_to_sim, sim_client, auth
):
    reps(sim, sim_settings, ("wang", "王"), ("li", "李"))
    ids = customers(sim, sim_settings, "wang", "wmA", "wmB", "wmC")
    resp = sim_client.post(
        "/api/reps/wang/transfer",
        json={"to": "li", "message": "您好，后续由同事李经理为您服务"},
        headers=auth,
    )
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert sorted(r["external_userid"] for r in body["waiting"]) == ["wmA", "wmB", "wmC"]
    assert body["failed"] == [] and body["not_customers"] == []
    again = sim_client.post("/api/reps/wang/transfer", json={"to": "li"}, headers=auth).get_json()
    assert again["waiting"] == [] and again["skipped"] == sorted(ids.values())
    assert len(sim.calls("wecom", "/externalcontact/transfer_customer")) == 1

    sim.customer_refuses_transfer("wmA")
    run_worker(sim_settings)
    assert rows(sim_settings)["wmA"] == ("li", "refused", 0)

    sim.advance(DAY + 1)
    sim.settle_transfers()  # the platform takes over: callbacks to Yuchi
    run_worker(sim_settings)
    got = rows(sim_settings)
    assert (got["wmB"][1], got["wmC"][1]) == ("completed", "completed")
    assert follows(sim_settings, ids["wmB"]) == {"wang": "rep_deleted", "li": "active"}
    assert owner(sim_settings, ids["wmB"]) == "li" and owner(sim_settings, ids["wmA"]) == "wang"
    listed = sim_client.get("/api/reps/li/transfers", headers=auth).get_json()["transfers"]
    assert sorted(t["status"] for t in listed) == ["completed", "completed", "refused"]

    for bad, status in [
        ({"to": "wang"}, 409),
        ({"to": "nobody"}, 409),
        ({"to": "li", "contact_ids": []}, 422),
        ({"to": "li", "message": "长" * 201}, 422),
        ({}, 422),
    ]:
        assert (
            sim_client.post("/api/reps/wang/transfer", json=bad, headers=auth).status_code == status
        ), bad
    assert (
        sim_client.post("/api/reps/ghost/transfer", json={"to": "li"}, headers=auth).status_code
        == 404
    )
    picked = sim_client.post(
        "/api/reps/li/transfer", json={"to": "wang", "contact_ids": [ids["wmA"], 999]}, headers=auth
    ).get_json()
    assert picked["not_customers"] == sorted([ids["wmA"], 999]) and picked["waiting"] == []


def test_a_customer_is_transferred_at_most_twice_in_90_days(
    sim, sim_settings, env_to_sim, sim_client, auth
):
    reps(sim, sim_settings, ("r1", "一"), ("r2", "二"), ("r3", "三"))
    [cid] = customers(sim, sim_settings, "r1", "wmHop").values()
    for giver, taker in (("r1", "r2"), ("r2", "r3")):
        body = sim_client.post(
            f"/api/reps/{giver}/transfer", json={"to": taker}, headers=auth
        ).get_json()
        assert len(body["waiting"]) == 1, body
        sim.advance(DAY + 1)
        sim.settle_transfers()
        run_worker(sim_settings)
        assert owner(sim_settings, cid) == taker
    third = sim_client.post("/api/reps/r3/transfer", json={"to": "r1"}, headers=auth).get_json()
    assert [(f["external_userid"], f["errcode"], f["status"]) for f in third["failed"]] == [
        ("wmHop", 40128, "failed")
    ]
    sim.advance(90 * DAY)
    later = sim_client.post("/api/reps/r3/transfer", json={"to": "r1"}, headers=auth).get_json()
    assert len(later["waiting"]) == 1


def test_the_simulator_enforces_the_platform_rules(sim, sim_settings, env_to_sim):
    for userid, status in (("h", 1), ("t", 1), ("gone", 5)):
        sim.add_rep(userid, status=status)
    with sim.state.lock:
        for ext, who in (("wm1", "h"), ("wm2", "h"), ("wmOther", "t"), ("wmLeft", "gone")):
            sim.state.contacts[ext] = ExternalContact(ext, follow={who: SimFollow(who, 0)})
    api = wechat.wecom(sim_settings)

    def call(path: str, **body):
        try:
            return api.call("post", path, data=body)
        except wechat.PlatformError as exc:
            return exc.errcode

    move = "externalcontact/transfer_customer"
    assert call(move, handover_userid="h", takeover_userid="t", external_userid=[]) == 41035
    assert call(move, handover_userid="h", takeover_userid="h", external_userid=["wm1"]) == 40130
    assert call(move, handover_userid="h", takeover_userid="x", external_userid=["wm1"]) == 40003
    too_many = [f"wm{i}" for i in range(101)]
    assert call(move, handover_userid="h", takeover_userid="t", external_userid=too_many) == 40058
    first = call(
        move, handover_userid="h", takeover_userid="t", external_userid=["wm1", "wmNo", "wmOther"]
    )
    assert [c["errcode"] for c in first["customer"]] == [0, 40096, 40131]
    again = call(move, handover_userid="h", takeover_userid="t", external_userid=["wm1"])
    assert again["customer"][0]["errcode"] == 40129  # already on its way
    resigned = "externalcontact/resigned/transfer_customer"
    assert (
        call(resigned, handover_userid="h", takeover_userid="t", external_userid=["wm2"]) == 40097
    )
    left = call(resigned, handover_userid="gone", takeover_userid="t", external_userid=["wmLeft"])
    assert left["customer"][0]["errcode"] == 0

    result = call("externalcontact/transfer_result", handover_userid="h", takeover_userid="t")
    assert [(c["external_userid"], c["status"]) for c in result["customer"]] == [("wm1", 2)]
    sim.advance(DAY + 1)
    result = call(
        "externalcontact/resigned/transfer_result", handover_userid="gone", takeover_userid="t"
    )
    assert [(c["external_userid"], c["status"]) for c in result["customer"]] == [("wmLeft", 1)]
    with sim.state.lock:
        assert set(sim.state.contacts["wmLeft"].follow) == {"t"}


def test_more_than_100_customers_go_in_calls_of_100(
    sim, sim_settings, env_to_sim, sim_client, auth
):
    reps(sim, sim_settings, ("big", "大"), ("heir", "继"))
    now = utcnow()
    with db.session_scope(sim_settings.database_url) as s, sim.state.lock:
        for i in range(150):
            ext = f"wmMany{i:03d}"
            c = Contact(first_seen_at=now, last_seen_at=now, owner_userid="big")
            s.add(c)
            s.flush()
            s.add(FollowUser(contact_id=c.id, userid="big", external_userid=ext))
            sim.state.contacts[ext] = ExternalContact(ext, follow={"big": SimFollow("big", 0)})
    body = sim_client.post("/api/reps/big/transfer", json={"to": "heir"}, headers=auth).get_json()
    assert len(body["waiting"]) == 150
    assert len(sim.calls("wecom", "/externalcontact/transfer_customer")) == 2


def test_a_departure_hands_customers_on_in_wecom_and_records_each_result(
    sim, sim_settings, env_to_sim, sim_client, auth
):
    reps(sim, sim_settings, ("leaver", "走"), ("heir", "接"))
    ids = customers(sim, sim_settings, "leaver", "wmL1", "wmL2")
    sim.add_rep("leaver", status=5)  # deleted from the WeCom directory
    resp = sim_client.post("/api/reps/leaver/leave", json={"to": "heir"}, headers=auth)
    assert resp.status_code == 200, resp.get_json()
    [summary] = resp.get_json()["transfers"]
    assert (summary["kind"], len(summary["waiting"])) == ("resigned", 2)
    assert {owner(sim_settings, c) for c in ids.values()} == {"heir"}

    sim.advance(DAY + 1)
    assert transfers.sync_results(sim_settings) == 0  # not due by our clock yet
    assert transfers.sync_results(sim_settings, now=utcnow() + timedelta(hours=25)) == 2
    assert {v[1] for v in rows(sim_settings).values()} == {"completed"}


def test_a_departure_refused_by_the_platform_and_a_takeover_over_its_limit(
    sim, sim_settings, env_to_sim, sim_client, auth
):
    reps(sim, sim_settings, ("stays", "留"), ("full", "满"), ("other", "他"))
    customers(sim, sim_settings, "stays", "wmS1")
    customers(sim, sim_settings, "full", "wmF1")
    body = sim_client.post("/api/reps/stays/leave", json={"to": "other"}, headers=auth).get_json()
    # Yuchi marked them gone, but WeCom still has them employed: 40097 for each customer
    assert [(f["external_userid"], f["errcode"]) for f in body["transfers"][0]["failed"]] == [
        ("wmS1", 40097)
    ]

    sim.configure(customer_limit=1)
    with db.session_scope(sim_settings.database_url) as s:
        s.execute(
            sa.update(Rep.__table__).where(Rep.__table__.c.userid == "stays").values(active=True)
        )
    got = sim_client.post("/api/reps/stays/transfer", json={"to": "full"}, headers=auth)
    assert got.status_code == 200 and len(got.get_json()["waiting"]) == 1, got.get_json()
    sim.advance(DAY + 1)
    sim.settle_transfers()
    run_worker(sim_settings)
    assert rows(sim_settings)["wmS1"] == ("full", "limit_exceeded", 0)


@pytest.fixture(autouse=True)
def _no_stray_transfer_threads(sim):
    yield
    sim.reset()  # background result callbacks of this test are dropped (generation)
