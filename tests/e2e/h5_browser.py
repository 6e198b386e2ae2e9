"""Fixtures for the campaign pages in a real headless Chromium (Playwright on Debian's
``chromium``): the simulator and a Yuchi app served over HTTP, whose public URL is its own
address and whose JS-SDK is the simulator's stub, and phones: 375 px, WeChat's user agent."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from bot.campaigns import actions
from bot.core.config import Settings
from wxsim.app import SimConfig
from wxsim.testing import ServerThread, SimHandle, running_simulator

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WECHAT_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) NetType/WIFI Language/zh_CN"
)
PHONE = {"width": 375, "height": 812}
SHOTS = Path("var/screenshots")


class Stack:
    """The simulator and Yuchi's address, and the JSON API with the bearer token."""

    def __init__(self, sim: SimHandle, url: str, settings: Settings) -> None:
        self.sim, self.url, self.settings = sim, url, settings
        self.auth = {"Authorization": f"Bearer {settings.api_token}"}

    def api(self, method: str, path: str, **kw: Any) -> Any:
        resp = requests.request(method, self.url + path, headers=self.auth, timeout=10, **kw)
        assert resp.status_code < 300, (path, resp.status_code, resp.text)
        return resp.json()


@pytest.fixture(scope="module")
def h5_servers(settings: Settings) -> Iterator[tuple[SimHandle, str, Any]]:
    from bot.app import create_app

    with running_simulator(SimConfig.from_settings(settings)) as sim:
        pointed = sim.point(settings)
        app = create_app(pointed)
        server = ServerThread(app)
        app.config["SETTINGS"] = pointed.replace(
            public_url=server.url, h5_jssdk_url=f"{sim.base_url}/_sim/jweixin.js"
        )
        try:
            yield sim, server.url, app
        finally:
            server.stop()


@pytest.fixture
def h5_stack(clean: Settings, h5_servers: tuple[SimHandle, str, Any]) -> Stack:
    sim, url, app = h5_servers
    sim.reset()
    actions.forget_campaigns()
    return Stack(sim, url, app.config["SETTINGS"])


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (scripts/test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def phone(chromium: Any) -> Iterator[Any]:
    """A factory of phones: each a browser context of its own (its own cookies)."""
    contexts: list[Any] = []

    def make() -> Any:
        ctx = chromium.new_context(
            viewport=PHONE, user_agent=WECHAT_UA, device_scale_factor=2, locale="zh-CN"
        )
        contexts.append(ctx)
        return ctx.new_page()

    yield make
    for ctx in contexts:
        ctx.close()


def shot(page: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"h5-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
