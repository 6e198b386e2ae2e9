"""handlers.xml.parse_flat: the safe parser every callback body goes through."""

from __future__ import annotations

import pytest
from defusedxml import DefusedXmlException

from handlers.xml import MAX_DEPTH, BadXML, parse_flat

from .fixtures import ACCOUNT, OPENID, fixture_bytes, hostile_names, wechat_names


def test_hostile_fixtures_exist() -> None:
    assert set(hostile_names()) >= {
        "hostile__billion_laughs.xml",
        "hostile__external_entity.xml",
        "hostile__doctype_only.xml",
        "hostile__malformed.xml",
        "hostile__wrong_root.xml",
    }


@pytest.mark.parametrize("name", hostile_names())
def test_hostile_fixture_raises_bad_xml(name: str) -> None:
    with pytest.raises(BadXML):
        parse_flat(fixture_bytes(name))


@pytest.mark.parametrize("name", hostile_names())
def test_hostile_fixture_raises_bad_xml_as_str(name: str) -> None:
    with pytest.raises(BadXML):
        parse_flat(fixture_bytes(name).decode("utf-8"))


@pytest.mark.parametrize(
    "name",
    [
        "hostile__billion_laughs.xml",
        "hostile__external_entity.xml",
        "hostile__external_dtd.xml",
        "hostile__doctype_only.xml",
    ],
)
def test_dtds_are_refused_before_anything_is_expanded(name: str) -> None:
    """The DOCTYPE itself is refused (defusedxml's DTDForbidden), so no entity is ever
    declared, expanded or fetched: the billion laughs never get to laugh."""
    with pytest.raises(BadXML, match="DOCTYPE") as info:
        parse_flat(fixture_bytes(name))
    assert isinstance(info.value.__cause__, DefusedXmlException)
    assert type(info.value.__cause__).__name__ == "DTDForbidden"


def test_external_entity_never_reads_the_file() -> None:
    with pytest.raises(BadXML) as info:
        parse_flat(fixture_bytes("hostile__external_entity.xml"))
    assert "root:" not in str(info.value)


def test_doctype_without_a_root_element_is_refused() -> None:
    with pytest.raises(BadXML):
        parse_flat(b'<?xml version="1.0"?>\n<!DOCTYPE xml>\n')


def test_inline_entity_without_doctype_is_malformed() -> None:
    with pytest.raises(BadXML, match="malformed"):
        parse_flat(b"<xml><Content>&lol9;</Content></xml>")


def test_malformed_fixture() -> None:
    with pytest.raises(BadXML, match="malformed"):
        parse_flat(fixture_bytes("hostile__malformed.xml"))


def test_wrong_root_fixture() -> None:
    with pytest.raises(BadXML, match="root element must be <xml>, got <message>"):
        parse_flat(fixture_bytes("hostile__wrong_root.xml"))


def test_wrong_root_name_is_truncated_in_the_message() -> None:
    tag = "a" * 500
    with pytest.raises(BadXML) as info:
        parse_flat(f"<{tag}></{tag}>")
    assert len(str(info.value)) < 100


def test_namespaced_xml_root_is_not_xml() -> None:
    with pytest.raises(BadXML, match="root element"):
        parse_flat(b'<xml xmlns="urn:x"><A>1</A></xml>')


@pytest.mark.parametrize("body", [b"", "", b"   ", " \n\t ", b"\r\n"])
def test_empty_body(body: bytes | str) -> None:
    with pytest.raises(BadXML, match="empty body"):
        parse_flat(body)


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe\x00\x01\x80\x81garbage",
        b"\x00\x00\x00\x00",
        bytes(range(128, 256)),
        b"<xml><Content>caf\xe9</Content></xml>",  # Latin-1 where UTF-8 is declared/assumed
        b"<xml><Content>\xc3</Content></xml>",  # a truncated UTF-8 sequence
        '<?xml version="1.0" encoding="gbk"?><xml><A>中文</A></xml>'.encode("gbk"),
        b"not xml at all",
        b'{"json": true}',
        b"<xml><A>1</A></xml><xml><A>2</A></xml>",
        b"<xml><A>1</B></xml>",
    ],
    ids=[
        "binary",
        "nul-bytes",
        "high-bytes",
        "latin1",
        "truncated-utf8",
        "gbk",
        "text",
        "json",
        "two-roots",
        "mismatched-tags",
    ],
)
def test_garbage_raises_bad_xml(body: bytes) -> None:
    with pytest.raises(BadXML):
        parse_flat(body)


def test_bad_xml_is_a_value_error() -> None:
    assert issubclass(BadXML, ValueError)


# --- shape of the result ------------------------------------------------------------------


