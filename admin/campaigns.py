"""/api/campaigns: campaigns, personal links and posters, stats and chains, check-ins,
and the rewards catalogue."""

from __future__ import annotations

import uuid

from flask import current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field

from admin.common import api_blueprint, end_reads, error, int_arg, validated
from admin.openapi import described
from bot.campaigns import codes, points, sharing, signups, stats, store
from bot.campaigns.spec import CampaignSpec
from bot.core import queue
from bot.core.wechat import PlatformError

bp = api_blueprint("campaigns", __name__)


class CheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    pass_: str = Field(alias="pass", min_length=10, max_length=600)
    by: str = Field(min_length=1, max_length=64)


class SendLink(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    userid: str = Field(min_length=1, max_length=64)
    request_key: str = Field(default_factory=lambda: uuid.uuid4().hex, min_length=1, max_length=80)


class RedeemIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    reward_id: int = Field(ge=1, le=2**31 - 1)
    request_key: str = Field(min_length=8, max_length=80)


class RewardIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    name: str = Field(min_length=1, max_length=100)
    kind: str = Field(pattern=r"^(coupon|gift)$")
    cost: int = Field(ge=1, le=1_000_000)
    stock: int = Field(ge=0, le=1_000_000)


def _settings():  # noqa: ANN202 - Settings
    return current_app.config["SETTINGS"]


@bp.post("/campaigns")
@described("campaigns", "Create a campaign", json=CampaignSpec, status=201, errors=(409,))
def create() -> ResponseReturnValue:
    spec = validated(CampaignSpec, "campaign")
    try:
        row = store.create(g.session, spec)
    except store.SlugTaken:
        return error(409, "slug taken", fields={"slug": f"{spec.slug} is another campaign's"})
    return jsonify(store.as_json(row)), 201


@bp.get("/campaigns")
@described("campaigns", "List the campaigns")
def list_all() -> ResponseReturnValue:
    return jsonify(campaigns=[store.as_json(r) for r in store.all_campaigns(g.session)])


@bp.get("/campaigns/<id:campaign_id>")
@described("campaigns", "One campaign", errors=(404,))
def one(campaign_id: int) -> ResponseReturnValue:
    row = store.get(g.session, campaign_id)
    return jsonify(store.as_json(row)) if row else error(404, f"no campaign {campaign_id}")


@bp.put("/campaigns/<id:campaign_id>")
@described("campaigns", "Replace a campaign", json=CampaignSpec, errors=(404, 409))
def change(campaign_id: int) -> ResponseReturnValue:
    spec = validated(CampaignSpec, "campaign")
    try:
        row = store.update(g.session, campaign_id, spec)
    except store.SlugTaken:
        return error(409, "slug taken", fields={"slug": f"{spec.slug} is another campaign's"})
    return jsonify(store.as_json(row)) if row else error(404, f"no campaign {campaign_id}")


@bp.get("/campaigns/<id:campaign_id>/links")
@described("campaigns", "An employee's personal link and poster (?userid=)", errors=(404,))
def links(campaign_id: int) -> ResponseReturnValue:
    """An employee's personal link, QR code and poster (and the OA follow QR when the
    campaign has the follow step)."""
    userid = request.args.get("userid", "").strip()
    if not userid or len(userid) > 64:
        return error(422, "invalid query string", fields={"userid": "the employee's WeCom userid"})
    row = store.get(g.session, campaign_id)
    if row is None:
        return error(404, f"no campaign {campaign_id}")
    end_reads()
    settings = _settings()
    out = sharing.employee_link(settings, row, userid)
    if row.spec.get("follow"):
        try:
            out["follow_qr"] = sharing.follow_qr(settings, codes.Sharer(campaign_id, userid=userid))
        except (PlatformError, ValueError) as exc:
            out["follow_qr"] = {"error": str(exc)}
    return jsonify(out)


@bp.post("/campaigns/<id:campaign_id>/links/send")
@described(
    "campaigns",
    "Send an employee their link by WeCom message",
    json=SendLink,
    status=202,
    errors=(404,),
)
def send_link(campaign_id: int) -> ResponseReturnValue:
    """Send the employee their personal link and poster by WeCom app message."""
    data = validated(SendLink, "link request")
    row = store.get(g.session, campaign_id)
    if row is None:
        return error(404, f"no campaign {campaign_id}")
    end_reads()
    message_id = sharing.send_link(_settings(), row, data.userid, data.request_key)
    return jsonify(message_id=message_id, userid=data.userid), 202


@bp.get("/campaigns/<id:campaign_id>/stats")
@described("campaigns", "A campaign's stats", errors=(404,))
def campaign_stats(campaign_id: int) -> ResponseReturnValue:
    row = store.get(g.session, campaign_id)
    if row is None:
        return error(404, f"no campaign {campaign_id}")
    views = int(queue.get_redis(_settings()).get(f"yuchi:h5:views:{campaign_id}") or 0)
    return jsonify(stats.campaign_stats(g.session, row, views))


@bp.get("/campaigns/<id:campaign_id>/chain")
@described("campaigns", "The share chain below an employee or a customer", errors=(404,))
def chain_tree(campaign_id: int) -> ResponseReturnValue:
    """``?userid=`` (an employee) or ``?contact_id=`` (a customer): the chain below them."""
    row = store.get(g.session, campaign_id)
    if row is None:
        return error(404, f"no campaign {campaign_id}")
    userid = request.args.get("userid") or None
    contact_id = int_arg("contact_id", None, 1, 2**31 - 1)
    if (userid is None) == (contact_id is None):
        return error(422, "invalid query string", fields={"userid": "give userid or contact_id"})
    return jsonify(stats.sharer_tree(g.session, row, userid, contact_id))


@bp.post("/campaigns/<id:campaign_id>/checkins")
@described("campaigns", "Check a visitor in by their pass", json=CheckIn, errors=(404,))
def check_in(campaign_id: int) -> ResponseReturnValue:
    """Staff scanned a visitor's check-in pass at the door."""
    data = validated(CheckIn, "check-in")
    end_reads()
    done = signups.check_in_pass(_settings(), campaign_id, data.pass_, data.by)
    if done is None:
        return error(404, "no such check-in pass for this campaign", fields={"pass": "unknown"})
    return jsonify(
        signup_id=done.signup_id, contact_id=done.contact_id, first=done.first, at=done.at
    )


@bp.post("/rewards")
@described("points", "Add a reward to the catalogue", json=RewardIn, status=201)
def add_reward() -> ResponseReturnValue:
    data = validated(RewardIn, "reward")
    row = points.add_reward(g.session, data.name, data.kind, data.cost, data.stock)
    return jsonify(id=row.id, name=row.name, kind=row.kind, cost=row.cost, stock=row.stock), 201


@bp.get("/rewards")
@described("points", "The rewards catalogue")
def list_rewards() -> ResponseReturnValue:
    return jsonify(
        rewards=[
            {"id": r.id, "name": r.name, "kind": r.kind, "cost": r.cost, "stock": r.stock}
            for r in points.rewards(g.session)
        ]
    )


@bp.get("/points/<holder>")
@described(
    "points", "A person's points and ledger", path={"holder": "u:<userid> or c:<contact id>"}
)
def holder_points(holder: str) -> ResponseReturnValue:
    """A person's points: ``u:<userid>`` or ``c:<contact id>``, with the explained ledger."""
    if holder[:2] not in ("u:", "c:") or len(holder) > 80:
        return error(422, "invalid holder", fields={"holder": "u:<userid> or c:<contact id>"})
    return jsonify(
        holder=holder,
        balance=points.balance(g.session, holder),
        ledger=points.ledger(g.session, holder, 200),
    )


@bp.post("/points/<holder>/redeem")
@described(
    "points",
    "Spend points on a reward",
    json=RedeemIn,
    errors=(409,),
    path={"holder": "u:<userid> or c:<contact id>"},
)
def redeem(holder: str) -> ResponseReturnValue:
    """Spend a person's points on a reward (an employee from the sidebar: ``u:<userid>``);
    the same ``request_key`` answers the first redemption again."""
    if holder[:2] not in ("u:", "c:") or len(holder) > 80:
        return error(422, "invalid holder", fields={"holder": "u:<userid> or c:<contact id>"})
    data = validated(RedeemIn, "redemption")
    try:
        done = points.redeem(g.session, holder, data.reward_id, data.request_key)
    except points.RedeemRefused as exc:
        return error(409, str(exc))
    return jsonify(
        redemption_id=done.redemption_id,
        reward=done.reward,
        code=done.code,
        balance=done.balance,
        repeated=done.repeated,
    )
