"""handlers.oa_events.normalize over one fixture per Official Account message and event type.

Pure: XML files in, IncomingEvent out. No database, Redis or Flask.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from handlers.oa_events import EVENTS, MESSAGES, MissingField, normalize
from handlers.xml import parse_flat

from .fixtures import APP_ID, OPENID, fixture_bytes, wechat_names

RECEIVED = datetime(2026, 5, 1, 8, 30, 15, tzinfo=UTC)  # when the callback arrived
TICKET = "gQH47joAAAAAAAAAASxodHRwOi8vd2VpeGluLnFxLmNvbS9xL2taZ2Z3TVRtNzJXV1Brb3ZhYmJJAAIEZ23sUwMEmm3sUw=="

# fixture -> (type, properties (exactly), interaction, subscribed)
EXPECTED: dict[str, tuple[str, dict[str, Any], bool, bool | None]] = {
    "text__message.xml": (
        "oa.text",
        {"content": "请问价格是多少", "msg_id": "24345678901234567"},
        True,
        None,
    ),
    "image__message.xml": (
        "oa.image",
        {
            "pic_url": "http://mmbiz.qpic.cn/mmbiz_jpg/5tqD3oW0bKxKc7yLzq8XEgQ/0",
            "media_id": "Jm7eQeX0Q0c2b1S7g4e3Xh3xJb1nYq9aB2cD4eF6gH8iJ0kL",
            "msg_id": "24345678901234568",
        },
        True,
        None,
    ),
    "voice__message.xml": (
        "oa.voice",
        {
            "media_id": "vZ4tq9R3mVbNf0mK7oE2cTzYh5pX1sW8uQ6jL3dA0gB9iC7k",
            "format": "amr",
            "recognition": "我想问一下报价",
            "msg_id": "24345678901234569",
        },
        True,
        None,
    ),
    "video__message.xml": (
        "oa.video",
        {
            "media_id": "Vd8sK2mQ7rT1yU4iO0pA3sD6fG9hJ2kL5zX8cV1bN4mQ7wE0",
            "thumb_media_id": "Th1aB2cD3eF4gH5iJ6kL7mN8oP9qR0sT1uV2wX3yZ4aB5cD6",
            "msg_id": "24345678901234570",
        },
        True,
        None,
    ),
    "shortvideo__message.xml": (
        "oa.shortvideo",
        {
            "media_id": "Sv3qW6eR9tY2uI5oP8aS1dF4gH7jK0lZ3xC6vB9nM2qW5eR8",
            "thumb_media_id": "Th9zY8xW7vU6tS5rQ4pO3nM2lK1jI0hG9fE8dC7bA6zY5xW4",
            "msg_id": "24345678901234571",
        },
        True,
        None,
    ),
    "location__message.xml": (
        "oa.location",
        {
            "label": "广州市天河区天河路208号",
            "msg_id": "24345678901234572",
            "latitude": 23.134521,
            "longitude": 113.358803,
            "scale": 20.0,
        },
        True,
        None,
    ),
    "link__message.xml": (
        "oa.link",
        {
            "title": "鱼池产品手册",
            "description": "2024 版价格与功能说明",
            "url": "https://mp.weixin.qq.com/s/AbCdEfGhIjKlMnOpQrStUv",
            "msg_id": "24345678901234573",
        },
        True,
        None,
    ),
    "miniprogrampage__message.xml": (
        "oa.miniprogrampage",
        {
            "title": "鱼池会员中心",
            "app_id": "wx3c8d5e6f7a8b9c0d",
            "page_path": "pages/member/index?from=chat",
            "thumb_url": "http://mmbiz.qpic.cn/mmbiz_jpg/MiniProgramThumb/0",
            "thumb_media_id": "Mp7tH8uM9bM0eD1iA2iD3mP4rO5gR6aM7cA8rD9tH0uM1bM2",
            "msg_id": "24345678901234574",
        },
        True,
        None,
    ),
    "event__subscribe.xml": ("oa.subscribe", {}, True, True),
    "event__subscribe_qrscene.xml": (
        "oa.subscribe",
        {"event_key": "qrscene_campaign42", "scene": "campaign42", "ticket": TICKET},
        True,
        True,
    ),
    "event__subscribe_last_trade_no.xml": (
        "oa.subscribe",
        {"event_key": "last_trade_no_4200001234202311141234567890"},
        True,
        True,
    ),
    "event__subscribe_scanbarcode.xml": (
        "oa.subscribe",
        {"event_key": "scanbarcode|EAN_13|6901234567892"},
        True,
        True,
    ),
    "event__unsubscribe.xml": ("oa.unsubscribe", {}, False, False),
    "event__scan.xml": ("oa.scan", {"scene": "campaign42", "ticket": TICKET}, True, True),
    "event__location.xml": (
        "oa.location",
        {"latitude": 23.137466, "longitude": 113.352425, "precision": 119.38504, "reported": True},
        False,
        None,
    ),
    "event__click.xml": ("oa.click", {"key": "MENU_PRICE"}, True, None),
    "event__view.xml": (
        "oa.view",
        {"url": "https://yuchi.example.com/shop?from=menu", "menu_id": "418452348"},
        False,
        None,
    ),
    "event__templatesendjobfinish.xml": (
        "oa.template_send_finished",
        {"msg_id": "2001638364581543937", "status": "success"},
        False,
        None,
    ),
    "event__masssendjobfinish.xml": (
        "oa.mass_send_finished",
        {
            "msg_id": "1000001625",
            "status": "sendsuccess",
            "total": "100",
            "filtered": "80",
            "sent": "75",
            "errors": "5",
            "copyright_check": {
                "count": "2",
                "check_state": "2",
                "results": [
                    {
                        "article_idx": str(idx),
                        "user_declare_state": "0",
                        "audit_state": "2",
                        "original_article_url": f"https://mp.weixin.qq.com/s/Original{word}",
                        "original_article_type": "1",
                        "can_reprint": "1",
                        "need_replace_content": "1",
                        "need_show_reprint_source": "1",
                    }
                    for idx, word in ((1, "One"), (2, "Two"))
                ],
            },
            "article_urls": [
                {"article_idx": "1", "url": "https://mp.weixin.qq.com/s/SentArticleOne"}
            ],
        },
        False,
        None,
    ),
    "event__scancode_push.xml": (
        "oa.scancode",
        {
            "key": "MENU_SCAN",
            "scan_type": "qrcode",
            "result": "https://yuchi.example.com/coupon/8848",
        },
        True,
        None,
    ),
    "event__scancode_waitmsg.xml": (
        "oa.scancode",
        {"key": "MENU_SCAN_WAIT", "scan_type": "barcode", "result": "EAN_13,6901234567892"},
        True,
        None,
    ),
    "event__pic_sysphoto.xml": (
        "oa.menu_photo",
        {
            "key": "MENU_PHOTO",
            "kind": "pic_sysphoto",
            "count": "1",
            "pic_md5_sums": ["1b5f7c23b5bf75682a53e7b6d163e185"],
        },
        False,
        None,
    ),
    "event__pic_photo_or_album.xml": (
        "oa.menu_photo",
        {
            "key": "MENU_ALBUM",
            "kind": "pic_photo_or_album",
            "count": "2",
            "pic_md5_sums": [
                "5a75aaca956d97be686719218f275c6b",
                "b1e9a5a1f9e3d2c4b5a6978877665544",
            ],
        },
        False,
        None,
    ),
    "event__pic_weixin.xml": (
        "oa.menu_photo",
        {
            "key": "MENU_WEIXIN_ALBUM",
            "kind": "pic_weixin",
            "count": "1",
            "pic_md5_sums": ["5a75aaca956d97be686719218f275c6b"],
        },
        False,
        None,
    ),
    "event__location_select.xml": (
        "oa.location_select",
        {
            "key": "MENU_WHERE",
            "label": "广州市海珠区客村艺苑路 106号",
            "poi": "艺苑大厦",
            "latitude": 23.0,
            "longitude": 113.0,
            "scale": 15.0,
        },
        False,
        None,
    ),
    "event__view_miniprogram.xml": (
        "oa.view_miniprogram",
        {"path": "pages/index/index?from=menu", "menu_id": "418452349"},
        False,
        None,
    ),
}

UNKNOWN = ["event__some_future_event.xml", "unknown__message.xml"]


def load(name: str) -> dict[str, Any]:
    return parse_flat(fixture_bytes(name))


def event_of(name: str, app_id: str = APP_ID):
    return normalize(load(name), app_id, RECEIVED)


# --- fixtures and the table ---------------------------------------------------------------


def test_every_wechat_fixture_has_an_expectation() -> None:
    assert set(wechat_names()) == set(EXPECTED) | set(UNKNOWN)


def test_every_table_entry_has_a_fixture() -> None:
    """Each MsgType and Event in the tables is exercised by at least one fixture."""
    seen_types, seen_events = set(), set()
    for name in wechat_names():
        fields = load(name)
        if fields["MsgType"] == "event":
            seen_events.add(fields["Event"].lower())
        else:
            seen_types.add(fields["MsgType"])
    assert set(MESSAGES) <= seen_types
    assert set(EVENTS) <= seen_events


# --- type, properties, flags --------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_normalized_type_and_properties(name: str) -> None:
    expected_type, expected_props, interaction, subscribed = EXPECTED[name]
    event = event_of(name)
    assert event.type == expected_type
    assert event.properties == {**expected_props, "create_time": int(load(name)["CreateTime"])}
    assert event.interaction is interaction
    assert event.subscribed is subscribed


@pytest.mark.parametrize("name", wechat_names())
def test_common_fields(name: str) -> None:
    fields = load(name)
    event = normalize(fields, APP_ID, RECEIVED)
    assert event.source == "oa"
    assert event.identity_kind == "openid"
    # a mass send's report comes from the account's mass-send helper: about no follower
    about_no_one = fields.get("Event") == "MASSSENDJOBFINISH"
    assert event.identity_value == ("" if about_no_one else OPENID)
    assert event.app_id == APP_ID
    assert event.dedupe_key is not None and len(event.dedupe_key) <= 200


@pytest.mark.parametrize("name", wechat_names())
def test_times_create_time_and_arrival(name: str) -> None:
    fields = load(name)
    event = normalize(fields, APP_ID, RECEIVED)
    sent = datetime.fromtimestamp(int(fields["CreateTime"]), UTC)
    assert sent < RECEIVED and event.occurred_at == sent
    assert event.occurred_at.utcoffset() == timedelta(0)
    assert event.received_at == RECEIVED  # the contact's last interaction
    assert event.properties["create_time"] == int(fields["CreateTime"])


def test_a_create_time_in_2036_does_not_move_the_event() -> None:
    fields = load("text__message.xml") | {"CreateTime": "2097705600"}  # 2036-06-22
    event = normalize(fields, APP_ID, RECEIVED)
    assert event.occurred_at == event.received_at == RECEIVED
    assert event.properties["create_time"] == 2097705600


@pytest.mark.parametrize("name", UNKNOWN)
def test_unknown_keeps_raw_fields(name: str) -> None:
    fields = load(name)
    event = normalize(fields, APP_ID, RECEIVED)
    assert event.type == "oa.unknown"
    assert event.properties == {"raw": fields, "create_time": int(fields["CreateTime"])}
    # An unknown user message is still the person's own action; an unknown event is not.
    assert event.interaction is (fields["MsgType"] != "event")
    assert event.subscribed is None


def test_unknown_event_raw_keeps_nested_and_unicode_fields() -> None:
    raw = event_of("event__some_future_event.xml").properties["raw"]
    assert raw["Event"] == "some_future_event"
    assert raw["FutureField"] == "未来的字段"
    assert raw["FutureInfo"] == {"Level": "3"}


def test_template_finish_reads_msg_id_with_capital_d() -> None:
    fields = load("event__templatesendjobfinish.xml")
    assert "MsgID" in fields and "MsgId" not in fields
    assert normalize(fields, APP_ID, RECEIVED).properties["msg_id"] == "2001638364581543937"


@pytest.mark.parametrize("status", ["success", "failed:user block", "failed: system failed"])
def test_template_finish_statuses(status: str) -> None:
    fields = load("event__templatesendjobfinish.xml") | {"Status": status}
    assert normalize(fields, APP_ID, RECEIVED).properties["status"] == status


@pytest.mark.parametrize(
    ("name", "lat", "lng"),
    [
        ("location__message.xml", 23.134521, 113.358803),
        ("event__location.xml", 23.137466, 113.352425),
    ],
)
def test_coordinates_are_floats(name: str, lat: float, lng: float) -> None:
    props = event_of(name).properties
    assert isinstance(props["latitude"], float) and props["latitude"] == pytest.approx(lat)
    assert isinstance(props["longitude"], float) and props["longitude"] == pytest.approx(lng)


def test_location_report_with_bad_coordinates_keeps_none() -> None:
    fields = load("event__location.xml") | {"Latitude": "north", "Longitude": ""}
    props = normalize(fields, APP_ID, RECEIVED).properties
    assert props["latitude"] is None and props["longitude"] is None


def test_subscribe_without_qrscene_has_no_scene() -> None:
    assert "scene" not in event_of("event__subscribe.xml").properties


def test_subscribe_with_other_event_key_has_no_scene() -> None:
    fields = load("event__subscribe.xml") | {"EventKey": "campaign42"}
    assert "scene" not in normalize(fields, APP_ID, RECEIVED).properties


@pytest.mark.parametrize(
    "event_key",
    [
        "qrscene_campaign42",
        "last_trade_no_4200001234202311141234567890",
        "scanbarcode|EAN_13|6901234567892",
        "scanimage|6901234567892",
        "campaign42",
    ],
)
def test_subscribe_keeps_every_event_key(event_key: str) -> None:
    """Whatever follows a subscribe (QR scene, payment, product scan), its EventKey is kept."""
    fields = load("event__subscribe.xml") | {"EventKey": event_key}
    assert normalize(fields, APP_ID, RECEIVED).properties["event_key"] == event_key


def test_mass_send_finish_without_results_keeps_empty_lists() -> None:
    """An empty <ResultList/> (no article checked) is an empty list, not a lost field."""
    fields = load("event__masssendjobfinish.xml") | {
        "CopyrightCheckResult": {"Count": "0", "ResultList": "", "CheckState": "1"},
        "ArticleUrlResult": {"Count": "0", "ResultList": ""},
    }
    props = normalize(fields, APP_ID, RECEIVED).properties
    assert props["copyright_check"] == {"count": "0", "check_state": "1", "results": []}
    assert props["article_urls"] == []


def test_menu_photo_without_pic_list_has_no_sums() -> None:
    fields = {k: v for k, v in load("event__pic_sysphoto.xml").items() if k != "SendPicsInfo"}
    assert normalize(fields, APP_ID, RECEIVED).properties["pic_md5_sums"] == []


def test_scan_scene_is_the_raw_event_key() -> None:
    """SCAN (already following) sends the scene without the qrscene_ prefix."""
    assert event_of("event__scan.xml").properties["scene"] == "campaign42"
    fields = load("event__scan.xml") | {"EventKey": "123"}
    assert normalize(fields, APP_ID, RECEIVED).properties["scene"] == "123"


@pytest.mark.parametrize("event_name", ["SCAN", "scan", "Scan"])
def test_event_names_are_case_insensitive(event_name: str) -> None:
    fields = load("event__scan.xml") | {"Event": event_name}
    assert normalize(fields, APP_ID, RECEIVED).type == "oa.scan"


def test_msg_type_is_case_insensitive() -> None:
    fields = load("text__message.xml") | {"MsgType": "TEXT"}
    assert normalize(fields, APP_ID, RECEIVED).type == "oa.text"


@pytest.mark.parametrize(
    ("event_name", "expected_type", "interaction"),
    [
        ("scancode_waitmsg", "oa.scancode", True),
        ("pic_photo_or_album", "oa.menu_photo", False),
        ("pic_weixin", "oa.menu_photo", False),
    ],
)
def test_menu_variants_share_handlers(
    event_name: str, expected_type: str, interaction: bool
) -> None:
    source = "event__scancode_push.xml" if "scancode" in event_name else "event__pic_sysphoto.xml"
    fields = load(source) | {"Event": event_name}
    event = normalize(fields, APP_ID, RECEIVED)
    assert event.type == expected_type
    assert event.interaction is interaction
    if expected_type == "oa.menu_photo":
        assert event.properties["kind"] == event_name


def test_scancode_without_scan_code_info() -> None:
    fields = {k: v for k, v in load("event__scancode_push.xml").items() if k != "ScanCodeInfo"}
    props = normalize(fields, APP_ID, RECEIVED).properties
    assert props == {"key": "MENU_SCAN", "create_time": int(fields["CreateTime"])}


def test_empty_fields_are_left_out_of_properties() -> None:
    fields = load("text__message.xml") | {"Content": ""}
    assert "content" not in normalize(fields, APP_ID, RECEIVED).properties


@pytest.mark.parametrize(
    ("name", "interaction"),
    [
        ("text__message.xml", True),
        ("event__click.xml", True),
        ("event__subscribe.xml", True),
        ("event__subscribe_qrscene.xml", True),
        ("event__scan.xml", True),
        ("event__unsubscribe.xml", False),
        ("event__view.xml", False),
        ("event__templatesendjobfinish.xml", False),
        ("event__location.xml", False),
    ],
)
def test_interaction_flags(name: str, interaction: bool) -> None:
    """What opens the 48-hour window: the person acted (message, click, follow, scan)."""
    assert event_of(name).interaction is interaction


@pytest.mark.parametrize(
    ("name", "subscribed"),
    [
        ("event__subscribe.xml", True),
        ("event__subscribe_qrscene.xml", True),
        ("event__scan.xml", True),
        ("event__unsubscribe.xml", False),
        ("text__message.xml", None),
        ("event__click.xml", None),
        ("event__templatesendjobfinish.xml", None),
        ("unknown__message.xml", None),
    ],
)
def test_subscribed_flag(name: str, subscribed: bool | None) -> None:
    assert event_of(name).subscribed is subscribed


# --- dedupe keys --------------------------------------------------------------------------


MESSAGE_FIXTURES = [n for n in wechat_names() if not n.startswith("event__")]
EVENT_FIXTURES = [n for n in wechat_names() if n.startswith("event__")]


@pytest.mark.parametrize("name", MESSAGE_FIXTURES)
def test_message_dedupe_key_is_msg_id(name: str) -> None:
    fields = load(name)
    assert normalize(fields, APP_ID, RECEIVED).dedupe_key == f"oa:{APP_ID}:msg:{fields['MsgId']}"


@pytest.mark.parametrize("name", EVENT_FIXTURES)
def test_event_dedupe_key_is_openid_time_event(name: str) -> None:
    fields = load(name)
    assert (
        normalize(fields, APP_ID, RECEIVED).dedupe_key
        == f"oa:{APP_ID}:evt:{OPENID}:{fields['CreateTime']}:{fields['Event']}"
    )


def test_same_msg_id_twice_gives_the_same_key() -> None:
    """A retried callback (WeChat tries 3 times) is recognised by its MsgId."""
    first = load("text__message.xml")
    retry = first | {"CreateTime": str(int(first["CreateTime"]) + 5)}
    assert (
        normalize(first, APP_ID, RECEIVED).dedupe_key
        == normalize(retry, APP_ID, RECEIVED).dedupe_key
    )
    assert (
        normalize(first, APP_ID, RECEIVED).dedupe_key
        == normalize(load("text__message.xml"), APP_ID, RECEIVED).dedupe_key
    )


def test_different_msg_ids_differ() -> None:
    first = load("text__message.xml")
    second = first | {"MsgId": "24345678901234999"}
    assert (
        normalize(first, APP_ID, RECEIVED).dedupe_key
        != normalize(second, APP_ID, RECEIVED).dedupe_key
    )


def test_identical_event_twice_gives_the_same_key() -> None:
    assert event_of("event__click.xml").dedupe_key == event_of("event__click.xml").dedupe_key


def test_two_different_events_at_the_same_create_time_differ() -> None:
    """A follow and the LOCATION report WeChat sends with it often share a second."""
    subscribe = load("event__subscribe.xml")
    location = load("event__location.xml") | {"CreateTime": subscribe["CreateTime"]}
    assert (
        normalize(subscribe, APP_ID, RECEIVED).dedupe_key
        != normalize(location, APP_ID, RECEIVED).dedupe_key
    )


def test_same_event_by_two_people_at_the_same_time_differs() -> None:
    first = load("event__click.xml")
    other = first | {"FromUserName": "oLVPpjqs2BhvzwPj5A-someoneElse"}
    assert (
        normalize(first, APP_ID, RECEIVED).dedupe_key
        != normalize(other, APP_ID, RECEIVED).dedupe_key
    )


def test_same_event_at_another_time_differs() -> None:
    first = load("event__click.xml")
    later = first | {"CreateTime": str(int(first["CreateTime"]) + 1)}
    assert (
        normalize(first, APP_ID, RECEIVED).dedupe_key
        != normalize(later, APP_ID, RECEIVED).dedupe_key
    )


def test_dedupe_key_is_scoped_by_app_id() -> None:
    assert (
        event_of("text__message.xml", "wxappone").dedupe_key
        != event_of("text__message.xml", "wxapptwo").dedupe_key
    )


def test_template_finish_is_deduped_as_an_event_not_by_msg_id() -> None:
    key = event_of("event__templatesendjobfinish.xml").dedupe_key
    assert key is not None and ":evt:" in key and ":msg:" not in key


def test_message_without_msg_id_falls_back_to_openid_and_time() -> None:
    fields = {k: v for k, v in load("text__message.xml").items() if k != "MsgId"}
    key = normalize(fields, APP_ID, RECEIVED).dedupe_key
    assert key == f"oa:{APP_ID}:evt:{OPENID}:{fields['CreateTime']}:text"
    image = {k: v for k, v in load("image__message.xml").items() if k != "MsgId"}
    image["CreateTime"] = fields["CreateTime"]
    assert normalize(image, APP_ID, RECEIVED).dedupe_key != key


# --- broken messages ----------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["FromUserName", "MsgType", "CreateTime"])
def test_missing_required_field_raises(missing: str) -> None:
    fields = {k: v for k, v in load("text__message.xml").items() if k != missing}
    with pytest.raises(MissingField, match=missing):
        normalize(fields, APP_ID, RECEIVED)


@pytest.mark.parametrize("empty", ["FromUserName", "MsgType", "CreateTime"])
def test_empty_required_field_raises(empty: str) -> None:
    fields = load("text__message.xml") | {empty: ""}
    with pytest.raises(MissingField):
        normalize(fields, APP_ID, RECEIVED)


@pytest.mark.parametrize(
    "create_time",
    ["yesterday", "1.7e9", "1700000000.5", "0x6553f100", "17OOOOOOOO", "9" * 30],
)
def test_non_numeric_create_time_raises(create_time: str) -> None:
    fields = load("text__message.xml") | {"CreateTime": create_time}
    with pytest.raises(MissingField, match="CreateTime"):
        normalize(fields, APP_ID, RECEIVED)


@pytest.mark.parametrize(
    "create_time",
    ["1_700_000_000", "١٧٠٠٠٠٠٠٠٠", "+1700000000"],
    ids=["underscores", "arabic-indic-digits", "plus-sign"],
)
def test_non_ascii_digit_create_time_raises(create_time: str) -> None:
    fields = load("text__message.xml") | {"CreateTime": create_time}
    with pytest.raises(MissingField):
        normalize(fields, APP_ID, RECEIVED)


@pytest.mark.parametrize("field", ["FromUserName", "MsgType", "CreateTime"])
def test_repeated_or_nested_required_field_raises(field: str) -> None:
    """parse_flat turns repeated elements into lists and nested ones into dicts."""
    base = load("text__message.xml")
    for value in ([base[field], base[field]], {"Inner": base[field]}):
        with pytest.raises(MissingField):
            normalize(base | {field: value}, APP_ID, RECEIVED)


def test_overlong_openid_raises() -> None:
    fields = load("text__message.xml") | {"FromUserName": "o" * 129}
    with pytest.raises(MissingField, match="FromUserName"):
        normalize(fields, APP_ID, RECEIVED)


def test_openid_of_128_characters_is_accepted() -> None:
    fields = load("text__message.xml") | {"FromUserName": "o" * 128}
    assert normalize(fields, APP_ID, RECEIVED).identity_value == "o" * 128


def test_missing_field_is_a_value_error() -> None:
    assert issubclass(MissingField, ValueError)
