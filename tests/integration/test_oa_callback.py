"""Signed and encrypted Official Account callbacks through the app, against the real database
and Redis: what is stored, what is replied, what the background path does."""

from __future__ import annotations

import json
import threading
import time

import pytest
import sqlalchemy as sa
from support import event, post, run_worker, text

from bot.core import db, group_commit, queue, rawdb
from bot.core.models import Contact, ContactTag, Event, Outbox


def rows(settings, model, *where):
    with db.session_scope(settings.database_url) as s:
        return list(s.execute(sa.select(model).where(*where)).scalars())


def add_rule(client, auth, **body):
    resp = client.post("/api/replies", json=body, headers=auth)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


def test_url_verification(client, oa):
    q = oa.url_check("hello-echo")
    resp = client.get("/wechat/oa", query_string=q)
    assert resp.status_code == 200 and resp.get_data(as_text=True) == "hello-echo"
    q["signature"] = "0" * 40
    assert client.get("/wechat/oa", query_string=q).status_code == 403
    assert client.get("/wechat/oa?echostr=x").status_code == 403


@pytest.mark.parametrize("mode", ["plain", "compat", "safe"])
def test_text_message_stored_in_every_mode(compatible_client, oa, clean, auth, mode):
    client = compatible_client  # WECHAT_OA_MESSAGE_MODE=compatible takes all three
    add_rule(client, auth, name="价格", keywords=["价格"], reply="您好，价格表请看菜单「产品」。")
    reply = post(client, oa, text(oa, "oMode", "请问价格是多少", 7001), mode)
    assert reply.status == 200
    assert reply.fields["Content"] == "您好，价格表请看菜单「产品」。"
    assert reply.fields["ToUserName"] == "oMode" and reply.fields["MsgType"] == "text"
    if mode == "plain":
        assert "<Encrypt>" not in reply.body
    else:  # replies are encrypted whenever the request was
        assert "<Encrypt>" in reply.body and "价格表" not in reply.body
    [ev] = rows(clean, Event)
    assert ev.type == "oa.text" and ev.source == "oa"
    assert isinstance(ev.properties.pop("create_time"), int)  # the sender's, kept as sent
    assert ev.properties == {"content": "请问价格是多少", "msg_id": "7001"}
    assert ev.occurred_at.tzinfo is not None
    [contact] = rows(clean, Contact)
    assert contact.id == ev.contact_id and contact.last_interaction_at is not None
    [ob] = rows(clean, Outbox)
    assert ob.event_id == ev.id and ob.status == "pending"


def test_nothing_matched_answers_success(client, oa, clean):
    reply = post(client, oa, text(oa, "oQuiet", "随便聊聊", 7002))
    assert reply.status == 200 and reply.body == "success"
    assert len(rows(clean, Event)) == 1


def test_keyword_modes_and_tags(client, oa, clean, auth):
    add_rule(client, auth, name="exact", match="exact", keywords=["菜单"], reply="这是菜单")
    add_rule(
        client, auth, name="contains", match="contains", keywords=["优惠"], reply="优惠活动进行中"
    )
    add_rule(
        client,
        auth,
        name="interest",
        keywords=["价格", "报价", "多少钱"],
        tags=["意向:价格"],
        reply="我们的报价如下",
    )
    assert post(client, oa, text(oa, "oK", "菜单", 1)).fields["Content"] == "这是菜单"
    assert post(client, oa, text(oa, "oK", "看看菜单吧", 2)).body == "success"
    assert post(client, oa, text(oa, "oK", "有优惠吗", 3)).fields["Content"] == "优惠活动进行中"
    assert post(client, oa, text(oa, "oK", "这个多少钱", 4)).fields["Content"] == "我们的报价如下"
    [tag] = rows(clean, ContactTag)
    assert (tag.tag, tag.source) == (
        "意向:价格",
        "reply_rule",
    ) and tag.created_at.tzinfo is not None
    # A second match keeps one tag, with its first source and time.
    post(client, oa, text(oa, "oK", "请问报价", 5))
    assert len(rows(clean, ContactTag)) == 1


def test_news_reply(client, oa, auth):
    add_rule(
        client,
        auth,
        name="介绍",
        keywords=["介绍"],
        news={"title": "鱼池是什么", "description": "三分钟了解", "url": "https://example.com/a"},
    )
    reply = post(client, oa, text(oa, "oN", "公司介绍", 11))
    assert reply.fields["MsgType"] == "news" and reply.fields["Article.Title"] == "鱼池是什么"


