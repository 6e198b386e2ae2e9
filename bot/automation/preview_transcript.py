"""A journey preview's output: the transcript's lines, in Chinese, as the marketer reads them
(bot.automation.preview)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import journeys
from journeys import engine

ANSWER_LABELS = {
    "budget": "预算",
    "timeline": "时间",
    "authority": "决策权",
    "role": "角色",
    "need": "需求",
    "name": "姓名",
    "company": "公司",
    "city": "城市",
    "phone": "手机",
    "interest": "兴趣",
}
STAGE_LABELS = {
    "subscriber": "订阅者",
    "lead": "线索",
    "mql": "营销合格线索 MQL",
    "sql": "销售合格线索 SQL",
    "customer": "客户",
    "disqualified": "不合格",
}
SEND_VERBS = {"sent": "收到", "held": "暂存", "skipped": "跳过", "invalid": "无效"}
KIND_LABELS = {
    "text": "文本",
    "news": "图文",
    "link": "图文",
    "image": "图片",
    "miniprogram": "小程序卡片",
    "template": "模板消息",
    "wecom_text": "企业微信消息",
    "wecom_textcard": "企业微信卡片",
    "wecom_markdown": "企业微信消息",
}


@dataclass(frozen=True)
class Line:
    """One thing that happens. ``kind``: enter, note, send, ask, reply, answer, timeout, tag,
    untag, points, field, stage, handoff, notify, webhook, journey, exit, converted, done,
    stop."""

    at: datetime
    day: int  # 1 = the day the contact entered (in the journey's time zone)
    clock: str  # "09:00" in the journey's time zone
    kind: str
    text: str
    step: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def line(self) -> str:
        head = f"第{self.day}天 {self.clock} "
        return head + self.text.replace("\n", "\n" + " " * 12)

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "day": self.day,
            "time": self.clock,
            "kind": self.kind,
            "step": self.step,
            "text": self.text,
            "line": self.line,
            **({"detail": dict(self.detail)} if self.detail else {}),
        }


@dataclass
class Transcript:
    journey: str
    name: str
    start: datetime
    timezone: str
    lines: list[Line]
    entered: bool
    status: str  # the engine's status at the end, or "not_entered"
    step: str | None = None  # where the contact is at the end
    stopped: str | None = None  # why the preview stopped before the journey ended
    unused_replies: list[str] = field(default_factory=list)
    interactions: list[datetime] = field(default_factory=list)  # when the contact acted
    last_interaction: datetime | None = None  # before the journey started

    @property
    def sends(self) -> list[Line]:
        return [ln for ln in self.lines if ln.kind in ("send", "ask")]

    @property
    def delivered(self) -> list[Line]:
        return [ln for ln in self.sends if ln.detail.get("status") == "sent"]

    @property
    def text(self) -> str:
        return "\n".join(ln.line for ln in self.lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "journey": self.journey,
            "name": self.name,
            "start": self.start.isoformat(),
            "timezone": self.timezone,
            "entered": self.entered,
            "status": self.status,
            "step": self.step,
            "stopped": self.stopped,
            "messages": len(self.delivered),
            "unused_replies": self.unused_replies,
            "transcript": [ln.to_json() for ln in self.lines],
            "text": self.text,
        }


def describe_send(kind: str, payload: Mapping[str, Any]) -> str:
    """「文本：…」「图文：标题 — 摘要（链接）」 for a send of ``kind``."""
    label = KIND_LABELS.get(kind, kind)
    if kind in ("text", "wecom_text", "wecom_markdown"):
        return f"{label}：{payload.get('content', '')}"
    if kind in ("news", "link", "wecom_textcard"):
        parts = [str(payload.get("title", "")), str(payload.get("description", ""))]
        url = payload.get("url")
        body = " — ".join(p for p in parts if p)
        return f"{label}：{body}" + (f"（{url}）" if url else "")
    if kind == "miniprogram":
        return f"{label}：{payload.get('title', '')}"
    if kind == "template":
        data = payload.get("data") or {}
        values = [
            str(v.get("value", "")) if isinstance(v, Mapping) else str(v) for v in data.values()
        ]
        return f"{label}：" + " / ".join(v for v in values if v)
    return label


def describe_event(event: journeys.Event | None) -> str:
    if event is None:
        return "符合分群条件"
    p = event.properties
    if event.type == "oa.subscribe":
        scene = p.get("scene")
        return "关注公众号" + (f"（扫码场景 {scene}）" if scene else "")
    if event.type == "oa.scan":
        return f"扫码（场景 {p.get('scene', '')}）"
    if event.type == "oa.text":
        return f"发来消息：{p.get('content', '')}"
    if event.type == "oa.click":
        return f"点击菜单 {p.get('key', '')}"
    if event.type == engine.TAG_ADDED:
        return f"获得标签「{p.get('tag')}」"
    if event.type == engine.SCORE_CHANGED:
        return f"得分从 {_num(p.get('from'))} 升到 {_num(p.get('to'))}"
    if event.type == engine.STAGE_CHANGED:
        return f"阶段变为 {STAGE_LABELS.get(str(p.get('to')), p.get('to'))}"
    return f"事件 {event.type}" + (f" {json.dumps(dict(p), ensure_ascii=False)}" if p else "")


def _num(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
