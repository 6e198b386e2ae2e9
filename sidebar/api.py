"""The sidebar's JSON endpoints (under /sidebar/api/): the page's script calls them with the
session's CSRF token. Each validates, calls one bot.desk service and answers; a customer or
lead that is not the rep's is a 403 whether it exists or not."""

from __future__ import annotations

from typing import Annotated, Literal

from flask import Blueprint, g, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from bot.campaigns import employee
from bot.core import wechat
from bot.desk import actions, followups, replies, screen
from bot.wecom import jsapi
from journeys.tag_names import checked_tag
from sidebar.guard import before_arg, json_error, kind_arg, rep_json, settings
from sidebar.pages import NOT_YOURS

bp = Blueprint("sidebar_api", __name__, url_prefix="/sidebar/api")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Opened(Strict):
    external_userid: str = Field(min_length=1, max_length=128)


class TagIn(Strict):
    tag: Annotated[str, AfterValidator(checked_tag)]


class NoteIn(Strict):
    text: str = Field(min_length=1, max_length=2000)
    key: str = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


class StageIn(Strict):
    stage: Literal["sql", "won", "lost"]
    reason: str = Field(default="", max_length=200)


class LeadAnswer(Strict):
    note: str = Field(default="", max_length=500)
    reason: int | str | None = None  # a return's reason: its id or its label


class ReminderIn(Strict):
    due_at: str = Field(min_length=1, max_length=40)
    text: str = Field(min_length=1, max_length=500)


class PageIn(Strict):
    url: str = Field(min_length=1, max_length=2000)


class BadBody(Exception):
    pass


def body(model: type[Strict]) -> Strict:
    raw = request.get_json(silent=True)
    if not isinstance(raw, dict):
        raise BadBody("请求内容必须是 JSON 对象")
    try:
        return model.model_validate(raw, strict=True)
    except ValidationError as exc:
        where = ", ".join(".".join(str(p) for p in e["loc"]) or "body" for e in exc.errors())
        raise BadBody(f"内容不正确：{where}") from None


@bp.errorhandler(BadBody)
def _bad_body(exc: BadBody) -> ResponseReturnValue:
    return json_error(422, str(exc))


@bp.errorhandler(actions.Forbidden)
def _forbidden(exc: actions.Forbidden) -> ResponseReturnValue:
    return json_error(403, NOT_YOURS)


@bp.errorhandler(actions.Invalid)
def _invalid(exc: actions.Invalid) -> ResponseReturnValue:
    return json_error(422, str(exc))


@bp.errorhandler(actions.Refused)
def _refused(exc: actions.Refused) -> ResponseReturnValue:
    return json_error(409, str(exc))


@bp.post("/open")
@rep_json
def open_customer() -> ResponseReturnValue:
    """The chat's customer (from getCurExternalContact): where their page is."""
    data = body(Opened)
    cid = actions.open_customer(settings(), g.rep.userid, data.external_userid)
    return jsonify(contact_id=cid, url=f"/sidebar/contacts/{cid}")


@bp.get("/contacts/<id:contact_id>/timeline")
@rep_json
def timeline(contact_id: int) -> ResponseReturnValue:
    page = screen.timeline_only(settings(), g.rep.userid, contact_id, kind_arg(), before_arg())
    if page is None:
        raise actions.Forbidden(contact_id)
    return jsonify(page)


@bp.post("/contacts/<id:contact_id>/tags")
@rep_json
def add_tag(contact_id: int) -> ResponseReturnValue:
    data = body(TagIn)
    added = actions.add_tag(settings(), g.rep.userid, contact_id, data.tag)
    return jsonify(tag=data.tag, added=added), 201 if added else 200


@bp.delete("/contacts/<id:contact_id>/tags/<tag>")
@rep_json
def remove_tag(contact_id: int, tag: str) -> ResponseReturnValue:
    removed = actions.remove_tag(settings(), g.rep.userid, contact_id, tag)
    return jsonify(tag=tag, removed=removed)