def test_subscribe_with_scene_welcome_and_unsubscribe(client, oa, clean, auth):
    add_rule(
        client, auth, trigger="subscribe", name="welcome", reply="欢迎关注鱼池！", tags=["新关注"]
    )
    t0 = int(time.time())
    reply = post(
        client, oa, event(oa, "oSub", "subscribe", t0, EventKey="qrscene_campaign42", Ticket="TK")
    )
    assert reply.fields["Content"] == "欢迎关注鱼池！"
    [contact] = rows(clean, Contact)
    assert contact.subscribed and contact.subscribed_at is not None
    [ev] = rows(clean, Event, Event.type != "tag.added")  # the welcome rule's 新关注
    assert ev.type == "oa.subscribe" and ev.properties == {
        "event_key": "qrscene_campaign42",
        "ticket": "TK",
        "scene": "campaign42",
        "create_time": t0,
    }

    assert (
        post(client, oa, event(oa, "oSub", "SCAN", t0 + 1, EventKey="shop7", Ticket="T2")).body
        == "success"
    )
    scan = rows(clean, Event, Event.type == "oa.scan")[0]
    assert scan.properties["scene"] == "shop7"

    assert post(client, oa, event(oa, "oSub", "unsubscribe", t0 + 2)).body == "success"
    [contact] = rows(clean, Contact)
    assert not contact.subscribed and contact.unsubscribed_at is not None
    assert len(rows(clean, Event, Event.type != "tag.added")) == 3  # nothing deleted
    assert [t.tag for t in rows(clean, ContactTag)] == ["新关注"]


def test_menu_click_reply(client, oa, auth):
    add_rule(
        client,
        auth,
        trigger="click",
        name="menu-price",
        click_key="MENU_PRICE",
        reply="价格表见官网",
    )
    assert (
        post(client, oa, event(oa, "oC", "CLICK", EventKey="MENU_PRICE")).fields["Content"]
        == "价格表见官网"
    )
    assert post(client, oa, event(oa, "oC", "CLICK", 1, EventKey="OTHER")).body == "success"


def test_unknown_event_is_kept_raw_and_acknowledged(client, oa, clean):
    reply = post(client, oa, event(oa, "oU", "brand_new_event", FooField="bar"))
    assert reply.body == "success"
    [ev] = rows(clean, Event)
    assert ev.type == "oa.unknown" and ev.properties["raw"]["FooField"] == "bar"


def test_retries_are_deduplicated_with_the_same_reply(client, oa, clean, auth):
    add_rule(client, auth, name="价格", keywords=["价格"], reply="价格回复", tags=["意向:价格"])
    fields = text(oa, "oDup", "价格？", 9_223_372_036_854_775_807)
    replies = [post(client, oa, fields) for _ in range(3)]  # WeChat's three tries
    assert {r.fields["Content"] for r in replies} == {"价格回复"}
    assert {r.fields["CreateTime"] for r in replies} == {replies[0].fields["CreateTime"]}
    # The text, and the rule's tag going on the timeline.
    [ev, added] = sorted(rows(clean, Event), key=lambda e: e.id)
    assert (ev.type, added.type) == ("oa.text", "tag.added") and len(rows(clean, Outbox)) == 1
    assert len(rows(clean, Contact)) == 1 and len(rows(clean, ContactTag)) == 1
    # Events dedupe on FromUserName + CreateTime + Event.
    t = int(time.time())
    for _ in range(3):
        post(client, oa, event(oa, "oDup", "CLICK", t, EventKey="K"))
    post(client, oa, event(oa, "oDup", "VIEW", t, EventKey="https://example.com"))
    assert len(rows(clean, Event, Event.type != "tag.added")) == 3


def test_the_reply_is_stored_neutral_and_rendered_per_request(client, oa, clean, auth):
    add_rule(
        client,
        auth,
        name="新闻",
        keywords=["案例"],
        news={"title": "客户故事", "url": "https://example.com/c"},
    )
    first = post(client, oa, text(oa, "oNeutral", "看看案例", 4242))
    assert first.fields["MsgType"] == "news" and first.fields["Article.Title"] == "客户故事"
    [ev] = rows(clean, Event)
    stored = json.loads(ev.reply)  # no XML in the store: the handler renders it
    assert stored["kind"] == "news" and stored["payload"]["title"] == "客户故事"
    assert stored["at"] == int(first.fields["CreateTime"])
    again = post(client, oa, text(oa, "oNeutral", "看看案例", 4242))  # a retry
    assert again.fields == first.fields


def test_a_reply_stored_as_xml_before_the_upgrade_is_answered_as_stored(
    compatible_client, oa, clean, auth
):
    client = compatible_client
    add_rule(client, auth, name="价格", keywords=["价格"], reply="价格回复")
    fields = text(oa, "oLegacy", "价格？", 4343)
    post(client, oa, fields, "plain")
    legacy = (
        "<xml><ToUserName><![CDATA[oLegacy]]></ToUserName><Content><![CDATA[旧]]></Content></xml>"
    )
    with db.session_scope(clean.database_url) as s:
        s.execute(sa.update(Event).values(reply=legacy))
    assert post(client, oa, fields, "plain").body == legacy


