"""Campaign pages against the simulated platform: OA web OAuth (silent, userinfo, forged,
replayed, foreign and invalid), the JS-SDK config the simulator's stub checks, the jsapi
ticket cached in Redis, and follows through the campaign's parametric QR code."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from h5_support import LANDING, create_campaign, employee_code, open_page, stats, visitor
from sqlalchemy import select
from support import run_worker

from bot.campaigns import actions
from bot.core.db import session_scope
from bot.core.models import Contact, Event, Identity, Referral

WECHAT = "MicroMessenger"


@pytest.fixture
def h5_app(sim_settings):
    from bot.app import create_app

    actions.forget_campaigns()
    app = create_app(sim_settings)
    app.config["TESTING"] = True
    return app


def authorize(sim, location: str, **params: str) -> str:
    """The simulated WeChat's answer to the authorize link: the callback path to open."""
    resp = requests.get(location, params=params, allow_redirects=False, timeout=5)
    assert resp.status_code == 302, resp.text
    target = urlsplit(resp.headers["Location"])
    assert target.path == "/h5/oauth/callback"
    return f"{target.path}?{target.query}"


def test_silent_oauth_identifies_the_visitor_once(sim, h5_app, auth, sim_settings):
    api = h5_app.test_client()
    camp = create_campaign(api, auth)
    browser = visitor(h5_app, wechat=True)
    first = browser.get(f"/h5/c/{camp['slug']}?r=abc")
    assert first.status_code == 302
    query = parse_qs(urlsplit(first.headers["Location"]).query)
    assert query["scope"] == ["snsapi_base"]
    assert len(query["state"][0]) <= 128  # WeChat's limit for state
    assert query["redirect_uri"] == [f"{sim_settings.public_url}/h5/oauth/callback"]
    back = browser.get(authorize(sim, first.headers["Location"], **{"as": "o_h5_visitor"}))
    assert back.status_code == 302 and back.headers["Location"] == f"/h5/c/{camp['slug']}?r=abc"
    page = browser.get(back.headers["Location"])
    assert page.status_code == 200 and "share-link" in page.get_data(as_text=True)
    run_worker(sim_settings)  # the visit is made in the background
    with session_scope(sim_settings.database_url) as s:
        ids = s.execute(select(Identity).where(Identity.value == "o_h5_visitor")).scalars().all()
        assert [i.kind for i in ids] == ["openid"]
        visit = s.execute(select(Event).where(Event.type == "h5.visit")).scalar_one()
        assert visit.contact_id == ids[0].contact_id  # the visit is on the identified contact


def test_userinfo_scope_only_when_the_campaign_needs_it(sim, h5_app, auth, sim_settings):
    api = h5_app.test_client()
    camp = create_campaign(api, auth, needs_userinfo=True)
    sim.set_user("o_nick", nickname="小鱼")
    browser = visitor(h5_app, wechat=True)
    first = browser.get(f"/h5/c/{camp['slug']}")
    assert parse_qs(urlsplit(first.headers["Location"]).query)["scope"] == ["snsapi_userinfo"]
    browser.get(authorize(sim, first.headers["Location"], **{"as": "o_nick"}))
    with session_scope(sim_settings.database_url) as s:
        owner = s.execute(
            select(Identity.contact_id).where(Identity.value == "o_nick")
        ).scalar_one()
        assert s.get(Contact, owner).name == "小鱼"


def test_forged_replayed_foreign_state_and_bad_code_are_4xx_pages(sim, h5_app, auth):
    api = h5_app.test_client()
    camp = create_campaign(api, auth)
    browser = visitor(h5_app, wechat=True)
    first = browser.get(f"/h5/c/{camp['slug']}")
    callback = authorize(sim, first.headers["Location"], **{"as": "o_replay"})
    state = parse_qs(urlsplit(callback).query)["state"][0]
    forged = browser.get(f"/h5/oauth/callback?code=x&state={state[:-4]}AAAA")
    assert forged.status_code == 400 and "链接已失效" in forged.get_data(as_text=True)
    stranger = visitor(h5_app, "10.8.0.2", wechat=True)
    stranger.get(f"/h5/c/{camp['slug']}")  # has a cookie of its own
    assert stranger.get(callback).status_code == 400  # a state bound to another browser
    assert browser.get(callback).status_code == 302
    replay = browser.get(callback)
    assert replay.status_code == 400 and "已使用" in replay.get_data(as_text=True)
    # A fresh state with a code the platform refuses (40029): a 400 page, not a 500.
    again = visitor(h5_app, "10.8.0.3", wechat=True)
    location = again.get(f"/h5/c/{camp['slug']}").headers["Location"]
    good_state = parse_qs(urlsplit(location).query)["state"][0]
    bad_code = again.get(f"/h5/oauth/callback?code=made-up&state={good_state}")
    assert bad_code.status_code == 400 and "授权失败" in bad_code.get_data(as_text=True)


