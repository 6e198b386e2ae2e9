"""The simulated Official Account API: every endpoint's happy path and error codes, tokens
(overlap, expiry, revocation), the 48-hour window, OAuth, QR codes, menus, JS-SDK and faults."""

from __future__ import annotations

import hashlib
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from wxsim.jssdk import jsapi_signature


class OA:
    """A bare HTTP client for the simulated OA API (no product code involved)."""

    def __init__(self, sim, settings):
        self.base, self.appid, self.secret = sim.base_url, settings.oa_appid, settings.oa_secret

    def fetch_token(self, **override) -> dict:
        params = {
            "grant_type": "client_credential",
            "appid": self.appid,
            "secret": self.secret,
            **override,
        }
        return requests.get(f"{self.base}/cgi-bin/token", params=params, timeout=5).json()

    def token(self) -> str:
        return self.fetch_token()["access_token"]

    def get(self, path: str, token: str | None = None, **params) -> dict:
        if token is not None:
            params["access_token"] = token
        return requests.get(f"{self.base}{path}", params=params, timeout=5).json()

    def post(self, path: str, body, token: str | None = None) -> dict:
        params = {"access_token": token} if token is not None else {}
        if isinstance(body, (bytes, str)):
            resp = requests.post(f"{self.base}{path}", params=params, data=body, timeout=5)
        else:
            resp = requests.post(f"{self.base}{path}", params=params, json=body, timeout=5)
        return resp.json()


@pytest.fixture
def oa_api(sim, sim_settings) -> OA:
    return OA(sim, sim_settings)


def code(answer: dict) -> int:
    return answer.get("errcode", 0)


def text_msg(openid: str, content: str = "您好") -> dict:
    return {"touser": openid, "msgtype": "text", "text": {"content": content}}


# --- tokens -------------------------------------------------------------------------------------


def test_token_happy_path_and_credential_errors(oa_api, sim):
    answer = oa_api.fetch_token()
    assert set(answer) == {"access_token", "expires_in"} and answer["expires_in"] == 7200
    assert code(oa_api.fetch_token(grant_type="password")) == 40002
    assert code(oa_api.fetch_token(appid="")) == 41002
    assert code(oa_api.fetch_token(appid="wx_wrong")) == 40013
    assert code(oa_api.fetch_token(secret="")) == 41004
    wrong = oa_api.fetch_token(secret="wrong-secret")
    assert code(wrong) == 40125 and "rid:" in wrong["errmsg"]
    assert sim.token_fetches("oa") == 1  # refused fetches issue nothing


def test_new_token_overlaps_the_old_one_for_five_minutes(oa_api, sim):
    first, second = oa_api.token(), oa_api.token()
    assert first != second and sim.token_fetches("oa") == 2
    sim.set_user("oT", last_interaction_ago=1)
    assert code(oa_api.post("/cgi-bin/message/custom/send", text_msg("oT"), first)) == 0
    sim.advance(301)
    assert code(oa_api.post("/cgi-bin/message/custom/send", text_msg("oT"), first)) == 40001
    assert code(oa_api.post("/cgi-bin/message/custom/send", text_msg("oT"), second)) == 0


def test_token_expiry_missing_and_revocation(oa_api, sim):
    sim.configure(token_ttl=60)
    token = oa_api.token()
    assert oa_api.fetch_token()["expires_in"] == 60
    assert code(oa_api.get("/cgi-bin/menu/delete", token)) == 0
    sim.advance(61)
    assert code(oa_api.get("/cgi-bin/menu/delete", token)) == 42001
    assert code(oa_api.get("/cgi-bin/menu/delete")) == 41001
    assert code(oa_api.get("/cgi-bin/menu/delete", "made-up")) == 40001
    fresh = oa_api.token()
    requests.post(f"{sim.base_url}/_sim/faults", json={"revoke_tokens": "oa"}, timeout=5)
    assert code(oa_api.get("/cgi-bin/menu/delete", fresh)) == 40001
    assert code(oa_api.get("/cgi-bin/menu/delete", oa_api.token())) == 0


def test_tokens_of_one_platform_are_never_valid_on_the_other(oa_api, sim, sim_settings):
    wecom = requests.get(
        f"{sim.base_url}/wecom/cgi-bin/gettoken",
        params={"corpid": sim_settings.wecom_corp_id, "corpsecret": sim_settings.wecom_secret},
        timeout=5,
    ).json()["access_token"]
    assert code(oa_api.get("/cgi-bin/menu/delete", wecom)) == 40001
    oa_token = oa_api.token()
    answer = requests.get(
        f"{sim.base_url}/wecom/cgi-bin/user/get",
        params={"access_token": oa_token, "userid": "x"},
        timeout=5,
    ).json()
    assert answer["errcode"] == 40014


