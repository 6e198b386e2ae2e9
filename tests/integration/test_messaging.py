"""Each messaging rule against the simulator over real HTTP: the 48-hour window with hold and
template fallback, shared tokens (one refresh for many workers), retries with backoff,
idempotency across a worker killed mid-send, caps, quiet hours, the rate limit, broadcasts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from support import run_worker

from bot.core import db, queue, wechat
from bot.core.models import Contact, Event, Identity, Message
from bot.messaging import broadcasts, delivery, requeue
from bot.messaging import outbox as messaging
from bot.messaging.payloads import SendRequest


def contact_of(settings, openid: str) -> int:
    with db.session_scope(settings.database_url) as s:
        return s.execute(
            sa.select(Identity.contact_id).where(Identity.value == openid)
        ).scalar_one()


def row(settings, message_id: int) -> Message:
    with db.session_scope(settings.database_url) as s:
        return s.get(Message, message_id)


def timeline_types(settings, contact_id: int) -> list[str]:
    with db.session_scope(settings.database_url) as s:
        return list(
            s.execute(
                sa.select(Event.type).where(Event.contact_id == contact_id).order_by(Event.id)
            ).scalars()
        )


def send(settings, contact_id: int, content: str = "您好，这是鱼池的消息", **kw) -> int:
    req = SendRequest.model_validate(
        {"contact_id": contact_id, "kind": "text", "payload": {"content": content}, **kw}
    )
    m, _ = messaging.create(settings, req)
    return m.id


def follower(sim, settings, openid: str) -> int:
    """A follower who just followed through the simulator (window open on both sides)."""
    result = sim.follow(openid)
    assert result.status == 200, result
    return contact_of(settings, openid)


TEMPLATE = {
    "template_id": "TPL_ORDER",
    "data": {"first": "您有一条新消息", "remark": "点击查看"},
    "url": "https://example.com/m",
}


def test_within_the_window_a_text_is_delivered(sim, sim_settings, env_to_sim):
    cid = follower(sim, sim_settings, "oWin")
    mid = send(sim_settings, cid)
    run_worker(sim_settings)  # delivers (the job reads the environment)
    m = row(sim_settings, mid)
    assert (m.status, m.sent_kind, m.attempts) == ("sent", "text", 1)
    [got] = sim.inbox("oWin", kind="custom")
    assert got["payload"]["text"]["content"] == "您好，这是鱼池的消息"
    assert "msg.sent" in timeline_types(sim_settings, cid)


def test_outside_the_window_hold_then_deliver_on_next_interaction(sim, sim_settings, env_to_sim):
    cid = follower(sim, sim_settings, "oHold")
    mid = send(sim_settings, cid)
    later = datetime.now(UTC) + timedelta(hours=49)
    assert delivery.deliver(sim_settings, mid, now=later) == "held"
    assert row(sim_settings, mid).status == "held"
    assert sim.inbox("oHold", kind="custom") == []  # never fired blind into 45015
    assert sim.calls(path="message/custom/send") == []
    run_worker(sim_settings)
    assert "msg.held" in timeline_types(sim_settings, cid)

    sim.say("oHold", "在吗")  # they come back: the held message goes out
    run_worker(sim_settings)
    assert row(sim_settings, mid).status == "sent"
    assert len(sim.inbox("oHold", kind="custom")) == 1


def test_outside_the_window_template_fallback(sim, sim_settings):
    cid = follower(sim, sim_settings, "oFall")
    mid = send(sim_settings, cid, outside_window="fallback", fallback=TEMPLATE)
    assert (
        delivery.deliver(sim_settings, mid, now=datetime.now(UTC) + timedelta(hours=49)) == "sent"
    )
    m = row(sim_settings, mid)
    assert (m.status, m.kind, m.sent_kind) == ("sent", "text", "template") and m.platform_msgid
    [got] = sim.inbox("oFall", kind="template")
    assert got["payload"]["template_id"] == "TPL_ORDER"
    assert got["payload"]["data"]["first"]["value"] == "您有一条新消息"


def test_outside_the_window_fail_policy_sends_nothing(sim, sim_settings):
    cid = follower(sim, sim_settings, "oFail")
    mid = send(sim_settings, cid, outside_window="fail")
    assert (
        delivery.deliver(sim_settings, mid, now=datetime.now(UTC) + timedelta(hours=49)) == "failed"
    )
    m = row(sim_settings, mid)
    assert m.error_code == 45015 and "48-hour" in m.error_message
    assert sim.calls(path="message/") == []


PAYLOADS = {
    "news": {"title": "鱼池新品", "description": "点击查看", "url": "https://example.com/n"},
    "link": {"title": "鱼池手册", "url": "https://example.com/l"},
    "image": {"media_id": "MEDIA_IMAGE_1"},
    "miniprogram": {
        "title": "鱼池小程序",
        "appid": "wxminiprogram01",
        "pagepath": "pages/index/index",
        "thumb_media_id": "MEDIA_THUMB_1",
    },
}


@pytest.mark.parametrize("kind", sorted(PAYLOADS))
def test_outside_the_window_no_kind_is_attempted(sim, sim_settings, kind):
    """Rule (send_rules.CUSTOMER_SERVICE_KINDS, delivery._plan): the 48-hour window is checked
    before the call for every customer-service kind, not only text; a news, link, image or
    mini-program send outside it is never fired at the platform (45015 would only hide it)."""
    cid = follower(sim, sim_settings, f"oWindow{kind}")
    req = SendRequest.model_validate(
        {"contact_id": cid, "kind": kind, "payload": PAYLOADS[kind], "outside_window": "hold"}
    )
    one, _ = messaging.create(sim_settings, req)
    batched, _ = messaging.create(sim_settings, req.model_copy(update={"idempotency_key": "b"}))
    later = datetime.now(UTC) + timedelta(hours=49)
    assert delivery.deliver(sim_settings, one.id, now=later) == "held"
    assert delivery.deliver_batch(sim_settings, [batched.id], now=later) == ({"held": 1}, [])
    assert [row(sim_settings, i).status for i in (one.id, batched.id)] == ["held", "held"]
    assert sim.calls(path="message/") == []


def test_platform_45015_applies_the_same_policy(sim, sim_settings):
    """Our view says the window is open; the platform (its clock 49 h on) disagrees."""
    cid = follower(sim, sim_settings, "oDrift")
    sim.advance(49 * 3600)
    mid = send(sim_settings, cid)
    assert delivery.deliver(sim_settings, mid) == "held"
    assert row(sim_settings, mid).error_message.startswith("platform:")
    mid2 = send(sim_settings, cid, outside_window="fallback", fallback=TEMPLATE)
    assert delivery.deliver(sim_settings, mid2) == "sent"
    assert row(sim_settings, mid2).sent_kind == "template"


def test_unsubscribed_contacts_get_nothing(sim, sim_settings):
    cid = follower(sim, sim_settings, "oGone")
    sim.unfollow("oGone")
    mid = send(sim_settings, cid, outside_window="fallback", fallback=TEMPLATE)
    assert delivery.deliver(sim_settings, mid) == "skipped"
    assert sim.calls(path="message/") == []


def test_invalid_openid_fails_with_the_platform_error(sim, sim_settings, client, oa):
    """A follower the platform does not know (40003): failed, code and message recorded."""
    from support import post, text

    post(client, oa, text(oa, "oUnknownToPlatform", "hi", 1))
    cid = contact_of(sim_settings, "oUnknownToPlatform")
    with db.session_scope(sim_settings.database_url) as s:
        s.execute(
            sa.update(Contact.__table__)
            .where(Contact.__table__.c.id == cid)
            .values(subscribed=True)
        )
    mid = send(sim_settings, cid)
    assert delivery.deliver(sim_settings, mid) == "failed"
    m = row(sim_settings, mid)
    assert m.error_code == 40003 and m.error_message and m.attempts == 1


def test_idempotency_key_sends_once(sim, sim_settings, env_to_sim, client, auth):
    cid = follower(sim, sim_settings, "oIdem")
    body = {
        "contact_id": cid,
        "kind": "text",
        "payload": {"content": "只发一次"},
        "idempotency_key": "order-42",
    }
    first = client.post("/api/messages", json=body, headers=auth)
    again = client.post("/api/messages", json=body, headers=auth)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.get_json()["id"] == again.get_json()["id"]
    run_worker(sim_settings)
    run_worker(sim_settings)
    assert len(sim.inbox("oIdem", kind="custom")) == 1
    assert delivery.deliver(sim_settings, first.get_json()["id"]) == "sent"  # a stray retry
    assert len(sim.inbox("oIdem", kind="custom")) == 1
    msgs = client.get(f"/api/contacts/{cid}/messages", headers=auth).get_json()["messages"]
    assert [m["status"] for m in msgs] == ["sent"]
    assert (
        client.get(f"/api/messages/{first.get_json()['id']}", headers=auth).get_json()["status"]
        == "sent"
    )


def test_api_validation(client, auth, clean):
    bad = client.post("/api/messages", json={"kind": "text", "payload": {}}, headers=auth)
    assert bad.status_code == 422 and bad.get_json()["fields"]
    missing = client.post(
        "/api/messages",
        json={"contact_id": 999, "kind": "text", "payload": {"content": "x"}},
        headers=auth,
    )
    assert missing.status_code == 404
    assert client.get("/api/messages/424242", headers=auth).status_code == 404
    assert client.post("/api/messages", json={}, headers={}).status_code == 401


def test_concurrent_workers_refresh_the_token_exactly_once(sim, sim_settings):
    platform = wechat.oa(sim_settings)
    sim.set_user("oTok", last_interaction_ago=60, subscribe=1)
    barrier = threading.Barrier(8)
    errors = []

    def call():
        barrier.wait()
        try:
            wechat.oa(sim_settings).call("get", "user/info", params={"openid": "oTok"})
        except Exception as exc:  # pragma: no cover - shown on failure
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and sim.token_fetches("oa") == 1

    sim.revoke_tokens("oa")  # revoked mid-run: 40001 for everyone, one refresh, one retry each
    barrier.reset()
    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and sim.token_fetches("oa") == 2
    assert platform.tokens.get()


def test_expired_token_is_refreshed_before_expiry(sim, sim_settings):
    sim.configure(token_ttl=400)  # our margin is 300 s: cached for 100 s
    sim.set_user("oExp", last_interaction_ago=60, subscribe=1)
    oa = wechat.oa(sim_settings)
    oa.call("get", "user/info", params={"openid": "oExp"})
    ttl = oa.tokens.conn.ttl(oa.tokens.key)
    assert 0 < ttl <= 100


def test_transient_errors_retry_with_backoff_then_succeed(sim, sim_settings):
    cid = follower(sim, sim_settings, "oBusy")
    sim.faults(busy_next=2, paths=["message/custom/send"])
    mid = send(sim_settings, cid)
    assert delivery.deliver(sim_settings, mid) == "retrying"
    first_wait = row(sim_settings, mid).not_before
    assert delivery.deliver(sim_settings, mid) == "scheduled"  # not before its backoff
    assert delivery.deliver(sim_settings, mid, now=first_wait + timedelta(seconds=1)) == "retrying"
    m = row(sim_settings, mid)
    assert m.error_code == -1 and m.attempts == 2
    assert delivery.deliver(sim_settings, mid, now=m.not_before + timedelta(seconds=1)) == "sent"
    assert row(sim_settings, mid).attempts == 3
    assert len(sim.inbox("oBusy", kind="custom")) == 1


def test_transient_errors_give_up_after_max_attempts(sim, sim_settings):
    cid = follower(sim, sim_settings, "oDown")
    sim.faults(error_rate=1.0, paths=["message/custom/send"])
    mid = send(sim_settings, cid)
    now = datetime.now(UTC)
    for _ in range(10):
        status = delivery.deliver(sim_settings, mid, now=now)
        now += timedelta(hours=1)
        if status == "failed":
            break
    m = row(sim_settings, mid)
    assert (m.status, m.attempts, m.error_code) == ("failed", 5, -1)


def test_worker_killed_mid_send_never_sends_twice(sim, sim_settings):
    cid = follower(sim, sim_settings, "oKill")
    mid = send(sim_settings, cid, idempotency_key="kill-1")
    sim.faults(latency_ms=3000, paths=["message/custom/send"])
    env = {**os.environ, **sim.env}
    code = f"from bot.core.config import load_settings; from bot.messaging import delivery; delivery.deliver(load_settings(), {mid})"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    assert sim.wait_for(lambda: row(sim_settings, mid).status == "sending", timeout=20)
    time.sleep(0.5)  # the call is in flight (the platform takes 3 s)
    proc.send_signal(signal.SIGKILL)  # the worker dies while the platform handles the call
    proc.wait()
    assert row(sim_settings, mid).status == "sending"
    sim.faults(latency_ms=0)
    assert delivery.deliver(sim_settings, mid) == "sending"  # a retry does not resend
    requeue.STALE_SENDING, saved = timedelta(0), requeue.STALE_SENDING
    try:
        assert requeue.sweep(sim_settings)["unknown"] == 1
    finally:
        requeue.STALE_SENDING = saved
    assert delivery.deliver(sim_settings, mid) == "unknown"
    assert sim.wait_for(lambda: sim.inbox("oKill", kind="custom"), timeout=10)
    assert len(sim.inbox("oKill", kind="custom")) == 1  # delivered once, never twice


def test_marketing_cap_and_exemptions(sim, sim_settings):
    cid = follower(sim, sim_settings, "oCap")
    noon = datetime.now(UTC).replace(hour=4, minute=0)  # 12:00 in Shanghai: not quiet
    statuses = [
        delivery.deliver(
            sim_settings, send(sim_settings, cid, f"活动{i}", marketing=True), now=noon
        )
        for i in range(4)
    ]
    assert statuses == ["sent", "sent", "sent", "skipped"]
    assert (
        delivery.deliver(sim_settings, send(sim_settings, cid, "订单通知"), now=noon) == "sent"
    )  # not marketing
    with db.session_scope(sim_settings.database_url) as s:
        ev_id = s.execute(sa.select(Event.id).where(Event.contact_id == cid)).scalars().first()
    reply = send(sim_settings, cid, "回复您的问题", marketing=True, reply_to_event_id=ev_id)
    assert delivery.deliver(sim_settings, reply, now=noon) == "sent"  # a reply to them is exempt


def test_marketing_cap_counts_only_the_last_24_hours(sim, sim_settings):
    """Rule (send_rules.Policy.cap_window, delivery._recent_marketing): the frequency cap
    counts marketing messages sent in the last 24 hours, not of all time."""
    cid = follower(sim, sim_settings, "oCapDay")
    noon = datetime.now(UTC).replace(hour=4, minute=0)  # 12:00 in Shanghai: not quiet
    first = [send(sim_settings, cid, f"昨天的活动{i}", marketing=True) for i in range(3)]
    assert [delivery.deliver(sim_settings, i, now=noon) for i in first] == ["sent"] * 3
    # two went out 25 hours before noon, one 23 hours before: only that one still counts
    with db.session_scope(sim_settings.database_url) as s:
        t = Message.__table__
        for mid, hours in zip(first, (25, 25, 23), strict=True):
            s.execute(
                sa.update(t).where(t.c.id == mid).values(sent_at=noon - timedelta(hours=hours))
            )
    more = [send(sim_settings, cid, f"今天的活动{i}", marketing=True) for i in range(3)]
    assert [delivery.deliver(sim_settings, i, now=noon) for i in more] == [
        "sent",
        "sent",
        "skipped",
    ]
    assert "frequency cap" in row(sim_settings, more[2]).error_message


def test_quiet_hours_move_marketing_not_drop_it(sim, sim_settings):
    cid = follower(sim, sim_settings, "oNight")
    night = datetime(2030, 1, 10, 15, 0, tzinfo=UTC)  # 23:00 in Shanghai
    with db.session_scope(sim_settings.database_url) as s:  # last talked long before
        s.execute(
            sa.update(Contact.__table__)
            .where(Contact.__table__.c.id == cid)
            .values(last_interaction_at=night - timedelta(hours=2))
        )
    mid = send(sim_settings, cid, "夜间活动", marketing=True)
    assert delivery.deliver(sim_settings, mid, now=night) == "scheduled"
    assert row(sim_settings, mid).not_before == datetime(
        2030, 1, 11, 0, 0, tzinfo=UTC
    )  # 08:00 local
    assert delivery.deliver(sim_settings, mid, now=night + timedelta(hours=1)) == "scheduled"
    # in an active conversation (they wrote 10 minutes ago) it goes at once
    with db.session_scope(sim_settings.database_url) as s:
        s.execute(
            sa.update(Contact.__table__)
            .where(Contact.__table__.c.id == cid)
            .values(last_interaction_at=night - timedelta(minutes=10))
        )
    mid2 = send(sim_settings, cid, "夜间回复", marketing=True)
    assert delivery.deliver(sim_settings, mid2, now=night) != "scheduled"


def test_rate_limit_holds_across_workers(sim, sim_settings):
    settings = sim_settings.replace(send_rate=5)
    ids = []
    for i in range(15):
        sim.set_user(f"oRate{i}", last_interaction_ago=60, subscribe=1)
    for i in range(15):
        ids.append(follower(sim, settings, f"oRate{i}"))
    mids = [send(settings, cid) for cid in ids]
    threads = [threading.Thread(target=delivery.deliver, args=(settings, m)) for m in mids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stamps = sorted(c["at"] for c in sim.calls(path="message/custom/send"))
    assert len(stamps) == 15
    # In every one-second window (sliding, as the platform would count) at most 5 arrived.
    busiest = max(sum(1 for t in stamps if s <= t < s + 1.0) for s in stamps)
    assert busiest <= 5, stamps
    assert stamps[-1] - stamps[0] >= 14 / 5  # evenly spaced: 14 gaps of at least 0.2 s


def test_wecom_app_message_to_a_rep(sim, sim_settings):
    sim.add_rep("zhangsan", name="张三")
    req = SendRequest.model_validate(
        {
            "kind": "wecom_textcard",
            "to_user": ["zhangsan"],
            "payload": {
                "title": "新线索",
                "description": "王女士询问了价格",
                "url": "https://example.com/c/1",
            },
        }
    )
    m, _ = messaging.create(sim_settings, req)
    assert delivery.deliver(sim_settings, m.id) == "sent"
    [got] = sim.inbox(userid="zhangsan")
    assert got["payload"]["textcard"]["title"] == "新线索"


def test_broadcast_fans_out_and_delivers_each_once(sim, sim_settings, env_to_sim, client, auth):
    cids = [follower(sim, sim_settings, f"oBc{i}") for i in range(12)]
    body = {
        "name": "双11预告",
        "kind": "text",
        "payload": {"content": "双11活动即将开始"},
        "contact_ids": cids,
        "marketing": False,
    }
    resp = client.post("/api/broadcasts", json=body, headers=auth)
    assert resp.status_code == 202
    bid = resp.get_json()["id"]
    run_worker(sim_settings)  # fan-out, then every delivery
    broadcasts.fan_out(sim_settings, bid)  # a re-run creates nothing twice
    run_worker(sim_settings)
    progress = client.get(f"/api/broadcasts/{bid}", headers=auth).get_json()
    assert (
        progress["total"] == 12
        and progress["counts"] == {"sent": 12}
        and progress["status"] == "done"
    )
    for i in range(12):
        assert len(sim.inbox(f"oBc{i}", kind="custom")) == 1


def test_a_batch_is_claimed_at_once_and_the_cap_counts_within_it(sim, sim_settings):
    """A delivery batch decides for all its rows in one transaction: the frequency cap sees the
    rows it claimed before, and a claimed row counts for any other sender too."""
    a, b = follower(sim, sim_settings, "oBatchA"), follower(sim, sim_settings, "oBatchB")
    gone = follower(sim, sim_settings, "oBatchGone")
    sim.unfollow("oBatchGone")
    noon = datetime.now(UTC).replace(hour=4, minute=0)  # 12:00 in Shanghai: not quiet
    to_a = [send(sim_settings, a, f"活动{i}", marketing=True) for i in range(4)]
    ids = [*to_a, send(sim_settings, b, "活动", marketing=True), send(sim_settings, gone, "活动")]
    outcomes, rest = delivery.deliver_batch(sim_settings, ids, now=noon)
    assert rest == [] and outcomes == {"sent": 4, "skipped": 2}
    assert [row(sim_settings, i).status for i in to_a] == ["sent"] * 3 + ["skipped"]
    assert "frequency cap" in row(sim_settings, to_a[3]).error_message
    assert len(sim.inbox("oBatchA", kind="custom")) == 3
    assert len(sim.inbox("oBatchB", kind="custom")) == 1
    assert delivery.deliver_batch(sim_settings, ids, now=noon) == ({"elsewhere": 6}, [])

    # b has had one: of three more, two are claimed and the third is over the cap; a batch
    # that stops after its first send leaves the other claimed, and the cap still counts it
    more = [send(sim_settings, b, f"更多{i}", marketing=True) for i in range(3)]
    outcomes, rest = delivery.deliver_batch(sim_settings, more, until=0.0, now=noon)
    assert outcomes == {"sent": 1, "skipped": 1} and rest == [more[1]]
    assert row(sim_settings, more[1]).status == "claimed"
    extra = send(sim_settings, b, "再来一条", marketing=True)
    assert delivery.deliver(sim_settings, extra, now=noon) == "skipped"  # 2 sent + 1 claimed
    assert delivery.deliver_batch(sim_settings, rest, now=noon) == ({"sent": 1}, [])
    assert len(sim.inbox("oBatchB", kind="custom")) == 3


def test_claimed_rows_of_a_dead_batch_are_sent_once_by_the_sweeper(sim, sim_settings, env_to_sim):
    """Claimed means "not sent by anyone yet": when the batch's worker dies after its claim,
    the sweeper queues the rows again and each reaches the platform exactly once."""
    cids = [follower(sim, sim_settings, f"oDead{i}") for i in range(3)]
    ids = [send(sim_settings, cid, "通知") for cid in cids]
    queue.get_redis(sim_settings).flushdb()  # their own jobs are lost with the worker
    outcomes, rest = delivery.deliver_batch(sim_settings, ids, until=0.0)
    assert outcomes == {"sent": 1} and len(rest) == 2  # …and the worker dies here
    assert {row(sim_settings, i).status for i in rest} == {"claimed"}
    late = sim_settings.replace(message_sweep_grace_seconds=0.0)
    assert requeue.sweep(late)["requeued"] == 2
    run_worker(sim_settings)
    assert [row(sim_settings, i).status for i in ids] == ["sent"] * 3
    assert [len(sim.inbox(f"oDead{i}", kind="custom")) for i in range(3)] == [1, 1, 1]
    assert delivery.deliver_batch(sim_settings, ids) == ({"elsewhere": 3}, [])


def test_the_sweeper_leaves_a_backlog_to_its_jobs(sim, sim_settings):
    """Rows behind a long queue (a broadcast under the rate limit) wait longer than the grace
    period without being lost: the sweeper queues them again only once no delivery job is
    left waiting."""
    ids = [
        send(sim_settings, follower(sim, sim_settings, f"oBacklog{i}"), "通知") for i in range(2)
    ]
    late = sim_settings.replace(message_sweep_grace_seconds=0.0)
    queue.get_redis(sim_settings).flushdb()
    messaging.enqueue(sim_settings, ids, batch=2)  # one batch job, still waiting
    assert requeue.sweep(late)["requeued"] == 0
    queue.get_redis(sim_settings).flushdb()  # Redis loses it
    assert requeue.sweep(late)["requeued"] == 2
