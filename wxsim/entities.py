"""The simulated platforms' records: tokens, OA users, WeCom reps and external contacts, corp
tags, contact ways, one-time codes, QR codes and injected faults. Plain dataclasses; SimState
(wxsim/state.py) holds them under its lock."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class Token:
    value: str
    app: str  # oa | oa_stable | wecom | sns
    issued_at: float
    expires_at: float
    revoked: bool = False
    superseded_at: float | None = None  # OA: a newer token was issued at this time
    openid: str = ""  # sns tokens only
    scope: str = ""  # sns tokens only


@dataclass
class OAUser:
    openid: str
    subscribe: bool = True
    subscribe_time: int = 0
    unionid: str = ""
    nickname: str = "微信用户"
    sex: int = 0
    city: str = ""
    province: str = ""
    country: str = ""
    headimgurl: str = ""
    remark: str = ""
    language: str = "zh_CN"
    tagid_list: list[int] = field(default_factory=list)
    subscribe_scene: str = "ADD_SCENE_OTHERS"
    qr_scene: int = 0
    qr_scene_str: str = ""
    last_interaction: float | None = None
    blocks_templates: bool = False  # TEMPLATESENDJOBFINISH reports "failed:user block"

    def info(self) -> dict[str, Any]:
        """``user/info`` as WeChat answers it (no nickname/avatar since 2021-12-27)."""
        if not self.subscribe:
            out: dict[str, Any] = {"subscribe": 0, "openid": self.openid}
        else:
            out = {
                "subscribe": 1,
                "openid": self.openid,
                "language": self.language,
                "subscribe_time": self.subscribe_time,
                "remark": self.remark,
                "groupid": 0,
                "tagid_list": list(self.tagid_list),
                "subscribe_scene": self.subscribe_scene,
                "qr_scene": self.qr_scene,
                "qr_scene_str": self.qr_scene_str,
            }
        if self.unionid:
            out["unionid"] = self.unionid
        return out


@dataclass
class Rep:
    userid: str
    name: str = ""
    status: int = 1  # 1 active, 2 disabled, 4 not activated, 5 left
    department: list[int] = field(default_factory=lambda: [1])
    position: str = ""
    mobile: str = ""

    def info(self) -> dict[str, Any]:
        return {
            "userid": self.userid,
            "name": self.name or self.userid,
            "department": list(self.department),
            "position": self.position,
            "mobile": self.mobile,
            "status": self.status,
            "main_department": self.department[0] if self.department else 1,
        }


@dataclass
class FollowUser:
    userid: str
    createtime: int
    remark: str = ""
    description: str = ""
    state: str = ""
    add_way: int = 1  # 1: scanned a QR code
    tag_ids: list[str] = field(default_factory=list)


@dataclass
class ExternalContact:
    external_userid: str
    name: str = "客户"
    type: int = 1  # 1 WeChat user, 2 WeCom user
    gender: int = 0
    unionid: str = ""
    avatar: str = ""
    follow: dict[str, FollowUser] = field(default_factory=dict)


@dataclass
class Transfer:
    """A customer handed from one rep to another (在职转接 ``in_service`` or 离职继承
    ``resigned``). status as ``transfer_result`` reports it: 1 taken over, 2 waiting (the
    customer has until ``takeover_time`` to refuse), 3 refused, 4 the takeover rep's customer
    limit reached."""

    external_userid: str
    handover: str
    takeover: str
    kind: str
    requested_at: float
    takeover_time: float
    status: int = 2
    message: str = ""


@dataclass
class CorpTag:
    id: str
    name: str
    create_time: int
    order: int = 0


@dataclass
class CorpTagGroup:
    group_id: str
    group_name: str
    create_time: int
    order: int = 0
    tags: list[CorpTag] = field(default_factory=list)


@dataclass
class ContactWay:
    config_id: str
    type: int
    scene: int
    state: str
    user: list[str]
    party: list[int]
    remark: str = ""
    skip_verify: bool = True
    style: int = 1
    qr_code: str = ""


@dataclass
class WelcomeCode:
    code: str
    userid: str
    external_userid: str
    issued_at: float
    used: bool = False


@dataclass
class OAuthCode:
    code: str
    platform: str  # oa | wecom
    subject: str  # openid (OA, or WeCom non-member) or userid (WeCom member)
    scope: str
    issued_at: float
    member: bool = False
    used: bool = False


@dataclass
class QRCode:
    ticket: str
    action_name: str
    scene_id: int | None
    scene_str: str | None
    expire_seconds: int | None
    created_at: float
    url: str

    @property
    def scene(self) -> str:
        return self.scene_str if self.scene_str is not None else str(self.scene_id)


@dataclass
class Faults:
    """Injected failures. Rates are probabilities (0..1) drawn from a seeded random."""

    latency_ms: int = 0
    error_rate: float = 0.0  # answer -1 (system busy)
    http_500_rate: float = 0.0  # answer HTTP 500 with no JSON
    rate_limit: int = 0  # max API calls per second per app; 0 = unlimited; excess -> 45009
    busy_next: int = 0  # the next N calls answer -1
    apps: list[str] | None = None  # limit faults to these apps (oa, wecom); None = all
    paths: list[str] | None = None  # limit faults to paths containing one of these

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


FAULT_FIELDS = {f.name for f in fields(Faults)}
