"""Timeline events in readable Chinese: one template per event type (``TEMPLATES``), each with
the kind the timeline filters by; the time as a rep says it ("刚刚", "昨天 14:05", "3天前")."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.scoring.rules import STAGE_LABELS

KINDS = {  # filter value: label
    "message": "消息",
    "menu": "菜单",
    "follow": "关注与好友",
    "tag": "标签",
    "score": "评分与阶段",
    "lead": "线索",
    "journey": "旅程",
    "note": "跟进记录",
    "other": "其他",
}

STAGES = {**STAGE_LABELS, "auto": "自动"}

# tag.added / tag.removed: why, by the change's source (its actor says which word, rep, step)
TAG_WHY: dict[str, tuple[str, str]] = {  # source: (added, removed)
    "tag_rule": ("（标签规则）", "（标签规则）"),
    "interest": ("（关键词{word}）", "（关键词{word}）"),
    "reply_rule": ("（自动回复规则）", "（自动回复规则）"),
    "channel": ("（渠道活码）", "（渠道活码）"),
    "campaign": ("（活动）", "（活动）"),
    "journey": ("（旅程{journey_quoted}）", "（旅程{journey_quoted}）"),
    "manual": ("（{actor_name} 手动添加）", "（{actor_name} 手动移除）"),
    "wecom": ("（{actor_name} 在企业微信中添加）", "（{actor_name} 在企业微信中移除）"),
    "rule": ("（规则）", "（规则）"),
}

# a returned lead: what its reason did
RETURN_OUTCOMES = {
    "nurture": "回到培育",
    "reassign": "转给下一位销售",
    "disqualify": "标记为已流失，停止营销",
}

# why a contact left a journey, as bot.automation and the engine say it; an author's own
# reason (an exit step's) reads as written; the engine's rarer ones say "其他原因"
EXIT_REASONS = {
    "completed": "走完了全部步骤",
    "unsubscribed": "取消关注",
    "journey stopped": "旅程已停止",
    "removed by a marketer": "被移出旅程",
    "exit": "到达退出步骤",
}
ENGINE_REASONS = ("loop guard", "unknown step", "step ")

TRANSFER_FAILURES = {  # transfer_fail's FailReason
    "customer_refused": "客户拒绝了转接",
    "customer_limit_exceed": "接替的成员客户数已达上限",
}

TRANSFER_KINDS = {"in_service": "在职转接", "resigned": "离职继承"}

# event type: (kind, template over the event's properties; a missing one reads as "")
TEMPLATES: dict[str, tuple[str, str]] = {
    "oa.text": ("message", "发来消息：{content}"),
    "oa.image": ("message", "发来一张图片"),
    "oa.voice": ("message", "发来一段语音{recognition}"),
    "oa.video": ("message", "发来一段视频"),
    "oa.shortvideo": ("message", "发来一段小视频"),
    "oa.location": ("message", "发送了位置 {label}"),
    "oa.link": ("message", "发来链接「{title}」"),
    "oa.miniprogrampage": ("message", "分享了小程序「{title}」"),
    "oa.unknown": ("other", "发来一条暂不支持的消息"),
    "oa.subscribe": ("follow", "关注了公众号{channel}"),
    "oa.unsubscribe": ("follow", "取消关注了公众号"),
    "oa.scan": ("follow", "扫描了二维码{channel}"),
    "oa.click": ("menu", "点击菜单「{key}」"),
    "oa.view": ("menu", "打开菜单链接 {url}"),
    "oa.view_miniprogram": ("menu", "从菜单打开小程序"),
    "oa.scancode": ("menu", "从菜单扫码"),
    "oa.menu_photo": ("menu", "从菜单发送图片"),
    "oa.location_select": ("menu", "从菜单选择位置"),
    "oa.template_send_finished": ("message", "模板消息送达结果：{status}"),
    "oa.mass_send_finished": ("message", "群发送达结果：{status}"),
    "msg.sent": ("message", "我们发出一条消息"),
    "msg.held": ("message", "一条消息被暂缓发送{error_suffix}"),
    "msg.failed": ("message", "一条消息发送失败{error_suffix}"),
    "msg.clicked": ("message", "点开了消息里的链接"),
    "wecom.contact_added": ("follow", "添加了企业微信好友 {userid_name}"),
    "wecom.contact_half_added": ("follow", "免验证添加了企业微信好友 {userid_name}"),
    "wecom.contact_edited": ("follow", "{userid_name} 修改了客户资料"),
    "wecom.rep_deleted_customer": ("follow", "{userid_name} 删除了客户"),
    "wecom.customer_deleted_rep": ("follow", "客户删除了 {userid_name}"),
    "wecom.transfer_failed": ("lead", "客户转接失败{fail_reason_suffix}"),
    "wecom.contact_found": ("follow", "{userid_name} 在侧边栏首次打开客户"),
    "wecom.corp_tag_changed": ("other", "企业微信的客户标签库有变动"),
    "wecom.chat_changed": ("other", "企业微信客户群有变动"),
    "wecom.unknown": ("other", "收到一条暂不支持的企业微信事件"),
    "sales.transfer_requested": (
        "lead",
        "客户由 {from_name} {transfer_kind}给 {to_name}{errcode_suffix}",
    ),
    "sales.reminder_set": ("note", "{userid_name} 设置跟进提醒：{due_local} {text}"),
    "tag.added": ("tag", "获得标签「{tag}」{tag_why}"),
    "tag.removed": ("tag", "移除标签「{tag}」{tag_why}"),
    "contact.stage_changed": ("score", "阶段 {from_stage} → {to_stage}{stage_reason}"),
    "score.changed": ("score", "分数变为 {score}"),
    "contact.merged": ("other", "合并了重复的客户档案"),
    "lead.assigned": ("lead", "线索分配给 {userid_name}"),
    "lead.accepted": ("lead", "{userid_name} 接受了线索"),
    "lead.returned": ("lead", "{userid_name} 退回了线索{return_why}{note_suffix}"),
    "lead.escalated": ("lead", "{userid_name} 未及时处理，线索转给下一位"),
    "lead.reassigned": ("lead", "线索由 {from_name} 转给 {to_name}"),
    "lead.unassigned": ("lead", "暂时没有可分配的销售"),
    "journey.enter": ("journey", "进入旅程「{journey}」"),
    "journey.exited": ("journey", "离开旅程「{journey_name}」：{exit_reason}"),
    "journey.done": ("journey", "完成旅程「{journey_name}」"),
    "journey.answer": ("journey", "回答了{attribute}问题：{value}"),
    "journey.points": ("score", "旅程加分 {points}"),
    "journey.field": ("journey", "资料更新：{key} = {value}"),
    "journey.notify_rep": ("journey", "旅程提醒了销售"),
    "journey.converted": ("journey", "在旅程「{journey_name}」中达成目标"),
    "journey.webhook": ("journey", "旅程调用了外部接口"),
    "journey.webhook_result": ("journey", "外部接口调用结果：{webhook_outcome}"),
    "journey.send_invalid": ("journey", "旅程的一条消息内容无效，未发送"),
    "journey.notify_failed": ("journey", "旅程提醒销售失败：{error}"),
    "journey.enter_failed": ("journey", "未能进入旅程「{journey}」"),
    "journey.unknown_command": ("journey", "旅程遇到无法执行的步骤"),
    "note.added": ("note", "{author_name} 记录：{text}"),
}


WEBHOOK_OUTCOMES = {"answered": "成功", "refused": "被拒绝", "failed": "失败"}
UTC_ZONE = ZoneInfo("UTC")


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return ""


def _extras(props: dict[str, Any], names: dict[str, str], zone: ZoneInfo) -> dict[str, Any]:
    """Derived fields the templates use: people's names, stage labels, optional suffixes."""

    def name(userid: Any) -> str:
        return names.get(str(userid), str(userid)) if userid else ""

    return {
        "userid_name": name(props.get("userid")),
        "author_name": name(props.get("author")),
        "from_name": name(props.get("from")),
        "to_name": name(props.get("to")) or "（无人）",
        "from_stage": STAGES.get(str(props.get("from")), props.get("from") or ""),
        "to_stage": STAGES.get(str(props.get("to")), props.get("to") or ""),
        "stage_reason": _stage_reason(props, name),
        "note_suffix": f"：{props['note']}" if props.get("note") else "",
        "channel": f"（渠道：{props['channel']}）" if props.get("channel") else "",
        "recognition": f"：{props['recognition']}" if props.get("recognition") else "",
        "journey_name": props.get("journey_name") or props.get("journey") or "",
        "error_suffix": f"（错误码 {props['error_code']}）" if props.get("error_code") else "",
        "transfer_kind": TRANSFER_KINDS.get(str(props.get("kind")), "转接"),
        "errcode_suffix": f"，企业微信未受理（{props['errcode']}）" if props.get("errcode") else "",
        "due_local": _local(props.get("due_at"), zone),
        "tag_why": _tag_why(props, name),
        "return_why": _return_why(props),
        "webhook_outcome": WEBHOOK_OUTCOMES.get(str(props.get("outcome")), "未知"),
        "exit_reason": _exit_reason(str(props.get("reason") or "")),
        "fail_reason_suffix": f"：{TRANSFER_FAILURES[props['fail_reason']]}"
        if props.get("fail_reason") in TRANSFER_FAILURES
        else "",
    }


