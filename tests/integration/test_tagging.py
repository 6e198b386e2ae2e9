"""Tag rules, interest words and tag sync against the simulator and the real app: events
through the background pipeline produce tags; TagSync rows carry them to Official Account
user tags (batched, retried, failures recorded) and WeCom corp tags; reps' tags come back."""

from __future__ import annotations

import textwrap
import time

import sqlalchemy as sa
from click.testing import CliRunner
from rq.registry import ScheduledJobRegistry
from support import run_worker

from bot.background import jobs
from bot.cli import main as cli
from bot.core import db, queue
from bot.core.models import (
    Contact,
    ContactTag,
    CorpTag,
    Event,
    FollowUser,
    Identity,
    PlatformTag,
    TagRule,
    TagSync,
    utcnow,
)
from bot.tagging import sync as tag_sync
from bot.tagging import tags as tagging
from wxsim.entities import CorpTag as SimCorpTag
from wxsim.entities import CorpTagGroup, ExternalContact
from wxsim.entities import FollowUser as SimFollowUser

# --- helpers -------------------------------------------------------------------------------


def contact_of(settings, openid: str) -> int:
    with db.session_scope(settings.database_url) as s:
        return s.execute(
            sa.select(Identity.contact_id).where(Identity.value == openid)
        ).scalar_one()


def tags_of(settings, contact_id: int) -> dict[str, tuple[str, str | None]]:
    with db.session_scope(settings.database_url) as s:
        rows = s.execute(
            sa.select(ContactTag.tag, ContactTag.source, ContactTag.source_ref).where(
                ContactTag.contact_id == contact_id
            )
        ).all()
    return {tag: (source, ref) for tag, source, ref in rows}


def syncs(settings, contact_id: int | None = None) -> list[TagSync]:
    with db.session_scope(settings.database_url) as s:
        query = sa.select(TagSync).order_by(TagSync.id)
        if contact_id is not None:
            query = query.where(TagSync.contact_id == contact_id)
        return list(s.execute(query).scalars())


def oa_tags(sim, openid: str) -> set[str]:
    with sim.state.lock:
        return {sim.state.oa_tags[i] for i in sim.state.users[openid].tagid_list}


def new_contact(
    settings, openid: str | None = None, external: str | None = None, userid: str = "zhangsan"
) -> int:
    """A contact made directly in the database (an openid, and/or a WeCom customer of
    ``userid``)."""
    now = utcnow()
    with db.session_scope(settings.database_url) as s:
        c = Contact(first_seen_at=now, last_seen_at=now, subscribed=openid is not None)
        s.add(c)
        s.flush()
        if openid:
            s.add(Identity(contact_id=c.id, kind="openid", app_id=settings.oa_appid, value=openid))
        if external:
            s.add(
                Identity(
                    contact_id=c.id,
                    kind="external_userid",
                    app_id=settings.wecom_corp_id,
                    value=external,
                )
            )
            s.add(FollowUser(contact_id=c.id, userid=userid, external_userid=external))
        return c.id


def wecom_customer(sim, external: str, userid: str = "zhangsan", tag_ids=()) -> None:
    """On the simulated platform: the rep and their external contact, with corp tags."""
    sim.add_rep(userid, name="张三")
    with sim.state.lock:
        sim.state.contacts[external] = ExternalContact(
            external_userid=external,
            name="客户甲",
            follow={userid: SimFollowUser(userid=userid, createtime=1, tag_ids=list(tag_ids))},
        )


def corp_group(sim, group_id: str, name: str, tags: dict[str, str]) -> None:
    with sim.state.lock:
        sim.state.tag_groups.append(
            CorpTagGroup(group_id, name, 1, tags=[SimCorpTag(i, n, 1) for i, n in tags.items()])
        )


def wecom_tag_names(sim, external: str, userid: str = "zhangsan") -> set[str]:
    with sim.state.lock:
        ids = sim.state.contacts[external].follow[userid].tag_ids
        return {sim.state.corp_tag(i)[1].name for i in ids}


