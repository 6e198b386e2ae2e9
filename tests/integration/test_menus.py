"""Menus as data through the simulator: the platform's limits as 422s naming the path, one
publish putting the default and conditional menus up (matched by the OA tag kept for the Yuchi
tag), a follower's click carrying the conditional menu's MenuId, clicks stamped with the menu
version, a platform refusal stored as a failed version, and the simulator's own rules."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from support import run_worker

from bot.core import db, wechat
from bot.core.models import Event, Identity, PlatformTag
from wxsim.actors import ActorError

DEFAULT = {
    "name": "默认菜单",
    "buttons": [
        {"type": "click", "name": "联系我们", "key": "MENU_CONTACT"},
        {
            "name": "更多",
            "sub_button": [{"type": "view", "name": "官网", "url": "https://example.com/"}],
        },
    ],
}
VIP = {
    "name": "会员菜单",
    "tag": "VIP",
    "buttons": [
        {"type": "click", "name": "会员专享", "key": "MENU_VIP"},
        {"type": "click", "name": "联系我们", "key": "MENU_CONTACT"},
        {"type": "view", "name": "会员中心", "url": "https://vip.example.com/"},
    ],
}


def contact_of(settings, openid: str) -> int:
    with db.session_scope(settings.database_url) as s:
        return s.execute(
            sa.select(Identity.contact_id).where(Identity.value == openid)
        ).scalar_one()


def clicks(settings, cid: int, type_: str = "oa.click") -> list[dict]:
    with db.session_scope(settings.database_url) as s:
        return list(
            s.execute(
                sa.select(Event.properties)
                .where(Event.contact_id == cid, Event.type == type_)
                .order_by(Event.id)
            ).scalars()
        )


def create(client, auth, menu: dict) -> dict:
    resp = client.post("/api/menus", json=menu, headers=auth)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


# --- the platform's limits -------------------------------------------------------------------


def _menu(*buttons: dict) -> dict:
    return {"name": "m", "buttons": list(buttons)}


CLICK = {"type": "click", "name": "按钮", "key": "K"}


@pytest.mark.parametrize(
    ("menu", "path", "says"),
    [
        (_menu(CLICK, CLICK, CLICK, CLICK), "buttons", "1 to 3 top buttons"),
        (_menu(), "buttons", "1 to 3 top buttons"),
        # 6 Chinese characters: 18 bytes at the top (16 allowed), although 6 < 16 characters
        (_menu({**CLICK, "name": "六个汉字按钮"}), "buttons.0.name", "at most 16 bytes"),
        (_menu({**CLICK, "name": "abcdefghijklmnop"}), None, None),  # 16 bytes: fine
        (
            _menu({"name": "更多", "sub_button": [{**CLICK, "name": "长" * 21}]}),
            "buttons.0.sub_button.0.name",
            "at most 60 bytes",
        ),
        (_menu({"name": "更多", "sub_button": [{**CLICK, "name": "长" * 20}]}), None, None),
        (_menu({"name": "更多", "sub_button": [CLICK] * 6}), "buttons.0.sub_button", "at most 5"),
        (_menu({"type": "click", "name": "按钮"}), "buttons.0.key", "required"),
        (_menu({**CLICK, "key": "k" * 129}), "buttons.0.key", "at most 128 bytes"),
        (_menu({"type": "view", "name": "网"}), "buttons.0.url", "required"),
        (_menu({"type": "view", "name": "网", "url": "ftp://x.cn/"}), "buttons.0.url", "http"),
        (
            _menu({"type": "miniprogram", "name": "小程序", "url": "https://x.cn/"}),
            "buttons.0.appid",
            "required",
        ),
        (_menu({"type": "media_id", "name": "图"}), "buttons.0.media_id", "required"),
        (_menu({"type": "bogus", "name": "按钮"}), "buttons.0.type", "one of"),
        (_menu({**CLICK, "colour": "red"}), "buttons.0.colour", "not a menu button field"),
    ],
)
def test_limits_are_422s_naming_the_path(client, auth, menu, path, says):
    resp = client.post("/api/menus", json=menu, headers=auth)
    if path is None:
        assert resp.status_code == 201, resp.get_json()
        return
    assert resp.status_code == 422, resp.get_json()
    assert says in resp.get_json()["fields"][path]
    assert client.get("/api/menus", headers=auth).get_json()["menus"] == []  # nothing stored


def test_one_default_menu_one_menu_per_tag_and_a_default_first(client, auth):
    resp = client.post("/api/menus/publish", headers=auth)
    assert resp.status_code == 422 and "default menu" in resp.get_json()["fields"]["menus"]
    first = create(client, auth, DEFAULT)
    again = client.post("/api/menus", json=DEFAULT, headers=auth)
    assert again.status_code == 422
    assert f"menu {first['id']} is the default" in again.get_json()["fields"]["tag"]
    create(client, auth, VIP)
    assert client.post("/api/menus", json=VIP, headers=auth).status_code == 422
    bad_tag = client.post("/api/menus", json={**VIP, "tag": "<b>"}, headers=auth)
    assert bad_tag.status_code == 422 and "tag" in bad_tag.get_json()["fields"]
    listed = client.get("/api/menus", headers=auth).get_json()
    assert [m["kind"] for m in listed["menus"]] == ["default", "conditional"]
    assert listed["live_version"] is None


def test_conditional_menus_link_to_three_domains_at_most(client, auth):
    create(client, auth, DEFAULT)
    for i in range(4):
        link = {"type": "view", "name": "网", "url": f"https://d{i}.example.com/"}
        create(client, auth, {"name": f"m{i}", "tag": f"T{i}", "buttons": [link]})
    resp = client.post("/api/menus/publish", headers=auth)
    assert resp.status_code == 422 and "4 domains" in resp.get_json()["fields"]["menus"]


# --- publish, match by tag, the click's version ----------------------------------------------


def test_a_conditional_menu_is_matched_by_tag_and_clicks_carry_the_version(
    sim, sim_settings, env_to_sim, sim_client, auth
):
    client = sim_client
    default = create(client, auth, DEFAULT)
    vip = create(client, auth, VIP)
    for openid in ("oVip", "oPlain"):
        assert sim.follow(openid).status == 200
    run_worker(sim_settings)
    vip_cid, plain_cid = contact_of(sim_settings, "oVip"), contact_of(sim_settings, "oPlain")
    resp = client.post(f"/api/contacts/{vip_cid}/tags", json={"tag": "VIP"}, headers=auth)
    assert resp.status_code in (200, 201), resp.get_json()
    run_worker(sim_settings)  # the tag goes to the platform: the OA tag and its follower

    resp = client.post("/api/menus/publish", headers=auth)
    assert resp.status_code == 201, resp.get_json()
    v1 = resp.get_json()
    with db.session_scope(sim_settings.database_url) as s:
        vip_tag_id = s.get(PlatformTag, "VIP").oa_tag_id
    assert [m["menu_id"] for m in v1["menus"]] == [default["id"], vip["id"]]
    assert v1["menus"][1]["tag_id"] == vip_tag_id
    [conditional] = sim.state.conditional_menus
    assert conditional["matchrule"] == {"tag_id": str(vip_tag_id)}
    assert str(conditional["menuid"]) == v1["menus"][1]["platform_menu_id"]
    assert sim.state.menu["button"][0]["key"] == "MENU_CONTACT"

    # the platform shows each follower their menu (trymatch), and only its buttons click
    oa = wechat.oa(sim_settings)
    tried = oa.call("post", "menu/trymatch", data={"user_id": "oVip"})
    assert tried["button"][0]["key"] == "MENU_VIP"
    tried = oa.call("post", "menu/trymatch", data={"user_id": "oPlain"})
    assert tried["button"][0]["key"] == "MENU_CONTACT"
    with pytest.raises(ActorError):
        sim.click("oPlain", "MENU_VIP")
    sim.advance(1)
    sim.click("oVip", "MENU_VIP")
    sim.click("oPlain", "MENU_CONTACT")
    sim.advance(1)
    sim.click("oVip", "MENU_CONTACT")  # a key both menus have: theirs is the VIP menu
    sim.view("oVip", "https://vip.example.com/")
    sim.view("oPlain", "https://example.com/")
    run_worker(sim_settings)
    vip_click, vip_contact = clicks(sim_settings, vip_cid)
    [plain_click] = clicks(sim_settings, plain_cid)
    assert "menu_id" not in vip_click  # a CLICK carries no MenuId: worked out from the tags
    for props in (vip_click, vip_contact):
        assert (props["menu_version"], props["menu"]) == (v1["version"], vip["id"])
    assert (plain_click["menu_version"], plain_click["menu"]) == (v1["version"], default["id"])
    [vip_view] = clicks(sim_settings, vip_cid, "oa.view")
    [plain_view] = clicks(sim_settings, plain_cid, "oa.view")
    assert vip_view["menu_id"] == v1["menus"][1]["platform_menu_id"]  # VIEW carries MenuId
    assert (vip_view["menu_version"], vip_view["menu"]) == (v1["version"], vip["id"])
    assert "menu_id" not in plain_view and plain_view["menu"] == default["id"]

    # publishing again: a new version, the old conditional menu replaced on the platform
    resp = client.put(
        f"/api/menus/{vip['id']}",
        json={**VIP, "buttons": [{"type": "click", "name": "新会员", "key": "MENU_VIP2"}]},
        headers=auth,
    )
    assert resp.status_code == 200, resp.get_json()
    v2 = client.post("/api/menus/publish", headers=auth).get_json()
    assert v2["version"] > v1["version"]
    [conditional] = sim.state.conditional_menus
    assert str(conditional["menuid"]) == v2["menus"][1]["platform_menu_id"]
    sim.advance(1)
    sim.click("oVip", "MENU_VIP2")
    run_worker(sim_settings)
    assert clicks(sim_settings, vip_cid)[-1]["menu_version"] == v2["version"]
    versions = client.get("/api/menus/versions", headers=auth).get_json()["versions"]
    assert [v["version"] for v in versions] == [v2["version"], v1["version"]]
    assert client.get("/api/menus", headers=auth).get_json()["live_version"] == v2["version"]


def test_a_platform_refusal_is_a_failed_version_and_the_live_one_stays(
    sim, sim_settings, env_to_sim, sim_client, auth
):
    client = sim_client
    create(client, auth, DEFAULT)
    v1 = client.post("/api/menus/publish", headers=auth).get_json()
    create(client, auth, VIP)
    with db.session_scope(sim_settings.database_url) as s:  # a tag id the platform forgot
        s.merge(PlatformTag(name="VIP", oa_tag_id=9999))
    resp = client.post("/api/menus/publish", headers=auth)
    assert resp.status_code == 502 and resp.get_json()["errcode"] == 40050
    versions = client.get("/api/menus/versions", headers=auth).get_json()["versions"]
    assert [v["status"] for v in versions] == ["failed", "published"]
    assert "40050" in versions[0]["error"]
    assert client.get("/api/menus", headers=auth).get_json()["live_version"] == v1["version"]


def test_the_simulator_keeps_the_conditional_menu_rules(sim, sim_settings, env_to_sim):
    oa = wechat.oa(sim_settings)
    buttons = [{"type": "click", "name": "按钮", "key": "K"}]

    def refused(path: str, data: dict) -> int | None:
        with pytest.raises(wechat.PlatformError) as exc:
            oa.call("post", path, data=data)
        return exc.value.errcode

    assert refused("menu/addconditional", {"button": buttons, "matchrule": {"tag_id": "2"}}) == (
        65303  # no default menu yet
    )
    oa.call("post", "menu/create", data={"button": buttons})
    assert refused("menu/addconditional", {"button": buttons, "matchrule": {}}) == 65304
    assert refused("menu/addconditional", {"button": buttons, "matchrule": {"sex": "1"}}) == 65320
    assert (
        refused("menu/addconditional", {"button": buttons, "matchrule": {"tag_id": "424242"}})
        == 40050
    )
    long_name = [{"type": "click", "name": "六个汉字按钮", "key": "K"}]
    assert refused("menu/create", {"button": long_name}) == 40018
    menuid = oa.call(
        "post", "menu/addconditional", data={"button": buttons, "matchrule": {"tag_id": "2"}}
    )["menuid"]
    got = oa.call("get", "menu/get")
    assert [m["menuid"] for m in got["conditionalmenu"]] == [int(menuid)]
    assert refused("menu/delconditional", {"menuid": "1"}) == 65301
    assert refused("menu/trymatch", {"user_id": "nobody"}) == 65302
    oa.call("post", "menu/delconditional", data={"menuid": menuid})
    assert "conditionalmenu" not in oa.call("get", "menu/get")
    sim.state.menu_creates[int(sim.state.now() // 86400)] = 2000  # the day's creates used up
    assert (
        refused("menu/addconditional", {"button": buttons, "matchrule": {"tag_id": "2"}}) == 45009
    )


def test_one_publish_at_a_time(sim, sim_settings, env_to_sim, sim_client, auth):
    from bot.core import queue
    from bot.menus import publish

    create(sim_client, auth, DEFAULT)
    lock = queue.get_redis(sim_settings).lock(publish.LOCK, timeout=30)
    assert lock.acquire()
    try:
        resp = sim_client.post("/api/menus/publish", headers=auth)
        assert resp.status_code == 409 and "under way" in resp.get_json()["error"]
        assert sim.state.menu is None  # nothing sent
    finally:
        lock.release()
    assert sim_client.post("/api/menus/publish", headers=auth).status_code == 201
    versions = sim_client.get("/api/menus/versions", headers=auth).get_json()["versions"]
    assert [v["status"] for v in versions] == ["published"]