def test_declined_oauth_falls_back_to_the_cookie(sim, h5_app, auth):
    api = h5_app.test_client()
    camp = create_campaign(api, auth)
    browser = visitor(h5_app, wechat=True)
    first = browser.get(f"/h5/c/{camp['slug']}")
    back = browser.get(authorize(sim, first.headers["Location"], **{"as": "o_x", "decline": "1"}))
    assert back.status_code == 302
    status, _ = open_page(browser, camp["slug"])
    assert status == 200  # no second authorize round


def test_share_config_is_checked_by_the_simulator_stub(sim, h5_app, sim_settings):
    api = h5_app.test_client()
    page = f"{sim_settings.public_url}/h5/c/spring-fair?r=abc"
    config = api.get("/h5/jssdk", query_string={"url": page + "#frag"}).get_json()
    verify = {"kind": "config", "url": page, **config}
    answer = requests.post(f"{sim.base_url}/_sim/jssdk/verify", json=verify, timeout=5).json()
    assert answer == {"ok": True, "errMsg": "config:ok"}
    moved = requests.post(
        f"{sim.base_url}/_sim/jssdk/verify", json={**verify, "url": page + "&x=1"}, timeout=5
    ).json()
    assert moved["ok"] is False and moved["errMsg"] == "config:invalid signature"
    api.get("/h5/jssdk", query_string={"url": page})
    assert len(sim.calls(path="/cgi-bin/ticket/getticket")) == 1  # cached in Redis
    assert (
        api.get("/h5/jssdk", query_string={"url": "https://evil.example.com/"}).status_code == 422
    )


def test_follow_through_the_campaign_qr_is_attributed(
    sim, h5_app, auth, sim_settings, env_to_sim, caplog
):
    api = h5_app.test_client()
    camp = create_campaign(api, auth, follow=True)
    links = api.get(f"/api/campaigns/{camp['id']}/links?userid=zhangsan", headers=auth).get_json()
    qr = links["follow_qr"]
    assert qr["scene"].startswith(f"h5.{camp['id']}.uzhangsan.") and len(qr["scene"]) <= 64
    assert requests.get(qr["image"], timeout=5).headers["Content-Type"] == "image/png"
    sim.follow("o_qr_fan", ticket=qr["ticket"])  # a new follower: subscribe with qrscene_
    sim.set_user("o_old_fan", subscribe=True)
    sim.scan("o_old_fan", ticket=qr["ticket"])  # a follower: SCAN
    sim.follow("o_forger", scene=f"h5.{camp['id']}.ulisi.AAAAAAAAAAAAAAAA")
    run_worker(sim_settings)
    with session_scope(sim_settings.database_url) as s:
        follows = s.execute(select(Event).where(Event.type == "h5.follow")).scalars().all()
        assert sorted(e.properties["via"] for e in follows) == ["oa.scan", "oa.subscribe"]
        assert {e.properties["sharer"] for e in follows} == {"u:zhangsan"}
        nodes = s.execute(select(Referral)).scalars().all()
        assert [(n.sharer_userid, n.depth) for n in nodes] == [("zhangsan", 1)] * 2
    assert "campaign QR scene refused" in caplog.text
    assert stats(api, auth, camp["id"])["follows"] == 2
    assert employee_code(api, auth, camp["id"], "zhangsan") == links["code"]
    assert LANDING["slug"] == camp["slug"]


def test_employee_asks_for_their_link_by_wecom_message(
    sim, sim_client, auth, sim_settings, env_to_sim
):
    camp = create_campaign(sim_client, auth)
    sim.add_rep("zhangsan", name="张三")
    url = f"/api/campaigns/{camp['id']}/links/send"
    sent = sim_client.post(url, json={"userid": "zhangsan", "request_key": "r1"}, headers=auth)
    again = sim_client.post(url, json={"userid": "zhangsan", "request_key": "r1"}, headers=auth)
    assert (
        sent.status_code == 202 and again.get_json()["message_id"] == sent.get_json()["message_id"]
    )
    assert sim_client.post(url, json={}, headers=auth).status_code == 422
    run_worker(sim_settings)
    [card] = sim.inbox(userid="zhangsan")
    link = employee_code(sim_client, auth, camp["id"], "zhangsan")
    assert card["payload"]["textcard"]["url"].endswith(f"/h5/c/{camp['slug']}?r={link}")
    assert "/h5/poster/" in card["payload"]["textcard"]["description"]


