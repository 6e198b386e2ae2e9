"""/api/channels: channel QR codes (渠道活码) on WeCom."""

from __future__ import annotations

from flask import current_app, g, jsonify
from flask.typing import ResponseReturnValue

from admin.common import Invalid, api_blueprint, end_reads, error, validated
from admin.openapi import described
from bot.core.models import Channel
from bot.wecom import channels

bp = api_blueprint("channels", __name__)


@bp.post("/channels")
@described(
    "channels",
    "Create a channel QR code on WeCom",
    json=channels.ChannelIn,
    status=201,
    errors=(502,),
)
def create_channel() -> ResponseReturnValue:
    data = validated(channels.ChannelIn, "channel")
    if data.state and channels.state_taken(g.session, data.state):
        raise Invalid("invalid channel", {"state": "a channel with this state exists"})
    end_reads()
    try:
        row = channels.create(current_app.config["SETTINGS"], data)
    except channels.ChannelError as exc:
        return error(502, f"WeCom refused the contact way: {exc.errmsg}", errcode=exc.errcode)
    return jsonify(channels.channel_json(row)), 201


@bp.get("/channels")
@described("channels", "List the channels")
def list_channels() -> ResponseReturnValue:
    return jsonify(channels=[channels.channel_json(c) for c in channels.list_channels(g.session)])


@bp.get("/channels/<id:channel_id>")
@described("channels", "One channel", errors=(404,))
def get_channel(channel_id: int) -> ResponseReturnValue:
    row = g.session.get(Channel, channel_id)
    if row is None:
        return error(404, f"no channel {channel_id}")
    return jsonify(channels.channel_json(row))