def tag(settings, contact_id: int, name: str, source: str = "manual", remove: bool = False):
    """Add (or remove) a tag as other code does, then kick the sync after commit."""
    with db.session_scope(settings.database_url) as s:
        if remove:
            changed = tagging.remove_tag(s, contact_id, name)
        else:
            changed = tagging.add_tag(s, contact_id, name, source, "test")
    tagging.kick_sync(settings, s)
    return changed


def rule(client, auth, **body) -> dict:
    resp = client.post("/api/tag-rules", json=body, headers=auth)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()


# --- events through the pipeline ---------------------------------------------------------


def test_click_scene_and_text_produce_tags_and_sync_to_the_oa(
    sim, sim_settings, env_to_sim, client, auth
):
    poster = rule(
        client,
        auth,
        name="海报关注",
        event_type="oa.subscribe",
        conditions={"scene": {"prefix": "poster_"}},
        add_tags=["来源:海报"],
    )
    menu = rule(
        client,
        auth,
        name="价格菜单",
        event_type="oa.click",
        conditions={"key": "MENU_PRICE"},
        add_tags=["意向:价格", "点过菜单"],
        remove_tags=["沉默"],
    )
    words = {"多少钱": "意向:价格", "试用": "意向:试用"}
    assert client.put("/api/interest-words", json={"words": words}, headers=auth).status_code == 200

    assert sim.follow("oTag", scene="poster_spring").status == 200
    run_worker(sim_settings)
    cid = contact_of(sim_settings, "oTag")
    assert tags_of(sim_settings, cid) == {"来源:海报": ("tag_rule", f"tag_rule:{poster['id']}")}
    assert oa_tags(sim, "oTag") == {"来源:海报"}

    sim.advance(1)  # WeChat dedupes events by (openid, CreateTime): one per second here
    sim.click("oTag", "MENU_OTHER")
    run_worker(sim_settings)
    assert set(tags_of(sim_settings, cid)) == {"来源:海报"}

    sim.advance(1)
    sim.click("oTag", "MENU_PRICE")
    sim.say("oTag", "这个多少钱？可以试用吗")
    run_worker(sim_settings)
    got = tags_of(sim_settings, cid)
    assert set(got) == {"来源:海报", "意向:价格", "点过菜单", "意向:试用"}
    assert got["意向:价格"] == ("tag_rule", f"tag_rule:{menu['id']}")  # the click came first
    assert got["意向:试用"] == ("interest", "interest:试用")
    assert oa_tags(sim, "oTag") == set(got)
    assert all(r.status == "done" and r.platform == "oa" for r in syncs(sim_settings, cid))
    with db.session_scope(sim_settings.database_url) as s:
        known = dict(s.execute(sa.select(PlatformTag.name, PlatformTag.oa_tag_id)).all())
    assert {sim.state.oa_tags[i] for i in known.values()} == set(got)


def test_a_remove_rule_untags_on_the_platform(sim, sim_settings, env_to_sim, client, auth):
    rule(client, auth, name="关注", event_type="oa.subscribe", add_tags=["新关注"])
    rule(client, auth, name="互动", event_type="oa.text", remove_tags=["新关注"])
    sim.follow("oRm")
    run_worker(sim_settings)
    assert oa_tags(sim, "oRm") == {"新关注"}
    sim.say("oRm", "你好")
    run_worker(sim_settings)
    cid = contact_of(sim_settings, "oRm")
    assert tags_of(sim_settings, cid) == {}
    assert oa_tags(sim, "oRm") == set()
    assert [(r.op, r.status) for r in syncs(sim_settings, cid)] == [
        ("add", "done"),
        ("remove", "done"),
    ]
    assert len(sim.calls(path="batchuntagging")) == 1


def test_reply_rule_tags_from_the_callback_are_synced_too(
    sim, sim_settings, env_to_sim, client, auth
):
    resp = client.post(
        "/api/replies",
        json={"name": "价格", "keywords": ["价格"], "reply": "9800 元", "tags": ["问过价格"]},
        headers=auth,
    )
    assert resp.status_code == 201
    sim.follow("oReply")
    sim.say("oReply", "价格是多少")
    run_worker(sim_settings)
    cid = contact_of(sim_settings, "oReply")
    assert tags_of(sim_settings, cid)["问过价格"][0] == "reply_rule"
    assert oa_tags(sim, "oReply") == {"问过价格"}
    sim.say("oReply", "价格?")  # the tag is there already: nothing owed again
    run_worker(sim_settings)
    assert len(syncs(sim_settings, cid)) == 1


