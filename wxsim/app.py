"""``create_sim_app()``: the simulator's Flask app, and its configuration.

One port serves everything: the OA API at ``/cgi-bin`` and ``/sns``, OAuth at
``/connect/oauth2/authorize``, QR images at ``/mp/cgi-bin/showqrcode``, the WeCom API at
``/wecom/cgi-bin`` and the simulator's own inspection and control API at ``/_sim``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from flask import Flask

from wxsim.state import SimState

CALLBACK_MODES = ("plain", "compat", "safe")


@dataclass
class SimConfig:
    """The simulated accounts' credentials (the same values Yuchi is configured with) and the
    simulator's behaviour. Mutable on purpose: tests and ``/_sim/config`` adjust it live."""

    oa_appid: str = "wxdevappid0000000"
    oa_secret: str = "dev-oa-secret"
    oa_token: str = "devtoken"
    oa_aes_key: str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
    oa_account: str = "gh_0123456789ab"  # the account's original id (ToUserName)
    wecom_corp_id: str = "wwdevcorp00000001"
    wecom_agent_id: int = 1000002
    wecom_secret: str = "dev-wecom-secret"
    wecom_token: str = "devwecomtoken"
    wecom_aes_key: str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopq"
    callback_base: str | None = None  # where Yuchi listens, e.g. http://127.0.0.1:8000
    callback_mode: str = "safe"  # plain | compat | safe (OA); WeCom is always encrypted
    callback_timeout: float = 5.0  # WeChat gives up after 5 s ...
    callback_tries: int = 3  # ... and tries 3 times in all
    token_ttl: int = 7200
    token_overlap: int = 300  # OA: the previous token stays valid this long after a new fetch
    welcome_code_ttl: int = 20
    oauth_code_ttl: int = 300
    transfer_wait: int = 24 * 3600  # a transferred customer has this long to refuse
    customer_limit: int = 50_000  # external contacts a rep may have (transfers past it fail)
    template_callback_delay: float = 0.05  # seconds before TEMPLATESENDJOBFINISH is sent
    mass_callback_delay: float = 0.05  # seconds before MASSSENDJOBFINISH is sent
    mass_per_user_month: int = 4  # service account: mass messages a follower receives a month
    mass_daily_calls: int = 100  # service account: mass-send API calls a day
    mass_status: str = "send success"  # what MASSSENDJOBFINISH reports (or "err(10001)", …)
    seed: int = 0

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> SimConfig:
        """From a ``bot.core.config.Settings`` (the same values the server uses)."""
        base = cls(
            oa_appid=settings.oa_appid,
            oa_secret=settings.oa_secret,
            oa_token=settings.oa_token,
            oa_aes_key=settings.oa_aes_key,
            wecom_corp_id=settings.wecom_corp_id or cls.wecom_corp_id,
            wecom_agent_id=settings.wecom_agent_id or cls.wecom_agent_id,
            wecom_secret=settings.wecom_secret or cls.wecom_secret,
            wecom_token=settings.wecom_token or cls.wecom_token,
            wecom_aes_key=settings.wecom_aes_key or cls.wecom_aes_key,
        )
        return replace(base, **overrides)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> SimConfig:
        """From the environment, read exactly as the server reads it (``load_settings``)."""
        from bot.core.config import load_settings

        env = dict(os.environ if environ is None else environ)
        return cls.from_settings(load_settings(env), **overrides)

    def update(self, **changes: Any) -> None:
        names = {f.name for f in fields(self)}
        unknown = set(changes) - names
        if unknown:
            raise ValueError(f"unknown config setting(s): {', '.join(sorted(unknown))}")
        if changes.get("callback_mode", self.callback_mode) not in CALLBACK_MODES:
            raise ValueError(f"callback_mode must be one of {', '.join(CALLBACK_MODES)}")
        for key, value in changes.items():
            setattr(self, key, value)

    def public(self) -> dict[str, Any]:
        """The settings without secrets (for ``GET /_sim/config``)."""
        hidden = {"oa_secret", "oa_aes_key", "oa_token", "wecom_secret", "wecom_token"}
        hidden.add("wecom_aes_key")
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in hidden}


class Simulator:
    """The running simulator: configuration, state and the simulated people."""

    def __init__(self, config: SimConfig) -> None:
        from wxsim.actors import Actors

        self.config = config
        self.defaults = replace(config)
        self.state = SimState(config)
        self.actors = Actors(config, self.state)

    def reset(self) -> None:
        """Forget everything and restore the configuration the simulator started with."""
        self.config.update(**{f.name: getattr(self.defaults, f.name) for f in fields(SimConfig)})
        self.state.reset()


def create_sim_app(config: SimConfig | None = None) -> Flask:
    from wxsim import control, mass_api, oa_api, oauth, transfer_api, wecom_api

    app = Flask(__name__, static_folder=None)
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    app.extensions["wxsim"] = Simulator(config or SimConfig())
    app.register_blueprint(oa_api.bp)
    app.register_blueprint(mass_api.bp)
    app.register_blueprint(oauth.bp)
    app.register_blueprint(wecom_api.bp, url_prefix="/wecom")
    app.register_blueprint(transfer_api.bp, url_prefix="/wecom")
    app.register_blueprint(control.bp, url_prefix="/_sim")
    return app


def simulator(app: Flask) -> Simulator:
    return app.extensions["wxsim"]