def _exit_reason(reason: str) -> str:
    if reason in EXIT_REASONS:
        return EXIT_REASONS[reason]
    return "旅程内部错误" if reason.startswith(ENGINE_REASONS) else reason or "其他原因"


def _local(iso: Any, zone: ZoneInfo) -> str:
    try:
        at = datetime.fromisoformat(str(iso)).astimezone(zone)
    except ValueError:
        return ""
    return f"{at.month}月{at.day}日 {at:%H:%M}"


def _tag_why(props: dict[str, Any], name: Any) -> str:
    """Why a tag came or went, from its source and actor (see TAG_WHY)."""
    phrases = TAG_WHY.get(str(props.get("source")))
    if phrases is None:
        return ""
    actor = str(props.get("actor") or "")
    journey = props.get("journey_name")
    values = {
        "actor_name": "接口" if actor == "api" else name(actor) or "有人",
        "word": f"「{actor.removeprefix('interest:')}」" if actor.startswith("interest:") else "",
        "journey_quoted": f"「{journey}」" if journey else "",
    }
    added = props.get("_type") != "tag.removed"
    return (phrases[0] if added else phrases[1]).format_map(values)


def _return_why(props: dict[str, Any]) -> str:
    """(原因：预算不足；回到培育) for a returned lead."""
    parts = [f"原因：{props['reason']}"] if props.get("reason") else []
    if props.get("outcome") in RETURN_OUTCOMES:
        parts.append(RETURN_OUTCOMES[props["outcome"]])
    return f"（{'；'.join(parts)}）" if parts else ""