def test_rule_edits_are_seen_at_once_and_disabled_rules_do_nothing(
    sim, sim_settings, env_to_sim, client, auth
):
    r = rule(client, auth, name="菜单", event_type="oa.click", add_tags=["a"], enabled=False)
    sim.follow("oEdit")
    sim.advance(1)  # WeChat dedupes events by (openid, CreateTime)
    sim.click("oEdit", "K")
    run_worker(sim_settings)
    cid = contact_of(sim_settings, "oEdit")
    assert tags_of(sim_settings, cid) == {}
    body = {"name": "菜单", "event_type": "oa.click", "add_tags": ["b"]}
    assert client.put(f"/api/tag-rules/{r['id']}", json=body, headers=auth).status_code == 200
    sim.advance(1)
    sim.click("oEdit", "K")
    run_worker(sim_settings)
    assert set(tags_of(sim_settings, cid)) == {"b"}


# --- OA sync: batching, retries, failures ------------------------------------------------


def test_120_users_are_tagged_in_three_calls_of_at_most_50(sim, sim_settings, env_to_sim):
    openids = [f"oBatch{i:03d}" for i in range(120)]
    for o in openids:
        sim.set_user(o)
    ids = [new_contact(sim_settings, o) for o in openids]
    with db.session_scope(sim_settings.database_url) as s:
        for cid in ids:
            assert tagging.add_tag(s, cid, "活动:双11", "campaign", "c1")
        assert set(s.info["yuchi_tag_sync_owed"]) == {"oa"}
    tagging.kick_sync(sim_settings, s)
    run_worker(sim_settings)
    calls = sim.calls(path="tags/members/batchtagging")
    assert len(calls) == 3 and all(c["errcode"] == 0 for c in calls)
    assert len(sim.calls(path="tags/create")) == 1
    assert all(oa_tags(sim, o) == {"活动:双11"} for o in openids)
    assert {r.status for r in syncs(sim_settings)} == {"done"}


def test_a_busy_platform_is_retried_later(sim, sim_settings, env_to_sim):
    sim.set_user("oBusy")
    cid = new_contact(sim_settings, "oBusy")
    sim.faults(busy_next=1, paths=["batchtagging"])
    tag(sim_settings, cid, "意向:价格")
    run_worker(sim_settings)
    [row] = syncs(sim_settings, cid)
    assert (row.status, row.attempts) == ("pending", 1) and row.error.startswith("-1")
    assert oa_tags(sim, "oBusy") == set()
    scheduled = ScheduledJobRegistry(queue=queue.get_queue(sim_settings)).get_job_ids()
    assert [j for j in scheduled if j.startswith(f"tagsync-oa-retry-{row.id}-")]
    # A new kick does not retry early: normal runs take only rows never tried.
    tag_sync.kick(sim_settings, {"oa": row.id})
    run_worker(sim_settings)
    assert syncs(sim_settings, cid)[0].status == "pending"
    # The scheduled retry (run here directly) succeeds.
    assert jobs.sync_tags("oa", True) == {"done": 1}
    [row] = syncs(sim_settings, cid)
    assert (row.status, row.attempts, row.error) == ("done", 2, None)
    assert oa_tags(sim, "oBusy") == {"意向:价格"}


def test_transient_errors_give_up_after_five_attempts(sim, sim_settings, env_to_sim):
    sim.set_user("oDown")
    cid = new_contact(sim_settings, "oDown")
    tag(sim_settings, cid, "x")
    sim.faults(error_rate=1.0, paths=["batchtagging"])
    run_worker(sim_settings)
    for _ in range(4):
        tag_sync.run(sim_settings, "oa", retry=True)
    [row] = syncs(sim_settings, cid)
    assert (row.status, row.attempts) == ("failed", 5) and row.error.startswith("-1")


