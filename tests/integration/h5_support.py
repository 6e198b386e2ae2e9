"""Helpers for the campaign tests: a campaign through the API, visitors as cookie-keeping
clients, and the figures the API answers."""

from __future__ import annotations

import re
from typing import Any

from bot.campaigns import actions

LANDING = {
    "slug": "spring-fair",
    "name": "春季展会",
    "title": "春季新品发布会",
    "kind": "landing",
    "body": "<p>欢迎<strong>参加</strong></p><script>alert(1)</script><img src=x onerror=alert(1)>",
    "cover_url": "/h5/static/covers/sample.jpg",
    "form": {
        "fields": [
            {"name": "name", "required": True},
            {"name": "phone", "required": True},
            {"name": "company"},
            {"name": "q_size", "type": "single", "label": "公司规模", "options": ["1-50", "50+"]},
            {
                "name": "q_need",
                "type": "multiple",
                "label": "关注",
                "options": ["获客", "转化", "复购"],
            },
        ]
    },
    "tags": ["活动:春季展会"],
    "reward": {"points_per_form": 10, "depth": 3},
}


def create_campaign(client, auth, **changes: Any) -> dict:
    actions.forget_campaigns()
    resp = client.post("/api/campaigns", json={**LANDING, **changes}, headers=auth)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def visitor(app, ip: str = "10.0.0.1", wechat: bool = False):
    """A browser of its own (its cookie jar) from one IP address."""
    ua = "Mozilla/5.0 (iPhone) MicroMessenger/8.0.47" if wechat else "Mozilla/5.0 (iPhone)"
    client = app.test_client()
    client.environ_base.update({"REMOTE_ADDR": ip, "HTTP_USER_AGENT": ua})
    return client


def share_code(page_html: str) -> str:
    return re.search(r'id="share-link" readonly value="[^"]*\?r=([^"]+)"', page_html).group(1)


def open_page(browser, slug: str, code: str | None = None) -> tuple[int, str]:
    resp = browser.get(f"/h5/c/{slug}" + (f"?r={code}" if code else ""))
    return resp.status_code, resp.get_data(as_text=True)


def submit(browser, slug: str, code: str | None = None, **fields: Any):
    data = {"name": "张三", "phone": "13800138000", **fields}
    if code:
        data["r"] = code
    return browser.post(f"/h5/c/{slug}/form", data=data)


def stats(client, auth, campaign_id: int) -> dict:
    resp = client.get(f"/api/campaigns/{campaign_id}/stats", headers=auth)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def employee_code(client, auth, campaign_id: int, userid: str) -> str:
    resp = client.get(f"/api/campaigns/{campaign_id}/links?userid={userid}", headers=auth)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()["code"]
