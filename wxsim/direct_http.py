"""How the simulator calls the app: plain requests, never through a proxy."""

from __future__ import annotations

from typing import Any

import requests


class DirectHTTP:
    """requests without the environment's proxy settings: the simulator calls the app
    directly, and reading os.environ from a callback thread races with a test that changes
    it."""

    def _session(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = False
        return session

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        with self._session() as session:
            return session.post(url, **kwargs)

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        with self._session() as session:
            return session.get(url, **kwargs)