def test_stable_token_is_stable_and_independent(oa_api, sim):
    body = {"grant_type": "client_credential", "appid": oa_api.appid, "secret": oa_api.secret}
    first = oa_api.post("/cgi-bin/stable_token", body)
    again = oa_api.post("/cgi-bin/stable_token", body)
    assert first["access_token"] == again["access_token"] and first["expires_in"] > 7000
    plain = oa_api.token()  # the token endpoint does not disturb the stable token
    assert oa_api.post("/cgi-bin/stable_token", body)["access_token"] == first["access_token"]
    forced = oa_api.post("/cgi-bin/stable_token", {**body, "force_refresh": True})
    assert forced["access_token"] != first["access_token"]
    for t in (first["access_token"], forced["access_token"], plain):
        assert code(oa_api.get("/cgi-bin/menu/delete", t)) == 0
    assert code(oa_api.post("/cgi-bin/stable_token", {**body, "secret": "x"})) == 40125
    assert code(oa_api.get("/cgi-bin/stable_token")) == 43002
    for _ in range(19):
        oa_api.post("/cgi-bin/stable_token", {**body, "force_refresh": True})
    assert code(oa_api.post("/cgi-bin/stable_token", {**body, "force_refresh": True})) == 45009


# --- messages ------------------------------------------------------------------------------------


def test_custom_message_lands_in_the_inbox(oa_api, sim):
    sim.set_user("oC", last_interaction_ago=60)
    token = oa_api.token()
    assert oa_api.post("/cgi-bin/message/custom/send", text_msg("oC", "你好"), token) == {
        "errcode": 0,
        "errmsg": "ok",
    }
    news = {
        "touser": "oC",
        "msgtype": "news",
        "news": {"articles": [{"title": "新品", "url": "https://example.com"}]},
    }
    assert code(oa_api.post("/cgi-bin/message/custom/send", news, token)) == 0
    inbox = requests.get(f"{sim.base_url}/_sim/inbox", params={"openid": "oC"}, timeout=5).json()
    assert [(m["kind"], m["text"]) for m in inbox["messages"]] == [
        ("custom", "你好"),
        ("custom", "新品"),
    ]
    assert inbox["messages"][0]["payload"] == text_msg("oC", "你好") and inbox["messages"][0]["at"]


def test_custom_message_rules(oa_api, sim):
    token = oa_api.token()
    send = lambda body: code(oa_api.post("/cgi-bin/message/custom/send", body, token))  # noqa: E731
    assert send(text_msg("oNobody")) == 40003
    sim.set_user("oLeft", subscribe=False, last_interaction_ago=5)
    assert send(text_msg("oLeft")) == 43004
    sim.set_user("oOld", last_interaction_ago=48 * 3600 + 1)
    assert send(text_msg("oOld")) == 45015
    sim.set_user("oNever")  # followed long ago, never interacted: outside the window
    assert send(text_msg("oNever")) == 45015
    sim.set_user("oNew", last_interaction_ago=48 * 3600 - 60)
    assert send(text_msg("oNew")) == 0
    sim.advance(61)  # the window closes as time passes
    assert send(text_msg("oNew")) == 45015
    sim.set_user("oOk", last_interaction_ago=0)
    assert send({"touser": "oOk", "msgtype": "fax", "fax": {}}) == 40008
    assert send(text_msg("oOk", "  ")) == 44004
    two = [{"title": "a", "url": "https://a"}, {"title": "b", "url": "https://b"}]
    assert send({"touser": "oOk", "msgtype": "news", "news": {"articles": two}}) == 45008
    assert code(oa_api.post("/cgi-bin/message/custom/send", b"{not json", token)) == 47001
    assert code(oa_api.post("/cgi-bin/message/custom/send", b"", token)) == 44002
    assert code(oa_api.get("/cgi-bin/message/custom/send", token)) == 43002
    assert sim.inbox("oOk") == [] and sim.inbox("oOld") == []


