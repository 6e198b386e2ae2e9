"""Generated hostile input (Hypothesis) at every /api/ route, taken from ``app.url_map`` so a
new route is covered without editing this file, and at both callbacks: never a 500, and a 4xx
adds no row to any table. Derandomized, so CI sees the same cases every run."""

from __future__ import annotations

import json
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import event, post, row_counts

from wxsim.callbacks import OAPlatform, WeComPlatform, xml_fields

FUZZ = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
CALLBACK_FUZZ = settings(FUZZ, max_examples=60)

HOSTILE_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "a\x00b",
        "\u202e",
        "\u200b",
        "<script>",
        "\ud800",
        "x" * 300,
        "1",
        "true",
        "-1",
        "0",
        str(2**63),
        str(2**64),
        "1e309",
        "NaN",
        "../..",
        "%00",
        "价格",
        "null",
    ]
)
TEXT = st.one_of(HOSTILE_TEXT, st.text(max_size=40))
INTS = st.one_of(
    st.sampled_from([0, -1, 1, 2, 2**31, 2**63 - 1, 2**63, 2**64, -(2**63) - 1]),
    st.integers(min_value=-(2**70), max_value=2**70),
)
SCALARS = st.one_of(st.none(), st.booleans(), INTS, st.floats(allow_nan=False), TEXT)
KEYS = st.one_of(
    st.sampled_from(
        [
            "name",
            "tag",
            "tags",
            "add_tags",
            "remove_tags",
            "words",
            "contact_id",
            "contact_ids",
            "kind",
            "payload",
            "content",
            "keywords",
            "reply",
            "event_type",
            "conditions",
            "audience",
            "definition",
            "steps",
            "id",
            "library",
            "reps",
            "state",
            "userid",
            "capacity",
            "active",
            "role",
            "team",
            "stage",
            "days",
            "until",
            "replies",
            "to",
            "note",
            "events",
            "version",
            "trigger",
        ]
    ),
    TEXT,
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=5)),
    max_leaves=12,
)
RAW_BODIES = st.one_of(
    st.just(b"[" * 5000 + b"]" * 5000),
    st.just(b'{"a":' * 50 + b"1" + b"}" * 50),
    st.just(b"\xff\xfe{"),
    st.just(b'{"name": "\\u0000"}'),
    st.just(b'{"x": NaN}'),
    st.binary(max_size=60),
)
QUERY = st.dictionaries(
    st.sampled_from(["before", "limit", "openid", "unionid", "status", "owner", "version", "name"]),
    TEXT,
    max_size=3,
)


def _routes(app) -> list[tuple[str, str, tuple[tuple[str, bool], ...]]]:
    """(method, rule, ((argument, is an id), ...)) for every /api/ route."""
    return sorted(
        (
            method,
            rule.rule,
            tuple((a, c.__class__.__name__ == "IdConverter") for a, c in rule._converters.items()),
        )
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    )


def _bytes(text: str) -> bytes:
    """UTF-8, lone surrogates included: the bytes a hostile client can send."""
    return text.encode("utf-8", "surrogatepass")


def _query(pairs: dict[str, str]) -> str:
    return urlencode({k: _bytes(v) for k, v in pairs.items()})


@st.composite
def api_requests(draw, routes: list, known_ids: list[int]):
    method, rule, arguments = draw(st.sampled_from(routes))
    values = {}
    for name, is_id in arguments:
        if is_id:
            values[name] = str(draw(st.one_of(st.sampled_from(known_ids), INTS)))
        else:
            values[name] = draw(st.one_of(st.sampled_from(["publish", "u1", "VIP"]), TEXT))
    path = rule
    for name, value in values.items():
        for prefix in ("id:", "path:", ""):
            path = path.replace(f"<{prefix}{name}>", quote(_bytes(value), safe=""))
    query = draw(QUERY)
    url = path + ("?" + _query(query) if query else "")
    kind = draw(st.sampled_from(["json", "json", "raw", "yaml", "none"]))
    if kind == "json":
        return (
            method,
            url,
            _bytes(json.dumps(draw(JSON), ensure_ascii=draw(st.booleans()))),
            "application/json",
        )
    if kind == "raw":
        return method, url, draw(RAW_BODIES), "application/json"
    if kind == "yaml":
        text = draw(
            st.sampled_from(["a: " + "[" * 3000 + "]" * 3000, "a: &a [1]\nb: *a", "x: \x00"])
        )
        return method, url, _bytes(text), "application/yaml"
    return method, url, b"", None


