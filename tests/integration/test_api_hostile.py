"""Hostile API input, case by case (the corpus of issue 11, section 4): each is a 4xx that
stores nothing, and a broadcast whose fan-out fails ends ``failed`` instead of being re-run
for ever. tests/integration/test_api_fuzz.py throws generated input at every route."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from support import event, post, row_counts

from bot.core import db
from bot.core.input_guard import MAX_ID
from bot.core.models import Broadcast
from bot.messaging import broadcasts

BIG = 2**63
TEXT = {"kind": "text", "payload": {"content": "hi"}}


@pytest.fixture
def contact_id(client, oa, auth) -> int:
    post(client, oa, event(oa, "oHostile", "subscribe"))
    return client.get("/api/contacts?openid=oHostile", headers=auth).get_json()["contacts"][0]["id"]


def refused(client, clean, method: str, url: str, auth, **kw) -> dict:
    """Send the request; it must be a 4xx with a JSON reason, and no table may gain a row."""
    before = row_counts(clean)
    resp = client.open(url, method=method, headers=auth, **kw)
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.get_data(as_text=True))
    body = resp.get_json()
    assert body and body.get("error"), resp.get_data(as_text=True)
    assert row_counts(clean) == before
    return body


def id_routes(app) -> list[tuple[str, str, list[str]]]:
    out = []
    for rule in app.url_map.iter_rules():
        ids = [
            a for a, conv in rule._converters.items() if conv.__class__.__name__ == "IdConverter"
        ]
        if rule.rule.startswith("/api/") and ids:
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                out.append((method, rule.rule, ids))
    return out


def fill(rule: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        rule = rule.replace(f"<id:{name}>", value)
    return rule.replace("<userid>", "u1").replace("<action>", "publish").replace("<path:tag>", "t")


@pytest.mark.parametrize(
    "raw", [str(BIG), str(BIG * 10**5), str(MAX_ID + 1), "0", "-1", "1e3", "%EF%BC%91"]
)
def test_ids_out_of_range_in_every_route(app, client, clean, auth, raw):
    routes = id_routes(app)
    assert len(routes) >= 20  # every <id:…> route of the API
    for method, rule, ids in routes:
        url = fill(rule, dict.fromkeys(ids, raw))
        refused(client, clean, method, url, auth, json={})


@pytest.mark.parametrize(
    "before", [str(BIG), str(2**64), str(MAX_ID + 1), "-1", "0", "１２", "1_0", " 5", "+5"]
)
def test_before_out_of_range(client, clean, auth, contact_id, before):
    for url in (
        "/api/contacts",
        f"/api/contacts/{contact_id}/events",
        f"/api/contacts/{contact_id}/messages",
    ):
        body = refused(client, clean, "GET", f"{url}?before={before}", auth)
        assert body["fields"] == {"before": f"a whole number from 1 to {MAX_ID}"}
    ok = client.get(f"/api/contacts?before={MAX_ID}", headers=auth)
    assert ok.status_code == 200


@pytest.mark.parametrize("ids", [[BIG], [MAX_ID + 1], [0], [-1], ["1"], [True], [1.0], "1", [[1]]])
def test_broadcast_contact_ids_strict(client, clean, auth, contact_id, ids):
    body = refused(
        client,
        clean,
        "POST",
        "/api/broadcasts",
        auth,
        json={"name": "b", **TEXT, "contact_ids": ids},
    )
    assert "contact_ids" in " ".join(body["fields"])


@pytest.mark.parametrize("value", ["1", True, 1.5, BIG, MAX_ID + 1, 0])
def test_message_contact_id_strict(client, clean, auth, contact_id, value):
    body = refused(client, clean, "POST", "/api/messages", auth, json={**TEXT, "contact_id": value})
    assert "contact_id" in body["fields"]


def test_broadcast_names_unknown_contacts(client, clean, auth, contact_id):
    body = refused(
        client,
        clean,
        "POST",
        "/api/broadcasts",
        auth,
        json={"name": "b", **TEXT, "contact_ids": [contact_id, 424242, 434343]},
    )
    assert body["fields"] == {"contact_ids": "2 unknown contact(s): 424242, 434343"}
    ok = client.post(
        "/api/broadcasts", headers=auth, json={"name": "b", **TEXT, "contact_ids": [contact_id]}
    )
    assert ok.status_code == 202


NUL = "a\x00b"


@pytest.mark.parametrize(
    "method,url,body",
    [
        ("POST", "/api/contacts/{cid}/tags", {"tag": NUL}),
        ("POST", "/api/replies", {"name": NUL, "keywords": ["价格"], "reply": "A"}),
        ("POST", "/api/replies", {"name": "r", "keywords": [NUL], "reply": "A"}),
        ("POST", "/api/replies", {"name": "r", "keywords": ["价格"], "reply": NUL}),
        ("PUT", "/api/interest-words", {"words": {NUL: "意向"}}),
        ("PUT", "/api/interest-words", {"words": {"价格": NUL}}),
        ("POST", "/api/tag-rules", {"name": "t", "event_type": "*", "add_tags": [NUL]}),
        (
            "POST",
            "/api/messages",
            {"kind": "text", "payload": {"content": NUL}, "contact_id": "{cid}"},
        ),
        (
            "POST",
            "/api/messages",
            {"kind": "text", "payload": {"content": "a\ud800"}, "contact_id": "{cid}"},
        ),
        ("POST", "/api/journeys", {"name": NUL, "definition": {"id": "x", "steps": []}}),
    ],
)
def test_nul_in_bodies(client, clean, auth, contact_id, method, url, body):
    text = json.dumps(body).replace('"{cid}"', str(contact_id))
    refused(
        client,
        clean,
        method,
        url.format(cid=contact_id),
        auth,
        data=text,
        content_type="application/json",
    )


@pytest.mark.parametrize("query", ["openid=a%00b", "owner=%00", "status=%01", "limit=1%00"])
def test_nul_in_query(client, clean, auth, query):
    for url in ("/api/contacts", "/api/leads"):
        refused(client, clean, "GET", f"{url}?{query}", auth)


def test_nul_in_callback_query(client, clean, oa):
    before = row_counts(clean)
    resp = client.get("/wechat/oa?signature=%00&timestamp=1&nonce=1&echostr=x")
    assert resp.status_code == 400 and row_counts(clean) == before


def test_deep_json_on_every_body_route(app, client, clean, auth, contact_id):
    deep = "[" * 5000 + "]" * 5000
    routes = [
        (m, r.rule)
        for r in app.url_map.iter_rules()
        if r.rule.startswith("/api/")
        for m in sorted(r.methods & {"POST", "PUT"})
    ]
    assert len(routes) >= 12
    for method, rule in routes:
        url = fill(
            rule, {"contact_id": str(contact_id), "journey_id": "1", "lead_id": "1", "rule_id": "1"}
        )
        for body in (deep, '{"a":' * 40 + "1" + "}" * 40):
            refused(client, clean, method, url, auth, data=body, content_type="application/json")


def test_deep_and_aliased_yaml_journeys(client, clean, auth):
    deep = "steps: " + "[" * 5000 + "]" * 5000
    nested = "a:\n" + "".join("  " * i + "- \n" for i in range(1, 60))
    bomb = "a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n"
    for text in (deep, nested, bomb):
        body = refused(
            client, clean, "POST", "/api/journeys", auth, data=text, content_type="application/yaml"
        )
        assert "nested" in body["error"] or "alias" in body["error"] or "YAML" in body["error"]


UNFIT_TAGS = ["\u202eVIP", "V\u200bIP", "<script>alert(1)</script>", "<b>", "x" * 31, "a\x07b"]


@pytest.mark.parametrize("tag", UNFIT_TAGS)
def test_unfit_tags_refused_everywhere(client, clean, auth, contact_id, tag):
    cases = [
        ("POST", f"/api/contacts/{contact_id}/tags", {"tag": tag}),
        ("POST", "/api/tag-rules", {"name": "t", "event_type": "*", "add_tags": [tag]}),
        ("PUT", "/api/interest-words", {"words": {"价格": tag}}),
        ("POST", "/api/replies", {"name": "r", "keywords": ["价格"], "tags": [tag]}),
        ("POST", "/api/channels", {"name": "c", "reps": ["u1"], "tags": [tag]}),
        (
            "POST",
            "/api/journeys",
            {
                "name": "j",
                "definition": {
                    "id": "j",
                    "trigger": {"on": "event", "event": "oa.subscribe"},
                    "steps": [{"id": "s", "type": "action", "do": "add_tag", "tag": tag}],
                },
            },
        ),
    ]
    for method, url, body in cases:
        refused(client, clean, method, url, auth, json=body)


def test_tag_of_thirty_characters_is_taken(client, clean, auth, contact_id):
    resp = client.post(f"/api/contacts/{contact_id}/tags", headers=auth, json={"tag": "标" * 30})
    assert resp.status_code == 201


def test_failed_fan_out_ends_failed_and_is_not_rerun(clean):
    """A broadcast stored before the checks existed (or whose fan-out breaks for any reason a
    re-run cannot fix) ends failed with its reason, and the sweeper leaves it alone."""
    with db.session_scope(clean.database_url) as session:
        row = Broadcast(
            name="old",
            kind="text",
            payload={"content": "hi"},
            audience={"contact_ids": [BIG, 0, -1]},
        )
        session.add(row)
        session.flush()
        bid = row.id
    assert broadcasts.fan_out(clean, bid) == 0
    with db.session_scope(clean.database_url) as session:
        b = session.get(Broadcast, bid)
        assert b.status == "failed" and "contact_ids out of range" in b.reason
        assert broadcasts.progress(session, bid)["status"] == "failed"
    assert broadcasts.sweep(clean) == 0  # nothing re-enqueued
    with db.get_engine(clean.database_url).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM message")).scalar() == 0