def test_following_through_the_own_page_qr_merges_the_browser_into_the_follower(
    sim, h5_app, auth, sim_settings, env_to_sim
):
    api = h5_app.test_client()
    camp = create_campaign(api, auth, follow=True)
    emp = employee_code(api, auth, camp["id"], "zhangsan")
    browser = visitor(h5_app)  # outside WeChat: a cookie only
    open_page(browser, camp["slug"], emp)
    browser.post(
        f"/h5/c/{camp['slug']}/form", data={"name": "周杰", "phone": "13800001234", "r": emp}
    )
    html = browser.get(f"/h5/c/{camp['slug']}/done").get_data(as_text=True)
    ticket = html.split("showqrcode?ticket=")[1].split('"')[0]
    sim.follow("o_follows_later", ticket=ticket)
    run_worker(sim_settings)
    with session_scope(sim_settings.database_url) as s:
        owner = s.execute(
            select(Identity.contact_id).where(Identity.value == "o_follows_later")
        ).scalar_one()
        kinds = {
            i.kind
            for i in s.execute(select(Identity).where(Identity.contact_id == owner)).scalars()
        }
        assert kinds == {"openid", "h5_visitor"}  # one person now
        assert s.get(Contact, owner).fields["phone"] == "13800001234"
        follow = s.execute(select(Event).where(Event.type == "h5.follow")).scalar_one()
        assert follow.contact_id == owner and follow.properties["sharer"] == "u:zhangsan"
        [node] = s.execute(select(Referral)).scalars().all()
        assert (node.contact_id, node.sharer_userid, node.depth) == (owner, "zhangsan", 1)


def test_a_crowd_fetches_the_jsapi_ticket_once(sim, sim_settings):
    import threading

    from bot.core import wechat

    tickets: list[str] = []
    barrier = threading.Barrier(8)

    def fetch() -> None:
        barrier.wait()
        tickets.append(wechat.jsapi_ticket(sim_settings))

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(tickets)) == 1 and len(tickets) == 8
    assert len(sim.calls(path="/cgi-bin/ticket/getticket")) == 1


def test_a_form_before_oauth_counts_once_after_the_merge(sim, h5_app, auth, sim_settings):
    api = h5_app.test_client()
    camp = create_campaign(api, auth)
    emp = employee_code(api, auth, camp["id"], "zhangsan")
    sim.follow("o_known_fan")  # an older contact: the follower
    browser = visitor(h5_app)  # first outside WeChat
    open_page(browser, camp["slug"], emp)
    form = {"name": "林", "phone": "13800005678", "r": emp}
    assert browser.post(f"/h5/c/{camp['slug']}/form", data=form).status_code == 303
    browser.environ_base["HTTP_USER_AGENT"] = "Mozilla/5.0 (iPhone) MicroMessenger/8.0.47"
    first = browser.get(f"/h5/c/{camp['slug']}")
    back = browser.get(authorize(sim, first.headers["Location"], **{"as": "o_known_fan"}))
    assert browser.get(back.headers["Location"]).status_code == 200  # a revisit, as the fan
    assert "提交成功" in browser.get(f"/h5/c/{camp['slug']}/done").get_data(as_text=True)
    assert browser.post(f"/h5/c/{camp['slug']}/form", data=form).status_code == 303
    assert api.get("/api/points/u:zhangsan", headers=auth).get_json()["balance"] == 10
    figures = stats(api, auth, camp["id"])
    assert (figures["forms"], figures["visits"], figures["unique_visitors"]) == (1, 1, 1)
    with session_scope(sim_settings.database_url) as s:
        fan = s.execute(
            select(Identity.contact_id).where(Identity.value == "o_known_fan")
        ).scalar_one()
        kinds = {
            i.kind for i in s.execute(select(Identity).where(Identity.contact_id == fan)).scalars()
        }
        form = s.execute(select(Event).where(Event.type == "h5.form_submitted")).scalar_one()
    assert kinds == {"openid", "h5_visitor"} and form.contact_id == fan
    assert form.dedupe_key != f"h5:form:{camp['id']}:{fan}"  # made under the browser's own id