def test_template_message(oa_api, sim):
    sim.set_user("oTpl")  # no recent interaction: templates need none
    token = oa_api.token()
    body = {
        "touser": "oTpl",
        "template_id": "TPL_ORDER",
        "url": "https://example.com/o/1",
        "data": {"first": {"value": "订单已发货"}, "remark": {"value": "谢谢"}},
    }
    answer = oa_api.post("/cgi-bin/message/template/send", body, token)
    assert answer["errcode"] == 0 and answer["errmsg"] == "ok" and isinstance(answer["msgid"], int)
    [item] = sim.inbox("oTpl")
    assert item["kind"] == "template" and item["msgid"] == answer["msgid"]
    assert item["payload"] == body and item["text"] == "订单已发货 / 谢谢"
    # client_msg_id: one message per openid + id.
    dedupe = {**body, "client_msg_id": "order-1-shipped"}
    one = oa_api.post("/cgi-bin/message/template/send", dedupe, token)
    two = oa_api.post("/cgi-bin/message/template/send", dedupe, token)
    assert one["msgid"] == two["msgid"] and len(sim.inbox("oTpl")) == 2
    assert (
        code(oa_api.post("/cgi-bin/message/template/send", {**body, "touser": "x"}, token)) == 40003
    )
    assert (
        code(oa_api.post("/cgi-bin/message/template/send", {**body, "template_id": ""}, token))
        == 40037
    )
    sim.set_user("oTplGone", subscribe=False)
    gone = {**body, "touser": "oTplGone"}
    assert code(oa_api.post("/cgi-bin/message/template/send", gone, token)) == 43004


# --- users and tags ------------------------------------------------------------------------------


def test_user_info(oa_api, sim):
    token = oa_api.token()
    sim.follow("oInfo", scene="fair")  # callbacks reach Yuchi; state is what matters here
    sim.set_user("oInfo", unionid="uUnion1", remark="VIP")
    info = oa_api.get("/cgi-bin/user/info", token, openid="oInfo", lang="zh_CN")
    assert info["subscribe"] == 1 and info["openid"] == "oInfo" and info["unionid"] == "uUnion1"
    assert info["subscribe_scene"] == "ADD_SCENE_QR_CODE" and info["qr_scene_str"] == "fair"
    assert info["remark"] == "VIP" and info["tagid_list"] == [] and "errcode" not in info
    assert "nickname" not in info and "headimgurl" not in info
    sim.unfollow("oInfo")
    assert oa_api.get("/cgi-bin/user/info", token, openid="oInfo") == {
        "subscribe": 0,
        "openid": "oInfo",
        "unionid": "uUnion1",
    }
    assert code(oa_api.get("/cgi-bin/user/info", token, openid="oMissing")) == 40003


def test_tags(oa_api, sim):
    token = oa_api.token()
    created = oa_api.post("/cgi-bin/tags/create", {"tag": {"name": "意向客户"}}, token)
    tag_id = created["tag"]["id"]
    assert created == {"tag": {"id": tag_id, "name": "意向客户"}} and tag_id >= 100
    assert code(oa_api.post("/cgi-bin/tags/create", {"tag": {"name": "意向客户"}}, token)) == 45157
    assert code(oa_api.post("/cgi-bin/tags/create", {"tag": {"name": "长" * 31}}, token)) == 45158
    for openid in ("oA", "oB"):
        sim.set_user(openid)
    tag = {"openid_list": ["oA", "oB"], "tagid": tag_id}
    assert code(oa_api.post("/cgi-bin/tags/members/batchtagging", tag, token)) == 0
    tags = oa_api.get("/cgi-bin/tags/get", token)["tags"]
    assert {"id": 2, "name": "星标组", "count": 0} in tags
    assert {"id": tag_id, "name": "意向客户", "count": 2} in tags
    assert oa_api.post("/cgi-bin/tags/getidlist", {"openid": "oA"}, token) == {
        "tagid_list": [tag_id]
    }
    fans = oa_api.post("/cgi-bin/user/tag/get", {"tagid": tag_id, "next_openid": ""}, token)
    assert fans["count"] == 2 and fans["data"]["openid"] == ["oA", "oB"]
    untag = {"openid_list": ["oA"], "tagid": tag_id}
    assert code(oa_api.post("/cgi-bin/tags/members/batchuntagging", untag, token)) == 0
    assert oa_api.get("/cgi-bin/user/info", token, openid="oA")["tagid_list"] == []
    # errors
    many = {"openid_list": [f"o{i}" for i in range(51)], "tagid": tag_id}
    assert code(oa_api.post("/cgi-bin/tags/members/batchtagging", many, token)) == 40032
    empty = {"openid_list": [], "tagid": tag_id}
    assert code(oa_api.post("/cgi-bin/tags/members/batchtagging", empty, token)) == 40032
    bad_tag = {"openid_list": ["oA"], "tagid": 99999}
    assert code(oa_api.post("/cgi-bin/tags/members/batchtagging", bad_tag, token)) == 45159
    stranger = {"openid_list": ["oStranger"], "tagid": tag_id}
    assert code(oa_api.post("/cgi-bin/tags/members/batchtagging", stranger, token)) == 40003
    assert code(oa_api.post("/cgi-bin/tags/getidlist", {"openid": "oStranger"}, token)) == 40003
    assert code(oa_api.post("/cgi-bin/tags/delete", {"tag": {"id": 2}}, token)) == 45058
    rename = {"tag": {"id": tag_id, "name": "高意向"}}
    assert code(oa_api.post("/cgi-bin/tags/update", rename, token)) == 0
    assert code(oa_api.post("/cgi-bin/tags/delete", {"tag": {"id": tag_id}}, token)) == 0
    assert code(oa_api.post("/cgi-bin/tags/delete", {"tag": {"id": tag_id}}, token)) == 45159
    assert oa_api.post("/cgi-bin/tags/getidlist", {"openid": "oB"}, token) == {"tagid_list": []}