def test_concurrent_retries_store_one_event(app, oa, clean):
    fields = text(oa, "oRace", "hello", 555)
    results = []

    def send():
        results.append(post(app.test_client(), oa, fields).status)

    threads = [threading.Thread(target=send) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 6
    assert len(rows(clean, Event)) == 1 and len(rows(clean, Contact)) == 1


def test_first_sight_of_many_messages_makes_one_contact(app, oa, clean):
    def send(i):
        post(app.test_client(), oa, text(oa, "oNew", f"msg {i}", 800 + i))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(rows(clean, Event)) == 6 and len(rows(clean, Contact)) == 1


def test_background_job_processes_the_event(client, oa, clean):
    post(client, oa, text(oa, "oBg", "hi", 42))
    run_worker(clean)
    [ob] = rows(clean, Outbox)
    assert ob.status == "done" and ob.attempts == 1
    [ev] = rows(clean, Event)
    assert ev.processed_at is not None
    # A second delivery of the same job (a retry, a sweep) changes nothing.
    from bot.background.jobs import process_event

    assert process_event(ob.id) == "done"
    assert rows(clean, Outbox)[0].attempts == 1


def test_redis_down_still_stores_and_replies_then_recovers(clean, oa, auth):
    """Kill the background path: Redis unreachable. The callback still stores the event and
    replies; once Redis is back the sweeper enqueues the outbox row and the worker runs it."""
    from bot.app import create_app

    dead = clean.replace(redis_url="redis://127.0.0.1:1/0")
    queue.reset_connections()
    down_client = create_app(dead).test_client()
    down_client.post(
        "/api/replies", json={"name": "hi", "keywords": ["你好"], "reply": "你好呀"}, headers=auth
    )
    started = time.monotonic()
    reply = post(down_client, oa, text(oa, "oDown", "你好", 31337))
    assert time.monotonic() - started < 3  # well inside WeChat's 5 s
    assert reply.fields["Content"] == "你好呀"
    assert down_client.get("/healthz").get_json()["status"] == "degraded"
    [ob] = rows(clean, Outbox)
    assert ob.status == "pending"
    assert sum(len(q) for q in queue.all_queues(clean)) == 0  # nothing reached the live Redis

    time.sleep(0.01)  # older than the (test) grace period of 1 ms
    assert queue.sweep(clean) == 1  # Redis is back: the sweeper finds the row
    assert queue.sweep(clean) == 0  # and does not enqueue it twice while it is queued
    run_worker(clean)
    assert rows(clean, Outbox)[0].status == "done"
    assert rows(clean, Event)[0].processed_at is not None


def test_flushed_redis_is_rebuilt_from_the_database(client, oa, clean):
    post(client, oa, text(oa, "oFlush", "a", 1))
    post(client, oa, text(oa, "oFlush", "b", 2))
    queue.get_redis(clean).flushdb()  # Redis lost everything
    time.sleep(0.01)  # older than the (test) grace period of 1 ms
    assert queue.sweep(clean) == 2
    run_worker(clean)
    assert {o.status for o in rows(clean, Outbox)} == {"done"}


def test_healthz(client):
    body = client.get("/healthz").get_json()
    assert body["status"] == "ok" and body["database"]["ok"] and body["redis"]["ok"]


def test_server_timing_header(client, oa):
    req = oa.sign(
        f"<xml><ToUserName>gh</ToUserName><FromUserName>oT</FromUserName><CreateTime>{int(time.time())}</CreateTime><MsgType>text</MsgType><Content>x</Content><MsgId>9</MsgId></xml>"
    )
    resp = client.post(f"/wechat/oa?{req.query_string}", data=req.body)
    assert resp.headers["Server-Timing"].startswith("app;dur=")


def test_a_known_contacts_text_writes_only_its_event_and_outbox_row(client, oa, clean, auth):
    """The hot path: one read (identity with the contact's flags), the event with its reply,
    its outbox row, the commit. The contact's touch is owed by the outbox row and paid by the
    background before any step sees the event."""
    add_rule(client, auth, name="价格", keywords=["价格"], reply="价格表")
    post(client, oa, text(oa, "oLean", "你好", 1, create_time=int(time.time()) - 60))
    run_worker(clean)
    [before] = rows(clean, Contact)
    statements: list[str] = []

    def seen(_conn, _cursor, sql, *_args):
        statements.append(sql.split(None, 1)[0].upper())

    engine = db.get_engine(clean.database_url)
    sa.event.listen(engine, "before_cursor_execute", seen)
    rawdb.observers.append(lambda sql, params: seen(None, None, sql))
    try:
        reply = post(client, oa, text(oa, "oLean", "请问价格", 2))
    finally:
        sa.event.remove(engine, "before_cursor_execute", seen)
        rawdb.observers.clear()
    assert reply.fields["Content"] == "价格表"
    writes = [s for s in statements if s in ("INSERT", "UPDATE", "DELETE", "WITH")]
    if engine.dialect.name == "postgresql":  # the read, the event, its outbox row: one statement
        assert statements == ["WITH"], statements
    else:
        assert writes == ["INSERT", "INSERT"], statements  # the event, its outbox row
        assert statements.count("SELECT") == 1, statements
    [ob] = rows(clean, Outbox, Outbox.status == "pending")
    assert ob.interacted_at is not None
    assert rows(clean, Contact)[0].last_interaction_at == before.last_interaction_at
    run_worker(clean)
    [after] = rows(clean, Contact)
    assert after.last_interaction_at == ob.interacted_at > before.last_interaction_at
    assert after.last_seen_at > before.last_seen_at


def test_group_committed_callbacks_answer_store_and_drain(clean, oa, auth):
    """YUCHI_GROUP_COMMIT=on (threaded web workers): concurrent callbacks of known contacts
    are answered with their rule's reply, stored once (a retry answers byte for byte), and the
    writer's one kick per batch brings the drain that processes every one of them."""
    from bot.app import create_app

    settings = clean.replace(group_commit_mode="on")
    app = create_app(settings)
    client = app.test_client()
    add_rule(client, auth, name="领取", keywords=["1"], match="exact", reply="资料已发送")
    for n in range(4):
        post(client, oa, text(oa, f"oGroup{n}", "你好", 7000 + n))  # known from here on
    replies: dict[tuple[int, int], object] = {}

    def send(n: int) -> None:
        c = app.test_client()
        for k in range(5):
            replies[n, k] = post(c, oa, text(oa, f"oGroup{n}", "1", 7100 + 10 * n + k))

    written = group_commit.writer(settings.database_url).writes
    threads = [threading.Thread(target=send, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert group_commit.writer(settings.database_url).writes - written == 20
    assert {r.fields["Content"] for r in replies.values()} == {"资料已发送"}
    retry = post(client, oa, text(oa, "oGroup0", "1", 7100))
    assert retry.fields == replies[0, 0].fields  # CreateTime included: the stored reply
    assert len(rows(clean, Event, Event.type == "oa.text")) == 24
    assert queue.get_redis(settings).exists(queue.DRAIN_FLAG.format(part=0))
    run_worker(clean)
    assert {ob.status for ob in rows(clean, Outbox)} == {"done"}


def test_a_failing_event_is_retried_alone_and_the_batch_goes_on(client, oa, clean, monkeypatch):
    """A drain's batch runs without a savepoint per event; when one event's step raises, the
    whole batch is run again with savepoints: the others are processed exactly once, the
    failing one stays pending with its error, and a later drain finishes it."""
    from bot.background import jobs, pipeline

    for n in range(3):
        post(client, oa, text(oa, f"oBatch{n}", "hi", 900 + n))
    with db.session_scope(clean.database_url) as s:
        bad = s.execute(
            sa.select(Event.contact_id).where(Event.properties["msg_id"].as_string() == "901")
        ).scalar()
    ids = [ob.id for ob in rows(clean, Outbox)]
    scored: list[int] = []

    def flaky(ctx) -> None:
        if ctx.event.contact_id == bad:
            raise RuntimeError("step failed")
        scored.append(ctx.event.id)

    monkeypatch.setattr(pipeline, "STEPS", [*pipeline.STEPS, flaky])
    outcome = jobs.process_batch(clean, ids)
    assert sorted(outcome.values()) == ["done", "done", "retry"]
    by_status = {ob.status: ob for ob in rows(clean, Outbox) if ob.status == "pending"}
    assert by_status["pending"].attempts == 1 and "step failed" in by_status["pending"].last_error
    assert len(rows(clean, Event, Event.processed_at.is_not(None))) == 2
    assert len(set(scored)) == 2  # in the first, rolled-back pass and again in the second
    monkeypatch.setattr(pipeline, "STEPS", [s for s in pipeline.STEPS if s is not flaky])
    assert jobs.process_batch(clean, ids)[by_status["pending"].id] == "done"
    assert {ob.status for ob in rows(clean, Outbox)} == {"done"}
    assert {ob.attempts for ob in rows(clean, Outbox)} == {1, 2}
