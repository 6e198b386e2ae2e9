"""`yuchi demo`: seed a small Chinese-language setup through Yuchi's own API and play a
follower's first minutes through the simulator, printing each step as it happens."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from wxsim.testing import SimHandle

OPENID = "o_demo_xiaoyu"
SCENE = "poster_2026"

REPLIES: list[dict[str, Any]] = [
    {
        "name": "欢迎语",
        "trigger": "subscribe",
        "reply": "欢迎来到鱼池🐟！回复「价格」看报价，回复「案例」看客户故事，或点菜单「联系我们」。",
        "tags": ["新关注"],
    },
    {
        "name": "价格咨询",
        "keywords": ["价格", "报价", "多少钱", "收费"],
        "reply": "鱼池基础版每年 9800 元，专业版 29800 元，均含企业微信侧边栏。需要顾问为您演示吗？回复「演示」即可。",
        "tags": ["意向:价格"],
    },
    {
        "name": "客户案例",
        "keywords": ["案例"],
        "news": {
            "title": "某连锁烘焙品牌：三个月私域复购提升 38%",
            "description": "从公众号内容引流到企业微信一对一跟进的完整做法",
            "url": "https://example.com/cases/bakery",
        },
        "tags": ["意向:案例"],
    },
    {
        "name": "预约演示",
        "match": "exact",
        "keywords": ["演示"],
        "reply": "好的！顾问会在一个工作日内通过企业微信联系您。",
        "tags": ["意向:演示"],
    },
    {
        "name": "菜单-联系我们",
        "trigger": "click",
        "click_key": "MENU_CONTACT",
        "reply": "客服电话 400-000-0000（工作日 9:00-18:00），也可以直接在这里留言。",
    },
]

MENU = {
    "name": "默认菜单",
    "buttons": [
        {"type": "click", "name": "联系我们", "key": "MENU_CONTACT"},
        {"type": "view", "name": "产品介绍", "url": "https://example.com/product"},
    ],
}


class Api:
    """Yuchi's JSON API, as a marketer's script would call it."""

    def __init__(self, base: str, token: str):
        self.base, self.token = base, token

    def __call__(self, method: str, path: str, body: dict | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"{self.base}{path}", data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")


def seed(api: Api, say: Callable[[str], None]) -> None:
    existing = {r["name"]: r["id"] for r in api("GET", "/api/replies")[1]["replies"]}
    for rule in REPLIES:
        if rule["name"] in existing:
            status, _ = api("PUT", f"/api/replies/{existing[rule['name']]}", rule)
        else:
            status, _ = api("POST", "/api/replies", rule)
        if status not in (200, 201):
            raise RuntimeError(f"could not save reply rule {rule['name']}: HTTP {status}")
    say(f"自动回复规则 {len(REPLIES)} 条（欢迎语、关键词、菜单）已保存")
    menus = api("GET", "/api/menus")[1]["menus"]
    default = next((m for m in menus if m["tag"] is None), None)
    if default is None:
        status, _ = api("POST", "/api/menus", MENU)
    else:
        status, _ = api("PUT", f"/api/menus/{default['id']}", MENU)
    if status not in (200, 201):
        raise RuntimeError(f"could not save the menu: HTTP {status}")
    status, version = api("POST", "/api/menus/publish")
    if status != 201:
        raise RuntimeError(f"could not publish the menu: HTTP {status} {version}")
    say(f"公众号菜单已发布（第 {version['version']} 版）：联系我们 · 产品介绍")


def play(sim: SimHandle, api: Api, say: Callable[[str], None], step: Callable[[str], None]) -> int:
    """The scenario; returns the contact id."""
    step(f"小鱼扫描海报二维码（场景 {SCENE}）关注了公众号")
    say(f"公众号回复：{sim.follow(OPENID, SCENE).text or '（无）'}")

    step("小鱼发来：「请问价格是多少」")
    say(f"公众号回复：{sim.say(OPENID, '请问价格是多少').text}")

    step("小鱼发来：「有案例吗」")
    say(f"公众号回复（图文）：{sim.say(OPENID, '有案例吗').text}")

    step("小鱼点击菜单「联系我们」")
    say(f"公众号回复：{sim.click(OPENID, 'MENU_CONTACT').text}")

    status, found = api("GET", f"/api/contacts?openid={OPENID}")
    contact = found["contacts"][0]
    step("市场同事通过 API 给小鱼发一条客服消息（48 小时窗口内）")
    status, msg = api(
        "POST",
        "/api/messages",
        {
            "contact_id": contact["id"],
            "kind": "text",
            "payload": {"content": "小鱼您好，本周四有线上产品演示，要帮您预留名额吗？"},
        },
    )
    delivered = sim.wait_for(lambda: sim.inbox(OPENID, kind="custom"), timeout=15)
    # the inbox has it once the platform answered; the row says "sent" a moment later
    sim.wait_for(
        lambda: api("GET", f"/api/messages/{msg['id']}")[1]["status"] not in ("queued", "sending"),
        timeout=15,
    )
    if delivered:
        say(f"小鱼在微信里收到：{delivered[-1]['payload']['text']['content']}")
    else:
        status = api("GET", f"/api/messages/{msg['id']}")[1]["status"]
        say(f"消息状态：{status}（后台仍在处理）")
    return contact["id"]


def timeline(api: Api, contact_id: int) -> list[str]:
    deadline = time.monotonic() + 10
    while True:  # wait until the background worker has processed everything
        events = api("GET", f"/api/contacts/{contact_id}/events?limit=50")[1]["events"]
        if all(e["processed_at"] for e in events) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    contact = api("GET", f"/api/contacts/{contact_id}")[1]
    lines = [
        f"联系人 #{contact_id}  openid {OPENID}  {'已关注' if contact['subscribed'] else '未关注'}",
        "标签：" + ("、".join(t["tag"] for t in contact["tags"]) or "（无）"),
    ]
    for e in reversed(events):
        props = e["properties"]
        detail = (
            props.get("content")
            or props.get("scene")
            or props.get("key")
            or props.get("kind")
            or ""
        )
        lines.append(f"  {e['occurred_at'][11:19]}  {e['type']:<16} {detail}")
    return lines
