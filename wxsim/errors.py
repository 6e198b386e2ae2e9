"""The error codes the simulator answers, one table per platform.

WeChat answers errors with HTTP 200 and ``{"errcode": N, "errmsg": "..."}``. Real errmsg texts
carry a request id (OA: `` rid: …``; WeCom: ``, more info at …``), so product code must branch
on ``errcode`` only; the simulator adds the same kind of suffix to keep it honest.

Sources: the OA global return-code page (developers.weixin.qq.com, 全局返回码说明), the WeCom
global error-code page (developer.work.weixin.qq.com/document/path/90313 and 90455) and the
per-API pages. Codes marked ``[unverified]`` below were not confirmed in an official table and
are the closest documented code; change them here if the platform is seen answering otherwise.
"""

from __future__ import annotations

import secrets

# Official Account (api.weixin.qq.com) --------------------------------------------------------
OA_ERRORS: dict[int, str] = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40004: "invalid media type",
    40005: "invalid file type",
    40006: "invalid meida size",
    40007: "invalid media_id",
    40008: "invalid message type",
    40009: "invalid image size",
    40013: "invalid appid",
    40016: "invalid button size",
    40017: "invalid button type",
    40018: "invalid button name size",
    40019: "invalid button key size",
    40020: "invalid button url size",
    40023: "invalid sub button size",
    40024: "invalid sub button type",
    40025: "invalid sub button name size",
    40026: "invalid sub button key size",
    40027: "invalid sub button url size",
    40029: "invalid code",
    40030: "invalid refresh_token",
    40032: "invalid openid list size",
    40035: "invalid args",  # qrcode/create parameters [unverified for that API]
    40037: "invalid template_id",
    40125: "invalid appsecret",
    40130: "invalid openid list size, at least two openid",
    40163: "code been used",
    41001: "access_token missing",
    41002: "appid missing",
    41004: "appsecret missing",
    41005: "media data missing",
    41008: "missing code",
    41009: "missing openid",
    42001: "access_token expired",
    42002: "refresh_token expired",
    43001: "require GET method",
    43002: "require POST method",
    43004: "require subscribe",
    44002: "empty post data",
    44004: "empty content",
    45008: "article size out of limit",
    45009: "reach max api daily quota limit",
    45015: "response out of time limit or subscription is canceled",
    45028: "has no masssend quota",
    45056: "too many tags",
    45057: "can't delete the tag that has too many fans",
    45058: "can't modify sys tag",
    45059: "tag count of a user exceeds limit",
    45157: "invalid tag name (name already exists)",
    45158: "tag name too long",
    45159: "invalid tag id",
    40050: "invalid tag id",  # a conditional menu's matchrule.tag_id [unverified]
    45065: "clientmsgid exist",
    45067: "clientmsgid size out of limit",
    46003: "menu no exist",
    47001: "data format error",
    48001: "api unauthorized",
    65301: "no conditional menu with this menuid",
    65302: "no such user",
    65303: "no default menu, a conditional menu cannot be created",
    65304: "matchrule is empty",
    65305: "too many conditional menus",
    65316: "conditional menus link to too many domains (at most 3)",
    65320: "matchrule on sex, region or language is not supported",
}

# WeCom (qyapi.weixin.qq.com) -------------------------------------------------------------------
WECOM_ERRORS: dict[int, str] = {
    -1: "system busy",
    40001: "invalid secret",
    40003: "invalid userid",
    40004: "invalid media type",
    40005: "invalid file type",
    40006: "invalid meida size",
    40007: "invalid media_id",
    40008: "invalid message type",
    40009: "invalid image size",
    40013: "invalid corpid",
    40014: "invalid access_token",
    40029: "invalid code",
    40056: "invalid agentid",
    40058: "invalid parameter",  # 不合法的参数, used for malformed bodies and bad fields
    40068: "invalid tagid",
    40071: "tag name already exists",
    40096: "invalid external userid",
    40097: "user not resigned from corp",  # 该成员尚未离职
    40099: "external contact count of takeover user reaches limit",
    40128: "customer transfer too frequent",  # 客户转接过于频繁 (the 90-day rule)
    40129: "customer is already being transferred",  # 当前客户正在转接中
    40130: "handover user and takeover user are the same",
    40131: "handover user is not a follow user of the external contact",
    41009: "missing userid",
    41035: "missing external userid",
    41001: "access_token missing",
    41002: "corpid missing",
    41004: "secret missing",
    41005: "media data missing",
    41008: "missing code",
    41011: "missing agentid",
    41051: "externaluser has started chatting",  # welcome_code used or expired
    42001: "access_token expired",
    44004: "empty content",
    45009: "api freq out of limit",
    60111: "userid not found",
    81013: "user & party & tag all invalid",
    84061: "not external contact",
}


def errmsg(platform: str, code: int, detail: str = "") -> str:
    table = OA_ERRORS if platform == "oa" else WECOM_ERRORS
    text = table.get(code, "error")
    if detail:
        text = f"{text}: {detail}"
    rid = secrets.token_hex(4) + "-" + secrets.token_hex(4)
    if platform == "oa":
        return f"{text} rid: {rid}"
    return f"{text}, hint: [{rid}], more info at https://open.work.weixin.qq.com/devtool/query?e={code}"


class ApiError(Exception):
    """Raised inside an API view; rendered as WeChat's ``{errcode, errmsg}`` with HTTP 200."""

    def __init__(self, code: int, detail: str = ""):
        self.code, self.detail = code, detail
        super().__init__(f"{code} {detail}".strip())

    def body(self, platform: str) -> dict[str, object]:
        return {"errcode": self.code, "errmsg": errmsg(platform, self.code, self.detail)}