def test_flat_document() -> None:
    fields = parse_flat(fixture_bytes("text__message.xml"))
    assert fields == {
        "ToUserName": ACCOUNT,
        "FromUserName": OPENID,
        "CreateTime": "1700000000",
        "MsgType": "text",
        "Content": "请问价格是多少",
        "MsgId": "24345678901234567",
    }


def test_str_and_bytes_give_the_same_result() -> None:
    raw = fixture_bytes("text__message.xml")
    assert parse_flat(raw) == parse_flat(raw.decode("utf-8"))


def test_utf8_declaration_and_bom_are_accepted() -> None:
    body = '<?xml version="1.0" encoding="UTF-8"?><xml><Content>你好</Content></xml>'
    assert parse_flat(body.encode("utf-8")) == {"Content": "你好"}
    assert parse_flat(b"\xef\xbb\xbf" + body.encode("utf-8")) == {"Content": "你好"}


def test_repeated_children_become_lists() -> None:
    fields = parse_flat(b"<xml><D>x</D><D>y</D><D>z</D><E>only</E></xml>")
    assert fields == {"D": ["x", "y", "z"], "E": "only"}


def test_repeated_nested_children_become_lists_of_dicts() -> None:
    body = (
        b"<xml><Articles>"
        b"<item><Title><![CDATA[a]]></Title></item>"
        b"<item><Title><![CDATA[b]]></Title></item>"
        b"</Articles></xml>"
    )
    assert parse_flat(body) == {"Articles": {"item": [{"Title": "a"}, {"Title": "b"}]}}


def test_nested_elements_become_dicts() -> None:
    fields = parse_flat(fixture_bytes("event__scancode_push.xml"))
    assert fields["ScanCodeInfo"] == {
        "ScanType": "qrcode",
        "ScanResult": "https://yuchi.example.com/coupon/8848",
    }


def test_deeply_nested_elements() -> None:
    fields = parse_flat(fixture_bytes("event__pic_sysphoto.xml"))
    assert fields["SendPicsInfo"] == {
        "Count": "1",
        "PicList": {"item": {"PicMd5Sum": "1b5f7c23b5bf75682a53e7b6d163e185"}},
    }


def test_empty_elements_are_empty_strings() -> None:
    fields = parse_flat(b"<xml><A></A><B/><C><![CDATA[]]></C></xml>")
    assert fields == {"A": "", "B": "", "C": ""}


def test_cdata_content_is_preserved_verbatim() -> None:
    body = "<xml><Content><![CDATA[<b>价格</b> & 'quotes' \"too\" ]]]]><![CDATA[> end]]></Content></xml>"
    assert parse_flat(body) == {"Content": "<b>价格</b> & 'quotes' \"too\" ]]> end"}


def test_cdata_keeps_inner_newlines_and_emoji() -> None:
    body = "<xml><Content><![CDATA[第一行\n第二行 🐟\n\n第四行]]></Content></xml>".encode()
    assert parse_flat(body)["Content"] == "第一行\n第二行 🐟\n\n第四行"


def test_surrounding_whitespace_of_text_is_trimmed() -> None:
    """Current behaviour: text is .strip()ped, CDATA included (pretty-printed XML works)."""
    assert parse_flat("<xml><A>\n  1\n</A><B><![CDATA[  x  ]]></B></xml>") == {"A": "1", "B": "x"}


def test_character_references_are_decoded() -> None:
    assert parse_flat(b"<xml><A>&lt;&amp;&#20215;&#x683C;</A></xml>") == {"A": "<&价格"}


def test_attributes_are_ignored() -> None:
    assert parse_flat(b'<xml><A kind="x">1</A></xml>') == {"A": "1"}


@pytest.mark.parametrize("name", wechat_names())
def test_every_wechat_fixture_parses(name: str) -> None:
    fields = parse_flat(fixture_bytes(name))
    assert fields["ToUserName"] == ACCOUNT
    assert fields["FromUserName"] == OPENID
    assert fields["CreateTime"].isdigit()
    assert fields["MsgType"]


def _nested(depth: int) -> bytes:
    return b"<xml>" + b"<a>" * depth + b"x" + b"</a>" * depth + b"</xml>"


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 40, 1_200, 20_000])
def test_deeper_than_the_platform_nests_is_bad_xml(depth: int) -> None:
    with pytest.raises(BadXML, match="nested more than"):
        parse_flat(_nested(depth))


def test_max_depth_is_accepted() -> None:
    doc = parse_flat(_nested(MAX_DEPTH))
    for _ in range(MAX_DEPTH - 1):
        doc = doc["a"]
    assert doc == {"a": "x"}
