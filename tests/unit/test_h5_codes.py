"""Signed campaign tokens, QR scenes, the form checks and the body's allow-list (pure)."""

from __future__ import annotations

import time

from bot.campaigns import codes, forms
from bot.campaigns.spec import sanitize

SECRET = "unit-secret"


def test_referral_codes_round_trip_and_refuse_tampering():
    emp = codes.Sharer(3, userid="zhangsan")
    cust = codes.Sharer(3, contact_id=42)
    for sharer in (emp, cust):
        assert codes.read_referral(SECRET, codes.referral_code(SECRET, sharer)) == sharer
    code = codes.referral_code(SECRET, emp)
    body, mac = code.split(".")
    other = codes.referral_code(SECRET, codes.Sharer(4, userid="zhangsan")).split(".")[0]
    assert codes.read_referral(SECRET, f"{other}.{mac}") is None  # a body swapped in
    assert codes.read_referral("other-secret", code) is None
    assert codes.read_referral(SECRET, code + "x") is None
    assert codes.read_referral(SECRET, "") is None and codes.read_referral(SECRET, "a.b.c") is None
    # A valid signature for another purpose is not a referral code.
    assert codes.read_referral(SECRET, codes.sign(SECRET, "download", {"c": 3, "u": "x"})) is None


def test_expiring_tokens():
    token = codes.sign(SECRET, "t", {"exp": int(time.time()) + 10})
    assert codes.unsign(SECRET, "t", token) is not None
    assert codes.unsign(SECRET, "t", token, now=time.time() + 11) is None


def test_scenes_fit_64_characters_and_verify():
    sharer = codes.Sharer(12345, userid="zhangsan.li")
    scene = codes.scene(SECRET, sharer)
    assert len(scene) <= 64 and codes.read_scene(SECRET, scene) == sharer
    assert codes.read_scene(SECRET, scene.replace("12345", "12346")) is None
    assert codes.read_scene(SECRET, "h5.1.uzhangsan.AAAAAAAAAAAAAAAA") is None
    assert codes.read_scene(SECRET, "spring_fair") is None


def test_form_checks():
    fields = [
        {"name": "name", "label": "姓名", "required": True},
        {"name": "phone", "label": "手机号", "required": True},
        {"name": "q_a", "label": "规模", "type": "single", "options": ["小", "大"]},
        {"name": "q_b", "label": "关注", "type": "multiple", "options": ["甲", "乙"]},
    ]
    clean, errors = forms.check(
        fields, {"name": [" 王 "], "phone": ["+86 139-1234-5678"], "q_b": ["甲", "乙"]}
    )
    assert errors == {} and clean == {"name": "王", "phone": "13912345678", "q_b": ["甲", "乙"]}
    _, errors = forms.check(fields, {"phone": ["1391234567"], "q_a": ["中"], "q_b": ["丙"]})
    assert set(errors) == {"name", "phone", "q_a", "q_b"}
    assert forms.check(fields, {"name": ["王"], "phone": ["12912345678"]})[1] == {
        "phone": "请输入11位中国大陆手机号"
    }


def test_body_allow_list():
    html = sanitize(
        '<p onclick="x()">好<script>alert(1)</script><a href="javascript:alert(1)">a</a>'
        '<img src="https://x/y.png" onerror="z()"><iframe src="https://x"></iframe></p>'
    )
    assert "script" not in html and "onclick" not in html and "onerror" not in html
    assert (
        "javascript" not in html and "iframe" not in html and '<img src="https://x/y.png">' in html
    )