def test_non_transient_errors_are_recorded_as_failed(sim, sim_settings, env_to_sim):
    sim.set_user("oLong")
    sim.set_user("oGone")
    long_cid = new_contact(sim_settings, "oLong")
    gone_cid = new_contact(sim_settings, "oGone")
    no_openid = new_contact(sim_settings, external="wmNobody")
    with db.session_scope(sim_settings.database_url) as s:
        s.execute(sa.update(Contact).where(Contact.id == gone_cid).values(subscribed=False))
    long_name = "意向:" + "很长" * 15  # OA tag names are at most 30 characters
    tag(sim_settings, long_cid, long_name)
    tag(sim_settings, gone_cid, "b")
    tag(sim_settings, no_openid, "c")
    run_worker(sim_settings)
    [row] = syncs(sim_settings, long_cid)
    assert row.status == "failed" and row.error.startswith("45158")
    [row] = syncs(sim_settings, gone_cid)
    assert (row.status, row.error) == ("failed", "the contact does not follow the account")
    assert [r.platform for r in syncs(sim_settings, no_openid)] == ["wecom"]  # no oa row


def test_one_bad_openid_does_not_fail_the_rest_of_its_batch(sim, sim_settings, env_to_sim):
    for o in ("oOk1", "oOk2"):
        sim.set_user(o)
    ids = [new_contact(sim_settings, o) for o in ("oOk1", "oOk2", "oUnknownToWeChat")]
    for cid in ids:
        tag(sim_settings, cid, "t")
    run_worker(sim_settings)
    statuses = [syncs(sim_settings, cid)[0].status for cid in ids]
    assert statuses == ["done", "done", "failed"]
    assert syncs(sim_settings, ids[2])[0].error.startswith("40003")
    assert oa_tags(sim, "oOk1") == oa_tags(sim, "oOk2") == {"t"}


def test_an_existing_oa_tag_is_found_by_name(sim, sim_settings, env_to_sim):
    sim.set_user("oExist")
    with sim.state.lock:
        sim.state.oa_tags[150] = "老标签"
    cid = new_contact(sim_settings, "oExist")
    tag(sim_settings, cid, "老标签")
    run_worker(sim_settings)
    assert sim.calls(path="tags/create")[0]["errcode"] == 45157
    assert sim.state.users["oExist"].tagid_list == [150]


def test_an_oa_tag_deleted_on_the_platform_is_created_again(sim, sim_settings, env_to_sim):
    for o in ("oDel1", "oDel2"):
        sim.set_user(o)
    first, second = new_contact(sim_settings, "oDel1"), new_contact(sim_settings, "oDel2")
    tag(sim_settings, first, "会删")
    run_worker(sim_settings)
    with sim.state.lock:  # someone deletes the tag in the OA admin console
        [old] = [i for i, n in sim.state.oa_tags.items() if n == "会删"]
        del sim.state.oa_tags[old]
    tag(sim_settings, second, "会删")
    run_worker(sim_settings)
    [row] = syncs(sim_settings, second)
    assert (row.status, row.attempts) == ("pending", 1) and row.error.startswith("45159")
    tag_sync.run(sim_settings, "oa", retry=True)
    assert syncs(sim_settings, second)[0].status == "done"
    assert oa_tags(sim, "oDel2") == {"会删"}
    assert sim.state.users["oDel2"].tagid_list != [old]


def test_add_then_remove_before_sync_sends_no_add(sim, sim_settings, env_to_sim):
    sim.set_user("oFlip")
    cid = new_contact(sim_settings, "oFlip")
    tag(sim_settings, cid, "临时")
    tag(sim_settings, cid, "临时", remove=True)
    run_worker(sim_settings)
    rows = syncs(sim_settings, cid)
    assert [(r.op, r.status, r.error) for r in rows] == [
        ("add", "done", "superseded by a later change"),
        ("remove", "done", None),
    ]
    assert sim.calls(path="tags/") == []  # the tag never existed on the platform


def test_kicks_coalesce_into_one_queued_job_per_platform(clean):
    assert tag_sync.kick(clean, {"oa": 5, "wecom": 6})
    assert tag_sync.kick(clean, {"oa": 9})  # a run is queued and has not read yet: no new job
    assert queue.get_queue(clean).job_ids == ["tagsync-oa-5", "tagsync-wecom-6"]