@bp.post("/contacts/<id:contact_id>/notes")
@rep_json
def add_note(contact_id: int) -> ResponseReturnValue:
    data = body(NoteIn)
    stored = actions.add_note(settings(), g.rep.userid, contact_id, data.text, data.key)
    return jsonify(stored=stored), 201 if stored else 200


@bp.post("/contacts/<id:contact_id>/stage")
@rep_json
def set_stage(contact_id: int) -> ResponseReturnValue:
    data = body(StageIn)
    stage = actions.set_stage(settings(), g.rep.userid, contact_id, data.stage, data.reason)
    return jsonify(stage=stage)


@bp.post("/contacts/<id:contact_id>/journeys/<id:journey_id>/<action>")
@rep_json
def journey(contact_id: int, journey_id: int, action: str) -> ResponseReturnValue:
    actions.journey_action(settings(), g.rep.userid, contact_id, journey_id, action)
    return jsonify(journey_id=journey_id, action=action)


@bp.post("/leads/<id:lead_id>/<answer>")
@rep_json
def answer_lead(lead_id: int, answer: str) -> ResponseReturnValue:
    if answer not in ("accept", "return"):
        return json_error(404, "未知的操作")
    data = body(LeadAnswer)
    answered = actions.answer_lead(
        settings(), g.rep.userid, lead_id, answer == "accept", data.note, data.reason
    )
    return jsonify(lead_id=lead_id, **answered)


@bp.post("/contacts/<id:contact_id>/reminders")
@rep_json
def set_reminder(contact_id: int) -> ResponseReturnValue:
    """The rep's next follow-up (replacing their pending one); the same again is a no-op."""
    data = body(ReminderIn)
    row, new = followups.set_reminder(settings(), g.rep.userid, contact_id, data.due_at, data.text)
    return jsonify(reminder=row, created=new), 201 if new else 200


@bp.delete("/contacts/<id:contact_id>/reminders/<id:reminder_id>")
@rep_json
def cancel_reminder(contact_id: int, reminder_id: int) -> ResponseReturnValue:
    status = followups.cancel_reminder(settings(), g.rep.userid, contact_id, reminder_id)
    return jsonify(reminder_id=reminder_id, status=status)


@bp.get("/quick-replies")
@rep_json
def quick_replies() -> ResponseReturnValue:
    """话术库 search: ``?q=`` words (every reply when empty), ``?group=`` a group id."""
    query = request.args.get("q", "")[:100]
    raw_group = request.args.get("group", "")
    if raw_group and not (raw_group.isascii() and raw_group.isdigit() and len(raw_group) < 10):
        return json_error(422, "分组不正确")
    group = int(raw_group) if raw_group else None
    return jsonify(replies.search(settings(), g.rep.userid, query, group))


@bp.post("/jssdk")
@rep_json
def jssdk() -> ResponseReturnValue:
    """wx.config and wx.agentConfig signatures for one of the sidebar's own pages (a
    customer's page signs when the rep first puts a quick reply into the chat)."""
    url = body(PageIn).url.split("#", 1)[0]
    if not url.startswith(f"{settings().public_url}/sidebar/"):
        return json_error(422, "只能为侧边栏自己的页面签名")
    try:
        signed = jsapi.page_config(settings(), url)
    except wechat.PlatformError:
        return json_error(503, "暂时无法连接企业微信 JS-SDK，请稍后再试")
    return jsonify(signed=signed, jssdk_url=str(settings().wecom_jssdk_url))


class SendLinkIn(Strict):
    key: str = Field(min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


@bp.post("/campaigns/<id:campaign_id>/send-link")
@rep_json
def send_my_link(campaign_id: int) -> ResponseReturnValue:
    """The rep's own link and poster to their WeCom, once per key (a double tap sends one)."""
    data = body(SendLinkIn)
    try:
        message_id = employee.send_my_link(settings(), campaign_id, g.rep.userid, data.key)
    except employee.NoSuchCampaign:
        return json_error(404, "这个活动不存在或已结束")
    return jsonify(message_id=message_id), 202