def test_tag_limits(oa_api, sim):
    token = oa_api.token()
    ids = [
        oa_api.post("/cgi-bin/tags/create", {"tag": {"name": f"t{i}"}}, token)["tag"]["id"]
        for i in range(100)
    ]
    assert code(oa_api.post("/cgi-bin/tags/create", {"tag": {"name": "one more"}}, token)) == 45056
    sim.set_user("oMany")
    for tag_id in ids[:20]:
        body = {"openid_list": ["oMany"], "tagid": tag_id}
        assert code(oa_api.post("/cgi-bin/tags/members/batchtagging", body, token)) == 0
    body = {"openid_list": ["oMany"], "tagid": ids[20]}
    assert code(oa_api.post("/cgi-bin/tags/members/batchtagging", body, token)) == 45059
    tags = requests.get(f"{sim.base_url}/_sim/tags", timeout=5).json()["oa"]
    assert len(tags) == 101


# --- QR codes ------------------------------------------------------------------------------------


def test_qrcode_create_all_actions_and_show(oa_api, sim):
    token = oa_api.token()
    cases = [
        (
            {
                "action_name": "QR_SCENE",
                "expire_seconds": 600,
                "action_info": {"scene": {"scene_id": 7}},
            },
            True,
        ),
        (
            {
                "action_name": "QR_STR_SCENE",
                "expire_seconds": 2592000,
                "action_info": {"scene": {"scene_str": "spring"}},
            },
            True,
        ),
        ({"action_name": "QR_LIMIT_SCENE", "action_info": {"scene": {"scene_id": 100000}}}, False),
        (
            {
                "action_name": "QR_LIMIT_STR_SCENE",
                "action_info": {"scene": {"scene_str": "s" * 64}},
            },
            False,
        ),
    ]
    for body, temporary in cases:
        answer = oa_api.post("/cgi-bin/qrcode/create", body, token)
        assert answer["ticket"] and answer["url"].startswith("http://weixin.qq.com/q/")
        assert ("expire_seconds" in answer) is temporary
        if temporary:
            assert answer["expire_seconds"] == body["expire_seconds"]
    default = oa_api.post(
        "/cgi-bin/qrcode/create",
        {"action_name": "QR_SCENE", "action_info": {"scene": {"scene_id": 1}}},
        token,
    )
    assert default["expire_seconds"] == 60
    image = requests.get(
        f"{sim.base_url}/mp/cgi-bin/showqrcode", params={"ticket": default["ticket"]}, timeout=5
    )
    assert image.status_code == 200 and image.headers["Content-Type"] == "image/png"
    assert image.content.startswith(b"\x89PNG\r\n\x1a\n") and b"IEND" in image.content
    sim.advance(61)
    gone = requests.get(
        f"{sim.base_url}/mp/cgi-bin/showqrcode", params={"ticket": default["ticket"]}, timeout=5
    )
    assert gone.status_code == 404
    unknown = requests.get(f"{sim.base_url}/mp/cgi-bin/showqrcode?ticket=nope", timeout=5)
    assert unknown.status_code == 404
    listed = requests.get(f"{sim.base_url}/_sim/qrcodes", timeout=5).json()["qrcodes"]
    assert {q["scene"] for q in listed} == {"7", "spring", "100000", "s" * 64, "1"}


@pytest.mark.parametrize(
    "body",
    [
        {"action_name": "QR_FOREVER", "action_info": {"scene": {"scene_id": 1}}},
        {"action_name": "QR_STR_SCENE", "action_info": {"scene": {"scene_str": ""}}},
        {"action_name": "QR_STR_SCENE", "action_info": {"scene": {"scene_str": "s" * 65}}},
        {
            "action_name": "QR_SCENE",
            "expire_seconds": 2592001,
            "action_info": {"scene": {"scene_id": 1}},
        },
        {"action_name": "QR_SCENE", "expire_seconds": 0, "action_info": {"scene": {"scene_id": 1}}},
        {"action_name": "QR_LIMIT_SCENE", "action_info": {"scene": {"scene_id": 100001}}},
        {"action_name": "QR_SCENE", "action_info": {"scene": {"scene_id": "7"}}},
        {"action_name": "QR_SCENE", "action_info": {}},
    ],
)
def test_qrcode_create_rejects_bad_parameters(oa_api, body):
    assert code(oa_api.post("/cgi-bin/qrcode/create", body, oa_api.token())) == 40035