def test_the_sweeper_re_enqueues_rows_whose_job_was_lost(sim, sim_settings, env_to_sim):
    from bot.background.sweeper import sweep_all

    sim.set_user("oLost")
    cid = new_contact(sim_settings, "oLost")
    with db.session_scope(sim_settings.database_url) as s:
        tagging.add_tag(s, cid, "丢了", "manual")
    queue.get_redis(sim_settings).flushdb()  # no job was ever enqueued
    time.sleep(0.01)  # older than the (test) grace period of 1 ms
    assert tag_sync.sweep(sim_settings) == 1
    assert tag_sync.sweep(sim_settings) == 0  # the job is queued: not twice
    run_worker(sim_settings)
    assert oa_tags(sim, "oLost") == {"丢了"}
    assert sweep_all(sim_settings)["tag_sync"] == 0


# --- WeCom ----------------------------------------------------------------------------------


def test_tags_go_to_wecom_as_corp_tags_in_the_yuchi_group(sim, sim_settings, env_to_sim):
    corp_group(sim, "grp_level", "客户等级", {"et_vip": "VIP"})
    wecom_customer(sim, "wmA")
    cid = new_contact(sim_settings, external="wmA")
    tag(sim_settings, cid, "意向:价格")
    tag(sim_settings, cid, "VIP")  # exists in another group: used as it is
    run_worker(sim_settings)
    assert wecom_tag_names(sim, "wmA") == {"意向:价格", "VIP"}
    assert [r.status for r in syncs(sim_settings, cid)] == ["done", "done"]
    with db.session_scope(sim_settings.database_url) as s:
        [ours] = s.execute(sa.select(CorpTag).where(CorpTag.name == "意向:价格")).scalars()
    assert ours.group_name == "鱼池"
    assert len(sim.calls(path="add_corp_tag")) == 1
    assert len(sim.calls(path="mark_tag")) == 1  # both tags in one call

    tag(sim_settings, cid, "意向:价格", remove=True)
    run_worker(sim_settings)
    assert wecom_tag_names(sim, "wmA") == {"VIP"}
    assert len(sim.calls(path="add_corp_tag")) == 1


def test_a_wecom_tag_created_elsewhere_meanwhile_is_found(sim, sim_settings, env_to_sim):
    corp_group(sim, "grp_yc", "鱼池", {"et_1": "意向:试用"})  # not in Yuchi's CorpTag yet
    wecom_customer(sim, "wmB")
    cid = new_contact(sim_settings, external="wmB")
    tag(sim_settings, cid, "意向:试用")
    run_worker(sim_settings)
    assert sim.calls(path="add_corp_tag") == []  # the library was reloaded first
    assert len(sim.calls(path="get_corp_tag_list")) == 1
    assert wecom_tag_names(sim, "wmB") == {"意向:试用"}


def test_wecom_failures_and_lost_relations(sim, sim_settings, env_to_sim):
    wecom_customer(sim, "wmC")
    cid = new_contact(sim_settings, external="wmC", userid="lisi")  # lisi has no such friend
    sim.add_rep("lisi")
    tag(sim_settings, cid, "t")
    run_worker(sim_settings)
    [row] = syncs(sim_settings, cid)
    assert row.status == "failed" and row.error.startswith("84061")

    # A second rep who does have the customer: one lost relation no longer fails the row.
    with db.session_scope(sim_settings.database_url) as s:
        s.add(FollowUser(contact_id=cid, userid="zhangsan", external_userid="wmC"))
    sim.faults(busy_next=1, paths=["mark_tag"])
    tag(sim_settings, cid, "t2")
    run_worker(sim_settings)
    row = syncs(sim_settings, cid)[-1]
    assert (row.tag, row.status, row.attempts) == ("t2", "pending", 1)
    assert tag_sync.run(sim_settings, "wecom", retry=True) == {"done": 1}
    assert syncs(sim_settings, cid)[-1].status == "done"
    assert wecom_tag_names(sim, "wmC") == {"t2"}


