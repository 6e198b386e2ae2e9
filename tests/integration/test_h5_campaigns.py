"""H5 campaigns through the API and the pages: validation, the sanitised body, signed
referral codes, the share chain (first touch, no self-referral, depth-3 branching), points,
rate limits, rewards under concurrent redemptions, the gated download link, check-in."""

from __future__ import annotations

import re
import threading
import time

import pytest
from h5_support import (
    create_campaign,
    employee_code,
    open_page,
    share_code,
    stats,
    submit,
    visitor,
)
from sqlalchemy import select
from support import run_worker

from bot.campaigns import actions, codes, downloads
from bot.core.db import session_scope
from bot.core.models import Contact, Event, Referral


def test_create_validates_and_names_the_bad_field(client, auth):
    bad = client.post(
        "/api/campaigns",
        json={"slug": "Bad Slug", "name": "x", "title": "t", "kind": "landing"},
        headers=auth,
    )
    assert bad.status_code == 422 and "slug" in bad.get_json()["fields"]
    wrong_kind = client.post(
        "/api/campaigns",
        json={"slug": "ok-1", "name": "x", "title": "t", "kind": "poll"},
        headers=auth,
    )
    assert wrong_kind.status_code == 422 and "kind" in wrong_kind.get_json()["fields"]
    question = {"name": "q_x", "type": "single", "label": "问", "options": ["只有一个"]}
    bad_form = client.post(
        "/api/campaigns",
        json={
            "slug": "ok-2",
            "name": "x",
            "title": "t",
            "kind": "landing",
            "form": {"fields": [question]},
        },
        headers=auth,
    )
    assert bad_form.status_code == 422
    assert any(k.startswith("form.fields.0") for k in bad_form.get_json()["fields"])
    no_file = client.post(
        "/api/campaigns",
        json={"slug": "ok-3", "name": "x", "title": "t", "kind": "resource"},
        headers=auth,
    )
    assert no_file.status_code == 422 and "resource" in str(no_file.get_json()["fields"])
    assert client.get("/api/campaigns", headers=auth).get_json()["campaigns"] == []


def test_body_is_sanitised_and_put_changes_it(client, auth):
    camp = create_campaign(client, auth)
    assert "<script" not in camp["body"] and "onerror" not in camp["body"]
    assert "<strong>参加</strong>" in camp["body"]
    changed = client.put(
        f"/api/campaigns/{camp['id']}",
        json={
            **{k: camp[k] for k in ("slug", "name", "kind")},
            "title": "新标题",
            "body": "<a href='javascript:x'>x</a>",
        },
        headers=auth,
    )
    assert changed.status_code == 200 and changed.get_json()["title"] == "新标题"
    assert "javascript" not in changed.get_json()["body"]
    again = client.post(
        "/api/campaigns",
        json={"slug": camp["slug"], "name": "n", "title": "t", "kind": "landing"},
        headers=auth,
    )
    assert again.status_code == 409 and "slug" in again.get_json()["fields"]


def test_tampered_and_forged_codes_are_ignored_and_logged(app, client, auth, settings, caplog):
    camp = create_campaign(client, auth)
    good = employee_code(client, auth, camp["id"], "zhangsan")
    body, mac = good.split(".")
    forged = codes.sign("not-our-secret", "ref", {"c": camp["id"], "u": "lisi"})
    for i, bad in enumerate([body + "x." + mac, body + "." + mac[:-2] + "AA", forged, "garbage"]):
        status, _ = open_page(visitor(app, f"10.1.0.{i}"), camp["slug"], bad)
        assert status == 200
    assert "referral code refused" in caplog.text
    run_worker(settings)  # the background makes each first visitor's contact and node
    with session_scope(settings.database_url) as s:
        nodes = s.execute(select(Referral)).scalars().all()
        assert len(nodes) == 4 and all(n.depth == 0 and n.sharer_userid is None for n in nodes)