# --- menu ----------------------------------------------------------------------------------------


def test_menu_create_get_delete(oa_api, sim):
    token = oa_api.token()
    assert code(oa_api.get("/cgi-bin/menu/get", token)) == 46003
    menu = {
        "button": [
            {"type": "click", "name": "今日推荐", "key": "MENU_TODAY"},
            {
                "name": "产品",
                "sub_button": [
                    {"type": "view", "name": "官网", "url": "https://example.com"},
                    {"type": "click", "name": "价格", "key": "MENU_PRICE"},
                    {"type": "scancode_push", "name": "扫一扫", "key": "SCAN"},
                ],
            },
            {
                "type": "miniprogram",
                "name": "小程序",
                "url": "https://e.com",
                "appid": "wxa",
                "pagepath": "p/i",
            },
        ]
    }
    assert oa_api.post("/cgi-bin/menu/create", menu, token) == {"errcode": 0, "errmsg": "ok"}
    got = oa_api.get("/cgi-bin/menu/get", token)["menu"]
    assert got["button"] == menu["button"] and isinstance(got["menuid"], int)
    sim.follow("oMenu")
    with pytest.raises(Exception, match="no CLICK button"):
        sim.click("oMenu", "NOT_IN_MENU")
    assert sim.click("oMenu", "MENU_PRICE").status == 200
    assert code(oa_api.get("/cgi-bin/menu/delete", token)) == 0
    assert code(oa_api.get("/cgi-bin/menu/get", token)) == 46003


@pytest.mark.parametrize(
    ("menu", "errcode"),
    [
        ({"button": []}, 40016),
        ({"button": [{"type": "click", "name": f"b{i}", "key": "k"} for i in range(4)]}, 40016),
        ({"button": [{"type": "teleport", "name": "x", "key": "k"}]}, 40017),
        ({"button": [{"type": "click", "name": "这个按钮名字太长了啊", "key": "k"}]}, 40018),
        ({"button": [{"type": "click", "name": "x"}]}, 40019),
        ({"button": [{"type": "click", "name": "x", "key": "k" * 129}]}, 40019),
        ({"button": [{"type": "view", "name": "x"}]}, 40020),
        (
            {
                "button": [
                    {"name": "m", "sub_button": [{"type": "click", "name": "s", "key": "k"}] * 6}
                ]
            },
            40023,
        ),
        (
            {"button": [{"name": "m", "sub_button": [{"type": "bogus", "name": "s", "key": "k"}]}]},
            40024,
        ),
        (
            {
                "button": [
                    {"name": "m", "sub_button": [{"type": "click", "name": "长" * 21, "key": "k"}]}
                ]
            },
            40025,
        ),
        ({"button": [{"name": "m", "sub_button": [{"type": "click", "name": "s"}]}]}, 40026),
        (
            {"button": [{"name": "m", "sub_button": [{"type": "view", "name": "s", "url": ""}]}]},
            40027,
        ),
    ],
)
def test_menu_validation(oa_api, menu, errcode):
    assert code(oa_api.post("/cgi-bin/menu/create", menu, oa_api.token())) == errcode


# --- JS-SDK ----------------------------------------------------------------------------------------


def test_jsapi_ticket_and_signature_verification(oa_api, sim):
    token = oa_api.token()
    answer = oa_api.get("/cgi-bin/ticket/getticket", token, type="jsapi")
    assert answer["errcode"] == 0 and answer["expires_in"] == 7200 and answer["ticket"]
    assert (
        oa_api.get("/cgi-bin/ticket/getticket", token, type="jsapi")["ticket"] == answer["ticket"]
    )
    assert code(oa_api.get("/cgi-bin/ticket/getticket", token, type="nope")) == 40035
    url, nonce, ts = "https://h5.example.com/r/abc?x=1", "Wm3WZYTPz0wzccnW", str(int(time.time()))
    signature = jsapi_signature(answer["ticket"], nonce, ts, url)
    verify = f"{sim.base_url}/_sim/jssdk/verify"
    body = {"appId": oa_api.appid, "timestamp": ts, "nonceStr": nonce, "url": url + "#frag"}
    ok = requests.post(verify, json={**body, "signature": signature}, timeout=5).json()
    assert ok == {"ok": True, "errMsg": "config:ok"}
    bad = requests.post(verify, json={**body, "signature": "0" * 40}, timeout=5).json()
    assert bad == {"ok": False, "errMsg": "config:invalid signature"}
    other_app = requests.post(
        verify, json={**body, "appId": "wxother", "signature": signature}, timeout=5
    )
    assert other_app.json()["errMsg"] == "config:invalid appid"
    sim.advance(7201)  # the ticket expired: the same signature no longer verifies
    assert (
        requests.post(verify, json={**body, "signature": signature}, timeout=5).json()["ok"]
        is False
    )