def test_a_new_rep_gets_the_contacts_tags(sim, sim_settings, env_to_sim):
    """When the contact_added step (another module) adds a FollowUser, the pipeline's
    tagging step owes WeCom all of the contact's tags."""
    from bot.contacts import record as events
    from bot.core.context import Context

    sim.set_user("oBoth")
    wecom_customer(sim, "wmBoth")
    cid = new_contact(sim_settings, "oBoth")
    tag(sim_settings, cid, "老客户")
    run_worker(sim_settings)
    with db.session_scope(sim_settings.database_url) as s:
        s.add(FollowUser(contact_id=cid, userid="zhangsan", external_userid="wmBoth"))
        events.append(s, cid, "wecom.contact_added", {"userid": "zhangsan"}, "t:add", "wecom")
        event = s.execute(sa.select(Event).where(Event.dedupe_key == "t:add")).scalar_one()
        ctx = Context(sim_settings, s, event)
        tagging.on_event(ctx)
    for action in ctx.after_commit:
        action()
    tag_sync.run(sim_settings, "wecom")
    assert wecom_tag_names(sim, "wmBoth") == {"老客户"}


# --- tags coming back from WeCom ---------------------------------------------------------


def test_pull_wecom_tags_brings_a_reps_tags_back(sim, sim_settings):
    corp_group(sim, "grp_level", "客户等级", {"et_vip": "VIP", "et_new": "新客"})
    wecom_customer(sim, "wmPull", tag_ids=["et_vip", "et_new"])
    cid = new_contact(sim_settings, external="wmPull")
    with db.session_scope(sim_settings.database_url) as s:
        tagging.add_tag(s, cid, "手动", "manual")

    got = tagging.pull_wecom_tags(sim_settings, cid, "wmPull", "zhangsan")
    assert sorted(got["added"]) == ["VIP", "新客"] and got["removed"] == []
    assert tags_of(sim_settings, cid) == {
        "VIP": ("wecom", "zhangsan"),  # the rep whose edit brought them
        "新客": ("wecom", "zhangsan"),
        "手动": ("manual", None),
    }
    # They came from WeCom: nothing to send back (the one row is the manual tag's).
    assert [r.tag for r in syncs(sim_settings, cid)] == ["手动"]
    with db.session_scope(sim_settings.database_url) as s:
        fu = s.execute(sa.select(FollowUser).where(FollowUser.contact_id == cid)).scalar_one()
    assert {t["tag_name"] for t in fu.wecom_tags} == {"VIP", "新客"}
    assert fu.wecom_tags[0]["group_name"] == "客户等级"

    with sim.state.lock:  # the rep takes 新客 off
        sim.state.contacts["wmPull"].follow["zhangsan"].tag_ids = ["et_vip"]
    got = tagging.pull_wecom_tags(sim_settings, cid, "wmPull", "zhangsan")
    assert got == {"added": [], "removed": ["新客"]}
    assert set(tags_of(sim_settings, cid)) == {"VIP", "手动"}


def test_pull_leaves_tags_with_a_pending_sync_alone(sim, sim_settings):
    corp_group(sim, "grp_yc", "鱼池", {"et_p": "意向:价格"})
    wecom_customer(sim, "wmPend", tag_ids=["et_p"])
    cid = new_contact(sim_settings, external="wmPend")
    with db.session_scope(sim_settings.database_url) as s:
        tagging.add_tag(s, cid, "意向:价格", "rule", "x")
        tagging.remove_tag(s, cid, "意向:价格")  # Yuchi removed it; WeCom not told yet
    got = tagging.pull_wecom_tags(sim_settings, cid, "wmPend", "zhangsan")
    assert got == {"added": [], "removed": []}
    assert tags_of(sim_settings, cid) == {}


def test_refresh_corp_tags_upserts_and_marks_vanished_tags_deleted(sim, sim_settings):
    corp_group(sim, "g1", "客户等级", {"et_a": "A级", "et_b": "B级"})
    corp_group(sim, "g2", "行业", {"et_edu": "教育"})
    assert tagging.refresh_corp_tags(sim_settings) == {"tags": 3, "deleted": 0}
    with db.session_scope(sim_settings.database_url) as s:
        rows = {c.tag_id: c for c in s.execute(sa.select(CorpTag)).scalars()}
    assert {k: (v.name, v.group_name, v.deleted) for k, v in rows.items()} == {
        "et_a": ("A级", "客户等级", False),
        "et_b": ("B级", "客户等级", False),
        "et_edu": ("教育", "行业", False),
    }
    with sim.state.lock:
        sim.state.tag_groups[0].tags = [t for t in sim.state.tag_groups[0].tags if t.id != "et_b"]
        sim.state.tag_groups[1].tags[0].name = "教育培训"
    assert tagging.refresh_corp_tags(sim_settings) == {"tags": 2, "deleted": 1}
    with db.session_scope(sim_settings.database_url) as s:
        rows = {c.tag_id: c for c in s.execute(sa.select(CorpTag)).scalars()}
    assert rows["et_b"].deleted and rows["et_edu"].name == "教育培训"


