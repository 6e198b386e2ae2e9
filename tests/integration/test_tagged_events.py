"""Tagged events: every event records the tags it earned and why, every tag change is a
``tag.added`` / ``tag.removed`` on the timeline (written once however often a step runs), the
timeline filters by type and tag, and "events with tag T" / "contacts tagged T at least N times
since D" answer exactly; existing tags migrate into first ``tag.added`` entries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from support import run_worker

from bot.background import pipeline
from bot.contacts import identity, tag_history
from bot.core import db
from bot.core.models import Contact, ContactTag, Event, EventTag, Identity, UTCDateTime
from bot.tagging import tags as tagging
from wxsim.entities import CorpTag as SimCorpTag
from wxsim.entities import CorpTagGroup

PRICE = "意向:价格"
D = datetime(2026, 11, 1, tzinfo=UTC)  # "since D" in the query tests


# --- helpers -------------------------------------------------------------------------------


def contact_of(settings, kind: str, value: str) -> int:
    with db.session_scope(settings.database_url) as s:
        cid = s.execute(
            sa.select(Identity.contact_id).where(Identity.kind == kind, Identity.value == value)
        ).scalar_one()
        return identity.resolve(s, cid)


def events_of(settings, contact_id: int, *types: str) -> list[Event]:
    with db.session_scope(settings.database_url) as s:
        query = sa.select(Event).where(Event.contact_id == contact_id).order_by(Event.id)
        if types:
            query = query.where(Event.type.in_(types))
        return list(s.execute(query).scalars())


def earned(settings, event_id: int) -> dict[str, tuple[str, str | None]]:
    with db.session_scope(settings.database_url) as s:
        rows = s.execute(
            sa.select(EventTag.tag, EventTag.source, EventTag.actor).where(
                EventTag.event_id == event_id
            )
        ).all()
    return {tag: (source, actor) for tag, source, actor in rows}


def new_contact(settings) -> int:
    with db.session_scope(settings.database_url) as s:
        c = Contact(first_seen_at=D, last_seen_at=D)
        s.add(c)
        s.flush()
        return c.id


def interaction(settings, contact_id: int, type_: str, at: datetime, *tags: str) -> int:
    """An event at ``at`` that earned ``tags`` (an interest word found them)."""
    with db.session_scope(settings.database_url) as s:
        ev = Event(contact_id=contact_id, type=type_, source="oa", occurred_at=at, received_at=at)
        s.add(ev)
        s.flush()
        for tag in tags:
            tagging.add_tag(s, contact_id, tag, "interest", f"interest:{tag}", event_id=ev.id)
        return ev.id


def since(at: datetime) -> str:
    return quote(at.isoformat())


# --- an interest word, through the callback and the pipeline --------------------------------


def test_an_interest_word_tags_the_text_and_puts_tag_added_on_the_timeline(
    sim, sim_settings, env_to_sim, client, auth
):
    words = {"多少钱": PRICE}
    assert client.put("/api/interest-words", json={"words": words}, headers=auth).status_code == 200
    sim.follow("oWord")
    sim.say("oWord", "这个多少钱？")
    run_worker(sim_settings)
    cid = contact_of(sim_settings, "openid", "oWord")
    [text] = events_of(sim_settings, cid, "oa.text")
    assert earned(sim_settings, text.id) == {PRICE: ("interest", "interest:多少钱")}
    [added] = events_of(sim_settings, cid, tag_history.TAG_ADDED)
    assert added.properties == {
        "tag": PRICE,
        "source": "interest",
        "actor": "interest:多少钱",
        "cause_event_id": text.id,
    }
    assert added.processed_at is not None  # on the timeline only; journeys hear of it in-tx

    # The contact API says when and why the tag was given.
    [given] = client.get(f"/api/contacts/{cid}", headers=auth).get_json()["tags"]
    assert given["tag"] == PRICE and given["source"] == "interest"
    assert given["actor"] == "interest:多少钱" and given["cause_event_id"] == text.id
    assert given["cause_event_type"] == "oa.text" and given["added_at"].endswith("+00:00")

    # Asked again: the second text carries the tag too, but the tag is not added twice.
    sim.advance(1)
    sim.say("oWord", "到底多少钱")
    run_worker(sim_settings)
    first, second = events_of(sim_settings, cid, "oa.text")
    assert PRICE in earned(sim_settings, second.id)
    assert len(events_of(sim_settings, cid, tag_history.TAG_ADDED)) == 1

    # The filtered timeline: the texts that earned it; without a type, its tag.added too.
    url = f"/api/contacts/{cid}/events?type=oa.text&tag={quote(PRICE)}"
    body = client.get(url, headers=auth).get_json()
    assert [e["id"] for e in body["events"]] == [second.id, first.id]
    body = client.get(f"/api/contacts/{cid}/events?tag={quote(PRICE)}", headers=auth).get_json()
    assert sorted(e["id"] for e in body["events"]) == [first.id, added.id, second.id]


def test_a_recomputed_step_writes_nothing_twice(sim, sim_settings, env_to_sim, client, auth):
    client.put("/api/interest-words", json={"words": {"多少钱": PRICE}}, headers=auth)
    sim.follow("oAgain")
    sim.say("oAgain", "多少钱")
    run_worker(sim_settings)
    cid = contact_of(sim_settings, "openid", "oAgain")
    [text] = events_of(sim_settings, cid, "oa.text")
    for _ in range(2):  # the tagging step runs over the same event again (a recompute)
        with db.session_scope(sim_settings.database_url) as s:
            tagging.on_event(pipeline.Context(sim_settings, s, s.get(Event, text.id)))
    assert len(events_of(sim_settings, cid, tag_history.TAG_ADDED)) == 1
    assert list(earned(sim_settings, text.id)) == [PRICE]
    # Removed by hand, the tag stays off when the old event is looked at again.
    assert (
        client.delete(f"/api/contacts/{cid}/tags/{quote(PRICE)}", headers=auth).status_code == 204
    )
    with db.session_scope(sim_settings.database_url) as s:
        tagging.on_event(pipeline.Context(sim_settings, s, s.get(Event, text.id)))
    types = [e.type for e in events_of(sim_settings, cid, *tag_history.CHANGES)]
    assert types == ["tag.added", "tag.removed"]


# --- removals: by hand and in WeCom ----------------------------------------------------------


def test_a_manual_removal_leaves_one_tag_removed_and_keeps_the_history(clean, client, auth):
    cid = new_contact(clean)
    text = interaction(clean, cid, "oa.text", D, PRICE)
    resp = client.delete(f"/api/contacts/{cid}/tags/{quote(PRICE)}?by=lisi", headers=auth)
    assert resp.status_code == 204
    again = client.delete(f"/api/contacts/{cid}/tags/{quote(PRICE)}?by=lisi", headers=auth)
    assert again.status_code == 404
    [removed] = events_of(clean, cid, tag_history.TAG_REMOVED)
    assert removed.properties == {
        "tag": PRICE,
        "source": "manual",
        "actor": "lisi",
        "cause_event_id": None,
    }
    # History stays: the text still carries the tag, its tag.added is still there.
    assert PRICE in earned(clean, text)
    assert len(events_of(clean, cid, tag_history.TAG_ADDED)) == 1
    assert client.get(f"/api/contacts/{cid}", headers=auth).get_json()["tags"] == []
    bad = client.delete(f"/api/contacts/{cid}/tags/x?by=李四", headers=auth)
    assert bad.status_code == 422 and "by" in bad.get_json()["fields"]

    # A tag given by hand (no causing event) is itself the event that carries it.
    resp = client.post(
        f"/api/contacts/{cid}/tags", json={"tag": "重点", "by": "lisi"}, headers=auth
    )
    assert resp.status_code == 201 and resp.get_json()["actor"] == "lisi"
    [added] = [e for e in events_of(clean, cid, "tag.added") if e.properties["tag"] == "重点"]
    assert earned(clean, added.id) == {"重点": ("manual", "lisi")}


def test_a_wecom_edit_leaves_one_tag_removed(sim, sim_settings, env_to_sim):
    with sim.state.lock:
        sim.state.tag_groups.append(
            CorpTagGroup("grp", "客户等级", 1, tags=[SimCorpTag("et_vip", "VIP", 1)])
        )
    sim.add_rep("zhangsan")
    sim.add_external_contact("zhangsan", "wmEdit")
    run_worker(sim_settings)
    with sim.state.lock:  # the rep tags the customer in WeCom
        sim.state.contacts["wmEdit"].follow["zhangsan"].tag_ids = ["et_vip"]
    sim.edit_external_contact("zhangsan", "wmEdit", remark="老客户")
    run_worker(sim_settings)
    cid = contact_of(sim_settings, "external_userid", "wmEdit")
    [edit] = events_of(sim_settings, cid, "wecom.contact_edited")
    [added] = events_of(sim_settings, cid, "tag.added")
    assert added.properties["cause_event_id"] == edit.id
    assert earned(sim_settings, edit.id) == {"VIP": ("wecom", "zhangsan")}

    sim.advance(1)
    with sim.state.lock:  # and takes it off again
        sim.state.contacts["wmEdit"].follow["zhangsan"].tag_ids = []
    sim.edit_external_contact("zhangsan", "wmEdit", remark="老客户2")
    run_worker(sim_settings)
    second = events_of(sim_settings, cid, "wecom.contact_edited")[-1]
    [removed] = events_of(sim_settings, cid, "tag.removed")
    assert removed.properties == {
        "tag": "VIP",
        "source": "wecom",
        "actor": "zhangsan",
        "cause_event_id": second.id,
    }
    # The same edit pulled again (a retried job) writes no second removal.
    got = tagging.pull_wecom_tags(sim_settings, cid, "wmEdit", "zhangsan", second.id)
    assert got == {"added": [], "removed": []}
    assert len(events_of(sim_settings, cid, "tag.removed")) == 1


# --- the queries -----------------------------------------------------------------------------


def _population(settings) -> dict[str, int]:
    """Contacts whose tagged events straddle D."""
    day = timedelta(days=1)
    who = {name: new_contact(settings) for name in ("a", "b", "c", "d", "e")}
    for at in (D + day, D + 2 * day, D + 3 * day):
        interaction(settings, who["a"], "oa.text", at, PRICE)
    interaction(settings, who["b"], "oa.text", D - day, PRICE)  # before D: not counted
    interaction(settings, who["b"], "oa.click", D + day, PRICE)
    interaction(settings, who["b"], "oa.text", D + 2 * day, PRICE, "意向:试用")
    for at in (D + day, D + 2 * day, D + 3 * day):
        interaction(settings, who["c"], "oa.text", at, "意向:试用")  # another tag
    interaction(settings, who["d"], "oa.text", D, PRICE)  # exactly D counts
    interaction(settings, who["d"], "oa.text", D + day)  # untagged
    return who


def test_contacts_tagged_at_least_n_times_since(clean, client, auth):
    who = _population(clean)
    url = f"/api/tags/contacts?tag={quote(PRICE)}&since={since(D)}"
    got = client.get(f"{url}&at_least=3", headers=auth).get_json()
    assert [c["contact_id"] for c in got["contacts"]] == [who["a"]]
    assert got["contacts"][0]["times"] == 3 and got["next_after"] is None
    got = client.get(f"{url}&at_least=2", headers=auth).get_json()["contacts"]
    assert [(c["contact_id"], c["times"]) for c in got] == [(who["a"], 3), (who["b"], 2)]
    got = client.get(f"{url}&at_least=1&limit=2", headers=auth).get_json()
    assert [c["contact_id"] for c in got["contacts"]] == [who["a"], who["b"]]
    rest = client.get(f"{url}&at_least=1&after={got['next_after']}", headers=auth).get_json()
    assert [c["contact_id"] for c in rest["contacts"]] == [who["d"]]
    later = f"/api/tags/contacts?tag={quote(PRICE)}&since={since(D + timedelta(days=3))}"
    assert [c["contact_id"] for c in client.get(later, headers=auth).get_json()["contacts"]] == [
        who["a"]
    ]

    # A merge takes the merged contact's tagged events along.
    with db.session_scope(clean.database_url) as s:
        identity.merge(s, who["b"], who["d"], reason="test")
    got = client.get(f"{url}&at_least=3", headers=auth).get_json()["contacts"]
    assert [(c["contact_id"], c["times"]) for c in got] == [(who["a"], 3), (who["b"], 3)]


def test_events_with_a_tag_in_a_time_range(clean, client, auth):
    who = _population(clean)
    day = timedelta(days=1)
    url = f"/api/tags/events?tag={quote(PRICE)}&since={since(D)}&until={since(D + 3 * day)}"
    got = client.get(url, headers=auth).get_json()
    found = [(e["contact_id"], e["occurred_at"][:10]) for e in got["events"]]
    assert found == [
        (who["b"], "2026-11-03"),
        (who["a"], "2026-11-03"),
        (who["b"], "2026-11-02"),
        (who["a"], "2026-11-02"),
        (who["d"], "2026-11-01"),
    ]
    assert got["events"][0]["source"] == "interest" and got["events"][2]["type"] == "oa.click"
    pages, before = [], None
    while True:
        page = client.get(
            url + "&limit=2" + (f"&before={before}" if before else ""), headers=auth
        ).get_json()
        pages.append([e["event_id"] for e in page["events"]])
        before = page["next_before"]
        if before is None:
            break
    assert [len(p) for p in pages] == [2, 2, 1]
    assert sum(pages, []) == [e["event_id"] for e in got["events"]]


def test_the_timeline_filters_by_type_and_tag_page_by_page(clean, client, auth):
    cid = new_contact(clean)
    day = timedelta(days=1)
    texts = [interaction(clean, cid, "oa.text", D + n * day, PRICE) for n in range(3)]
    interaction(clean, cid, "oa.click", D + day, PRICE)
    interaction(clean, cid, "oa.text", D + day, "意向:试用")
    interaction(clean, cid, "oa.text", D + 2 * day)
    url = f"/api/contacts/{cid}/events?type=oa.text&tag={quote(PRICE)}&limit=2"
    page = client.get(url, headers=auth).get_json()
    assert [e["id"] for e in page["events"]] == [texts[2], texts[1]]
    page = client.get(f"{url}&before={page['next_before']}", headers=auth).get_json()
    assert [e["id"] for e in page["events"]] == [texts[0]] and page["next_before"] is None
    url = f"/api/contacts/{cid}/events?type=tag.added&tag={quote(PRICE)}"
    [change] = client.get(url, headers=auth).get_json()["events"]
    assert change["properties"]["cause_event_id"] == texts[0]


def test_bad_query_strings_are_422s(clean, client, auth):
    cid = new_contact(clean)
    for url, field in (
        (f"/api/contacts/{cid}/events?tag={'x' * 65}", "tag"),
        ("/api/tags/events", "tag"),
        (f"/api/tags/events?tag=a&since={quote('2026-11-01T00:00:00')}", "since"),
        ("/api/tags/events?tag=a&until=yesterday", "until"),
        (f"/api/tags/events?tag=a&until={quote('9999-12-31T23:00:00-05:00')}", "until"),
        (f"/api/tags/events?tag=a&since={since(D)}&before=0", "before"),
        (f"/api/contacts/{cid}/events?type={'t' * 65}", "type"),
        ("/api/tags/contacts?tag=a", "since"),
        (f"/api/tags/contacts?tag=a&since={since(D)}&at_least=0", "at_least"),
    ):
        resp = client.get(url, headers=auth)
        assert resp.status_code == 422 and field in resp.get_json()["fields"], url
    resp = client.post(
        f"/api/contacts/{cid}/tags", json={"tag": "a", "by": "王 经理"}, headers=auth
    )
    assert resp.status_code == 422 and "by" in resp.get_json()["fields"]
    # A "+" sent unescaped arrives as a space and still reads as a zone.
    resp = client.get("/api/tags/events?tag=a&since=2026-11-01T08:00:00+08:00", headers=auth)
    assert resp.status_code == 200 and resp.get_json()["events"] == []


# --- the migration ---------------------------------------------------------------------------


def test_existing_tags_become_migrated_tag_added_entries(clean):
    config = db.alembic_config(clean.database_url)
    script = ScriptDirectory.from_config(config)
    before = script.get_revision("0013").down_revision
    cid = new_contact(clean)
    given = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
    command.downgrade(config, before)
    try:
        engine = db.get_engine(clean.database_url)
        t = sa.table(
            "contact_tag",
            *(sa.column(n) for n in ("contact_id", "tag", "source", "source_ref")),
            sa.column("created_at", UTCDateTime()),
        )
        rows = [
            (PRICE, "rule", "interest:多少钱"),
            ("来源:海报", "rule", "tag_rule:4"),
            ("新关注", "rule", "7"),
            ("活动", "campaign", "channel:2"),
            ("重点", "manual", "api"),
        ]
        with engine.begin() as conn:
            conn.execute(
                sa.insert(t),
                [
                    {
                        "contact_id": cid,
                        "tag": tag,
                        "source": source,
                        "source_ref": ref,
                        "created_at": given,
                    }
                    for tag, source, ref in rows
                ],
            )
    finally:
        command.upgrade(config, "head")
    with db.session_scope(clean.database_url) as s:
        sources = dict(
            s.execute(
                sa.select(ContactTag.tag, ContactTag.source).where(ContactTag.contact_id == cid)
            ).all()
        )
    assert sources == {
        PRICE: "interest",
        "来源:海报": "tag_rule",
        "新关注": "reply_rule",
        "活动": "channel",
        "重点": "manual",
    }
    added = events_of(clean, cid, "tag.added")
    assert {e.properties["tag"]: e.properties["source"] for e in added} == sources
    assert all(e.properties["migrated"] is True for e in added)
    assert all(e.occurred_at == given and e.processed_at is not None for e in added)
    assert {e.properties["actor"] for e in added} >= {"interest:多少钱", "reply_rule:7"}
    for e in added:  # each carries its tag, as a change with no known cause does
        assert list(earned(clean, e.id)) == [e.properties["tag"]]