@pytest.fixture
def seeded(sim_client, oa, auth) -> list[int]:
    """Rows for generated ids to find: a contact, a reply rule, a tag rule, a journey."""
    post(sim_client, oa, event(oa, "oFuzz", "subscribe"))
    ids = [
        sim_client.get("/api/contacts?openid=oFuzz", headers=auth).get_json()["contacts"][0]["id"]
    ]
    for url, body in (
        ("/api/replies", {"name": "r", "keywords": ["价格"], "reply": "A"}),
        ("/api/tag-rules", {"name": "t", "event_type": "*", "add_tags": ["VIP"]}),
        ("/api/journeys", {"library": "welcome_series"}),
    ):
        resp = sim_client.post(url, json=body, headers=auth)
        if resp.status_code == 201:
            ids.append(resp.get_json()["id"])
    return sorted(set(ids + [1]))


def _check(client, clean, method, url, body, content_type, headers) -> None:
    before = row_counts(clean)
    resp = client.open(url, method=method, data=body, content_type=content_type, headers=headers)
    assert resp.status_code < 500, (method, url, body[:200], resp.get_data(as_text=True)[:500])
    if 400 <= resp.status_code < 500:
        assert row_counts(clean) == before, (method, url, body[:200], resp.status_code)


def test_every_api_route(sim_client, sim_settings, clean, auth, seeded):
    routes = _routes(sim_client.application)
    assert len(routes) >= 40

    @FUZZ
    @given(api_requests(routes, seeded))
    def run(request):
        method, url, body, content_type = request
        _check(sim_client, clean, method, url, body, content_type, auth)

    run()


XML_VALUES = st.one_of(TEXT, INTS.map(str))
OA_FIELDS = st.fixed_dictionaries(
    {
        "MsgType": st.sampled_from(["text", "event", "image", "location", "link", "bogus", ""]),
        "Event": st.sampled_from(["subscribe", "unsubscribe", "CLICK", "SCAN", "VIEW", "x"]),
        "Content": XML_VALUES,
        "MsgId": XML_VALUES,
        "CreateTime": XML_VALUES,
        "FromUserName": st.one_of(st.just("oFuzz"), XML_VALUES),
        "EventKey": XML_VALUES,
    }
)
CALLBACK_QUERY = st.dictionaries(
    st.sampled_from(
        ["signature", "timestamp", "nonce", "echostr", "msg_signature", "encrypt_type", "openid"]
    ),
    TEXT,
    max_size=5,
)


def _xml(fields: dict) -> str:
    """The XML with any lone surrogate replaced: a signed body is UTF-8 and cannot hold one."""
    return xml_fields(fields).encode("utf-8", "replace").decode()


@st.composite
def callback_requests(draw):
    """(how, fields, mode, nonce, extra query, raw body); signing happens in the test, since
    encryption draws random bytes of its own."""
    how = draw(st.sampled_from(["signed", "signed", "unsigned", "tampered"]))
    fields = draw(OA_FIELDS)
    mode = draw(st.sampled_from(["safe", "plain", "compat"]))
    nonce = draw(st.text("abcdef0123456789", min_size=1, max_size=16))
    extra = draw(CALLBACK_QUERY) if how != "signed" else {}
    raw = draw(st.one_of(RAW_BODIES, st.just(_bytes(_xml(fields))))) if how == "unsigned" else b""
    return how, fields, mode, nonce, extra, raw


def _callback_case(client, clean, path, sign, case) -> None:
    how, fields, mode, nonce, extra, raw = case
    if how == "unsigned":
        query, body = extra, raw
    else:
        req = sign(_xml(fields), mode, nonce)
        query, body = {**req.query, **extra}, req.body
    before = row_counts(clean)
    resp = client.post(f"{path}?{_query(query)}", data=body, content_type="text/xml")
    assert resp.status_code < 500, (query, body[:300], resp.get_data(as_text=True)[:300])
    if 400 <= resp.status_code < 500:
        assert row_counts(clean) == before, (query, body[:300], resp.status_code)


def test_oa_callback(sim_client, clean, oa: OAPlatform):
    @CALLBACK_FUZZ
    @given(callback_requests())
    def run(case):
        sign = lambda xml, mode, nonce: oa.sign(xml, mode, nonce=nonce)  # noqa: E731
        _callback_case(sim_client, clean, "/wechat/oa", sign, case)

    run()


def test_wecom_callback(sim_client, clean, settings):
    wecom = WeComPlatform(
        settings.wecom_token,
        settings.wecom_aes_key,
        settings.wecom_corp_id,
        settings.wecom_agent_id,
    )

    @CALLBACK_FUZZ
    @given(callback_requests())
    def run(case):
        sign = lambda xml, mode, nonce: wecom.sign(xml, nonce=nonce)  # noqa: E731
        _callback_case(sim_client, clean, "/wechat/wecom", sign, case)

    run()
