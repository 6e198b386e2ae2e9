"""The simulator fixtures: ``sim`` (a running wxsim, reset for every test), ``yuchi_server``
(the base URL of a real Yuchi app served over HTTP that the simulator's callbacks reach) and
``sim_settings`` (Yuchi's settings pointed at the simulator, for clients under test).

Both servers start once per session, each in a thread on a free port; every test starts from
an empty database and queue (``clean``) and a fresh simulator (``sim.reset()``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from bot.core.config import Settings
from wxsim.app import SimConfig
from wxsim.testing import ServerThread, SimHandle, running_simulator


@pytest.fixture(scope="session")
def _sim_stack(settings: Settings) -> Iterator[tuple[SimHandle, str, Settings, object]]:
    from bot.app import create_app

    with running_simulator(SimConfig.from_settings(settings)) as handle:
        yuchi_settings = handle.point(settings)
        app = create_app(yuchi_settings)
        app.config["TESTING"] = True
        yuchi = ServerThread(app)
        handle.sim.defaults.callback_base = yuchi.url  # survives sim.reset()
        handle.configure(callback_base=yuchi.url)
        try:
            yield handle, yuchi.url, yuchi_settings, app
        finally:
            yuchi.stop()


@pytest.fixture
def sim(clean: Settings, _sim_stack: tuple[SimHandle, str, Settings, object]) -> SimHandle:
    """The simulator, reset; its callbacks go to ``yuchi_server``."""
    handle = _sim_stack[0]
    handle.reset()
    return handle


@pytest.fixture
def yuchi_server(sim: SimHandle, _sim_stack: tuple[SimHandle, str, Settings, object]) -> str:
    """Base URL of the real Yuchi app (threaded, real HTTP) the simulator calls back."""
    return _sim_stack[1]


@pytest.fixture
def sim_settings(sim: SimHandle, _sim_stack: tuple[SimHandle, str, Settings, object]) -> Settings:
    """Yuchi's test settings with WECHAT_API_BASE etc. pointing at the simulator."""
    return _sim_stack[2]


@pytest.fixture
def yuchi_message_mode(
    yuchi_server: str, _sim_stack: tuple[SimHandle, str, Settings, object]
) -> Iterator[Callable[[str], None]]:
    """Set ``yuchi_server``'s WECHAT_OA_MESSAGE_MODE for one test (restored after it)."""
    app = _sim_stack[3]
    saved = app.config["SETTINGS"]

    def set_mode(mode: str) -> None:
        app.config["SETTINGS"] = saved.replace(oa_message_mode=mode)

    yield set_mode
    app.config["SETTINGS"] = saved


@pytest.fixture
def env_to_sim(sim: SimHandle, monkeypatch: pytest.MonkeyPatch):
    """Jobs read settings from the environment: point them at the simulator too."""
    from bot.core import wechat

    for key, value in sim.env.items():
        monkeypatch.setenv(key, value)
    wechat.reset_clients()
    yield
    wechat.reset_clients()


@pytest.fixture
def sim_client(sim_settings: Settings):
    """A test client of the app pointed at the simulator (for API calls that reach WeCom)."""
    from bot.app import create_app

    app = create_app(sim_settings)
    app.config["TESTING"] = True
    return app.test_client()
