"""bot.replies.rules.ReplyRuleIn validation and parse_yaml (pure: no database)."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
from pydantic import ValidationError

from bot.replies.rules import Article, ReplyRuleIn, RuleImportError, parse_yaml


def rule(**overrides: Any) -> dict[str, Any]:
    return {"name": "价格咨询", "keywords": ["价格"], "reply": "价格表见菜单"} | overrides


def errors(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as info:
        ReplyRuleIn.model_validate(data)
    return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in info.value.errors()]


def problems(source: str) -> list[str]:
    with pytest.raises(RuleImportError) as info:
        parse_yaml(textwrap.dedent(source))
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


# --- ReplyRuleIn --------------------------------------------------------------------------


def test_minimal_keyword_rule_and_defaults() -> None:
    r = ReplyRuleIn.model_validate(rule())
    assert r.trigger == "keyword"
    assert r.match == "jieba"
    assert r.keywords == ["价格"]
    assert r.priority == 0
    assert r.enabled is True
    assert r.tags == [] and r.news is None and r.click_key is None


@pytest.mark.parametrize("keywords", [[], ["", "   "], ["\t"]])
def test_keyword_rule_needs_keywords(keywords: list[str]) -> None:
    found = errors(rule(keywords=keywords))
    assert any("keywords: a keyword rule needs at least one keyword" in e for e in found)


def test_keyword_rule_without_keywords_field() -> None:
    data = rule()
    del data["keywords"]
    assert any("at least one keyword" in e for e in errors(data))


def test_keywords_are_trimmed_and_blanks_dropped() -> None:
    r = ReplyRuleIn.model_validate(rule(keywords=["  价格 ", " ", "报价"]))
    assert r.keywords == ["价格", "报价"]


def test_too_many_keywords() -> None:
    assert any(
        e.startswith("keywords:") for e in errors(rule(keywords=[f"k{i}" for i in range(51)]))
    )
    assert (
        len(ReplyRuleIn.model_validate(rule(keywords=[f"k{i}" for i in range(50)])).keywords) == 50
    )


def test_click_rule_needs_click_key() -> None:
    found = errors({"name": "菜单", "trigger": "click", "reply": "hi"})
    assert any("click_key: a click rule needs the menu key" in e for e in found)


@pytest.mark.parametrize("key", ["", "   "])
def test_click_key_blank_is_rejected(key: str) -> None:
    found = errors({"name": "菜单", "trigger": "click", "click_key": key, "reply": "hi"})
    assert any(e.startswith("click_key:") for e in found)


def test_click_key_too_long() -> None:
    found = errors({"name": "菜单", "trigger": "click", "click_key": "K" * 129, "reply": "hi"})
    assert any(e.startswith("click_key:") for e in found)


def test_click_rule_needs_no_keywords() -> None:
    r = ReplyRuleIn.model_validate(
        {"name": "菜单", "trigger": "click", "click_key": "MENU_PRICE", "reply": "hi"}
    )
    assert r.click_key == "MENU_PRICE" and r.keywords == []


def test_subscribe_rule_needs_no_keywords() -> None:
    r = ReplyRuleIn.model_validate({"name": "欢迎语", "trigger": "subscribe", "reply": "欢迎关注"})
    assert r.trigger == "subscribe"


def test_reply_xor_news() -> None:
    data = rule(news={"title": "价格表", "url": "https://example.com/p"})
    assert any("either reply (text) or news, not both" in e for e in errors(data))


def test_news_alone_is_fine() -> None:
    data = rule(reply=None, news={"title": "价格表", "url": "https://example.com/p"})
    r = ReplyRuleIn.model_validate(data)
    assert r.news is not None and r.news.title == "价格表"


def test_rule_needs_something_to_do() -> None:
    data = rule()
    del data["reply"]
    assert any("a rule needs a reply, a news article or tags" in e for e in errors(data))


def test_tags_alone_are_something_to_do() -> None:
    data = rule(tags=["询价"])
    del data["reply"]
    assert ReplyRuleIn.model_validate(data).tags == ["询价"]


@pytest.mark.parametrize("reply", ["", "   "])
def test_blank_reply_is_rejected(reply: str) -> None:
    assert any(e.startswith("reply:") for e in errors(rule(reply=reply)))


def test_reply_too_long() -> None:
    assert any(e.startswith("reply:") for e in errors(rule(reply="字" * 2001)))
    assert ReplyRuleIn.model_validate(rule(reply="字" * 2000)).reply == "字" * 2000


@pytest.mark.parametrize("tag", ["", "   ", "x" * 31, "标" * 31])
def test_bad_tag_lengths(tag: str) -> None:
    """The platform takes tag names of 1 to 30 characters."""
    found = errors(rule(tags=[tag]))
    assert any("tags:" in e and ("1 to 30" in e or "longer than 30" in e) for e in found)


@pytest.mark.parametrize("tag", ["\u202eVIP", "V\u200bIP", "<script>", "a\x00b", "a\u2028b"])
def test_unfit_tag_names(tag: str) -> None:
    assert any("tags:" in e for e in errors(rule(tags=[tag])))


@pytest.mark.parametrize("tag", ["x", "x" * 30, "标" * 30, "  VIP  ", "意向:价格"])
def test_good_tag_lengths(tag: str) -> None:
    assert ReplyRuleIn.model_validate(rule(tags=[tag])).tags == [tag.strip()]


def test_too_many_tags() -> None:
    assert any(e.startswith("tags:") for e in errors(rule(tags=[f"t{i}" for i in range(21)])))


@pytest.mark.parametrize("name", ["", "   ", "名" * 101])
def test_bad_names(name: str) -> None:
    assert any(e.startswith("name:") for e in errors(rule(name=name)))


def test_name_is_trimmed() -> None:
    assert ReplyRuleIn.model_validate(rule(name="  价格咨询  ")).name == "价格咨询"


@pytest.mark.parametrize(
    ("field", "value"),
    [("trigger", "scan"), ("match", "regex"), ("priority", 1001), ("priority", -1001)],
)
def test_enumerations_and_ranges(field: str, value: Any) -> None:
    assert any(e.startswith(f"{field}:") for e in errors(rule(**{field: value})))


@pytest.mark.parametrize("field", ["colour", "reply_type", "id", "Keywords"])
def test_extra_fields_are_forbidden(field: str) -> None:
    assert any(
        e == f"{field}: Extra inputs are not permitted" for e in errors(rule(**{field: "x"}))
    )


def test_extra_fields_in_news_are_forbidden() -> None:
    data = rule(reply=None, news={"title": "t", "url": "https://example.com", "pic": "x"})
    assert any(e.startswith("news.pic:") for e in errors(data))


@pytest.mark.parametrize(
    "news",
    [
        {"title": "", "url": "https://example.com"},
        {"title": "t" * 65, "url": "https://example.com"},
        {"title": "t", "url": "not a url"},
        {"title": "t", "url": "https://example.com", "image": "ftp://example.com/a.png"},
        {"title": "t"},
    ],
)
def test_bad_news(news: dict[str, Any]) -> None:
    assert any(e.startswith("news.") for e in errors(rule(reply=None, news=news)))


def test_columns_of_a_text_keyword_rule() -> None:
    r = ReplyRuleIn.model_validate(
        rule(click_key="IGNORED", tags=["询价"], priority=5, match="exact", enabled=False)
    )
    assert r.columns() == {
        "name": "价格咨询",
        "trigger": "keyword",
        "match": "exact",
        "keywords": ["价格"],
        "click_key": None,
        "reply_type": "text",
        "reply": {"content": "价格表见菜单"},
        "tags": ["询价"],
        "priority": 5,
        "enabled": False,
    }


def test_columns_of_a_news_click_rule() -> None:
    r = ReplyRuleIn.model_validate(
        {
            "name": "联系我们",
            "trigger": "click",
            "click_key": "MENU_CONTACT",
            "keywords": ["ignored"],
            "news": {"title": "联系我们", "url": "https://example.com/contact"},
        }
    )
    cols = r.columns()
    assert cols["reply_type"] == "news"
    assert cols["reply"] == {
        "title": "联系我们",
        "description": "",
        "url": "https://example.com/contact",
        "image": None,
    }
    assert cols["keywords"] == [] and cols["click_key"] == "MENU_CONTACT"


def test_columns_of_a_tags_only_rule() -> None:
    data = rule(tags=["询价"])
    del data["reply"]
    cols = ReplyRuleIn.model_validate(data).columns()
    assert cols["reply_type"] == "text" and cols["reply"] == {}


def test_article_model() -> None:
    a = Article(title="标题", url="https://example.com/a")
    assert a.description == "" and a.image is None


# --- parse_yaml ---------------------------------------------------------------------------

VALID = """\
# 鱼池自动回复
replies:
  - name: 价格咨询
    keywords: [价格, 报价, 多少钱]
    reply: |
      您好！价格表请见菜单「产品」→「价格」。
      如需报价请留言。
    tags: [询价]
    priority: 10

  - name: 精确问候
    match: exact
    keywords:
      - 你好
      - Hello
    reply: 你好，我是鱼池小助手 🐟

  - name: 欢迎语
    trigger: subscribe
    reply: 欢迎关注鱼池！回复「价格」查看价格表。
    tags: [新关注]

  - name: 菜单-联系我们
    trigger: click
    click_key: MENU_CONTACT
    news:
      title: 联系我们
      description: 工作日 9:00-18:00
      url: https://example.com/contact
      image: https://example.com/contact.png

  - name: 只打标签
    match: contains
    keywords: [退款]
    tags: [售后, 退款]
    enabled: false