def test_chain_depth_three_branching_first_touch_self_referral_and_points(
    app, client, auth, settings
):
    camp = create_campaign(client, auth)
    emp = employee_code(client, auth, camp["id"], "zhangsan")
    a, b, c, d, e = (visitor(app, f"10.2.0.{i}") for i in range(5))
    a_code = share_code(open_page(a, camp["slug"], emp)[1])  # depth 1 under the employee
    b_code = share_code(open_page(b, camp["slug"], a_code)[1])  # depth 2
    open_page(c, camp["slug"], a_code)  # depth 2, a second branch under A
    open_page(d, camp["slug"], b_code)  # depth 3
    open_page(a, camp["slug"], b_code)  # A again through B's link: first touch wins, no cycle
    open_page(b, camp["slug"], b_code)  # B through their own link: nothing changes
    open_page(e, camp["slug"], share_code(open_page(e, camp["slug"])[1]))  # self-referral
    run_worker(settings)  # the background makes each first visitor's contact and node
    tree = client.get(f"/api/campaigns/{camp['id']}/chain?userid=zhangsan", headers=auth).get_json()
    [a_node] = tree["children"]
    assert tree["people"] == 4 and a_node["depth"] == 1
    assert sorted(n["depth"] for n in a_node["children"]) == [2, 2]
    assert [n["depth"] for b_node in a_node["children"] for n in b_node["children"]] == [3]
    # D submits a form: B (1), A (2) and the employee (3) earn 10 each; a retry adds nothing.
    assert submit(d, camp["slug"]).status_code == 303
    assert submit(d, camp["slug"], name="张三丰").status_code == 303
    figures = stats(client, auth, camp["id"])
    assert figures["unique_visitors"] == 5 and figures["visits"] == 5 and figures["forms"] == 1
    assert figures["page_views"] == 8
    assert figures["per_depth"]["3"]["forms"] == 1
    assert figures["leaderboard"]["employees"] == [
        {"holder": "u:zhangsan", "points": 10, "credits": 1}
    ]
    assert sorted(x["points"] for x in figures["leaderboard"]["customers"]) == [10, 10]
    assert client.get("/api/points/u:zhangsan", headers=auth).get_json()["balance"] == 10
    with session_scope(settings.database_url) as s:
        e_node = s.execute(select(Referral).where(Referral.depth == 0)).scalar_one()
        assert e_node.parent_id is None
        lead = s.execute(select(Event).where(Event.type == "h5.form_submitted")).scalar_one()
        contact = s.get(Contact, lead.contact_id)
        assert contact.name == "张三丰" and contact.fields["phone"] == "13800138000"
        assert contact.fields["source"] == "campaign:spring-fair"
        assert contact.fields["campaign"] == "spring-fair"  # lead quality by campaign
        assert contact.fields["referrer"].startswith("c:")
        assert lead.properties["depth"] == 3 and lead.properties["campaign"] == "spring-fair"


def test_bad_phone_is_a_422_naming_the_field_then_a_good_one_passes(app, client, auth):
    camp = create_campaign(client, auth)
    v = visitor(app)
    open_page(v, camp["slug"])
    bad = submit(v, camp["slug"], phone="12345", q_size="银河系")
    html = bad.get_data(as_text=True)
    assert bad.status_code == 422
    assert "请输入11位中国大陆手机号" in html and "请选择一个选项" in html
    assert stats(client, auth, camp["id"])["forms"] == 0
    good = submit(v, camp["slug"], phone="+86 138-0013-8000", q_size="50+", q_need=["获客", "复购"])
    assert good.status_code == 303
    done = v.get(good.headers["Location"])
    assert "提交成功" in done.get_data(as_text=True)


def test_forms_are_rate_limited_per_visitor_and_per_ip(app, client, auth, settings):
    camp = create_campaign(client, auth)
    app.config["SETTINGS"] = settings.replace(h5_forms_per_visitor=2, h5_forms_per_ip=4)
    v = visitor(app, "10.3.0.1")
    open_page(v, camp["slug"])
    assert [submit(v, camp["slug"]).status_code for _ in range(2)] == [303, 303]
    refused = submit(v, camp["slug"])  # every attempt counts, refused ones too
    assert refused.status_code == 429 and "提交太频繁" in refused.get_data(as_text=True)
    w = visitor(app, "10.3.0.1")  # another browser behind the same address
    open_page(w, camp["slug"])
    assert submit(w, camp["slug"]).status_code == 303  # the address's fourth attempt
    assert submit(w, camp["slug"]).status_code == 429  # the fifth
    other = visitor(app, "10.3.0.2")
    open_page(other, camp["slug"])
    assert submit(other, camp["slug"]).status_code == 303


