"""The simulated WeCom API: tokens, application messages, staff, external contacts, corp tags,
contact ways, welcome messages (once, within 20 s), member OAuth, JS-SDK tickets and faults."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from wxsim.jssdk import jsapi_signature


class WeCom:
    def __init__(self, sim, settings):
        self.base = f"{sim.base_url}/wecom"
        self.corp_id, self.secret = settings.wecom_corp_id, settings.wecom_secret
        self.agent_id = settings.wecom_agent_id

    def fetch_token(self, **override) -> dict:
        params = {"corpid": self.corp_id, "corpsecret": self.secret, **override}
        return requests.get(f"{self.base}/cgi-bin/gettoken", params=params, timeout=5).json()

    def token(self) -> str:
        return self.fetch_token()["access_token"]

    def get(self, path: str, token: str | None = None, **params) -> dict:
        if token is not None:
            params["access_token"] = token
        return requests.get(f"{self.base}/cgi-bin/{path}", params=params, timeout=5).json()

    def post(self, path: str, body, token: str) -> dict:
        kw = {"data": body} if isinstance(body, bytes) else {"json": body}
        resp = requests.post(
            f"{self.base}/cgi-bin/{path}", params={"access_token": token}, timeout=5, **kw
        )
        return resp.json()


@pytest.fixture
def wecom(sim, sim_settings) -> WeCom:
    sim.configure(callback_base=None)  # Yuchi has no WeCom callback yet; state is what matters
    return WeCom(sim, sim_settings)


def code(answer: dict) -> int:
    return answer["errcode"]


def app_text(wecom: WeCom, touser: str, content: str = "新客户来了") -> dict:
    return {
        "touser": touser,
        "msgtype": "text",
        "agentid": wecom.agent_id,
        "text": {"content": content},
    }


# --- tokens ---------------------------------------------------------------------------------


def test_gettoken_and_credential_errors(wecom, sim):
    first = wecom.fetch_token()
    assert first["errcode"] == 0 and first["errmsg"] == "ok" and first["expires_in"] == 7200
    again = wecom.fetch_token()  # WeCom answers the same token while it is valid
    assert again["access_token"] == first["access_token"] and sim.token_fetches("wecom") == 2
    assert code(wecom.fetch_token(corpid="")) == 41002
    assert code(wecom.fetch_token(corpid="ww_other")) == 40013
    assert code(wecom.fetch_token(corpsecret="")) == 41004
    wrong = wecom.fetch_token(corpsecret="wrong")
    assert code(wrong) == 40001 and "more info at" in wrong["errmsg"]


def test_token_expiry_revocation_and_missing(wecom, sim):
    sim.configure(token_ttl=30)
    token = wecom.token()
    sim.add_rep("zhangsan", name="张三")
    assert code(wecom.get("user/get", token, userid="zhangsan")) == 0
    sim.advance(31)
    assert code(wecom.get("user/get", token, userid="zhangsan")) == 42001
    fresh = wecom.token()
    assert fresh != token
    assert code(wecom.get("user/get", userid="zhangsan")) == 41001
    assert code(wecom.get("user/get", "bogus", userid="zhangsan")) == 40014
    assert sim.revoke_tokens("wecom") == 1
    assert code(wecom.get("user/get", fresh, userid="zhangsan")) == 40014
    assert wecom.token() != fresh  # a revoked token is never handed out again


# --- staff and application messages ----------------------------------------------------------


def test_user_get(wecom, sim):
    sim.add_rep("zhangsan", name="张三", position="销售")
    answer = wecom.get("user/get", wecom.token(), userid="zhangsan")
    assert answer["errcode"] == 0 and answer["name"] == "张三" and answer["status"] == 1
    assert answer["userid"] == "zhangsan" and answer["department"] == [1]
    assert code(wecom.get("user/get", wecom.token(), userid="nobody")) == 60111


def test_message_send_to_reps(wecom, sim):
    sim.add_rep("zhangsan")
    sim.add_rep("lisi")
    token = wecom.token()
    answer = wecom.post("message/send", app_text(wecom, "zhangsan|lisi|ghost"), token)
    assert answer["errcode"] == 0 and answer["invaliduser"] == "ghost" and answer["msgid"]
    card = {
        "touser": "zhangsan",
        "msgtype": "textcard",
        "agentid": str(wecom.agent_id),  # WeCom also takes the id as a string
        "textcard": {
            "title": "新线索",
            "description": "客户 A 询价",
            "url": "https://e.com/c/1",
            "btntxt": "详情",
        },
    }
    answer = wecom.post("message/send", card, token)
    assert answer["errcode"] == 0 and "invaliduser" not in answer
    md = {
        "touser": "lisi",
        "msgtype": "markdown",
        "agentid": wecom.agent_id,
        "markdown": {"content": "**hi**"},
    }
    assert code(wecom.post("message/send", md, token)) == 0
    inbox = requests.get(
        f"{sim.base_url}/_sim/inbox", params={"userid": "zhangsan"}, timeout=5
    ).json()
    assert [(m["kind"], m["text"]) for m in inbox["messages"]] == [
        ("app", "新客户来了"),
        ("app", "新线索"),
    ]
    assert [m["text"] for m in sim.inbox(userid="lisi")] == ["新客户来了", "**hi**"]


def test_message_send_errors(wecom, sim):
    sim.add_rep("zhangsan")
    sim.add_rep("gone", status=5)
    token = wecom.token()
    assert code(wecom.post("message/send", app_text(wecom, "ghost|gone"), token)) == 81013
    assert (
        code(wecom.post("message/send", {**app_text(wecom, "zhangsan"), "agentid": 999}, token))
        == 40056
    )
    no_agent = app_text(wecom, "zhangsan")
    del no_agent["agentid"]
    assert code(wecom.post("message/send", no_agent, token)) == 41011
    assert (
        code(wecom.post("message/send", {**app_text(wecom, "zhangsan"), "msgtype": "fax"}, token))
        == 40008
    )
    assert code(wecom.post("message/send", app_text(wecom, "zhangsan", " "), token)) == 44004
    card = {
        "touser": "zhangsan",
        "msgtype": "textcard",
        "agentid": wecom.agent_id,
        "textcard": {"title": "t"},
    }
    assert code(wecom.post("message/send", card, token)) == 40058
    assert code(wecom.post("message/send", b"{oops", token)) == 40058
    assert sim.inbox(userid="zhangsan") == []


# --- external contacts and tags -----------------------------------------------------------------


def test_external_contact_added_through_a_contact_way(wecom, sim):
    sim.add_rep("zhangsan", name="张三")
    token = wecom.token()
    way = wecom.post(
        "externalcontact/add_contact_way",
        {"type": 1, "scene": 2, "state": "spring_fair", "user": ["zhangsan"], "remark": "展会"},
        token,
    )
    assert way["errcode"] == 0 and way["config_id"] and way["qr_code"].startswith("https://")
    listed = requests.get(f"{sim.base_url}/_sim/contact_ways", timeout=5).json()["contact_ways"]
    assert listed[0]["state"] == "spring_fair" and listed[0]["user"] == ["zhangsan"]
    got = wecom.post("externalcontact/get_contact_way", {"config_id": way["config_id"]}, token)
    assert got["contact_way"]["state"] == "spring_fair"

    result = sim.add_external_contact(config_id=way["config_id"], name="王女士", unionid="uWang")
    assert result.extra["userid"] == "zhangsan" and result.extra["state"] == "spring_fair"
    assert result.sent is False  # no callback base in these tests
    ext = result.extra["external_userid"]
    answer = wecom.get("externalcontact/get", token, external_userid=ext)
    assert answer["errcode"] == 0
    assert answer["external_contact"] == {
        "external_userid": ext,
        "name": "王女士",
        "avatar": "",
        "type": 1,
        "gender": 0,
        "unionid": "uWang",
    }
    [follow] = answer["follow_user"]
    assert follow["userid"] == "zhangsan" and follow["state"] == "spring_fair"
    assert follow["add_way"] == 1 and follow["tags"] == [] and follow["createtime"] > 0
    assert wecom.get("externalcontact/list", token, userid="zhangsan")["external_userid"] == [ext]
    assert code(wecom.get("externalcontact/get", token, external_userid="wmNope")) == 40096
    assert (
        code(wecom.post("externalcontact/del_contact_way", {"config_id": way["config_id"]}, token))
        == 0
    )


@pytest.mark.parametrize(
    "body",
    [
        {"type": 3, "scene": 2, "user": ["zhangsan"]},
        {"type": 1, "scene": 3, "user": ["zhangsan"]},
        {"type": 1, "scene": 2, "user": ["zhangsan"], "state": "s" * 31},
        {"type": 1, "scene": 2, "user": []},
        {"type": 1, "scene": 2, "user": ["zhangsan", "lisi"]},
    ],
)
def test_add_contact_way_rejects_bad_parameters(wecom, sim, body):
    sim.add_rep("zhangsan")
    sim.add_rep("lisi")
    assert code(wecom.post("externalcontact/add_contact_way", body, wecom.token())) == 40058


def test_add_contact_way_needs_active_staff_and_scene_1_has_no_qr(wecom, sim):
    sim.add_rep("zhangsan")
    token = wecom.token()
    unknown = {"type": 2, "scene": 2, "user": ["zhangsan", "ghost"]}
    assert code(wecom.post("externalcontact/add_contact_way", unknown, token)) == 40003
    mini = wecom.post(
        "externalcontact/add_contact_way", {"type": 1, "scene": 1, "user": ["zhangsan"]}, token
    )
    assert mini["errcode"] == 0 and "qr_code" not in mini


def test_corp_tags_and_mark_tag(wecom, sim):
    token = wecom.token()
    added = wecom.post(
        "externalcontact/add_corp_tag",
        {"group_name": "意向", "tag": [{"name": "高"}, {"name": "低"}]},
        token,
    )
    group = added["tag_group"]
    assert (
        added["errcode"] == 0
        and group["group_id"].startswith("et")
        and group["group_name"] == "意向"
    )
    high, low = (t["id"] for t in group["tag"])
    assert high.startswith("et") and len(high) > 20
    more = wecom.post(
        "externalcontact/add_corp_tag",
        {"group_id": group["group_id"], "tag": [{"name": "中"}]},
        token,
    )
    assert [t["name"] for t in more["tag_group"]["tag"]] == ["中"]
    same_name = wecom.post(
        "externalcontact/add_corp_tag", {"group_name": "意向", "tag": [{"name": "极高"}]}, token
    )
    assert same_name["tag_group"]["group_id"] == group["group_id"]
    assert (
        code(
            wecom.post(
                "externalcontact/add_corp_tag",
                {"group_name": "意向", "tag": [{"name": "高"}]},
                token,
            )
        )
        == 40071
    )
    assert (
        code(
            wecom.post(
                "externalcontact/add_corp_tag",
                {"group_id": "etNope", "tag": [{"name": "x"}]},
                token,
            )
        )
        == 40068
    )
    assert (
        code(wecom.post("externalcontact/add_corp_tag", {"group_name": "g", "tag": []}, token))
        == 40058
    )
    listing = wecom.post("externalcontact/get_corp_tag_list", {}, token)
    assert [t["name"] for t in listing["tag_group"][0]["tag"]] == ["高", "低", "中", "极高"]
    only = wecom.post("externalcontact/get_corp_tag_list", {"tag_id": [low]}, token)
    assert [t["name"] for t in only["tag_group"][0]["tag"]] == ["低"]

    result = sim.add_external_contact("zhangsan", "wmTagged")
    assert result.extra["external_userid"] == "wmTagged"
    mark = {"userid": "zhangsan", "external_userid": "wmTagged", "add_tag": [high, low]}
    assert code(wecom.post("externalcontact/mark_tag", mark, token)) == 0
    unmark = {"userid": "zhangsan", "external_userid": "wmTagged", "remove_tag": [low]}
    assert code(wecom.post("externalcontact/mark_tag", unmark, token)) == 0
    [follow] = wecom.get("externalcontact/get", token, external_userid="wmTagged")["follow_user"]
    assert follow["tags"] == [{"group_name": "意向", "tag_name": "高", "tag_id": high, "type": 1}]
    assert (
        code(wecom.post("externalcontact/mark_tag", {**mark, "add_tag": ["etNope"]}, token))
        == 40068
    )
    assert code(wecom.post("externalcontact/mark_tag", {**mark, "add_tag": []}, token)) == 40058
    sim.add_rep("lisi")
    assert code(wecom.post("externalcontact/mark_tag", {**mark, "userid": "lisi"}, token)) == 84061
    assert code(wecom.post("externalcontact/mark_tag", {**mark, "userid": "ghost"}, token)) == 40003
    assert (
        code(wecom.post("externalcontact/mark_tag", {**mark, "external_userid": "wmX"}, token))
        == 40096
    )
    assert code(wecom.post("externalcontact/del_corp_tag", {"tag_id": [high]}, token)) == 0
    tags = requests.get(f"{sim.base_url}/_sim/tags", timeout=5).json()["wecom"]
    assert [t["name"] for t in tags[0]["tag"]] == ["低", "中", "极高"]


def test_deletions_and_edits(wecom, sim):
    token = wecom.token()
    sim.add_external_contact("zhangsan", "wmDel")
    sim.edit_external_contact("zhangsan", "wmDel", remark="老客户")
    [follow] = wecom.get("externalcontact/get", token, external_userid="wmDel")["follow_user"]
    assert follow["remark"] == "老客户"
    sim.customer_deletes_rep("zhangsan", "wmDel")  # one-sided: the rep keeps the customer
    assert code(wecom.get("externalcontact/get", token, external_userid="wmDel")) == 0
    sim.rep_deletes_customer("zhangsan", "wmDel")
    assert code(wecom.get("externalcontact/get", token, external_userid="wmDel")) == 84061
    remark = {"userid": "zhangsan", "external_userid": "wmDel", "remark": "x"}
    assert code(wecom.post("externalcontact/remark", remark, token)) == 84061


# --- welcome messages ------------------------------------------------------------------------------


def welcome(code_: str, text: str = "您好，我是张三") -> dict:
    return {"welcome_code": code_, "text": {"content": text}}


def test_welcome_code_is_valid_once(wecom, sim):
    token = wecom.token()
    result = sim.add_external_contact("zhangsan", "wmHello")
    code_ = result.extra["welcome_code"]
    assert code(wecom.post("externalcontact/send_welcome_msg", welcome(code_), token)) == 0
    again = wecom.post("externalcontact/send_welcome_msg", welcome(code_), token)
    assert code(again) == 41051
    [msg] = requests.get(
        f"{sim.base_url}/_sim/inbox", params={"external_userid": "wmHello"}, timeout=5
    ).json()["messages"]
    assert (
        msg["kind"] == "welcome" and msg["text"] == "您好，我是张三" and msg["userid"] == "zhangsan"
    )


def test_welcome_code_expires_after_20_seconds(wecom, sim):
    token = wecom.token()
    early = sim.add_external_contact("zhangsan", "wmA").extra["welcome_code"]
    late = sim.add_external_contact("zhangsan", "wmB").extra["welcome_code"]
    sim.advance(19)
    assert code(wecom.post("externalcontact/send_welcome_msg", welcome(early), token)) == 0
    sim.advance(2)
    assert code(wecom.post("externalcontact/send_welcome_msg", welcome(late), token)) == 41051
    assert sim.inbox(external_userid="wmB") == []


def test_welcome_errors_and_no_code(wecom, sim):
    token = wecom.token()
    assert (
        code(wecom.post("externalcontact/send_welcome_msg", welcome("never-issued"), token))
        == 40058
    )
    assert (
        code(wecom.post("externalcontact/send_welcome_msg", {"text": {"content": "x"}}, token))
        == 40058
    )
    fresh = sim.add_external_contact("zhangsan", "wmC").extra["welcome_code"]
    assert code(wecom.post("externalcontact/send_welcome_msg", welcome(fresh, ""), token)) == 44004
    ten = {"welcome_code": fresh, "attachments": [{"msgtype": "link"}] * 10}
    assert code(wecom.post("externalcontact/send_welcome_msg", ten, token)) == 40058
    # an admin-configured welcome message: WeCom sends no WelcomeCode
    assert sim.add_external_contact("zhangsan", "wmD", welcome=False).extra["welcome_code"] is None


# --- member OAuth and JS-SDK ---------------------------------------------------------------------


def member_code(sim, wecom: WeCom, who: str, **extra) -> str:
    resp = requests.get(
        f"{sim.base_url}/connect/oauth2/authorize",
        params={
            "appid": wecom.corp_id,
            "redirect_uri": "https://admin.example.com/sidebar",
            "response_type": "code",
            "scope": "snsapi_base",
            "state": "s1",
            "agentid": wecom.agent_id,
            "as": who,
            **extra,
        },
        allow_redirects=False,
        timeout=5,
    )
    assert resp.status_code == 302, resp.text
    return parse_qs(urlsplit(resp.headers["Location"]).query)["code"][0]


def test_member_oauth(wecom, sim):
    sim.add_rep("zhangsan")
    token = wecom.token()
    code_ = member_code(sim, wecom, "zhangsan")
    assert wecom.get("auth/getuserinfo", token, code=code_) == {
        "errcode": 0,
        "errmsg": "ok",
        "userid": "zhangsan",
    }
    assert code(wecom.get("auth/getuserinfo", token, code=code_)) == 40029
    outsider = wecom.get("auth/getuserinfo", token, code=member_code(sim, wecom, "oOutsider"))
    assert outsider["openid"] == "oOutsider" and "userid" not in outsider
    legacy = wecom.get("user/getuserinfo", token, code=member_code(sim, wecom, "zhangsan"))
    assert legacy["UserId"] == "zhangsan"
    stale = member_code(sim, wecom, "zhangsan")
    sim.advance(301)
    assert code(wecom.get("auth/getuserinfo", token, code=stale)) == 40029
    assert code(wecom.get("auth/getuserinfo", token)) == 41008
    wrong_agent = requests.get(
        f"{sim.base_url}/connect/oauth2/authorize",
        params={
            "appid": wecom.corp_id,
            "redirect_uri": "https://a.example.com/",
            "response_type": "code",
            "scope": "snsapi_base",
            "agentid": "1",
            "as": "zhangsan",
        },
        allow_redirects=False,
        timeout=5,
    )
    assert wrong_agent.status_code == 200 and wrong_agent.headers["X-Wxsim-Error"] == "40056"


def test_jsapi_tickets_and_agent_config(wecom, sim):
    token = wecom.token()
    corp = wecom.get("get_jsapi_ticket", token)
    agent = wecom.get("ticket/get", token, type="agent_config")
    assert corp["errcode"] == 0 and agent["errcode"] == 0 and corp["ticket"] != agent["ticket"]
    assert corp["expires_in"] == 7200 and agent["expires_in"] == 7200
    assert code(wecom.get("ticket/get", token, type="other")) == 40058
    url, nonce, ts = "https://admin.example.com/sidebar?x=1", "n0nce", str(int(time.time()))
    verify = f"{sim.base_url}/_sim/jssdk/verify"
    ok = requests.post(
        verify,
        json={
            "kind": "agentConfig",
            "corpid": wecom.corp_id,
            "agentid": wecom.agent_id,
            "timestamp": ts,
            "nonceStr": nonce,
            "url": url,
            "signature": jsapi_signature(agent["ticket"], nonce, ts, url),
        },
        timeout=5,
    ).json()
    assert ok == {"ok": True, "errMsg": "agentConfig:ok"}
    crossed = requests.post(
        verify,
        json={
            "kind": "agentConfig",
            "corpid": wecom.corp_id,
            "agentid": wecom.agent_id,
            "timestamp": ts,
            "nonceStr": nonce,
            "url": url,
            "signature": jsapi_signature(corp["ticket"], nonce, ts, url),
        },
        timeout=5,
    ).json()
    assert crossed["ok"] is False  # the corp ticket does not sign agentConfig
    config = requests.post(
        verify,
        json={
            "appId": wecom.corp_id,
            "timestamp": ts,
            "nonceStr": nonce,
            "url": url,
            "signature": jsapi_signature(corp["ticket"], nonce, ts, url),
        },
        timeout=5,
    ).json()
    assert config == {"ok": True, "errMsg": "config:ok"}
    ctx = requests.post(
        f"{sim.base_url}/_sim/jssdk/context",
        json={"userid": "zhangsan", "external_userid": "wmX"},
        timeout=5,
    ).json()
    assert ctx == {"entry": "single_chat_tools", "userid": "zhangsan", "external_userid": "wmX"}


# --- faults ----------------------------------------------------------------------------------------


def test_wecom_faults(wecom, sim):
    token = wecom.token()
    sim.add_rep("zhangsan")
    sim.faults(busy_next=1, apps=["wecom"])
    busy = wecom.post("message/send", app_text(wecom, "zhangsan"), token)
    assert busy["errcode"] == -1 and busy["errmsg"].startswith("system busy")
    sim.faults(rate_limit=2)
    answers = [code(wecom.get("user/get", token, userid="zhangsan")) for _ in range(3)]
    assert answers == [0, 0, 45009]
    sim.faults(rate_limit=0, http_500_rate=1.0)
    resp = requests.get(
        f"{wecom.base}/cgi-bin/gettoken",
        params={"corpid": wecom.corp_id, "corpsecret": wecom.secret},
        timeout=5,
    )
    assert resp.status_code == 500
    assert len(sim.inbox(userid="zhangsan")) == 0
