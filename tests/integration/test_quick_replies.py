"""Quick replies (话术库) through /api/quick-replies: groups, texts, links and images, search,
and what the sidebar hands to sendChatMessage."""

from __future__ import annotations

from bot.core import db
from bot.sales import quick_replies


def add(client, auth, path: str, body: dict) -> dict:
    resp = client.post(f"/api/quick-replies{path}", json=body, headers=auth)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def test_groups_and_replies_crud(client, auth):
    price = add(client, auth, "/groups", {"name": "报价", "position": 1})
    intro = add(client, auth, "/groups", {"name": "产品介绍", "position": 0})
    dup = client.post("/api/quick-replies/groups", json={"name": "报价"}, headers=auth)
    assert dup.status_code == 422 and "name" in dup.get_json()["fields"]

    text = add(
        client,
        auth,
        "",
        {
            "group_id": price["id"],
            "kind": "text",
            "title": "标准报价",
            "content": "基础版每年五万元",
        },
    )
    link = add(
        client,
        auth,
        "",
        {
            "group_id": intro["id"],
            "kind": "link",
            "title": "产品白皮书",
            "content": "三分钟了解我们",
            "url": "https://example.com/white-paper",
        },
    )
    image = add(
        client,
        auth,
        "",
        {"group_id": intro["id"], "kind": "image", "title": "架构图", "media_id": "MEDIA_1"},
    )
    for bad, field in [
        ({"group_id": price["id"], "kind": "text", "title": "空"}, "content"),
        ({"group_id": price["id"], "kind": "link", "title": "无链接"}, "url"),
        ({"group_id": price["id"], "kind": "image", "title": "无图"}, "media_id"),
        ({"group_id": price["id"], "kind": "video", "title": "x", "content": "x"}, "kind"),
        ({"group_id": 999, "kind": "text", "title": "x", "content": "x"}, "group_id"),
        ({"group_id": price["id"], "kind": "link", "title": "x", "url": "ftp://x"}, "url"),
    ]:
        resp = client.post("/api/quick-replies", json=bad, headers=auth)
        assert resp.status_code == 422 and field in resp.get_json()["fields"], (
            bad,
            resp.get_json(),
        )

    lib = client.get("/api/quick-replies", headers=auth).get_json()["groups"]
    assert [(g["name"], [r["title"] for r in g["replies"]]) for g in lib] == [
        ("产品介绍", ["产品白皮书", "架构图"]),
        ("报价", ["标准报价"]),
    ]
    one = client.get(f"/api/quick-replies/{image['id']}", headers=auth).get_json()
    assert one["send"] == {"msgtype": "image", "image": {"mediaid": "MEDIA_1"}}
    got = client.get(f"/api/quick-replies/{link['id']}", headers=auth).get_json()
    assert got["send"] == {
        "msgtype": "news",
        "news": {
            "link": "https://example.com/white-paper",
            "title": "产品白皮书",
            "desc": "三分钟了解我们",
            "imgUrl": "",
        },
    }

    changed = client.put(
        f"/api/quick-replies/{text['id']}",
        json={
            "group_id": price["id"],
            "kind": "text",
            "title": "标准报价",
            "content": "基础版每年六万元",
        },
        headers=auth,
    )
    assert changed.status_code == 200 and changed.get_json()["content"] == "基础版每年六万元"
    renamed = client.put(
        f"/api/quick-replies/groups/{price['id']}", json={"name": "价格"}, headers=auth
    )
    assert renamed.status_code == 200 and renamed.get_json()["name"] == "价格"
    assert client.delete(f"/api/quick-replies/{image['id']}", headers=auth).status_code == 204
    assert client.get(f"/api/quick-replies/{image['id']}", headers=auth).status_code == 404
    assert (
        client.delete(f"/api/quick-replies/groups/{intro['id']}", headers=auth).status_code == 204
    )
    assert client.get(f"/api/quick-replies/{link['id']}", headers=auth).status_code == 404
    assert (
        client.put("/api/quick-replies/groups/999", json={"name": "x"}, headers=auth).status_code
        == 404
    )
    assert client.get("/api/quick-replies").status_code == 401


def test_search_by_words_title_first(client, auth, clean):
    faq = add(client, auth, "/groups", {"name": "常见问题"})
    other = add(client, auth, "/groups", {"name": "其他"})
    rows = [
        (faq, "发票怎么开", "联系财务开具增值税专用发票"),
        (faq, "付款方式", "支持对公转账，可开发票"),
        (faq, "试用", "可申请 14 天免费试用 Trial"),
        (other, "100%满意", "不满意可退款"),
    ]
    for group, title, content in rows:
        add(
            client,
            auth,
            "",
            {"group_id": group["id"], "kind": "text", "title": title, "content": content},
        )

    def titles(query: str, **params) -> list[str]:
        args = "&".join([f"q={query}"] + [f"{k}={v}" for k, v in params.items()])
        resp = client.get(f"/api/quick-replies?{args}", headers=auth)
        assert resp.status_code == 200, resp.get_json()
        return [r["title"] for r in resp.get_json()["replies"]]

    assert titles("发票") == ["发票怎么开", "付款方式"]  # a title match first
    assert titles("发票 转账") == ["付款方式"]  # every word
    assert titles("trial") == ["试用"]  # case-insensitive
    assert titles("%") == ["100%满意"]  # LIKE wildcards are plain text
    assert titles("_") == []
    assert titles("发票", group_id=other["id"]) == []
    assert titles("发票", limit=1) == ["发票怎么开"]
    assert titles("", group_id=other["id"]) == ["100%满意"]  # a group's replies, no words
    first = client.get("/api/quick-replies?q=发票", headers=auth).get_json()["replies"][0]
    assert first["send"] == {"msgtype": "text", "text": {"content": "联系财务开具增值税专用发票"}}
    assert client.get("/api/quick-replies?q=x&limit=0", headers=auth).status_code == 422
    assert client.get("/api/quick-replies?q=" + "长" * 101, headers=auth).status_code == 422

    with db.session_scope(clean.database_url) as s:  # the service the sidebar calls
        assert [r.title for r in quick_replies.search(s, "试用")] == ["试用"]