def test_rewards_are_redeemed_exactly_once_under_concurrency(app, client, auth, settings):
    from bot.campaigns import points

    reward = client.post(
        "/api/rewards",
        json={"name": "咖啡券", "kind": "coupon", "cost": 10, "stock": 3},
        headers=auth,
    )
    assert reward.status_code == 201
    rid = reward.get_json()["id"]
    holders = [f"c:{900 + i}" for i in range(6)]
    with session_scope(settings.database_url) as s:
        for h in holders:
            points.add_points(s, h, None, 25, "测试", f"seed:{h}")
    results: list[str] = []
    barrier = threading.Barrier(12)

    def go(holder: str, key: str) -> None:
        barrier.wait()
        with session_scope(settings.database_url) as s:
            try:
                done = points.redeem(s, holder, rid, key)
                results.append("repeat" if done.repeated else "ok")
            except points.RedeemRefused as exc:
                results.append(str(exc))

    threads = [threading.Thread(target=go, args=(h, f"k-{h}")) for h in holders]
    threads += [threading.Thread(target=go, args=(holders[0], f"k-{holders[0]}")) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    left = client.get("/api/rewards", headers=auth).get_json()["rewards"][0]["stock"]
    assert left == 0 and results.count("ok") == 3
    assert results.count("奖品已兑完") + results.count("repeat") == 9
    with session_scope(settings.database_url) as s:
        spent = sum(25 - points.balance(s, h) for h in holders)
    assert spent == 30  # three rewards of 10, nobody charged twice


def test_points_page_redeems_from_the_browser(app, client, auth, settings):
    from bot.campaigns import points

    client.post(
        "/api/rewards",
        json={"name": "定制笔记本", "kind": "gift", "cost": 10, "stock": 1},
        headers=auth,
    )
    v = visitor(app)
    page = v.get("/h5/points").get_data(as_text=True)
    assert "暂无" not in page and "定制笔记本" in page
    with session_scope(settings.database_url) as s:
        from bot.campaigns import visitors

        contact = visitors.contact_for(s, v.get_cookie("yuchi_v").value)
        points.add_points(s, f"c:{contact}", None, 15, "测试", "seed")
    rid = client.get("/api/rewards", headers=auth).get_json()["rewards"][0]["id"]
    done = v.post("/h5/points/redeem", data={"reward": rid, "key": "abcdefgh-1"})
    assert done.status_code == 200 and "兑换成功" in done.get_data(as_text=True)
    again = v.post("/h5/points/redeem", data={"reward": rid, "key": "abcdefgh-1"})
    assert "兑换成功" in again.get_data(as_text=True)  # the same request: the same redemption
    other = v.post("/h5/points/redeem", data={"reward": rid, "key": "abcdefgh-2"})
    assert other.status_code == 409 and "奖品已兑完" in other.get_data(as_text=True)


def test_gated_download_link_counts_and_expires(app, client, auth, settings):
    camp = create_campaign(
        client,
        auth,
        slug="whitepaper",
        kind="resource",
        resource={"url": "https://files.example.com/scrm-2026.pdf", "filename": "白皮书.pdf"},
    )
    v = visitor(app)
    open_page(v, camp["slug"])
    assert submit(v, camp["slug"]).status_code == 303
    html = v.get(f"/h5/c/{camp['slug']}/done").get_data(as_text=True)
    token = html.split('href="/h5/d/')[1].split('"')[0]
    for _ in range(2):
        got = v.get(f"/h5/d/{token}")
        assert got.status_code == 302 and got.headers["Location"].endswith("scrm-2026.pdf")
    assert stats(client, auth, camp["id"])["downloads"] == 2
    contact = downloads.read_link(settings, token)[1]
    old = downloads.link_token(
        settings, camp["id"], contact, now=time.time() - settings.h5_link_ttl - 5
    )
    assert v.get(f"/h5/d/{old}").status_code == 410
    assert v.get(f"/h5/d/{token[:-3]}abc").status_code == 410
    assert stats(client, auth, camp["id"])["downloads"] == 2


def test_event_signup_pass_staff_check_in_once(app, client, auth):
    camp = create_campaign(
        client,
        auth,
        slug="live-0315",
        kind="event",
        event={
            "starts_at": "2026-12-20T14:00:00+08:00",
            "place": "上海",
            "live_url": "https://live.example.com/x",
        },
    )
    v = visitor(app)
    open_page(v, camp["slug"])
    submit(v, camp["slug"])
    html = v.get(f"/h5/c/{camp['slug']}/done").get_data(as_text=True)
    assert "报名成功" in html
    token = html.split('src="/h5/pass/')[1].split('.png"')[0]
    assert v.get(f"/h5/pass/{token}.png").mimetype == "image/png"
    scan = client.post(
        f"/api/campaigns/{camp['id']}/checkins", json={"pass": token, "by": "lisi"}, headers=auth
    )
    assert scan.status_code == 200 and scan.get_json()["first"] is True
    again = client.post(
        f"/api/campaigns/{camp['id']}/checkins", json={"pass": token, "by": "lisi"}, headers=auth
    )
    assert again.get_json()["first"] is False
    forged = client.post(
        f"/api/campaigns/{camp['id']}/checkins",
        json={"pass": token[:-2] + "xx", "by": "lisi"},
        headers=auth,
    )
    assert forged.status_code == 404
    live = v.get(f"/h5/c/{camp['slug']}/live")
    assert live.status_code == 302 and live.headers["Location"] == "https://live.example.com/x"
    figures = stats(client, auth, camp["id"])
    assert figures["signups"] == 1 and figures["checkins"] == 1
    assert figures["conversion"]["signups_to_checkins"] == 1.0
    assert visitor(app, "10.9.9.9").get(f"/h5/c/{camp['slug']}/live").status_code == 403


def test_referring_employee_becomes_the_owner(app, client, auth, settings):
    from bot.core.models import Rep
    from bot.sales import handoff

    camp = create_campaign(client, auth)
    emp = employee_code(client, auth, camp["id"], "wangwu")
    v = visitor(app)
    open_page(v, camp["slug"], emp)
    submit(v, camp["slug"], emp)
    with session_scope(settings.database_url) as s:
        s.add_all([Rep(userid="wangwu", name="王五"), Rep(userid="zhaoliu", name="赵六")])
        s.flush()
        lead = s.execute(select(Event).where(Event.type == "h5.form_submitted")).scalar_one()
        assert handoff.pick_rep(s, lead.contact_id) == (
            "wangwu",
            "their campaign link brought them",
        )


def test_links_poster_and_qr(app, client, auth):
    camp = create_campaign(client, auth)
    links = client.get(
        f"/api/campaigns/{camp['id']}/links?userid=zhangsan", headers=auth
    ).get_json()
    assert links["url"].endswith(f"/h5/c/{camp['slug']}?r={links['code']}")
    poster = client.get(links["poster"].split("8000", 1)[-1])
    assert (
        poster.status_code == 200 and poster.mimetype == "image/png" and len(poster.data) > 10_000
    )
    assert client.get(f"/h5/qr/{links['code']}.png").mimetype == "image/png"
    assert client.get("/h5/poster/forged.png").status_code == 404
    assert client.get(f"/api/campaigns/{camp['id']}/links", headers=auth).status_code == 422


@pytest.mark.parametrize("path", ["/h5/c/nope", "/h5/d/x.y", "/h5/c/" + "x" * 80])
def test_unknown_pages_are_4xx_pages(client, path):
    resp = client.get(path)
    assert 400 <= resp.status_code < 500 and "text/html" in resp.content_type


def test_hostile_page_requests_are_4xx_never_5xx(app, client, auth):
    camp = create_campaign(client, auth)
    v = visitor(app)
    open_page(v, camp["slug"])
    slug = camp["slug"]
    answers = [
        v.post(
            f"/h5/c/{slug}/form",
            data={"name": "x" * 5000, "phone": ["1", "2"], "q_need": ["甲"] * 50},
        ),
        v.post(
            f"/h5/c/{slug}/form", data=b"\xff\xfe", content_type="application/x-www-form-urlencoded"
        ),
        v.post(f"/h5/c/{slug}/share", data="not json", content_type="application/json"),
        v.post(f"/h5/c/{slug}/share", json=["appMessage"]),
        v.post(f"/h5/c/{slug}/share", json={"channel": "sms"}),
        v.get("/h5/jssdk"),
        v.get("/h5/jssdk?url=javascript:alert(1)"),
        v.post("/h5/points/redeem", data={"reward": "99999999999", "key": "x"}),
        v.post("/h5/points/redeem", data={"reward": "1", "key": "abcdefghij"}),
        v.get("/h5/pass/garbage.png"),
        v.get("/h5/qr/garbage.png"),
        v.get("/h5/d/" + "a" * 700),
        v.get("/h5/oauth/callback"),
        v.get("/h5/oauth/callback?code=x&state=" + "b" * 300),
        v.get(f"/h5/c/{slug}?r=" + "%00" * 3),
        v.get(f"/h5/c/{slug}/friends"),
        v.get(f"/h5/c/{slug}/live"),
        client.get(f"/api/campaigns/{camp['id']}/chain", headers=auth),
        client.get(f"/api/campaigns/{camp['id']}/chain?contact_id=abc", headers=auth),
        client.get("/api/points/x:1", headers=auth),
        client.post(
            f"/api/campaigns/{camp['id']}/checkins",
            json={"pass": "x" * 20, "by": "a"},
            headers=auth,
        ),
        client.put(f"/api/campaigns/{camp['id']}", json={"slug": slug}, headers=auth),
        client.put(
            "/api/campaigns/999999",
            json={**{k: camp[k] for k in ("slug", "name", "title", "kind")}},
            headers=auth,
        ),
    ]
    assert all(r.status_code < 500 for r in answers), [r.status_code for r in answers]
    assert [r.status_code for r in answers[2:5]] == [422, 422, 422]
    assert stats(client, auth, camp["id"])["forms"] == 0


def test_page_weight_under_100_kb_with_vendored_assets_only(app, client, auth):
    camp = create_campaign(client, auth)
    html = visitor(app).get(f"/h5/c/{camp['slug']}").get_data(as_text=True)
    assets = re.findall(r'(?:href|src)="(/h5/static/[^"]+\.(?:css|js))"', html)
    weight = len(html.encode()) + sum(len(client.get(a).data) for a in assets)
    assert len(assets) == 2 and weight < 100_000
    assert not re.search(r'(?:href|src)="(?:https?:)?//', html)  # no CDN outside WeChat


def test_campaign_score_events_and_tag_rules_see_the_form(app, client, auth, settings):
    client.post(
        "/api/tag-rules",
        json={
            "name": "大公司",
            "event_type": "h5.form_submitted",
            "conditions": {"fields.q_size": "50+"},
            "add_tags": ["规模:大"],
        },
        headers=auth,
    )
    camp = create_campaign(client, auth, score_events={"h5.form_submitted": 15})
    v = visitor(app)
    open_page(v, camp["slug"])
    submit(v, camp["slug"], q_size="50+")
    submit(v, camp["slug"], q_size="50+")  # a second form: no second score line
    run_worker(settings)
    with session_scope(settings.database_url) as s:
        lead = s.execute(select(Event).where(Event.type == "h5.form_submitted")).scalar_one()
    score = client.get(f"/api/contacts/{lead.contact_id}/score", headers=auth).get_json()
    lines = [ln for ln in score["lines"] if "春季新品发布会" in (ln["reason"] or "")]
    assert [ln["points"] for ln in lines] == [15]
    tags = client.get(f"/api/contacts/{lead.contact_id}", headers=auth).get_json()["tags"]
    assert {"活动:春季展会", "规模:大"} <= {t["tag"] for t in tags}


def test_an_employee_redeems_through_the_api(app, client, auth):
    camp = create_campaign(client, auth)
    emp = employee_code(client, auth, camp["id"], "zhangsan")
    for i in range(2):
        v = visitor(app, f"10.5.0.{i}")
        open_page(v, camp["slug"], emp)
        submit(v, camp["slug"], emp)
    rid = client.post(
        "/api/rewards",
        json={"name": "京东卡", "kind": "coupon", "cost": 15, "stock": 5},
        headers=auth,
    ).get_json()["id"]
    url = "/api/points/u:zhangsan/redeem"
    done = client.post(url, json={"reward_id": rid, "request_key": "sidebar-1"}, headers=auth)
    assert done.status_code == 200 and done.get_json()["balance"] == 5
    assert client.post(
        url, json={"reward_id": rid, "request_key": "sidebar-1"}, headers=auth
    ).get_json()["repeated"]
    poor = client.post(url, json={"reward_id": rid, "request_key": "sidebar-2"}, headers=auth)
    assert poor.status_code == 409 and poor.get_json()["error"] == "积分不足"
    ledger = client.get("/api/points/u:zhangsan", headers=auth).get_json()["ledger"]
    assert [line["points"] for line in ledger] == [-15, 10, 10]
    assert client.get("/api/rewards", headers=auth).get_json()["rewards"][0]["stock"] == 4


def test_campaign_dates_close_the_form(app, client, auth):
    camp = create_campaign(
        client, auth, ends_at="2020-01-01T00:00:00+08:00", starts_at="2019-12-01T00:00:00+08:00"
    )
    v = visitor(app)
    status, html = open_page(v, camp["slug"])
    assert status == 200 and "活动已结束" in html and "lead-form" not in html
    assert submit(v, camp["slug"]).status_code == 410
    soon = create_campaign(client, auth, slug="soon", starts_at="2999-01-01T00:00:00+08:00")
    assert "活动尚未开始" in open_page(v, soon["slug"])[1]
    naive = client.post(
        "/api/campaigns",
        json={
            **{k: camp[k] for k in ("name", "title", "kind")},
            "slug": "naive",
            "ends_at": "2030-01-01T00:00:00",
        },
        headers=auth,
    )
    assert naive.status_code == 422


def test_a_merge_moves_chains_signups_and_points(app, client, auth, settings):
    from bot.campaigns import points
    from bot.contacts import identity

    camp = create_campaign(client, auth)
    other = create_campaign(client, auth, slug="other")
    emp = employee_code(client, auth, camp["id"], "zhangsan")
    older, newer = visitor(app, "10.6.0.1"), visitor(app, "10.6.0.2")
    open_page(older, camp["slug"], emp)  # the older one's first touch: the employee
    open_page(newer, camp["slug"])  # the newer one came on their own
    open_page(newer, other["slug"])  # and is alone in the other campaign
    run_worker(settings)
    with session_scope(settings.database_url) as s:
        from bot.campaigns import visitors

        a = visitors.contact_for(s, older.get_cookie("yuchi_v").value)
        b = visitors.contact_for(s, newer.get_cookie("yuchi_v").value)
        points.add_points(s, f"c:{a}", None, 10, "测试", "same-form")
        points.add_points(s, f"c:{b}", None, 10, "测试", "same-form")  # the same credit twice
        points.add_points(s, f"c:{b}", None, 7, "测试", "b-only")
    with session_scope(settings.database_url) as s:
        keep, _ = identity.merge(s, b, a, "test")
    with session_scope(settings.database_url) as s:
        nodes = s.execute(select(Referral).order_by(Referral.campaign_id)).scalars().all()
        assert keep == a and [
            (n.campaign_id, n.contact_id, n.depth) for n in nodes if n.contact_id == a
        ] == [
            (camp["id"], a, 1),
            (other["id"], a, 0),
        ]
        assert points.balance(s, f"c:{a}") == 17 and points.balance(s, f"c:{b}") == 0
        assert sorted(line["key"] for line in points.ledger(s, f"c:{a}")) == ["b-only", "same-form"]


def test_the_page_is_rendered_once_yet_each_visitor_sees_their_own(app, client, auth):
    """The plain page is kept per campaign and browser kind; what differs per request (the
    visitor's own link, the code they came with, escaped) is put in each time, and a changed
    campaign is rendered again."""
    camp = create_campaign(client, auth)
    emp = employee_code(client, auth, camp["id"], "zhangsan")
    a, b = visitor(app, "10.8.0.1"), visitor(app, "10.8.0.2", wechat=True)
    a.set_cookie("yuchi_oa_skip", "1")  # not asked to sign in: the anonymous page
    b.set_cookie("yuchi_oa_skip", "1")
    _, page_a = open_page(a, camp["slug"], emp)
    _, page_b = open_page(b, camp["slug"], emp)
    assert share_code(page_a) != share_code(page_b)
    assert f'name="r" value="{emp}"' in page_a
    assert "复制你的专属链接" in page_a and "点击右上角" in page_b  # outside / inside WeChat
    _, again = open_page(a, camp["slug"], emp)
    assert share_code(again) == share_code(page_a)
    hostile = a.get(f"/h5/c/{camp['slug']}", query_string={"r": '"><script>x</script>'})
    html = hostile.get_data(as_text=True)
    assert hostile.status_code == 200 and "<script>x" not in html
    assert 'value="&#34;&gt;&lt;script&gt;x&lt;/script&gt;"' in html
    changed = client.put(
        f"/api/campaigns/{camp['id']}",
        json={**{k: camp[k] for k in ("slug", "name", "kind")}, "title": "新标题"},
        headers=auth,
    )
    assert changed.status_code == 200
    actions.forget_campaigns()  # what the campaign cache does by itself within seconds
    _, renamed = open_page(a, camp["slug"])
    assert "新标题" in renamed and share_code(renamed) == share_code(page_a)