# --- the API ------------------------------------------------------------------------------


def test_tag_api_needs_the_token(client, auth):
    for method, path in [
        ("get", "/api/tag-rules"),
        ("post", "/api/tag-rules"),
        ("put", "/api/tag-rules/1"),
        ("delete", "/api/tag-rules/1"),
        ("get", "/api/interest-words"),
        ("put", "/api/interest-words"),
        ("post", "/api/contacts/1/tags"),
        ("delete", "/api/contacts/1/tags/x"),
        ("get", "/api/tags"),
    ]:
        assert getattr(client, method)(path).status_code == 401, path


def test_tag_rule_crud_with_field_errors_and_404s(client, auth):
    body = {
        "name": "预算高",
        "event_type": "h5.form_submitted",
        "conditions": {"fields.budget": {"gte": 50000}},
        "add_tags": ["预算:高"],
    }
    created = rule(client, auth, **body)
    assert created["conditions"] == {"fields.budget": {"gte": 50000}}
    assert created["enabled"] is True
    listed = client.get("/api/tag-rules", headers=auth).get_json()["tag_rules"]
    assert [r["name"] for r in listed] == ["预算高"]
    assert client.get(f"/api/tag-rules/{created['id']}", headers=auth).status_code == 200

    resp = client.post("/api/tag-rules", json=body, headers=auth)
    assert resp.status_code == 422
    assert resp.get_json()["fields"] == {"name": "a tag rule with this name exists"}
    bad = {**body, "name": "x", "conditions": {"fields.budget": {"gte": "多"}, "k": {"nope": 1}}}
    resp = client.post("/api/tag-rules", json=bad, headers=auth)
    fields = resp.get_json()["fields"]
    assert resp.status_code == 422 and fields["conditions.fields.budget.gte"] == "must be a number"
    assert fields["conditions.k.nope"].startswith("unknown operator 'nope'")
    resp = client.post("/api/tag-rules", json={**body, "name": "y", "add_tags": []}, headers=auth)
    assert resp.get_json()["fields"] == {"add_tags": "a rule needs tags to add or to remove"}
    assert client.post("/api/tag-rules", data="x", headers=auth).status_code == 422

    changed = {**body, "add_tags": ["预算:很高"], "enabled": False}
    resp = client.put(f"/api/tag-rules/{created['id']}", json=changed, headers=auth)
    assert resp.status_code == 200 and resp.get_json()["add_tags"] == ["预算:很高"]
    assert client.put("/api/tag-rules/9999", json=changed, headers=auth).status_code == 404
    assert client.delete(f"/api/tag-rules/{created['id']}", headers=auth).status_code == 204
    assert client.delete(f"/api/tag-rules/{created['id']}", headers=auth).status_code == 404
    assert client.get("/api/tag-rules/9999", headers=auth).status_code == 404


def test_interest_words_are_replaced_as_a_whole(client, auth):
    assert client.get("/api/interest-words", headers=auth).get_json() == {"words": {}}
    words = {"价格": "意向:价格", "报价": "意向:价格"}
    resp = client.put("/api/interest-words", json={"words": words}, headers=auth)
    assert resp.status_code == 200 and resp.get_json() == {"words": words}
    resp = client.put("/api/interest-words", json={"words": {"试用": "意向:试用"}}, headers=auth)
    assert resp.get_json() == {"words": {"试用": "意向:试用"}}
    resp = client.put("/api/interest-words", json={"words": {"": "x"}}, headers=auth)
    assert resp.status_code == 422 and resp.get_json()["fields"] == {
        "words.": "a word is 1 to 64 characters"
    }
    assert client.put("/api/interest-words", json={}, headers=auth).status_code == 422