def test_jsapi_signature_matches_the_published_example():
    ticket = (
        "sM4AOVdWfPE4DxkXGEs8VMCPGGVi4C3VM0P37wVUCFvkVAy_90u5h9nbSlYy3-Sl-HhTdfl2fzFy1AOcHKP7qg"
    )
    signature = jsapi_signature(
        ticket, "Wm3WZYTPz0wzccnW", "1414587457", "http://mp.weixin.qq.com?params=value"
    )
    assert signature == "0f9de62fce790f9a083d5c99e95740ceb90c27ed"


# --- OAuth -----------------------------------------------------------------------------------------


def authorize(sim, appid: str, scope: str = "snsapi_base", **extra):
    params = {
        "appid": appid,
        "redirect_uri": "https://h5.example.com/oauth/cb?from=menu",
        "response_type": "code",
        "scope": scope,
        "state": "st-42",
        **extra,
    }
    return requests.get(
        f"{sim.base_url}/connect/oauth2/authorize", params=params, allow_redirects=False, timeout=5
    )


def redirected(resp) -> dict[str, str]:
    assert resp.status_code == 302, resp.text
    location = urlsplit(resp.headers["Location"])
    assert (location.netloc, location.path) == ("h5.example.com", "/oauth/cb")
    return {k: v[0] for k, v in parse_qs(location.query).items()}


def test_oauth_base_flow(oa_api, sim):
    query = redirected(authorize(sim, oa_api.appid, **{"as": "oWeb"}))
    assert query["from"] == "menu" and query["state"] == "st-42" and query["code"]
    exchange = {
        "appid": oa_api.appid,
        "secret": oa_api.secret,
        "code": query["code"],
        "grant_type": "authorization_code",
    }
    answer = oa_api.get("/sns/oauth2/access_token", **exchange)
    assert answer["openid"] == "oWeb" and answer["scope"] == "snsapi_base"
    assert answer["expires_in"] == 7200 and answer["refresh_token"] and "errcode" not in answer
    assert code(oa_api.get("/sns/oauth2/access_token", **exchange)) == 40163  # used once
    userinfo = oa_api.get("/sns/userinfo", answer["access_token"], openid="oWeb", lang="zh_CN")
    assert code(userinfo) == 48001  # snsapi_base cannot read the profile
    assert code(oa_api.get("/sns/auth", answer["access_token"], openid="oWeb")) == 0
    refreshed = oa_api.get(
        "/sns/oauth2/refresh_token",
        appid=oa_api.appid,
        grant_type="refresh_token",
        refresh_token=answer["refresh_token"],
    )
    assert refreshed["openid"] == "oWeb" and refreshed["access_token"] != answer["access_token"]
    assert sim.state.user("oWeb").subscribe is False  # authorizing is not following


def test_oauth_userinfo_flow_and_errors(oa_api, sim):
    sim.set_user("oProfile", nickname="小鱼", unionid="uProfile", city="杭州")
    sim.browser(openid="oProfile")
    query = redirected(authorize(sim, oa_api.appid, scope="snsapi_userinfo"))
    exchange = {"appid": oa_api.appid, "secret": oa_api.secret, "grant_type": "authorization_code"}
    answer = oa_api.get("/sns/oauth2/access_token", code=query["code"], **exchange)
    assert answer["unionid"] == "uProfile" and answer["scope"] == "snsapi_userinfo"
    info = oa_api.get("/sns/userinfo", answer["access_token"], openid="oProfile")
    assert info["nickname"] == "小鱼" and info["city"] == "杭州" and info["unionid"] == "uProfile"
    assert code(oa_api.get("/sns/userinfo", answer["access_token"], openid="oSomeoneElse")) == 40003
    assert code(oa_api.get("/sns/userinfo", "bogus", openid="oProfile")) == 40001
    sim.advance(7201)
    assert code(oa_api.get("/sns/userinfo", answer["access_token"], openid="oProfile")) == 42001
    # codes expire after five minutes; unknown codes and wrong credentials
    late = redirected(authorize(sim, oa_api.appid))["code"]
    sim.advance(301)
    assert code(oa_api.get("/sns/oauth2/access_token", code=late, **exchange)) == 40029
    assert code(oa_api.get("/sns/oauth2/access_token", code="nope", **exchange)) == 40029
    fresh = redirected(authorize(sim, oa_api.appid))["code"]
    assert (
        code(oa_api.get("/sns/oauth2/access_token", code=fresh, **{**exchange, "secret": "x"}))
        == 40125
    )
    assert (
        code(oa_api.get("/sns/oauth2/access_token", code=fresh, **{**exchange, "appid": "wxz"}))
        == 40013
    )
    assert (
        code(oa_api.get("/sns/oauth2/access_token", code=fresh, **{**exchange, "grant_type": "x"}))
        == 40002
    )


