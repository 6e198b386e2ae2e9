"""The JS-SDK stub (/_sim/jweixin.js) run in Node against the live simulator: config and
agentConfig check the server-made signature, invoke answers from the simulated context, share
callbacks fire on demand. Skipped where Node is not installed (the Chromium tier covers pages)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest
import requests

from wxsim.jssdk import jsapi_signature

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")
PAGE = "https://h5.example.com/share?x=1"

SCRIPT = r"""
const vm = require("vm");
const [simUrl, page, input] = process.argv.slice(1);
const cfg = JSON.parse(input);
const out = [];
const window = {
  location: { href: page + "#section" },
  fetch: fetch,
  document: { currentScript: { getAttribute: () => null, src: simUrl + "/_sim/jweixin.js" } },
};
window.window = window;
window.URL = URL;
(async () => {
  const source = await (await fetch(simUrl + "/_sim/jweixin.js")).text();
  vm.runInNewContext(source, window);
  const wx = window.wx;
  const until = async (pred) => {
    for (let i = 0; i < 500 && !pred(); i++) await new Promise((r) => setTimeout(r, 10));
  };
  const invoke = (name) => new Promise((resolve) => wx.invoke(name, {}, resolve));
  wx.error((res) => out.push(["error", res.errMsg]));
  wx.ready(() => out.push(["ready"]));
  wx.config(cfg.config);
  await until(() => wx.__sim.state.configured !== null);
  out.push(["getContext-before", (await invoke("getContext")).err_msg]);
  if (cfg.agent) {
    await new Promise((resolve) => wx.agentConfig({
      ...cfg.agent,
      complete: (r) => { out.push(["agent", r.errMsg]); resolve(); },
    }));
    const ctx = await invoke("getContext");
    out.push(["getContext", ctx.err_msg, ctx.entry]);
    const contact = await invoke("getCurExternalContact");
    out.push(["contact", contact.err_msg, contact.userId]);
  }
  wx.updateAppMessageShareData({ title: "邀请好友", link: page + "&ref=1", success: () => out.push(["share-set"]) });
  wx.onMenuShareAppMessage({ title: "邀请好友", link: page + "&ref=1", success: (r) => out.push(["shared", r.errMsg]) });
  out.push(["trigger", wx.__sim.triggerShare("appMessage")]);
  console.log(JSON.stringify(out));
})();
"""


def run_page(sim, config: dict, agent: dict | None = None) -> list:
    payload = json.dumps({"config": config, "agent": agent})
    proc = subprocess.run(
        [NODE, "-e", SCRIPT, sim.base_url, PAGE, payload],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ticket(sim, settings, path: str, **params) -> str:
    return requests.get(f"{sim.base_url}{path}", params=params, timeout=5).json()["ticket"]


def test_config_ready_share_and_sidebar_context(sim, sim_settings):
    s = sim_settings
    oa_token = requests.get(
        f"{sim.base_url}/cgi-bin/token",
        params={"grant_type": "client_credential", "appid": s.oa_appid, "secret": s.oa_secret},
        timeout=5,
    ).json()["access_token"]
    jsapi = ticket(sim, s, "/cgi-bin/ticket/getticket", access_token=oa_token, type="jsapi")
    ts, nonce = str(int(time.time())), "n0nceStr"
    config = {
        "appId": s.oa_appid,
        "timestamp": ts,
        "nonceStr": nonce,
        "signature": jsapi_signature(jsapi, nonce, ts, PAGE),
        "jsApiList": ["updateAppMessageShareData", "onMenuShareAppMessage"],
    }
    wecom_token = requests.get(
        f"{sim.base_url}/wecom/cgi-bin/gettoken",
        params={"corpid": s.wecom_corp_id, "corpsecret": s.wecom_secret},
        timeout=5,
    ).json()["access_token"]
    agent_ticket = ticket(
        sim, s, "/wecom/cgi-bin/ticket/get", access_token=wecom_token, type="agent_config"
    )
    agent = {
        "corpid": s.wecom_corp_id,
        "agentid": s.wecom_agent_id,
        "timestamp": ts,
        "nonceStr": nonce,
        "signature": jsapi_signature(agent_ticket, nonce, ts, PAGE),
    }
    requests.post(
        f"{sim.base_url}/_sim/jssdk/context",
        json={"userid": "zhangsan", "external_userid": "wmSidebar", "entry": "single_chat_tools"},
        timeout=5,
    )
    out = run_page(sim, config, agent)
    assert out == [
        ["ready"],
        ["getContext-before", "getContext:fail no permission"],  # agentConfig not done yet
        ["agent", "agentConfig:ok"],
        ["getContext", "getContext:ok", "single_chat_tools"],
        ["contact", "getCurExternalContact:ok", "wmSidebar"],
        ["share-set"],  # the real SDK calls success when the share data is set
        ["shared", "sendAppMessage:ok"],  # ... and onMenuShare* success when the user shares
        ["trigger", {"title": "邀请好友", "link": PAGE + "&ref=1"}],
    ]


def test_bad_signature_fires_error(sim, sim_settings):
    config = {
        "appId": sim_settings.oa_appid,
        "timestamp": "1",
        "nonceStr": "n",
        "signature": "0" * 40,
        "jsApiList": ["updateAppMessageShareData"],
    }
    out = run_page(sim, config)
    assert out[0] == ["error", "config:invalid signature"]
    assert ["ready"] not in out and ["share-set"] not in out  # not configured: denied