def test_manual_tags_on_a_contact_and_the_overview(sim, sim_settings, client, auth):
    sim.set_user("oManual")
    cid = new_contact(sim_settings, "oManual")
    resp = client.post(f"/api/contacts/{cid}/tags", json={"tag": " 重点客户 "}, headers=auth)
    assert resp.status_code == 201
    assert resp.get_json()["tag"] == "重点客户" and resp.get_json()["source"] == "manual"
    resp = client.post(f"/api/contacts/{cid}/tags", json={"tag": "重点客户"}, headers=auth)
    assert resp.status_code == 200  # already there
    assert [(r.op, r.tag) for r in syncs(sim_settings, cid)] == [("add", "重点客户")]
    assert queue.get_redis(sim_settings).get("yuchi:tagsync:oa:job")  # the sync is queued
    resp = client.post(f"/api/contacts/{cid}/tags", json={"tag": ""}, headers=auth)
    assert resp.status_code == 422 and "tag" in resp.get_json()["fields"]
    assert (
        client.post("/api/contacts/9999/tags", json={"tag": "a"}, headers=auth).status_code == 404
    )

    other = new_contact(sim_settings, "oManual2")
    with db.session_scope(sim_settings.database_url) as s:
        tagging.add_tag(s, other, "重点客户", "rule", "x")
        tagging.add_tag(s, other, "意向:价格", "rule", "x")
        s.add(CorpTag(tag_id="et_1", name="VIP", group_id="g", group_name="等级"))
        s.add(CorpTag(tag_id="et_2", name="旧", group_id="g", group_name="等级", deleted=True))
    body = client.get("/api/tags", headers=auth).get_json()
    assert body["tags"] == [
        {"tag": "意向:价格", "contacts": 1, "sources": {"rule": 1}},
        {"tag": "重点客户", "contacts": 2, "sources": {"manual": 1, "rule": 1}},
    ]
    assert [c["name"] for c in body["corp_tags"]] == ["VIP"]

    resp = client.delete(f"/api/contacts/{cid}/tags/重点客户", headers=auth)
    assert resp.status_code == 204
    assert [(r.op, r.tag) for r in syncs(sim_settings, cid)][-1] == ("remove", "重点客户")
    assert client.delete(f"/api/contacts/{cid}/tags/重点客户", headers=auth).status_code == 404
    assert client.delete("/api/contacts/9999/tags/a", headers=auth).status_code == 404
    resp = client.get(f"/api/contacts/{cid}", headers=auth).get_json()
    assert resp["tags"] == []


# --- the YAML import ----------------------------------------------------------------------


def test_tags_import_is_all_or_nothing(clean, tmp_path):
    good = tmp_path / "tags.yaml"
    good.write_text(
        textwrap.dedent(
            """
            tag_rules:
              - name: 价格菜单
                event_type: oa.click
                conditions: {key: MENU_PRICE}
                add_tags: [意向:价格]
            interest_words:
              价格: 意向:价格
            """
        ),
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["tags", "import", str(good)])
    assert result.exit_code == 0, result.output
    assert "1 tag rule(s) created, 0 updated, 1 interest word(s)" in result.output
    result = CliRunner().invoke(cli, ["tags", "import", str(good)])
    assert "0 tag rule(s) created, 1 updated" in result.output

    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "tag_rules:\n  - {name: 新规则, event_type: oa.click, add_tags: [a]}\n"
        "  - {name: 坏, event_type: oa.click, conditions: {budget: {gte: x}}, add_tags: [b]}\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["tags", "import", str(bad)])
    assert result.exit_code == 1
    assert "tag_rules[2] conditions.budget.gte: must be a number" in result.output
    with db.session_scope(clean.database_url) as s:
        assert list(s.execute(sa.select(TagRule.name)).scalars()) == ["价格菜单"]

    result = CliRunner().invoke(cli, ["tags", "import", "--defaults"])
    assert result.exit_code == 0, result.output
    with db.session_scope(clean.database_url) as s:
        words = dict(s.execute(sa.text("SELECT word, tag FROM interest_word")).all())
    assert words["多少钱"] == "意向:价格" and words["试用"] == "意向:试用"
    assert CliRunner().invoke(cli, ["tags", "import"]).exit_code == 2