def test_oauth_authorize_pages(oa_api, sim):
    no_user = authorize(sim, oa_api.appid)
    assert no_user.status_code == 200 and "请在微信客户端打开" in no_user.text
    assert authorize(sim, "wx_unknown", **{"as": "o1"}).headers["X-Wxsim-Error"] == "10016"
    assert (
        authorize(sim, oa_api.appid, scope="snsapi_login", **{"as": "o1"}).headers["X-Wxsim-Error"]
        == "10005"
    )
    assert (
        authorize(sim, oa_api.appid, response_type="token", **{"as": "o1"}).headers["X-Wxsim-Error"]
        == "10004"
    )
    bad_uri = authorize(sim, oa_api.appid, redirect_uri="javascript:alert(1)", **{"as": "o1"})
    assert bad_uri.headers["X-Wxsim-Error"] == "10003"
    declined = redirected(
        authorize(sim, oa_api.appid, scope="snsapi_userinfo", decline="1", **{"as": "o1"})
    )
    assert declined == {"from": "menu", "state": "st-42"}


# --- faults ----------------------------------------------------------------------------------------


def test_busy_next_and_error_rate(oa_api, sim):
    token = oa_api.token()
    sim.faults(busy_next=2)
    answers = [code(oa_api.get("/cgi-bin/menu/delete", token)) for _ in range(3)]
    assert answers == [-1, -1, 0]
    sim.faults(error_rate=1.0)
    busy = oa_api.get("/cgi-bin/menu/delete", token)
    assert busy["errcode"] == -1 and busy["errmsg"].startswith("system error")
    assert code(oa_api.fetch_token()) == -1  # the token endpoint is not spared
    sim.faults(error_rate=0.0)
    assert code(oa_api.get("/cgi-bin/menu/delete", token)) == 0


def test_error_rate_is_seeded_and_roughly_right(oa_api, sim):
    token = oa_api.token()
    sim.faults(error_rate=0.5)
    outcomes = [code(oa_api.get("/cgi-bin/menu/delete", token)) for _ in range(60)]
    assert 15 <= outcomes.count(-1) <= 45
    sim.reset()  # same seed: the same sequence again
    token = oa_api.token()
    sim.faults(error_rate=0.5)
    assert [code(oa_api.get("/cgi-bin/menu/delete", token)) for _ in range(60)] == outcomes


def test_http_500_latency_and_rate_limit(oa_api, sim):
    token = oa_api.token()
    sim.faults(http_500_rate=1.0)
    resp = requests.get(
        f"{sim.base_url}/cgi-bin/menu/delete", params={"access_token": token}, timeout=5
    )
    assert resp.status_code == 500
    sim.faults(http_500_rate=0.0, latency_ms=150)
    started = time.monotonic()
    assert code(oa_api.get("/cgi-bin/menu/delete", token)) == 0
    assert time.monotonic() - started >= 0.15
    sim.faults(latency_ms=0, rate_limit=3)
    answers = [code(oa_api.get("/cgi-bin/menu/delete", token)) for _ in range(5)]
    assert answers[:3] == [0, 0, 0] and answers[3:] == [45009, 45009]
    time.sleep(1.05)
    assert code(oa_api.get("/cgi-bin/menu/delete", token)) == 0


def test_faults_can_target_an_app_or_a_path(oa_api, sim):
    token = oa_api.token()
    sim.set_user("oF", last_interaction_ago=1)
    sim.faults(error_rate=1.0, apps=["wecom"])
    assert code(oa_api.get("/cgi-bin/menu/delete", token)) == 0
    sim.faults(apps=None, paths=["message/custom/send"])
    assert code(oa_api.post("/cgi-bin/message/custom/send", text_msg("oF"), token)) == -1
    assert code(oa_api.get("/cgi-bin/menu/delete", token)) == 0


def test_faults_control_api_and_reset(oa_api, sim):
    url = f"{sim.base_url}/_sim/faults"
    answer = requests.post(url, json={"busy_next": 1, "latency_ms": 5}, timeout=5).json()
    assert answer["busy_next"] == 1 and answer["latency_ms"] == 5
    assert requests.post(url, json={"nonsense": 1}, timeout=5).status_code == 400
    assert requests.post(f"{sim.base_url}/_sim/reset", timeout=5).json() == {"ok": True}
    assert requests.get(url, timeout=5).json()["busy_next"] == 0
    assert code(oa_api.fetch_token()) == 0


