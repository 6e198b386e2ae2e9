"""The JSON API: auth, contacts, timelines, reply rules; and the YAML import command."""

from __future__ import annotations

import time

from click.testing import CliRunner
from support import event, post, text

from bot.background.jobs import drain_outbox
from bot.cli import main as cli


def test_api_needs_the_bearer_token(client, auth):
    for path in ("/api/contacts", "/api/replies", "/api/contacts/1/events"):
        resp = client.get(path)
        assert resp.status_code == 401 and "Bearer" in resp.get_json()["reason"]
        assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get(path, headers={"Authorization": "Basic x"}).status_code == 401
    assert client.get("/api/replies", headers=auth).status_code == 200
    assert client.get("/healthz").status_code == 200  # health needs no token


def test_contact_by_openid_with_tags_and_state(client, oa, auth):
    client.post(
        "/api/replies",
        json={"trigger": "subscribe", "name": "w", "reply": "欢迎", "tags": ["新关注"]},
        headers=auth,
    )
    t0 = int(time.time()) - 100
    post(client, oa, event(oa, "oApi", "subscribe", t0))
    post(client, oa, text(oa, "oApi", "hello", 1, create_time=t0 + 50))
    drain_outbox()  # a text's contact touch (last seen) is left to the background
    body = client.get("/api/contacts?openid=oApi", headers=auth).get_json()
    [c] = body["contacts"]
    assert c["openid"] == "oApi" and c["subscribed"] is True
    assert c["identities"] == [{"kind": "openid", "value": "oApi", "app_id": oa.appid}]
    assert c["first_seen_at"].startswith(time.strftime("%Y-%m-%dT%H:%M", time.gmtime(t0)))
    assert c["first_seen_at"].endswith("+00:00") and c["last_seen_at"] > c["first_seen_at"]
    assert [(t["tag"], t["source"]) for t in c["tags"]] == [("新关注", "reply_rule")]
    assert client.get("/api/contacts?openid=nobody", headers=auth).get_json()["contacts"] == []
    assert client.get(f"/api/contacts/{c['id']}", headers=auth).get_json()["id"] == c["id"]
    assert client.get("/api/contacts/999999", headers=auth).status_code == 404


def test_timeline_newest_first_with_cursor(client, oa, auth):
    t0 = int(time.time()) - 1000
    for i in range(7):
        post(client, oa, text(oa, "oTl", f"第{i}条", 100 + i, create_time=t0 + i))
    cid = client.get("/api/contacts?openid=oTl", headers=auth).get_json()["contacts"][0]["id"]
    seen, before = [], None
    while True:
        q = f"/api/contacts/{cid}/events?limit=3" + (f"&before={before}" if before else "")
        page = client.get(q, headers=auth).get_json()
        seen += [e["properties"]["content"] for e in page["events"]]
        before = page["next_before"]
        if before is None:
            break
    assert seen == [f"第{i}条" for i in reversed(range(7))]
    assert client.get(f"/api/contacts/{cid}/events?limit=0", headers=auth).status_code == 422
    assert client.get(f"/api/contacts/{cid}/events?limit=x", headers=auth).status_code == 422
    assert client.get("/api/contacts/424242/events", headers=auth).status_code == 404


def test_reply_rules_crud_and_validation(client, oa, auth):
    resp = client.post(
        "/api/replies", json={"name": "r1", "keywords": ["价格"], "reply": "A"}, headers=auth
    )
    assert resp.status_code == 201
    rule = resp.get_json()
    assert rule["match"] == "jieba" and rule["trigger"] == "keyword"
    assert post(client, oa, text(oa, "oR", "价格呢", 1)).fields["Content"] == "A"

    update = {"name": "r1", "keywords": ["价格"], "reply": "B"}
    assert (
        client.put(f"/api/replies/{rule['id']}", json=update, headers=auth).get_json()["reply"]
        == "B"
    )
    assert post(client, oa, text(oa, "oR", "价格呢", 2)).fields["Content"] == "B"  # seen at once

    assert client.delete(f"/api/replies/{rule['id']}", headers=auth).status_code == 204
    assert post(client, oa, text(oa, "oR", "价格呢", 3)).body == "success"
    assert client.get(f"/api/replies/{rule['id']}", headers=auth).status_code == 404
    assert client.put("/api/replies/999", json=update, headers=auth).status_code == 404
    assert client.delete("/api/replies/999", headers=auth).status_code == 404

    bad = client.post(
        "/api/replies", json={"name": "", "match": "regex", "keywords": []}, headers=auth
    )
    assert bad.status_code == 422
    assert {"name", "match"} <= set(bad.get_json()["fields"])
    bad = client.post("/api/replies", json={"name": "k", "reply": "x"}, headers=auth)
    assert bad.status_code == 422 and "keywords" in bad.get_json()["fields"]
    bad = client.post(
        "/api/replies", json={"name": "c", "trigger": "click", "reply": "x"}, headers=auth
    )
    assert "click_key" in bad.get_json()["fields"]
    assert client.post("/api/replies", data="nope", headers=auth).status_code == 422
    client.post("/api/replies", json={"name": "dup", "keywords": ["a"], "reply": "x"}, headers=auth)
    dup = client.post(
        "/api/replies", json={"name": "dup", "keywords": ["b"], "reply": "y"}, headers=auth
    )
    assert dup.status_code == 422 and "name" in dup.get_json()["fields"]
    assert [r["name"] for r in client.get("/api/replies", headers=auth).get_json()["replies"]] == [
        "dup"
    ]


RULES_YAML = """
replies:
  - name: 欢迎语
    trigger: subscribe
    reply: 欢迎关注鱼池！回复「价格」了解报价。
  - name: 价格咨询
    keywords: [价格, 报价, 多少钱]
    reply: 基础版每年 9800 元，专业版请联系顾问。
    tags: [意向:价格]
  - name: 菜单-联系我们
    trigger: click
    click_key: MENU_CONTACT
    reply: 客服电话 400-000-0000
"""


def test_yaml_import_is_idempotent_and_all_or_nothing(client, oa, clean, auth, tmp_path):
    f = tmp_path / "replies.yaml"
    f.write_text(RULES_YAML, encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(cli, ["replies", "import", str(f)])
    assert result.exit_code == 0, result.output
    assert "3 rule(s) created, 0 updated" in result.output
    result = runner.invoke(cli, ["replies", "import", str(f)])
    assert "0 rule(s) created, 3 updated" in result.output
    assert (
        post(client, oa, text(oa, "oY", "请问价格是多少", 1)).fields["Content"].startswith("基础版")
    )
    assert (
        post(client, oa, event(oa, "oY", "CLICK", EventKey="MENU_CONTACT"))
        .fields["Content"]
        .startswith("客服")
    )

    f.write_text(
        RULES_YAML + "  - name: 坏规则\n    trigger: click\n    reply: x\n", encoding="utf-8"
    )
    result = runner.invoke(cli, ["replies", "import", str(f)])
    assert (
        result.exit_code == 1
        and "replies[4]" in result.output
        and "nothing imported" in result.output
    )
    assert len(client.get("/api/replies", headers=auth).get_json()["replies"]) == 3
