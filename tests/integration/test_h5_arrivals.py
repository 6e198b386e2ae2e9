"""A first view of a campaign page: one durable write in the request (an ``h5.arrival`` event
and its outbox row), the cookie set at once, the visitor's own share link good at once; the
contact, its identity, the chain node and the ``h5.visit`` made by the background, exactly
once, whatever order the arrivals are settled in."""

from __future__ import annotations

import logging

from h5_support import create_campaign, employee_code, open_page, share_code, stats, submit, visitor
from sqlalchemy import select
from support import row_counts, run_worker

from bot.background import jobs
from bot.campaigns import arrivals, visitors
from bot.core import queue
from bot.core.db import session_scope
from bot.core.models import Event, Outbox, Referral


def _grown(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {t: after[t] - before[t] for t in after if after[t] != before.get(t, 0)}


def _contact(settings, browser) -> int | None:
    from bot.contacts import identity

    with session_scope(settings.database_url) as s:
        return identity.identity_owner(s, visitors.KIND, browser.get_cookie("yuchi_v").value)


def _node(settings, campaign_id: int, contact_id: int) -> Referral:
    with session_scope(settings.database_url) as s:
        node = s.execute(
            select(Referral).where(
                Referral.campaign_id == campaign_id, Referral.contact_id == contact_id
            )
        ).scalar_one()
        s.expunge(node)
        return node


def test_a_first_view_is_one_write_and_the_background_makes_the_rest(app, client, auth, settings):
    camp = create_campaign(client, auth)
    emp = employee_code(client, auth, camp["id"], "zhangsan")
    v = visitor(app, "10.7.0.1")
    before = row_counts(settings)
    status, html = open_page(v, camp["slug"], emp)
    assert status == 200 and v.get_cookie("yuchi_v") is not None  # the cookie at once
    assert share_code(html)  # and the visitor's own link, before they are a contact
    assert _grown(before, row_counts(settings)) == {"event": 1, "outbox": 1}
    assert _contact(settings, v) is None
    open_page(v, camp["slug"], emp)  # a second view before the background: nothing written
    assert _grown(before, row_counts(settings)) == {"event": 1, "outbox": 1}

    run_worker(settings)
    contact = _contact(settings, v)
    node = _node(settings, camp["id"], contact)
    assert (node.sharer_userid, node.depth, node.parent_id) == ("zhangsan", 1, None)
    settled = row_counts(settings)
    with session_scope(settings.database_url) as s:
        [visit] = s.execute(select(Event).where(Event.type == "h5.visit")).scalars()
        assert visit.contact_id == contact and visit.properties["sharer"] == "u:zhangsan"
        arrival = s.execute(select(Event).where(Event.type == arrivals.ARRIVAL)).scalar_one()
        assert arrival.contact_id is None and arrival.processed_at is not None
        assert arrivals.settle(s, settings, arrival.properties) == contact  # again: nothing new
    assert row_counts(settings) == settled
    assert visitors.cached(settings, v.get_cookie("yuchi_v").value) == (contact, False)
    open_page(v, camp["slug"])  # known now: a returning view writes nothing
    assert row_counts(settings) == settled
    figures = stats(client, auth, camp["id"])
    assert (figures["visits"], figures["unique_visitors"], figures["page_views"]) == (1, 1, 3)


def test_a_chain_shared_before_the_background_settles_in_any_order(app, client, auth, settings):
    camp = create_campaign(client, auth)
    emp = employee_code(client, auth, camp["id"], "zhangsan")
    a, b, c = (visitor(app, f"10.7.1.{i}") for i in range(3))
    a_code = share_code(open_page(a, camp["slug"], emp)[1])
    b_code = share_code(open_page(b, camp["slug"], a_code)[1])
    c_code = share_code(open_page(c, camp["slug"], b_code)[1])
    open_page(visitor(app, "10.7.1.9"), camp["slug"], c_code)  # depth 4
    open_page(a, camp["slug"], c_code)  # A again through C's link: first touch wins
    with session_scope(settings.database_url) as s:  # the deepest arrival settled first
        rows = s.execute(
            select(Outbox.id)
            .join(Event, Event.id == Outbox.event_id)
            .where(Event.type == arrivals.ARRIVAL)
            .order_by(Outbox.id.desc())
        ).all()
    assert len(rows) == 4
    assert jobs.process_event(rows[0].id) == "done"
    run_worker(settings)
    nodes = [_node(settings, camp["id"], _contact(settings, x)) for x in (a, b, c)]
    assert [n.depth for n in nodes] == [1, 2, 3]
    assert [n.parent_id for n in nodes] == [None, nodes[0].id, nodes[1].id]
    figures = stats(client, auth, camp["id"])
    assert (figures["visits"], figures["unique_visitors"]) == (4, 4)
    with session_scope(settings.database_url) as s:
        assert len(s.execute(select(Referral)).all()) == 4


def test_acting_before_the_background_keeps_who_brought_them(app, client, auth, settings):
    camp = create_campaign(client, auth)
    emp = employee_code(client, auth, camp["id"], "zhangsan")
    a, b, c = (visitor(app, f"10.7.2.{i}") for i in range(3))
    a_code = share_code(open_page(a, camp["slug"], emp)[1])
    open_page(b, camp["slug"], a_code)
    assert b.post(f"/h5/c/{camp['slug']}/share", json={"channel": "timeline"}).status_code == 204
    open_page(c, camp["slug"], a_code)
    assert submit(c, camp["slug"]).status_code == 303  # without the code: the arrival has it
    a_node = _node(settings, camp["id"], _contact(settings, a))
    for x in (b, c):
        node = _node(settings, camp["id"], _contact(settings, x))
        assert (node.parent_id, node.depth) == (a_node.id, 2)
    assert client.get("/api/points/u:zhangsan", headers=auth).get_json()["balance"] == 10
    run_worker(settings)
    figures = stats(client, auth, camp["id"])
    assert (figures["visits"], figures["shares"], figures["forms"]) == (3, 1, 1)


def test_own_and_unknown_visitor_codes_are_not_credited(app, client, auth, settings, caplog):
    from bot.campaigns import codes

    caplog.set_level(logging.INFO, logger="bot.campaigns.arrivals")
    camp = create_campaign(client, auth)
    v = visitor(app, "10.7.3.1")
    token = "x" * 24
    v.set_cookie("yuchi_v", token)
    own = codes.referral_code(
        settings.secret_key,
        codes.Sharer(camp["id"], visitor=codes.visitor_ref(settings.secret_key, token)),
    )
    open_page(v, camp["slug"], own)  # their own link, before their first view was settled
    stranger = codes.referral_code(settings.secret_key, codes.Sharer(camp["id"], visitor="nobody"))
    w = visitor(app, "10.7.3.2")
    open_page(w, camp["slug"], stranger)
    run_worker(settings)
    for x in (v, w):
        node = _node(settings, camp["id"], _contact(settings, x))
        assert (node.parent_id, node.depth, node.sharer_userid) == (None, 0, None)
    assert "self-referral ignored" in caplog.text and "never visited" in caplog.text


def test_group_committed_first_views_are_settled_like_the_others(client, auth, settings):
    """YUCHI_GROUP_COMMIT=on (with YUCHI_VIEW_COMMIT=durable: a fast commit has no fsync to
    share): first views from several threads go through the writer thread, one arrival each,
    and the background settles every one into the chain."""
    import threading

    from bot.app import create_app
    from bot.core import group_commit

    grouped = create_app(settings.replace(group_commit_mode="on", view_commit="durable"))
    camp = create_campaign(client, auth)
    emp = employee_code(client, auth, camp["id"], "lisi")
    browsers = [visitor(grouped, f"10.8.0.{n}") for n in range(6)]
    written = group_commit.writer(settings.database_url).writes
    before = row_counts(settings)
    threads = [threading.Thread(target=open_page, args=(b, camp["slug"], emp)) for b in browsers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert group_commit.writer(settings.database_url).writes - written == 6
    assert _grown(before, row_counts(settings)) == {"event": 6, "outbox": 6}
    run_worker(settings)
    for b in browsers:
        node = _node(settings, camp["id"], _contact(settings, b))
        assert (node.sharer_userid, node.depth) == ("lisi", 1)
    assert stats(client, auth, camp["id"])["unique_visitors"] == 6


def test_a_new_browser_whose_view_redis_cannot_count_is_stored_all_the_same(
    app, client, auth, settings, monkeypatch, caplog
):
    """A new browser's arrival is written before its one Redis round trip (count, claim,
    kick); when Redis fails there, the page is still served and the sweeper's drain settles
    the stored arrival."""
    import redis

    camp = create_campaign(client, auth)
    emp = employee_code(client, auth, camp["id"], "zhangsan")
    v = visitor(app, "10.7.9.1")
    before = row_counts(settings)

    def down(self, *args, **kwargs):
        raise redis.exceptions.ConnectionError("Redis is down")

    with monkeypatch.context() as m:
        m.setattr(redis.client.Pipeline, "execute", down)
        with caplog.at_level(logging.WARNING, logger="bot.campaigns.actions"):
            status, html = open_page(v, camp["slug"], emp)
    assert status == 200 and share_code(html)
    assert "first view stored but not counted" in caplog.text
    assert _grown(before, row_counts(settings)) == {"event": 1, "outbox": 1}
    open_page(v, camp["slug"], emp)  # its next view claims the first view: nothing written
    assert _grown(before, row_counts(settings)) == {"event": 1, "outbox": 1}
    assert queue.sweep(settings, grace=0) == 1  # nothing kicked its drain: the sweeper does
    run_worker(settings)
    node = _node(settings, camp["id"], _contact(settings, v))
    assert (node.sharer_userid, node.depth) == ("zhangsan", 1)


def test_a_first_view_commits_without_waiting_for_the_disk_unless_told(
    app, client, auth, settings, monkeypatch
):
    """YUCHI_VIEW_COMMIT: ``fast`` (the default) commits an arrival without waiting for the
    disk (see test_fast_record for what that sets); ``durable`` waits like a callback."""
    from bot.app import create_app
    from bot.core import rawdb

    camp = create_campaign(client, auth)
    asked, real = [], rawdb.Raw.writing

    def spy(self, durable=True):
        asked.append(durable)
        return real(self, durable)

    monkeypatch.setattr(rawdb.Raw, "writing", spy)
    assert settings.view_commit == "fast"
    before = row_counts(settings)
    open_page(visitor(app, "10.7.8.1"), camp["slug"])
    open_page(
        visitor(create_app(settings.replace(view_commit="durable")), "10.7.8.2"), camp["slug"]
    )
    assert asked == [False, True]
    assert _grown(before, row_counts(settings)) == {"event": 2, "outbox": 2}