def _stage_reason(props: dict[str, Any], name: Any) -> str:
    """Who set a stage by hand and why (the ledger's reason is "set by <userid>: <note>")."""
    by = props.get("by")
    if not by or not props.get("manual"):
        return "（按分数自动）"
    note = str(props.get("reason") or "").removeprefix(f"set by {by}").removeprefix(": ")
    return f"（{name(by)} 设置" + (f"：{note}）" if note else "）")


def journey_of(props: dict[str, Any]) -> int | None:
    """The journey an event is about: its journey_id, or the step that changed a tag."""
    if isinstance(props.get("journey_id"), int):
        return props["journey_id"]
    actor = str(props.get("actor") or "")
    if props.get("source") == "journey" and actor.startswith("journey:"):
        ref = actor.split(":")[1]
        return int(ref) if ref.isdigit() and len(ref) < 10 else None
    return None


def sentence(
    type_: str, props: dict[str, Any], names: dict[str, str], zone: ZoneInfo = UTC_ZONE
) -> tuple[str, str]:
    """(kind, text) for one event; unknown types say their type."""
    fallback = f"外部系统事件 {type_}" if type_.startswith("api.") else f"事件 {type_}"
    kind, template = TEMPLATES.get(type_, ("other", fallback))
    values = _Blank({k: v for k, v in props.items() if isinstance(v, str | int | float)})
    values.update(_extras({**props, "_type": type_}, names, zone))
    return kind, template.format_map(values).strip()


def types_of(kind: str) -> list[str]:
    return [t for t, (k, _) in TEMPLATES.items() if k == kind]


def when(at: datetime, now: datetime, zone: ZoneInfo) -> str:
    """How long ago, as a rep says it."""
    seconds = (now - at).total_seconds()
    if seconds < 60:
        return "刚刚"
    if seconds < 3600:
        return f"{int(seconds // 60)}分钟前"
    local, today = at.astimezone(zone), now.astimezone(zone).date()
    days = (today - local.date()).days
    if days == 0:
        return f"今天 {local:%H:%M}"
    if days == 1:
        return f"昨天 {local:%H:%M}"
    if days < 7:
        return f"{days}天前"
    if local.year == today.year:
        return f"{local.month}月{local.day}日"
    return f"{local:%Y-%m-%d}"


def until(at: datetime, now: datetime, zone: ZoneInfo) -> str:
    """A future moment (a journey's next wake)."""
    if at <= now:
        return "即将"
    local = at.astimezone(zone)
    if at - now < timedelta(hours=1):
        return f"{int((at - now).total_seconds() // 60) + 1}分钟后"
    days = (local.date() - now.astimezone(zone).date()).days
    prefix = {0: "今天", 1: "明天", 2: "后天"}.get(days, f"{local.month}月{local.day}日")
    return f"{prefix} {local:%H:%M}"
