"""bot.messaging.links, the pure part: which links a message has, how they are rewritten,
and the signed codes (tampering, other secrets, nonsense)."""

from __future__ import annotations

from types import SimpleNamespace

from bot.messaging import links

S = SimpleNamespace(secret_key="k" * 32, public_url="https://yuchi.example.com/")
BASE = "https://yuchi.example.com/r/"


def test_codes_round_trip_and_refuse_tampering():
    code = links.code_for(S, 123456, 2)
    assert links.read_code(S, code) == (123456, 2)
    assert len(code) < 60
    body, _, sig = code.rpartition(".")
    assert links.read_code(S, f"{body}.{sig[:-1]}{'A' if sig[-1] != 'A' else 'B'}") is None
    assert links.read_code(S, f"1e241-2.{sig}") is None  # another message, same signature
    other = SimpleNamespace(secret_key="x" * 32, public_url=S.public_url)
    assert links.read_code(other, code) is None
    for junk in ("", "abc", "a.b.c", "z" * 500, "zz-1." + sig, "码-1." + sig, f"+{code}"):
        assert links.read_code(S, junk) is None


def test_a_code_is_refused_when_only_the_unused_bits_of_its_last_character_change():
    """A 32-byte signature is 43 base64 characters, the last carrying 2 bits the decoder
    ignores: flipped, the signature decodes the same, and must still be refused."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for message_id in range(1, 40):
        code = links.code_for(S, message_id, 0)
        twin = code[:-1] + alphabet[alphabet.index(code[-1]) ^ 1]
        assert links.read_code(S, code) == (message_id, 0)
        assert links.read_code(S, twin) is None


def test_text_links_are_found_without_the_chinese_punctuation_around_them():
    text = "看这里https://a.example.com/p?x=1&y=2，还有 http://b.example.com/q。最后 https://c.example.com/r."
    assert links.links_in("text", {"content": text}) == [
        "https://a.example.com/p?x=1&y=2",
        "http://b.example.com/q",
        "https://c.example.com/r",
    ]
    out = links.rewrite(S, 9, "text", {"content": text})["content"]
    assert out.startswith("看这里" + BASE)
    assert out.count(BASE) == 3 and "a.example.com" not in out
    assert out.endswith(".")  # the sentence's full stop stays after the link
    codes = [u.removeprefix(BASE) for u in links.URL.findall(out)]
    assert [links.read_code(S, c.rstrip(".")) for c in codes] == [(9, 0), (9, 1), (9, 2)]


def test_other_kinds_and_offsets():
    news = {"title": "t", "url": "https://e.com/n", "picurl": "https://e.com/p.jpg"}
    out = links.rewrite(S, 5, "news", news)
    assert out["url"].startswith(BASE) and out["picurl"] == news["picurl"]  # only the link
    assert news["url"] == "https://e.com/n"  # the stored payload is left alone
    tpl = links.rewrite(S, 5, "template", {"template_id": "T", "data": {}, "url": "https://e"}, 3)
    assert links.read_code(S, tpl["url"].removeprefix(BASE)) == (5, 3)
    assert links.rewrite(S, 5, "image", {"media_id": "m"}) == {"media_id": "m"}
    plain = {"content": "没有链接"}
    assert links.rewrite(S, 5, "text", plain) is plain
    # a link that is already one of ours is not wrapped twice
    ours = {"content": f"见 {BASE}abc"}
    assert links.rewrite(S, 5, "text", ours)["content"] == ours["content"]


def test_a_text_that_would_grow_too_long_goes_untracked():
    text = "链接 https://e.com/a " * 100  # 100 links: tracked, far beyond 2,048 characters
    assert links.rewrite(S, 1, "text", {"content": text[:2000]})["content"] == text[:2000]
    short = {"content": "链接 https://e.com/a"}
    assert links.rewrite(S, 1, "text", short)["content"].startswith("链接 " + BASE)
