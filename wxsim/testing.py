"""Run the simulator inside a test: ``with running_simulator(config) as sim: …``.

The handle talks to the simulator's state directly (same process), so helpers are fast and
synchronous; the product under test talks to it over real HTTP at ``sim.base_url``.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from wxsim.actors import CallbackResult
from wxsim.app import SimConfig, Simulator, create_sim_app
from wxsim.control import env_for
from wxsim.state import SimState


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:  # no access log in tests
        pass


class ServerThread:
    """A WSGI app on a free port (``port=0``) in a daemon thread; ``stop()`` shuts it down."""

    def __init__(self, app: Flask, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server: BaseWSGIServer = make_server(
            host, port, app, threaded=True, request_handler=QuietHandler
        )
        self.url = f"http://{host}:{self.server.server_port}"
        self.thread = threading.Thread(
            target=self.server.serve_forever, name=f"wsgi-{self.server.server_port}", daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@dataclasses.dataclass
class SimHandle:
    """A running simulator, with shortcuts for tests."""

    app: Flask
    base_url: str

    @property
    def sim(self) -> Simulator:
        return self.app.extensions["wxsim"]

    @property
    def state(self) -> SimState:
        return self.sim.state

    @property
    def config(self) -> SimConfig:
        return self.sim.config

    @property
    def env(self) -> dict[str, str]:
        """WECHAT_API_BASE, WECOM_API_BASE, WECHAT_OAUTH_BASE, WECHAT_MP_BASE for Yuchi."""
        return env_for(self.base_url)

    def point(self, settings: Any) -> Any:
        """A copy of a ``bot.core.config.Settings`` whose platform URLs lead to this simulator."""
        env = self.env
        return settings.replace(
            wechat_api_base=env["WECHAT_API_BASE"],
            wecom_api_base=env["WECOM_API_BASE"],
            wechat_oauth_base=env["WECHAT_OAUTH_BASE"],
            wechat_mp_base=env["WECHAT_MP_BASE"],
            wecom_jssdk_url=env["WECOM_JSSDK_URL"],
        )

    # --- control --------------------------------------------------------------------------

    def reset(self) -> None:
        self.sim.reset()

    def configure(self, **changes: Any) -> None:
        """Change the live configuration (token_ttl, callback_mode, …) until ``reset``."""
        self.config.update(**changes)

    def faults(self, **settings: Any) -> None:
        """latency_ms, error_rate, http_500_rate, rate_limit, busy_next, apps, paths."""
        self.state.set_faults(**settings)

    def revoke_tokens(self, app: str = "oa") -> int:
        return self.state.revoke_tokens(app)

    def advance(self, seconds: float) -> None:
        """Move the platform's clock forward (token expiry, 48-hour window, codes)."""
        self.state.clock.advance(seconds)

    def token_fetches(self, app: str = "oa") -> int:
        return self.state.token_fetches.get(app, 0)

    def calls(self, app: str | None = None, path: str | None = None) -> list[dict[str, Any]]:
        with self.state.lock:
            return [
                c
                for c in self.state.calls
                if (app is None or c["app"] == app) and (path is None or path in c["path"])
            ]

    def in_flight(self, app: str | None = None, path: str | None = None) -> list[dict[str, Any]]:
        """API calls that arrived and are not answered yet (slowed by ``latency_ms``, say)."""
        with self.state.lock:
            return [
                c
                for c in self.state.in_flight.values()
                if (app is None or c["app"] == app) and (path is None or path in c["path"])
            ]

    def callbacks(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return list(self.state.callbacks)

    def set_user(self, openid: str, last_interaction_ago: float | None = None, **attrs: Any):
        """Create or change a simulated follower without any callback.
        ``last_interaction_ago``: seconds since their last interaction (opens the window)."""
        if last_interaction_ago is not None:
            attrs["last_interaction"] = self.state.now() - last_interaction_ago
        return self.state.upsert_user(openid, **attrs)

    def add_rep(self, userid: str, **attrs: Any):
        return self.state.upsert_rep(userid, **attrs)

    def browser(self, **who: str) -> None:
        """Who opens OAuth links: ``openid=…`` or ``userid=…``."""
        with self.state.lock:
            self.state.browser = {k: v for k, v in who.items() if v}

    def inbox(
        self,
        openid: str | None = None,
        *,
        external_userid: str | None = None,
        userid: str | None = None,
        kind: str | None = None,
    ) -> list[dict[str, Any]]:
        if openid:
            box = f"openid:{openid}"
        elif external_userid:
            box = f"external:{external_userid}"
        elif userid:
            box = f"rep:{userid}"
        else:
            raise ValueError("pass openid, external_userid or userid")
        items = self.state.inbox(box)
        return [i for i in items if kind is None or i["kind"] == kind]

    def jssdk_context(self, **context: str) -> None:
        """What the JS-SDK stub's getContext / getCurExternalContact answer: entry, the rep's
        userid, the customer's external_userid."""
        with self.state.lock:
            self.state.jssdk_context.update(context)

    def chat_messages(self) -> list[dict[str, Any]]:
        """What pages put into chats with ``sendChatMessage``."""
        with self.state.lock:
            return list(self.state.chat_messages)

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Poll until ``predicate()`` is truthy (for the asynchronous template callback)."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value or time.monotonic() > deadline:
                return value
            time.sleep(0.02)

    # --- simulated people -----------------------------------------------------------------

    def follow(self, openid: str, scene: str | int | None = None, **kw: Any) -> CallbackResult:
        return self.sim.actors.follow(openid, scene, **kw)

    def say(self, openid: str, text: str) -> CallbackResult:
        return self.sim.actors.say(openid, text)

    def click(self, openid: str, key: str) -> CallbackResult:
        return self.sim.actors.click(openid, key)

    def scan(self, openid: str, scene: str | int | None = None, **kw: Any) -> CallbackResult:
        return self.sim.actors.scan(openid, scene, **kw)

    def unfollow(self, openid: str) -> CallbackResult:
        return self.sim.actors.unfollow(openid)

    def add_external_contact(
        self, userid: str | None = None, external_userid: str | None = None, **kw: Any
    ) -> CallbackResult:
        return self.sim.actors.add_external_contact(userid, external_userid, **kw)

    def __getattr__(self, name: str) -> Any:
        """Other actions (view, edit_external_contact, …) straight from the actors."""
        actors = self.app.extensions["wxsim"].actors
        if hasattr(actors, name) and not name.startswith("_"):
            return getattr(actors, name)
        raise AttributeError(name)


@contextmanager
def running_simulator(
    config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> Iterator[SimHandle]:
    """Start the simulator on a free port in a background thread; stop it afterwards."""
    app = create_sim_app(config)
    server = ServerThread(app, host, port)
    try:
        yield SimHandle(app, server.url)
    finally:
        server.stop()
