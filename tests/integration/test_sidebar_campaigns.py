"""全员营销 in the sidebar: a rep finds their own link, QR code and poster for every open
campaign, and sends the link to their WeCom (issue 14's "get my link")."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from h5_support import create_campaign
from test_sidebar import csrf, login, staff

from bot.campaigns import codes
from bot.core import db
from bot.core.models import Message, utcnow


@pytest.fixture
def client(sim_settings):
    from bot.app import create_app

    app = create_app(sim_settings)
    app.config["TESTING"] = True
    return app.test_client()


def test_a_rep_sees_their_own_signed_link_for_each_open_campaign(client, sim, sim_settings, auth):
    spring = create_campaign(client, auth)
    ended = (utcnow() - timedelta(days=1)).isoformat()
    create_campaign(
        client,
        auth,
        slug="old-one",
        title="去年的活动",
        starts_at=(utcnow() - timedelta(days=30)).isoformat(),
        ends_at=ended,
    )
    staff(sim_settings, "alice")
    login(client, sim, "alice", "/sidebar/campaigns")
    page = client.get("/sidebar/campaigns").get_data(as_text=True)
    assert spring["title"] in page and "去年的活动" not in page  # only open campaigns
    code = page.split("?r=", 1)[1].split('"', 1)[0]
    sharer = codes.read_referral(sim_settings.secret_key, code)
    assert (sharer.campaign_id, sharer.userid) == (spring["id"], "alice")
    assert f"/h5/poster/{code}.png" in page and f"/h5/qr/{code}.png" in page


def test_sending_my_link_needs_the_session_and_sends_once_per_tap(client, sim, sim_settings, auth):
    camp = create_campaign(client, auth)
    staff(sim_settings, "alice")
    path = f"/sidebar/api/campaigns/{camp['id']}/send-link"
    assert client.post(path, json={"key": "k" * 12}).status_code in (302, 401, 403)
    login(client, sim, "alice", "/sidebar/leads")
    headers = csrf(client)
    assert client.post(path, json={"key": "k" * 12}).status_code == 403  # no CSRF token
    first = client.post(path, json={"key": "tap-000001"}, headers=headers)
    again = client.post(path, json={"key": "tap-000001"}, headers=headers)  # a double tap
    assert first.status_code == again.status_code == 202
    assert first.get_json()["message_id"] == again.get_json()["message_id"]
    with db.session_scope(sim_settings.database_url) as s:
        [msg] = s.execute(sa.select(Message).where(Message.channel == "wecom")).scalars()
        assert msg.to_user == "alice" and camp["title"] in msg.payload["title"]
    missing = client.post(
        "/sidebar/api/campaigns/999/send-link", json={"key": "tap-000002"}, headers=headers
    )
    assert missing.status_code == 404 and "活动" in missing.get_json()["error"]
    bad = client.post(path, json={"key": "x"}, headers=headers)
    assert bad.status_code == 422
