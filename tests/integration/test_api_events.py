"""POST /api/events: an outside system's event for a known contact, named by each kind of
identity or our id, through the same pipeline (tags, scores, journeys); idempotency keys;
422s naming the field; 404 for an unknown contact, 409 for a key reused."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from support import run_worker

from bot.contacts import identity
from bot.core import db
from bot.core.models import Contact, ContactTag, Enrollment, Event, Identity


def contact_of(settings, openid: str) -> int:
    with db.session_scope(settings.database_url) as s:
        return s.execute(
            sa.select(Identity.contact_id).where(Identity.value == openid)
        ).scalar_one()


def events(settings, type_: str) -> list[Event]:
    with db.session_scope(settings.database_url) as s:
        rows = list(s.execute(sa.select(Event).where(Event.type == type_)).scalars())
        s.expunge_all()
        return rows


@pytest.fixture
def person(sim, sim_settings, env_to_sim):
    """A follower with every kind of identity: openid (from the follow), unionid,
    external_userid and phone."""
    assert sim.follow("oShop").status == 200
    run_worker(sim_settings)
    cid = contact_of(sim_settings, "oShop")
    with db.session_scope(sim_settings.database_url) as s:
        identity.attach(s, cid, "unionid", "uShop")
        identity.attach(s, cid, "external_userid", "wmShop", sim_settings.wecom_corp_id)
        identity.attach(s, cid, "phone", "13800138000")
    return cid


def post(client, auth, **body):
    base = {"type": "api.order_paid", "idempotency_key": "k1", "properties": {"amount": 199}}
    return client.post("/api/events", json={**base, **body}, headers=auth)


@pytest.mark.parametrize(
    "ref",
    [
        {"openid": "oShop"},
        {"unionid": "uShop"},
        {"external_userid": "wmShop"},
        {"phone": "138-0013-8000"},
        {"id": None},  # our id (filled in)
    ],
)
def test_each_identity_kind_finds_the_contact(sim_client, auth, person, sim_settings, ref):
    if "id" in ref:
        ref = {"id": person}
    resp = post(sim_client, auth, contact=ref)
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["contact_id"] == person and body["duplicate"] is False
    [ev] = events(sim_settings, "api.order_paid")
    assert (ev.id, ev.contact_id, ev.source) == (body["event_id"], person, "api")
    assert ev.properties == {"amount": 199}


def test_a_retry_returns_the_same_event_and_changes_nothing(sim_client, auth, person, sim_settings):
    first = post(sim_client, auth, contact={"openid": "oShop"})
    assert first.status_code == 201
    run_worker(sim_settings)
    with db.session_scope(sim_settings.database_url) as s:
        seen = s.get(Contact, person).last_seen_at
    again = post(sim_client, auth, contact={"phone": "13800138000"})  # same person, other name
    assert again.status_code == 200
    assert again.get_json() == {**first.get_json(), "duplicate": True}
    assert len(events(sim_settings, "api.order_paid")) == 1
    with db.session_scope(sim_settings.database_url) as s:
        assert s.get(Contact, person).last_seen_at == seen

    other = post(sim_client, auth, contact={"openid": "oShop"}, properties={"amount": 1})
    assert other.status_code == 409 and "idempotency_key" in other.get_json()["fields"]
    other = post(sim_client, auth, contact={"openid": "oShop"}, type="api.refund")
    assert other.status_code == 409
    assert len(events(sim_settings, "api.order_paid")) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "oa.subscribe"}, "type"),
        ({"type": "api."}, "type"),
        ({"type": "api.Order"}, "type"),
        ({"contact": {}}, "contact"),
        ({"contact": {"openid": "oShop", "phone": "13800138000"}}, "contact"),
        ({"contact": {"email": "a@b.c"}}, "contact.email"),
        ({"contact": {"phone": "call me"}}, "contact.phone"),
        ({"contact": {"id": "1"}}, "contact.id"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"idempotency_key": "a b"}, "idempotency_key"),
        ({"properties": [1]}, "properties"),
        ({"properties": {"x": "长" * 6000}}, "properties"),
        ({"occurred_at": "2026-12-01T08:00:00"}, "occurred_at"),
        ({"occurred_at": "2999-01-01T00:00:00+08:00"}, "occurred_at"),
        ({"extra": 1}, "extra"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(sim_client, auth, person, sim_settings, body, field):
    full = {"contact": {"openid": "oShop"}, **body}
    resp = post(sim_client, auth, **full)
    assert resp.status_code == 422, resp.get_json()
    assert any(k == field or k.startswith(field + ".") for k in resp.get_json()["fields"]), (
        resp.get_json()
    )
    assert events(sim_settings, "api.order_paid") == []


def test_missing_fields_and_unknown_contacts(sim_client, auth, person, sim_settings):
    resp = sim_client.post("/api/events", json={"type": "api.x"}, headers=auth)
    assert resp.status_code == 422
    assert {"contact", "idempotency_key"} <= set(resp.get_json()["fields"])
    for ref in ({"openid": "oNobody"}, {"phone": "13900000000"}, {"id": person + 1000}):
        resp = post(sim_client, auth, contact=ref)
        assert resp.status_code == 404 and "contact" in resp.get_json()["fields"]
    assert sim_client.post("/api/events", json={}).status_code == 401
    with db.session_scope(sim_settings.database_url) as s:
        assert s.execute(sa.select(sa.func.count()).select_from(Contact)).scalar() == 1


def test_an_api_event_goes_through_tags_scores_and_journeys(sim_client, auth, person, sim_settings):
    client = sim_client
    resp = client.post(
        "/api/tag-rules",
        json={"name": "付款", "event_type": "api.order_paid", "add_tags": ["已付款"]},
        headers=auth,
    )
    assert resp.status_code == 201, resp.get_json()
    rules = {
        "note": "orders",
        "events": [{"id": "paid", "event": "api.order_paid", "points": 30}],
        "decay": {"half_life_days": 14},
        "stages": {"lead": 20, "mql": 40, "sql": 80},
    }
    assert client.post("/api/scoring/rulesets", json=rules, headers=auth).status_code == 201
    definition = {
        "id": "paid",
        "name": "paid",
        "steps": [
            {"id": "start", "type": "trigger", "event": "api.order_paid", "next": "s"},
            {"id": "s", "type": "action", "do": "add_tag", "tag": "买家旅程"},
        ],
    }
    resp = client.post(
        "/api/journeys", json={"name": "paid", "definition": definition}, headers=auth
    )
    assert resp.status_code == 201, resp.get_json()
    jid = resp.get_json()["id"]
    assert client.post(f"/api/journeys/{jid}/publish", headers=auth).status_code == 200
    run_worker(sim_settings)

    assert post(client, auth, contact={"unionid": "uShop"}).status_code == 201
    run_worker(sim_settings)
    with db.session_scope(sim_settings.database_url) as s:
        tags = set(
            s.execute(sa.select(ContactTag.tag).where(ContactTag.contact_id == person)).scalars()
        )
        contact = s.get(Contact, person)
        enrolled = s.execute(
            sa.select(sa.func.count())
            .select_from(Enrollment)
            .where(Enrollment.contact_id == person)
        ).scalar()
        assert contact.score >= 30 and contact.stage == "lead"
    assert {"已付款", "买家旅程"} <= tags
    assert enrolled == 1


def test_a_merged_contact_id_reaches_the_survivor(sim, sim_client, auth, person, sim_settings):
    assert sim.follow("oOther").status == 200
    run_worker(sim_settings)
    other = contact_of(sim_settings, "oOther")
    with db.session_scope(sim_settings.database_url) as s:
        survivor, _ = identity.merge(s, person, other, reason="test")
    assert survivor == person
    resp = post(sim_client, auth, contact={"id": other})  # the merged one's old id
    assert resp.status_code == 201 and resp.get_json()["contact_id"] == person
    [ev] = events(sim_settings, "api.order_paid")
    assert ev.contact_id == person
