"""Where a journey webhook may go, judged without the network: the allow-list, the address
classes refused, and the journey validation that uses them."""

from __future__ import annotations

import pytest

import journeys
from bot.core.config import ConfigError, load_settings
from journeys.webhook_urls import NOTHING, Allow, url_refusal

REFUSED = [
    ("http://127.0.0.1:8080/hook", "loopback"),
    ("http://127.9.9.9/hook", "loopback"),
    ("http://[::1]/hook", "loopback"),
    ("http://[::ffff:127.0.0.1]/hook", "loopback"),
    ("http://10.1.2.3/hook", "private"),
    ("http://192.168.1.1/hook", "private"),
    ("http://172.16.0.1/hook", "private"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[fe80::1]/hook", "link-local"),
    ("http://224.0.0.1/hook", "multicast"),
    ("http://[ff02::1]/hook", "multicast"),
    ("http://240.0.0.1/hook", "reserved"),
    ("http://0.0.0.0/hook", "unspecified"),
    ("http://100.64.0.1/hook", "not a public address"),
    ("http://localhost:8080/hook", "loopback host name"),
    ("http://LOCALHOST./hook", "loopback host name"),
    ("http://hooks.localhost/hook", "loopback host name"),
    ("ftp://example.com/hook", "https:// or http://"),
    ("https://user:pw@example.com/hook", "no user name or password"),
    ("https:///hook", "no host"),
    ("https://example.com:99999/hook", "Port out of range"),
]


@pytest.mark.parametrize(("url", "why"), REFUSED)
def test_non_public_addresses_are_refused(url: str, why: str) -> None:
    refusal = url_refusal(url, NOTHING)
    assert refusal is not None and why in refusal


@pytest.mark.parametrize(
    "url",
    ["https://hooks.example.com/in", "http://93.184.216.34:8080/x", "https://[2606:4700::1]/"],
)
def test_public_urls_pass(url: str) -> None:
    assert url_refusal(url, NOTHING) is None


def test_the_allow_list_names_addresses_networks_and_hosts() -> None:
    allow = Allow.parse(["127.0.0.1", " 10.0.0.0/8", "Hooks.Internal", "::1", ""])
    assert url_refusal("http://127.0.0.1:9000/hook", allow) is None
    assert url_refusal("http://10.200.1.1/hook", allow) is None
    assert url_refusal("http://[::1]/hook", allow) is None
    assert url_refusal("http://hooks.internal/hook", allow) is None
    assert "loopback" in (url_refusal("http://127.0.0.2/hook", allow) or "")
    assert "private" in (url_refusal("http://192.168.0.1/hook", allow) or "")
    assert "loopback" in (url_refusal("http://localhost/hook", allow) or "")
    with pytest.raises(ValueError, match="not an address"):
        Allow.parse(["10.0.0.0/8", "not a host!"])


def test_the_setting_is_checked_at_start_up() -> None:
    env = {"YUCHI_WEBHOOK_ALLOW": "127.0.0.1,hooks.internal"}
    allow = load_settings(env).webhook_allow
    assert allow.names_host("hooks.internal") and str(allow) == "127.0.0.1/32,hooks.internal"
    with pytest.raises(ConfigError, match="YUCHI_WEBHOOK_ALLOW"):
        load_settings({"YUCHI_WEBHOOK_ALLOW": "10.0.0.0/33"})


def _with_hook(url: str) -> dict:
    return {
        "id": "j",
        "name": "j",
        "steps": [
            {"id": "start", "type": "trigger", "event": "oa.subscribe", "next": "post"},
            {"id": "post", "type": "action", "do": "webhook", "url": url},
        ],
    }


@pytest.mark.parametrize(("url", "why"), REFUSED[:17])
def test_validation_refuses_the_url(url: str, why: str) -> None:
    problems = journeys.validate(_with_hook(url), webhook_allow=NOTHING)
    assert [(p.step, p.field) for p in problems] == [("post", "url")]
    assert why in problems[0].message


def test_validation_checks_addresses_and_endpoints_only_when_asked() -> None:
    loopback = _with_hook("http://127.0.0.1:9000/hook")
    assert journeys.validate(loopback) == []
    assert journeys.validate(loopback, webhook_allow=Allow.parse(["127.0.0.1"])) == []
    public = _with_hook("https://hooks.example.com/in")
    assert journeys.validate(public, known_webhooks={"https://hooks.example.com/in"}) == []
    (problem,) = journeys.validate(public, known_webhooks={"https://hooks.example.com/other"})
    assert problem.field == "url" and "no webhook endpoint is registered" in problem.message