# --- inspection ----------------------------------------------------------------------------------


def test_inspection_api(oa_api, sim):
    base = f"{sim.base_url}/_sim"
    user = requests.post(
        f"{base}/users", json={"openid": "oI", "last_interaction_ago": 10}, timeout=5
    ).json()
    assert user["openid"] == "oI" and user["in_window"] is True and user["subscribe"] is True
    assert requests.get(f"{base}/users", params={"openid": "oI"}, timeout=5).json()["in_window"]
    assert requests.get(f"{base}/users", params={"openid": "oZ"}, timeout=5).status_code == 404
    assert (
        requests.post(f"{base}/users", json={"openid": "oI", "bogus": 1}, timeout=5).status_code
        == 400
    )
    assert requests.get(f"{base}/inbox", timeout=5).status_code == 400
    oa_api.token()
    oa_api.token()
    tokens = requests.get(f"{base}/tokens", timeout=5).json()
    assert tokens["fetches"] == {"oa": 2} and tokens["live"] == {"oa": 2}
    assert requests.post(f"{base}/tokens/revoke", json={"app": "oa"}, timeout=5).json() == {
        "revoked": 2
    }
    clock = requests.post(f"{base}/clock", json={"advance": 3600}, timeout=5).json()
    assert clock["offset"] == 3600
    calls = requests.get(f"{base}/calls", params={"app": "oa", "path": "token"}, timeout=5).json()
    assert [c["errcode"] for c in calls["calls"]] == [0, 0]
    config = requests.get(f"{base}/config", timeout=5).json()
    assert config["oa_appid"] == oa_api.appid and "oa_secret" not in config
    index = requests.get(f"{base}/", timeout=5).json()
    assert index["env"]["WECOM_API_BASE"] == f"{sim.base_url}/wecom"
    assert sim.env["WECHAT_MP_BASE"] == f"{sim.base_url}/mp"


def test_bulk_users_and_all_inboxes(oa_api, sim):
    base = f"{sim.base_url}/_sim"
    users = [{"openid": f"oB{i}", "last_interaction_ago": 3600} for i in range(3)]
    users.append({"openid": "oOld", "last_interaction_ago": 49 * 3600, "subscribe": True})
    answer = requests.post(f"{base}/users", json=users, timeout=5)
    assert answer.status_code == 200 and answer.json() == {"upserted": 4}
    listed = {u["openid"]: u for u in requests.get(f"{base}/users", timeout=5).json()["users"]}
    assert all(listed[f"oB{i}"]["in_window"] for i in range(3))
    assert listed["oOld"]["in_window"] is False and listed["oOld"]["subscribe"] is True
    # All or nothing: one bad item changes nobody.
    for bad in ([{"openid": "oN1"}, {"openid": "oN2", "bogus": 1}], [{"openid": "oN1"}, "x"]):
        assert requests.post(f"{base}/users", json=bad, timeout=5).status_code == 400
    assert requests.get(f"{base}/users", params={"openid": "oN1"}, timeout=5).status_code == 404
    assert (
        requests.post(f"{base}/users", json=[{"last_interaction_ago": 1}], timeout=5).status_code
        == 400
    )

    token = oa_api.token()
    for openid in ("oB1", "oB0", "oB1"):
        assert (
            code(oa_api.post("/cgi-bin/message/custom/send", text_msg(openid, openid), token)) == 0
        )
    assert code(oa_api.post("/cgi-bin/message/custom/send", text_msg("oOld"), token)) == 45015
    template = {"touser": "oB2", "template_id": "T1", "data": {"first": {"value": "到货"}}}
    assert code(oa_api.post("/cgi-bin/message/template/send", template, token)) == 0
    everything = requests.get(f"{base}/inboxes", timeout=5).json()["messages"]
    custom = requests.get(f"{base}/inboxes", params={"kind": "custom"}, timeout=5).json()
    assert [(m["openid"], m["text"]) for m in custom["messages"]] == [
        ("oB1", "oB1"),
        ("oB0", "oB0"),
        ("oB1", "oB1"),
    ]
    first = custom["messages"][0]
    assert first["kind"] == "custom" and first["at"] and first["payload"] == text_msg("oB1", "oB1")
    assert [(m["openid"], m["kind"]) for m in everything] == [
        ("oB1", "custom"),
        ("oB0", "custom"),
        ("oB1", "custom"),
        ("oB2", "template"),
    ]


def test_signature_helper_is_plain_sha1():
    raw = "jsapi_ticket=T&noncestr=N&timestamp=1&url=http://a/b"
    assert jsapi_signature("T", "N", 1, "http://a/b#x") == hashlib.sha1(raw.encode()).hexdigest()