"""


def test_valid_file_with_chinese_rules() -> None:
    rules = parse_yaml(VALID)
    assert [r.name for r in rules] == [
        "价格咨询",
        "精确问候",
        "欢迎语",
        "菜单-联系我们",
        "只打标签",
    ]
    price, hello, welcome, contact, refund = rules
    assert price.keywords == ["价格", "报价", "多少钱"]
    assert price.reply == "您好！价格表请见菜单「产品」→「价格」。\n如需报价请留言。"
    assert price.tags == ["询价"] and price.priority == 10
    assert hello.match == "exact" and hello.keywords == ["你好", "Hello"]
    assert hello.reply == "你好，我是鱼池小助手 🐟"
    assert welcome.trigger == "subscribe"
    assert contact.trigger == "click" and contact.click_key == "MENU_CONTACT"
    assert contact.news is not None and contact.news.description == "工作日 9:00-18:00"
    assert str(contact.news.url) == "https://example.com/contact"
    assert refund.match == "contains" and refund.enabled is False and refund.reply is None


def test_empty_replies_list_is_valid() -> None:
    assert parse_yaml("replies: []\n") == []


@pytest.mark.parametrize(
    "source",
    ["replies: [\n", "replies:\n  - name: a\n   keywords: [x]\n", "replies: {a: [}\n", "\tx: :"],
    ids=["unclosed-flow", "bad-indent", "bad-mapping", "tab"],
)
def test_invalid_yaml(source: str) -> None:
    found = problems(source)
    assert len(found) == 1 and found[0].startswith("not valid YAML:")


@pytest.mark.parametrize(
    "source",
    [
        "",
        "# only a comment\n",
        "rules: []\n",
        "replies:\n",
        "replies: 3\n",
        "replies: {a: 1}\n",
        "- name: a\n",
        "just text\n",
    ],
    ids=["empty", "comment", "wrong-key", "null", "number", "mapping", "top-list", "scalar"],
)
def test_missing_replies_list(source: str) -> None:
    assert problems(source) == ["the file must have a top-level 'replies:' list"]


def test_several_invalid_items_reported_together_with_their_index() -> None:
    found = problems(
        """\
        replies:
          - name: 好的规则
            keywords: [价格]
            reply: ok
          - name: 没有关键词
            keywords: []
            reply: x
          - name: 另一个好规则
            trigger: subscribe
            reply: 欢迎
          - name: 菜单
            trigger: click
            reply: hi
          - 只是一个字符串
          - name: 多余字段
            keywords: [a]
            reply: x
            colour: red
        """
    )
    assert len(found) == 4
    # The index is 1-based: the first item is replies[1].
    assert found[0].startswith("replies[2] rule:") and "at least one keyword" in found[0]
    assert found[1].startswith("replies[4] rule:") and "click_key" in found[1]
    assert found[2].startswith("replies[5] rule:") and "valid dictionary" in found[2]
    assert found[3] == "replies[6] colour: Extra inputs are not permitted"
    assert not any(p.startswith(("replies[1]", "replies[3]")) for p in found)


def test_field_errors_name_the_field() -> None:
    found = problems(
        """\
        replies:
          - name: 太长的标签
            keywords: [x]
            reply: x
            priority: 5000
            news:
              title: t
              url: nope
        """
    )
    assert any(p.startswith("replies[1] priority:") for p in found)
    assert any(p.startswith("replies[1] news.url:") for p in found)


def test_duplicate_names() -> None:
    found = problems(
        """\
        replies:
          - name: 欢迎语
            trigger: subscribe
            reply: 一
          - name: 价格
            keywords: [价格]
            reply: 二
          - name: 欢迎语
            trigger: subscribe
            reply: 三
          - name: " 价格 "
            keywords: [报价]
            reply: 四
        """
    )
    assert found == ["name '价格' appears more than once", "name '欢迎语' appears more than once"]


def test_invalid_items_and_duplicates_reported_together() -> None:
    found = problems(
        """\
        replies:
          - {name: a, keywords: [x], reply: r}
          - {name: a, keywords: [y], reply: r}
          - {name: b, reply: r}
        """
    )
    assert found == [
        "replies[3] rule: Value error, keywords: a keyword rule needs at least one keyword",
        "name 'a' appears more than once",
    ]


def test_yaml_python_tags_are_not_executed() -> None:
    found = problems("replies: !!python/object/apply:os.system ['echo pwned']\n")
    assert found[0].startswith("not valid YAML:")


def test_numeric_yaml_keywords_are_text() -> None:
    [rule] = parse_yaml(
        "replies:\n  - name: 大促\n    keywords: [618, 双11]\n    reply: 活动进行中\n"
    )
    assert rule.keywords == ["618", "双11"]
